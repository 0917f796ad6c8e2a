"""Running the tools the exporters read (sacct, virsh): stdout, or why there is none as an error metric's reason."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess

REASONS = ("not_found", "exec", "timeout", "exit_status")


class CommandError(Exception):
    """A run that gave no output to use; `reason` is one of REASONS (the value of the errors metric's label)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def run(argv: list[str], timeout: float, name: str, install: str) -> str:
    """stdout of `argv` run in the C locale, or CommandError. `name` says which run in messages ("virsh domstats"),
    `install` how to get the program ("install libvirt-clients or set --virsh.path"). On timeout the whole process
    group is killed: a tool's helpers (ssh for a remote libvirt) go with it."""
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            env={**os.environ, "LC_ALL": "C"},
            start_new_session=True,
        )
    except FileNotFoundError:
        raise CommandError("not_found", f"{argv[0]} not found: {install}") from None
    except OSError as exc:  # PermissionError (not executable, a directory), ENOEXEC (not a program), ...
        raise CommandError("exec", f"cannot run {argv[0]}: {exc}") from None
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):  # a child that left the group may hold the pipes
            proc.communicate(timeout=1)
        raise CommandError("timeout", f"{name} took longer than {timeout:.3g} s") from None
    if proc.returncode != 0:
        raise CommandError("exit_status", f"{name} exited {proc.returncode}: {err.strip()[:500]}")
    return out

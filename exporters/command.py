"""Running the tools the exporters read (sacct, virsh): stdout, or why there is none as an error metric's reason."""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import time

REASONS = ("not_found", "exec", "timeout", "exit_status", "too_large")
STDERR_KEPT = 4096  # bytes of stderr kept for the message; the rest is read and dropped, so the tool never blocks
_CHUNK = 65536


class CommandError(Exception):
    """A run that gave no output to use; `reason` is one of REASONS (the value of the errors metric's label)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def run(argv: list[str], timeout: float, name: str, install: str, max_bytes: int, max_flag: str) -> str:
    """stdout of a run of `argv` that exits 0 (run_status), or CommandError (exit_status: any other status)."""
    returncode, out, err = run_status(argv, timeout, name, install, max_bytes, max_flag)
    if returncode != 0:
        raise CommandError("exit_status", f"{name} exited {returncode}: {err}")
    return out


def run_status(
    argv: list[str], timeout: float, name: str, install: str, max_bytes: int, max_flag: str
) -> tuple[int, str, str]:
    """Exit status, stdout and the start of stderr (stripped, 500 characters) of `argv` run in the C locale
    (bytes that are not UTF-8 become U+FFFD), whatever the status (a tool such as smartctl reports through its exit
    bits and still prints its output), or CommandError. `name` says which run in messages ("virsh domstats"),
    `install` how to get the program ("install libvirt-clients or set --virsh.path"). At most `max_bytes` of stdout
    are taken: a run that prints more is killed and refused (too_large; `max_flag` is the option that raises the
    limit), never cut short into output that would look complete. On a timeout or too_large the whole process group
    is killed: a tool's helpers (ssh for a remote libvirt) go with it."""
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "LC_ALL": "C"},
            start_new_session=True,
        )
    except FileNotFoundError:
        raise CommandError("not_found", f"{argv[0]} not found: {install}") from None
    except OSError as exc:  # PermissionError (not executable, a directory), ENOEXEC (not a program), ...
        raise CommandError("exec", f"cannot run {argv[0]}: {exc}") from None
    deadline = time.monotonic() + timeout
    try:
        out, err = _read(proc, deadline, max_bytes)
        try:
            returncode = proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:  # closed its output but did not exit
            raise CommandError("timeout", "") from None
    except CommandError as exc:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(1)  # reap it; a child that left the group may still hold the pipes, which we close
        if exc.reason == "timeout":
            raise CommandError("timeout", f"{name} took longer than {timeout:.3g} s") from None
        raise CommandError(exc.reason, f"{name} printed more than {max_bytes} bytes: raise {max_flag}") from None
    finally:
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    message = err.decode("utf-8", errors="replace").strip()[:500]
    return returncode, out.decode("utf-8", errors="replace"), message


def _read(proc: subprocess.Popen[bytes], deadline: float, max_bytes: int) -> tuple[bytes, bytes]:
    """stdout and the first STDERR_KEPT bytes of stderr, read until both close; CommandError(timeout) at the
    deadline, CommandError(too_large) past max_bytes of stdout (the messages are the caller's)."""
    out, err = bytearray(), bytearray()
    with selectors.DefaultSelector() as selector:
        for pipe, buffer in ((proc.stdout, out), (proc.stderr, err)):
            if pipe is not None:
                selector.register(pipe, selectors.EVENT_READ, buffer)
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CommandError("timeout", "")
            for key, _ in selector.select(remaining):
                chunk = os.read(key.fd, _CHUNK)
                if not chunk:
                    selector.unregister(key.fileobj)
                elif key.data is out:
                    out += chunk
                    if len(out) > max_bytes:
                        raise CommandError("too_large", "")
                else:
                    err += chunk[: max(0, STDERR_KEPT - len(err))]
    return bytes(out), bytes(err)

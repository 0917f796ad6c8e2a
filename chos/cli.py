"""chos: list the node's environments, or run a command inside one.

The environment is, in order: `-e NAME`, then $CHOS, then the first word of ~/.chos, then the node's default —
as on PDSF. Commands run through schroot (chroot `chos-<name>`); their exit code passes through, and a command
killed by a signal makes chos exit with 128 + the signal number, like a shell.
Python >= 3.9, standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

CONFIG = Path(os.environ.get("CHOS_CONFIG", "/etc/chos/environments.json"))


class ChosError(Exception):
    """A user-facing error; the message says what to change."""


@dataclass(frozen=True)
class Config:
    default: str
    environments: dict[str, str]  # name -> description


def load_config(path: Path) -> Config:
    try:
        data = json.loads(path.read_text())
        envs = {str(e["name"]): str(e.get("description", "")) for e in data["environments"]}
        default = str(data["default"])
    except OSError as exc:
        raise ChosError(f"cannot read {path}: {exc.strerror}; is this a CHOS node (role chos)?") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ChosError(f"{path} is not a valid CHOS configuration ({exc}); re-run the chos role") from None
    if default not in envs:
        raise ChosError(f"{path}: default environment {default!r} is not one of the environments")
    return Config(default, envs)


def user_default(home: Path) -> str | None:
    """First word of ~/.chos that is not a comment, like PDSF's ~/.chos."""
    try:
        for line in (home / ".chos").read_text().splitlines():
            word = line.split("#", 1)[0].strip()
            if word:
                return word.split()[0]
    except OSError:
        pass
    return None


def resolve(config: Config, requested: str | None, environ: dict[str, str], home: Path) -> tuple[str, str]:
    """(environment, where the choice came from)."""
    for name, source in (
        (requested, "-e"),
        (environ.get("CHOS") or None, "$CHOS"),
        (user_default(home), "~/.chos"),
        (config.default, "node default"),
    ):
        if name:
            if name not in config.environments:
                known = ", ".join(sorted(config.environments))
                raise ChosError(f"unknown CHOS environment {name!r} (from {source}); available: {known}")
            return name, source
    raise AssertionError("unreachable: the node default is always set")


def schroot_argv(env: str, command: list[str], cwd: str) -> list[str]:
    # schroot reports a command killed by a signal as plain exit 1; a shell in between turns it into 128 + signal.
    shell = ["/bin/sh", "-c", '"$@"; exit $?', "chos-run"]
    return ["schroot", "--quiet", "--chroot", f"chos-{env}", "--directory", cwd, "--", *shell, *command]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="chos", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="action", required=True)
    sub.add_parser("list", help="list the environments (* marks the one a job would get now)")
    run = sub.add_parser("run", help="run a command in an environment")
    run.add_argument("-e", "--env", help="environment name (default: $CHOS, ~/.chos, node default)")
    run.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    args = p.parse_args(argv)
    home = Path(os.environ.get("HOME") or os.path.expanduser("~"))
    try:
        config = load_config(CONFIG)
        if args.action == "list":
            current, source = resolve(config, None, dict(os.environ), home)
            for name, description in sorted(config.environments.items()):
                mark = "*" if name == current else " "
                print(f"{mark} {name:<16} {description}" + (f"  ({source})" if name == current else ""))
            return 0
        command = args.command[1:] if args.command[:1] == ["--"] else args.command
        if not command:
            p.error("run needs a command: chos run [-e ENV] -- COMMAND [ARGS...]")
        env, _ = resolve(config, args.env, dict(os.environ), home)
    except ChosError as exc:
        print(f"chos: {exc}", file=sys.stderr)
        return 2
    argv_ = schroot_argv(env, command, os.getcwd())
    try:
        os.execvp(argv_[0], argv_)  # schroot waits for the command and returns its status
    except OSError as exc:
        print(f"chos: cannot run schroot: {exc.strerror}; install schroot (role chos)", file=sys.stderr)
        return 127
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())

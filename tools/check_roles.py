#!/usr/bin/env python3
"""Check that what each role says about its variables and tags agrees with what it does.

For every role under ROLES (default: this repository's roles/):
  - defaults/main.yml and meta/argument_specs.yml (entry point main) name the same variables; an option with
    `required: true` has no default;
  - a documented `default:` is the defaults file's value (YAML values compared: 4 and 4.0 agree, false and 0 do
    not; a Jinja default is compared as its string). An option may leave `default:` out when its description says
    it in words (a long list, or an expression such as the inventory name);
  - every public variable, defaulted or documented, is named <role>_*;
  - the preflight include in tasks/main.yml carries every tag of the role's other includes, so that
    `--tags <role>_configure` runs the preflight too (or the tag `always`, which also survives --skip-tags of any
    part).
One line per disagreement (the role, the variable, what disagrees and what to do) and exit status 1; 0 when all
agree. Run by `make lint`:  .venv/bin/python tools/check_roles.py [ROLES]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SPECIAL_TAGS = {"always", "never"}  # Ansible's own: a preflight need not carry them


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads Ansible's tags (!unsafe, !vault) as the plain values they tag."""


def _untagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    return loader.construct_mapping(node)  # type: ignore[arg-type]


_Loader.add_multi_constructor("!", _untagged)


@dataclass(frozen=True, order=True)
class Finding:
    role: str
    subject: str  # the variable, or the file for a tag disagreement
    message: str

    def __str__(self) -> str:
        return f"roles/{self.role}: {self.subject}: {self.message}"


class RoleFileError(ValueError):
    """A role file that is not YAML; the message names the file and where it stops parsing."""


def load(path: Path) -> Any:
    """The YAML document at path, or None when there is no such file; RoleFileError when it does not parse."""
    if not path.is_file():
        return None
    with path.open() as f:
        try:
            return yaml.load(f, Loader=_Loader)  # a SafeLoader with tags read as plain values
        except yaml.YAMLError as exc:
            raise RoleFileError(f"{path}: not valid YAML ({' '.join(str(exc).split())})") from None


def same(a: Any, b: Any) -> bool:
    """Equal as YAML values: numbers by value, booleans only to booleans, containers element by element."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def shown(value: Any) -> str:
    return json.dumps(value, default=str)


def check_arguments(role: Path) -> Iterator[Finding]:
    """defaults/main.yml against meta/argument_specs.yml's entry point main, and the public variables' names."""
    name = role.name
    defaults = load(role / "defaults" / "main.yml") or {}
    specs = load(role / "meta" / "argument_specs.yml")
    if not isinstance(defaults, dict):
        yield Finding(name, "defaults/main.yml", "is not a mapping of variable to value: write it as `name: value`")
        return
    options: dict[str, Any] = {}
    if specs is not None:
        main = (specs.get("argument_specs") or {}).get("main") if isinstance(specs, dict) else None
        if not isinstance(main, dict):
            yield Finding(name, "meta/argument_specs.yml", "has no entry point main: add argument_specs.main.options")
            return
        options = main.get("options") or {}
    for var in sorted(defaults.keys() | options.keys()):
        if not var.startswith(f"{name}_"):
            yield Finding(
                name,
                var,
                f"a public variable of role {name} is named {name}_<noun>: rename it (an internal value goes in "
                f"vars/main.yml as _{name}_*)",
            )
        spec = options.get(var)
        if spec is None:
            yield Finding(
                name,
                var,
                "set in defaults/main.yml but not documented in meta/argument_specs.yml: add it there (type, "
                "default, description), or remove it from defaults if it is not a setting",
            )
            continue
        if not isinstance(spec, dict):
            yield Finding(name, var, "its entry in meta/argument_specs.yml is not a mapping: give type and description")
            continue
        required = spec.get("required") is True
        if var not in defaults:
            if not required:
                yield Finding(
                    name,
                    var,
                    "documented in meta/argument_specs.yml but has no value in defaults/main.yml: give its default "
                    "there, or mark it required: true if the user must set it",
                )
            elif "default" in spec:
                yield Finding(name, var, "required: true and a default in meta/argument_specs.yml: keep one")
            continue
        if required:
            yield Finding(
                name,
                var,
                "required: true in meta/argument_specs.yml, yet defaults/main.yml gives it a value: drop required "
                "or the default",
            )
        if "default" in spec and not same(spec["default"], defaults[var]):
            yield Finding(
                name,
                var,
                f"meta/argument_specs.yml documents default {shown(spec['default'])} but defaults/main.yml sets "
                f"{shown(defaults[var])}: make the documented default the defaults file's value",
            )


def _included_file(task: dict[str, Any]) -> str | None:
    for key, value in task.items():
        if key.rsplit(".", 1)[-1] in ("import_tasks", "include_tasks"):
            return value.get("file") if isinstance(value, dict) else str(value)
    return None


def _tags(task: dict[str, Any]) -> list[str]:
    tags = task.get("tags") or []
    return [tags] if isinstance(tags, str) else [str(t) for t in tags]


def check_preflight_tags(role: Path) -> Iterator[Finding]:
    """The preflight include carries every tag of the role's other includes."""
    tasks = load(role / "tasks" / "main.yml")
    if not isinstance(tasks, list):
        return
    includes = [t for t in tasks if isinstance(t, dict) and _included_file(t) is not None]
    preflights = [t for t in includes if _included_file(t) == "preflight.yml"]
    if not preflights:
        return
    others: list[str] = []
    for task in includes:
        if task not in preflights:
            others += [t for t in _tags(task) if t not in others and t not in SPECIAL_TAGS]
    for task in preflights:
        missing = [] if "always" in _tags(task) else [t for t in others if t not in _tags(task)]
        if missing:
            yield Finding(
                role.name,
                "tasks/main.yml",
                f"the preflight include lacks the tag(s) {', '.join(missing)} of the role's other includes: tag it "
                f"[{', '.join(others)}], so that --tags {missing[0]} runs the preflight too",
            )


def check(roles: Path) -> list[Finding]:
    found: list[Finding] = []
    for role in sorted(p for p in roles.iterdir() if p.is_dir()):
        found += check_arguments(role)
        found += check_preflight_tags(role)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roles", nargs="?", type=Path, default=Path(__file__).resolve().parents[1] / "roles")
    args = parser.parse_args(argv)
    if not args.roles.is_dir():
        parser.error(f"{args.roles} is not a directory of roles")
    try:
        findings = check(args.roles)
    except RoleFileError as exc:
        print(f"check_roles: {exc}", file=sys.stderr)
        return 1
    for finding in findings:
        print(finding)
    if findings:
        print(f"check_roles: {len(findings)} disagreement(s) in {args.roles}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

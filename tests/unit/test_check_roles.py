"""tools/check_roles.py on a tiny fake role tree: a role that agrees passes, each kind of disagreement fails with a
line naming the role, the variable and what to do; and this repository's roles agree."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOL = ROOT / "tools" / "check_roles.py"

DEFAULTS = """\
---
demo_port: 9810
demo_listen_address: ":{{ magellan_ports.demo }}"
demo_timeout: 4
demo_enabled: false
demo_paths: [/home, "{{ magellan_jobs_dir }}"]
demo_node_name: "{{ inventory_hostname }}"
"""

SPECS = """\
---
argument_specs:
  main:
    short_description: A demo role
    options:
      demo_port: {type: int, default: 9810, description: The port.}
      demo_listen_address: {type: str, default: ":{{ magellan_ports.demo }}", description: The address.}
      demo_timeout: {type: float, default: 4.0, description: Seconds.}
      demo_enabled: {type: bool, default: false, description: On or off.}
      demo_paths: {type: list, elements: path, default: [/home, "{{ magellan_jobs_dir }}"], description: Paths.}
      demo_node_name: {type: str, description: The node label (default the inventory name).}
      demo_password: {type: str, required: true, no_log: true, description: Given by the site.}
"""

MAIN = """\
---
- name: Preflight
  ansible.builtin.import_tasks: preflight.yml
  tags: [demo_install, demo_configure, demo_run]
- name: Install
  ansible.builtin.import_tasks: install.yml
  tags: [demo_install]
- name: Configure
  ansible.builtin.import_tasks: configure.yml
  tags: [demo_configure]
- name: Service
  ansible.builtin.import_tasks: service.yml
  tags: [demo_run, always]
"""


def make_role(roles: Path, defaults: str = DEFAULTS, specs: str = SPECS, main: str = MAIN) -> None:
    role = roles / "demo"
    for path, text in (("defaults/main.yml", defaults), ("meta/argument_specs.yml", specs), ("tasks/main.yml", main)):
        (role / path).parent.mkdir(parents=True, exist_ok=True)
        (role / path).write_text(text)


def run(roles: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(TOOL), str(roles)], capture_output=True, text=True)


def test_a_role_that_agrees_passes(tmp_path: Path) -> None:
    make_role(tmp_path)
    proc = run(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout == ""


Edit = tuple[str, str, str]  # file (defaults, specs or main), text to replace ("": append), replacement


@pytest.mark.parametrize(
    ("edits", "expected"),
    [
        (
            [("defaults", "", "demo_extra: 1\n")],
            "roles/demo: demo_extra: set in defaults/main.yml but not documented in meta/argument_specs.yml",
        ),
        (
            [("defaults", "demo_timeout: 4\n", "")],
            "roles/demo: demo_timeout: documented in meta/argument_specs.yml but has no value in defaults/main.yml",
        ),
        (
            [("defaults", "", "demo_password: secret\n")],
            "roles/demo: demo_password: required: true in meta/argument_specs.yml, yet defaults/main.yml gives it",
        ),
        (
            [("defaults", "demo_port: 9810", "demo_port: 9811")],
            "roles/demo: demo_port: meta/argument_specs.yml documents default 9810 but defaults/main.yml sets 9811",
        ),
        (
            [("defaults", "demo_enabled: false", "demo_enabled: 0")],
            "roles/demo: demo_enabled: meta/argument_specs.yml documents default false but defaults/main.yml sets 0",
        ),
        (
            [("defaults", "magellan_ports.demo }}", "magellan_ports.other }}")],
            'documents default ":{{ magellan_ports.demo }}" but defaults/main.yml sets ":{{ magellan_ports.other }}"',
        ),
        (
            [("defaults", '"{{ magellan_jobs_dir }}"]', "/var/lib/jobs]")],
            'roles/demo: demo_paths: meta/argument_specs.yml documents default ["/home", "{{ magellan_jobs_dir }}"]',
        ),
        (
            [
                ("defaults", "", "jobs_dir: /srv\n"),
                ("specs", "", "      jobs_dir: {type: path, default: /srv, description: Jobs.}\n"),
            ],
            "roles/demo: jobs_dir: a public variable of role demo is named demo_<noun>: rename it",
        ),
        (
            [("main", "tags: [demo_install, demo_configure, demo_run]", "tags: [demo_install]")],
            "roles/demo: tasks/main.yml: the preflight include lacks the tag(s) demo_configure, demo_run",
        ),
    ],
)
def test_each_disagreement_fails_naming_the_role_and_variable(tmp_path: Path, edits: list[Edit], expected: str) -> None:
    files = {"defaults": DEFAULTS, "specs": SPECS, "main": MAIN}
    for name, old, new in edits:
        assert old == "" or old in files[name], old
        files[name] = files[name].replace(old, new) if old else files[name] + new
    make_role(tmp_path, files["defaults"], files["specs"], files["main"])
    proc = run(tmp_path)
    assert proc.returncode == 1
    assert len(proc.stdout.splitlines()) == 1, proc.stdout
    assert expected in proc.stdout, proc.stdout
    assert "check_roles: 1 disagreement(s)" in proc.stderr


def test_messages_say_what_to_do(tmp_path: Path) -> None:
    make_role(tmp_path, defaults=DEFAULTS.replace("demo_port: 9810", "demo_port: 1"))
    out = run(tmp_path).stdout
    assert "make the documented default the defaults file's value" in out


def test_a_file_that_is_not_yaml_is_named_without_a_traceback(tmp_path: Path) -> None:
    make_role(tmp_path, specs=SPECS.replace("description: The port.}", "description: The port: 9810.}"))
    proc = run(tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "demo/meta/argument_specs.yml: not valid YAML (" in proc.stderr and "line 6" in proc.stderr


def test_this_repositorys_roles_agree() -> None:
    proc = run(ROOT / "roles")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_preflight_tagged_always_runs_with_every_part(tmp_path: Path) -> None:
    # `always` runs with any --tags, and with --skip-tags of the other parts (a role's tags would be skipped then).
    make_role(tmp_path, main=MAIN.replace("tags: [demo_install, demo_configure, demo_run]", "tags: [always]"))
    proc = run(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr

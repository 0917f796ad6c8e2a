"""Role storage_exporter on the controller: its preflight and its systemd unit, rendered by Ansible from the role's own
defaults and tasks. The unit's command line is read back as systemd reads it (systemd-analyze's own parse where the
tool is installed) and given to the exporter's own argument parser: every setting, a regular expression with `\\`,
`$`, `%` and quotes included, reaches magellan-storage-exporter as written. The service itself runs on a storage node
(tests/integration)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from exporters import storage

ROLE = Path(__file__).resolve().parents[2] / "roles" / "storage_exporter"
BIN = Path(sys.executable).parent
# A regular expression with every character systemd treats specially in a command line.
ODD_EXCLUDE = r'^(ram|loop|x%y|"q"|a\$)\d+$'


def ansible_playbook(tmp_path: Path, hosts: dict[str, dict[str, Any]], tasks: str) -> subprocess.CompletedProcess[str]:
    """Run `tasks` on `hosts` (local connections, no facts) with the role's defaults and vars below the hosts' own
    variables, as a role's defaults are."""
    role_vars = {**yaml.safe_load((ROLE / "defaults" / "main.yml").read_text()),
                 **yaml.safe_load((ROLE / "vars" / "main.yml").read_text())}  # fmt: skip
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        json.dumps(
            {
                "all": {
                    "vars": {**role_vars, "ansible_connection": "local", "ansible_python_interpreter": sys.executable},
                    "hosts": hosts,
                }
            }
        )
    )
    book = tmp_path / "play.yml"
    book.write_text(f"- hosts: all\n  gather_facts: false\n  tasks:\n{tasks}")
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "ANSIBLE_NOCOLOR": "1"}
    return subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(inventory), str(book)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


def words(text: str) -> list[str]:
    """A command line split into words as a POSIX shell splits it, without expansions: the syntax of a unit's
    ExecStart as this role writes it (double quotes, a backslash escaping a backslash or a quote) and of
    systemd-analyze's dump of it (shell quoting: a dollar escaped too)."""
    found: list[str] = []
    word: list[str] | None = None  # None between words; [] for a word begun by "" (an empty argument)
    quoted, i = False, 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            word = word if word is not None else []
            if quoted and text[i + 1] not in '$`"\\':
                word.append(c)  # in double quotes a backslash escapes only these
            word.append(text[i + 1])
            i += 2
            continue
        if c == '"':
            quoted = not quoted
            word = word if word is not None else []
        elif c.isspace() and not quoted:
            if word is not None:
                found.append("".join(word))
            word = None
        else:
            word = word if word is not None else []
            word.append(c)
        i += 1
    assert not quoted, f"unterminated quote in {text!r}"
    return found if word is None else [*found, "".join(word)]


def exec_start(unit: str) -> list[str]:
    """The ExecStart command line as systemd takes it: continuation lines joined, %% a %, words unquoted (C escapes
    in double quotes), and $$ a $ when it runs."""
    lines = unit.splitlines()
    n = next(i for i, line in enumerate(lines) if line.startswith("ExecStart="))
    text = lines[n].removeprefix("ExecStart=")
    while text.endswith("\\"):
        n += 1
        text = text[:-1] + " " + lines[n]
    return [word.replace("$$", "$") for word in words(text.replace("%%", "%"))]


def systemd_exec_start(path: Path) -> list[str] | None:
    """systemd's own parse of the unit's ExecStart (systemd-analyze verify's debug dump), None without the tool; the
    unit must verify without a word of complaint."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        return None
    quiet = subprocess.run([tool, "verify", "--man=no", str(path)], capture_output=True, text=True, check=False)
    assert quiet.returncode == 0 and not (quiet.stdout + quiet.stderr).strip(), quiet.stdout + quiet.stderr
    dump = subprocess.run(
        [tool, "verify", "--man=no", str(path)],
        capture_output=True,
        text=True,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "debug"},
        check=False,
    )
    line = next(x for x in dump.stdout.splitlines() if x.strip().startswith("Command Line: "))
    return [word.replace("$$", "$") for word in words(line.strip().removeprefix("Command Line: "))]


def test_the_unit_hands_every_setting_to_the_exporter_as_written(tmp_path: Path) -> None:
    prefix = tmp_path / "prefix"
    (prefix / "venv" / "bin").mkdir(parents=True)
    (prefix / "venv" / "bin" / "magellan-storage-exporter").symlink_to(BIN / "magellan-storage-exporter")
    arrays = [{"name": "data", "mount_point": "/srv/arrays/data"}, {"name": "home", "mount_point": "/home/array"}]
    hosts: dict[str, dict[str, Any]] = {
        "plain": {},
        "arrays": {
            "storage_array_arrays": arrays,
            "storage_exporter_smart_nvme": True,
            "storage_exporter_smart_interval": 300,
            "storage_exporter_device_exclude": ODD_EXCLUDE,
            "storage_exporter_extra_args": ["--no-collector.md", "--smart.devices=sda,nvme0n1"],
        },
        "nosmart": {"storage_exporter_smart": False},
    }
    for host in hosts.values():
        host["magellan_prefix"] = str(prefix)
    tasks = (
        f"    - ansible.builtin.include_tasks: {ROLE / 'tasks' / 'preflight.yml'}\n"
        "    - ansible.builtin.template:\n"
        f"        src: {ROLE / 'templates' / 'magellan-storage-exporter.service.j2'}\n"
        f"        dest: {tmp_path}/{{{{ inventory_hostname }}}}.service\n"
        "        mode: '0644'\n"
    )
    proc = ansible_playbook(tmp_path, hosts, tasks)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    args, units = {}, {}
    for name in hosts:
        path = tmp_path / f"{name}.service"
        units[name] = path.read_text()
        argv = exec_start(units[name])
        assert argv[0] == f"{prefix}/venv/bin/magellan-storage-exporter"
        parsed_by_systemd = systemd_exec_start(path)
        if parsed_by_systemd is not None:
            assert parsed_by_systemd == argv
        args[name] = storage._parser().parse_args(argv[1:])

    plain = args["plain"]
    assert plain.listen == ("plain", 9813) and plain.node == "plain"
    assert plain.mounts == [] and plain.fs_timeout == 1.0
    assert plain.collector_smart and plain.smart_timeout == 3.0 and plain.smart_interval == 60.0
    assert plain.exclude.pattern == storage.DEVICE_EXCLUDE
    assert "AmbientCapabilities=CAP_SYS_RAWIO\n" in units["plain"]
    assert "CapabilityBoundingSet=CAP_SYS_RAWIO\n" in units["plain"]
    assert "SupplementaryGroups=disk\n" in units["plain"] and "DeviceAllow=block-* r\n" in units["plain"]

    full = args["arrays"]
    assert full.mounts == ["/srv/arrays/data", "/home/array"]
    assert full.exclude.pattern == ODD_EXCLUDE
    assert full.smart_interval == 300.0 and full.devices == ["sda", "nvme0n1"] and not full.collector_md
    assert "AmbientCapabilities=CAP_SYS_RAWIO CAP_SYS_ADMIN\n" in units["arrays"]
    assert "ProtectHome=read-only\n" in units["arrays"]  # /home/array stays visible to statvfs

    bare = args["nosmart"]
    assert not bare.collector_smart
    assert "CapabilityBoundingSet=\n" in units["nosmart"]
    assert not re.search(r"^(AmbientCapabilities|SupplementaryGroups|DeviceAllow)=", units["nosmart"], re.M)


BAD: dict[str, tuple[dict[str, Any], str]] = {
    "no_mount_point": (
        {"storage_array_arrays": [{"name": "data", "mount_point": "/srv/data"}, {"name": "scratch"}]},
        "storage_exporter_mount_points is undefined. Its default is the mount_point of each array of "
        "storage_array_arrays, and scratch name(s) none",
    ),
    "private_tmp": ({"storage_exporter_mount_points": ["/srv/a", "/var/tmp/b"]}, "instead of the host's (/var/tmp/b)"),
    "comma": ({"storage_exporter_mount_points": ["/srv/a,b"]}, "without commas or blanks"),
    "twice": ({"storage_exporter_mount_points": ["/srv/a", "/srv/a"]}, "absolute paths, each once"),
    "slow_smart": ({"storage_exporter_smart_timeout": 0}, "storage_exporter_smart_timeout=0 seconds in (0, 600]"),
    "interval": ({"storage_exporter_smart_interval": -1}, "storage_exporter_smart_interval=-1 must be the seconds"),
    "exclude": ({"storage_exporter_device_exclude": ""}, 'storage_exporter_device_exclude="" must be a (Python)'),
    "extra": ({"storage_exporter_extra_args": ["--smart.path=a b"]}, "storage_exporter_extra_args=["),
    "listen": ({"storage_exporter_listen_address": "9813"}, "storage_exporter_listen_address=9813 must be [HOST]:PORT"),
    "user": ({"storage_exporter_user": "Storage"}, "storage_exporter_user=Storage must be a user name"),
}


def test_preflight_names_the_variable_what_is_wrong_and_what_to_do(tmp_path: Path) -> None:
    proc = ansible_playbook(
        tmp_path,
        {name: overrides for name, (overrides, _) in BAD.items()},
        f"    - ansible.builtin.include_tasks: {ROLE / 'tasks' / 'preflight.yml'}\n",
    )
    out = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode == 2, out
    for name, (_, message) in BAD.items():
        assert f"Host {name}: storage_exporter_" in out and message in out, name

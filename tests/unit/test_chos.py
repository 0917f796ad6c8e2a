"""The chos command: how a job's environment is chosen, and its messages. (Running through schroot is
tested for real by the slurm role's molecule scenario, tests/test_chos.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from chos.cli import ChosError, Config, load_config, resolve, schroot_argv, user_default

CONFIG = Config("bookworm", {"bookworm": "Debian 12", "bullseye": "Debian 11"})


def test_order_is_flag_then_env_then_dotchos_then_default(tmp_path: Path) -> None:
    (tmp_path / ".chos").write_text("# my default\nbullseye\n")
    assert resolve(CONFIG, "bookworm", {"CHOS": "bullseye"}, tmp_path) == ("bookworm", "-e")
    assert resolve(CONFIG, None, {"CHOS": "bookworm"}, tmp_path) == ("bookworm", "$CHOS")
    assert resolve(CONFIG, None, {}, tmp_path) == ("bullseye", "~/.chos")
    assert resolve(CONFIG, None, {"CHOS": ""}, tmp_path / "nohome") == ("bookworm", "node default")


def test_dotchos_first_word_ignoring_comments(tmp_path: Path) -> None:
    (tmp_path / ".chos").write_text("\n  # comment\n bullseye  # trailing\nbookworm\n")
    assert user_default(tmp_path) == "bullseye"
    (tmp_path / ".chos").write_text("# only comments\n")
    assert user_default(tmp_path) is None


def test_unknown_environment_lists_the_available_ones(tmp_path: Path) -> None:
    with pytest.raises(
        ChosError, match=r"unknown CHOS environment 'sl5' \(from \$CHOS\); available: bookworm, bullseye"
    ):
        resolve(CONFIG, None, {"CHOS": "sl5"}, tmp_path)


def test_schroot_command_line() -> None:
    assert schroot_argv("bullseye", ["cat", "/etc/debian_version"], "/home/u") == [
        "schroot", "--quiet", "--chroot", "chos-bullseye", "--directory", "/home/u", "--",
        "/bin/sh", "-c", '"$@"; exit $?', "chos-run", "cat", "/etc/debian_version",
    ]  # fmt: skip


def test_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ChosError, match="is this a CHOS node"):
        load_config(tmp_path / "absent.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"default": "x", "environments": [{"name": "bookworm"}]}')
    with pytest.raises(ChosError, match="default environment 'x' is not one of"):
        load_config(bad)
    bad.write_text("{not json")
    with pytest.raises(ChosError, match="not a valid CHOS configuration"):
        load_config(bad)


def _chos(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "environments.json"
    envs = [{"name": "bookworm", "description": "Debian 12"}, {"name": "bullseye", "description": "Debian 11"}]
    config.write_text(json.dumps({"default": "bookworm", "environments": envs}))
    environ = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "CHOS_CONFIG": str(config), **env}
    return subprocess.run([sys.executable, "-m", "chos.cli", *args], capture_output=True, text=True, env=environ)


def test_list_marks_the_current_environment(tmp_path: Path) -> None:
    out = _chos(tmp_path, "list", CHOS="bullseye").stdout.splitlines()
    assert out == ["  bookworm         Debian 12", "* bullseye         Debian 11  ($CHOS)"]


def test_run_with_unknown_environment_exits_2(tmp_path: Path) -> None:
    proc = _chos(tmp_path, "run", "-e", "sl6", "--", "true")
    assert proc.returncode == 2
    assert "available: bookworm, bullseye" in proc.stderr and "Traceback" not in proc.stderr


def test_run_without_command(tmp_path: Path) -> None:
    proc = _chos(tmp_path, "run", "--")
    assert proc.returncode == 2 and "run needs a command" in proc.stderr

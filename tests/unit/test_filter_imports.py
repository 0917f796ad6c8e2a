"""Ansible imports every filter file of plugins/filter in the worker process of every task, for every host: a heavy
import at a filter file's top is paid by every task of every playbook. openstacksdk imported by the tier3_openstack
filter made validate.yml take 64 s instead of 21 (about 1 s a task and host). The plugins import the libraries they
need for one filter inside that filter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from testbed.inventory import REPO

HEAVY = ("openstack", "keystoneauth1", "requests", "prometheus_client", "rich", "matplotlib", "uproot")
PLUGINS = sorted((REPO / "plugins" / "filter").glob("*.py"))

_PROBE = """
import importlib.util, json, sys
import ansible.template
before = set(sys.modules)
spec = importlib.util.spec_from_file_location("probe", sys.argv[1])
spec.loader.exec_module(importlib.util.module_from_spec(spec))
print(json.dumps(sorted(set(sys.modules) - before)))
"""


@pytest.mark.parametrize("plugin", PLUGINS, ids=[p.stem for p in PLUGINS])
def test_plugin_file_imports_no_heavy_library(plugin: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, str(plugin)], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    heavy = sorted({m.split(".")[0] for m in json.loads(proc.stdout)} & set(HEAVY))
    assert not heavy, f"{plugin.relative_to(REPO)} imports {heavy} when loaded: import them inside the filter"


def test_the_probe_sees_a_heavy_import(tmp_path: Path) -> None:
    """The check above can fail: a plugin file importing prometheus_client at its top is caught."""
    bad = tmp_path / "bad.py"
    bad.write_text("import prometheus_client\n")
    proc = subprocess.run([sys.executable, "-c", _PROBE, str(bad)], capture_output=True, text=True, check=True)
    assert "prometheus_client" in json.loads(proc.stdout)

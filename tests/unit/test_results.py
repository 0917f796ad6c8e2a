"""Comparison results as metrics, and the alert rules that watch them (promtool)."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from testbed.inventory import Inventory
from testbed.results import PublishError, exposition, publish
from tests.unit.test_report import cold, comparison, repeated

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "roles" / "prometheus" / "files" / "magellan.rules.yml"


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.fail("promtool is missing: make bootstrap installs Debian's prometheus package")
    return subprocess.run([tool, *args], input=stdin, capture_output=True, text=True, check=False)


def test_alert_rules_pass_their_promtool_tests() -> None:
    proc = promtool("test", "rules", str(REPO / "tests" / "fixtures" / "rules" / "magellan_test.yml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_exposition_is_valid_and_labelled() -> None:
    text = exposition(repeated(), tolerance_pct=15.0)
    proc = promtool("check", "metrics", stdin=text)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    labels = 'accel="none",format="none",group="workload_nodes",node="compute2",platform="bare-metal-halfcpu"'
    labels += ',readers="1"'
    labels += ',reference="compute1",workload="simulate"'
    assert f"magellan_comparison_ratio{{{labels}}} 0.5" in text
    assert f"magellan_comparison_ratio_expected{{{labels}}} 0.5" in text
    assert f"magellan_comparison_tolerance_ratio{{{labels}}} 0.15" in text
    assert 'magellan_comparison_ratio_spread{accel="tcg",format="none",group="workload_nodes",node="vm1"' in text


def test_groups_compared_apart_publish_apart() -> None:
    # compute1 is the reference of the campaign and of the bare-metal vs virtual comparison: two series, not one.
    text = exposition(repeated(), tolerance_pct=15.0, group="bare_vs_virtual")
    assert 'magellan_comparison_ratio{accel="none",format="none",group="bare_vs_virtual",node="compute1"' in text
    assert 'magellan_comparison_finished_timestamp_seconds{format="none",group="bare_vs_virtual",readers="1"' in text


def test_single_runs_publish_no_spread_so_no_alert_can_fire() -> None:
    text = exposition(comparison(), tolerance_pct=15.0)
    assert "magellan_comparison_ratio{" in text
    assert "magellan_comparison_ratio_spread{" not in text


def test_every_metric_the_rules_use_is_published() -> None:
    """The comparison rules' series are the published comparison's; the storage rules' are the storage exporter's
    (its golden exposition of recorded md trees)."""
    rules = {g["name"]: g["rules"] for g in yaml.safe_load(RULES.read_text())["groups"]}
    sources = {
        "magellan-comparison": exposition(repeated(), tolerance_pct=15.0),
        "magellan-storage": (REPO / "tests" / "fixtures" / "storage" / "golden-procfs.prom").read_text(),
    }
    for group, text in sources.items():
        used = {m for r in rules[group] for m in re.findall(r"magellan_\w+", r["expr"])}
        missing = [name for name in used if f"\n{name}{{" not in text]
        assert used and not missing, (group, missing)


def test_publish_needs_one_prometheus_host(tmp_path: Path) -> None:
    inventory = Inventory(path=tmp_path, groups={"prometheus": []}, hostvars={})
    with pytest.raises(PublishError, match="has 0 hosts"):
        publish(repeated(), inventory, 15.0)


def test_storms_and_failed_runs_are_published_without_a_ratio_to_alert_on() -> None:
    text = exposition(cold("storm", 4, runs2=[None, None]), tolerance_pct=15.0)
    assert promtool("check", "metrics", stdin=text).returncode == 0
    c2 = 'accel="none",format="rntuple",group="workload_nodes",node="compute2",platform="bare-metal-halfcpu"'
    c2 += ',readers="4"'
    c2 += ',reference="compute1",workload="storm"'
    assert f"magellan_comparison_failed_runs{{{c2}}} 2.0" in text
    assert f"magellan_comparison_ratio{{{c2}}}" not in text  # nothing measured: no ratio, no false alert
    one = 'accel="none",format="rntuple",group="workload_nodes",node="compute1"'
    assert f"magellan_comparison_read_bytes_per_second{{{one}" in text
    assert f"magellan_comparison_job_cpu_efficiency{{{one}" in text


def test_formats_compared_apart_publish_apart() -> None:
    """analyze on RNTuple and on TTree files: two series per node (node_exporter refuses one series in two
    textfiles)."""
    ttree = replace(cold(), parameters={**cold().parameters, "format": "ttree"})
    assert 'format="ttree"' in exposition(ttree, 15.0) and 'format="rntuple"' in exposition(cold(), 15.0)

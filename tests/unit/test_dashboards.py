"""Dashboards as code: deterministic, committed, described, and every query valid on a real Prometheus."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from dashboards.__main__ import BUILDERS, GENERATED, render
from dashboards.queries import check_dashboards, expand, panel_queries
from testbed.prom import PromClient

REPO = Path(__file__).resolve().parents[2]


def dashboards() -> list[dict[str, object]]:
    return [json.loads(render(b)[1]) for b in BUILDERS]


def test_generation_is_deterministic_and_committed() -> None:
    for builder in BUILDERS:
        uid, text = render(builder)
        assert render(builder) == (uid, text)
        assert (GENERATED / f"{uid}.json").read_text() == text, "run make dashboards and commit the result"


def test_check_detects_drift(tmp_path: Path) -> None:
    run = [sys.executable, "-m", "dashboards", "--out", str(tmp_path)]
    assert subprocess.run([*run, "--check"], cwd=REPO, capture_output=True).returncode == 1  # missing files
    assert subprocess.run(run, cwd=REPO, capture_output=True).returncode == 0
    assert subprocess.run([*run, "--check"], cwd=REPO, capture_output=True).returncode == 0
    path = tmp_path / "magellan-platform-comparison.json"
    path.write_text(path.read_text().replace("Events per second", "Events per minute"))
    proc = subprocess.run([*run, "--check"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 1 and "make dashboards" in proc.stderr


def test_every_panel_is_described_typed_and_queried() -> None:
    for dash in dashboards():
        assert dash["uid"] in ("magellan-platform-comparison", "magellan-storage-concurrency")
        names = [v["name"] for v in dash["templating"]["list"]]  # type: ignore[index]
        assert names == ["datasource", "platform", "node"]
        panels = [p for p in dash["panels"] if p["type"] != "row"]  # type: ignore[union-attr]
        assert len(panels) >= 8
        for p in panels:
            assert p.get("description"), p["title"]
            assert p["fieldConfig"]["defaults"].get("unit"), p["title"]
            assert p["targets"] and p["datasource"]["uid"] == "${datasource}", p["title"]


def test_expand_leaves_no_variable() -> None:
    for dash in dashboards():
        for q in panel_queries(dash):
            assert "$" not in expand(q.expr), q
    assert expand('x{node=~"$node"}[$__rate_interval]', {"node": "compute1"}) == 'x{node=~"compute1"}[1m]'
    with pytest.raises(KeyError, match=r"\$nope"):
        expand('up{x=~"$nope"}')


def test_every_query_parses_on_real_prometheus(
    live_prometheus: Callable[[list[str]], PromClient],
) -> None:
    prom = live_prometheus([])
    # Emptiness is checked against the live site in the integration test; here only validity.
    assert check_dashboards(prom, GENERATED, require_data=False) == []
    bad = GENERATED.parent / "nonexistent"
    assert check_dashboards(prom, bad) == []

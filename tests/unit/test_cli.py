"""`testbed compare` refuses bad campaigns before anything runs, saying what to change."""

from __future__ import annotations

from pathlib import Path

import pytest

from testbed import cli, report
from testbed.campaign import Campaign
from testbed.compare import Plan
from testbed.inventory import Inventory
from testbed.model import Comparison, NodeResult
from tests.unit.test_report import T0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--workload", "analyze", "--events", "100"], "analyze runs for a duration in seconds"),
        (["--workload", "storm,simulate", "--duration", "0"], "storm runs for a duration in seconds"),
        (["--workload", "simulate", "--duration", "0"], "duration or events must be positive"),
        (["--repeat", "0"], "repeat and storm_repeat must be at least 1"),
        (["--storm-repeat", "0"], "repeat and storm_repeat must be at least 1"),
        (["--group", "no_such_platform"], "group 'no_such_platform' is not in inventory"),
        (["--reference", "compute9"], "--reference compute9 is not a node of group 'workload_nodes'"),
    ],
)
def test_bad_campaigns_stop_before_anything_runs(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["compare", "--no-publish", *argv]) != 0
    out = " ".join(capsys.readouterr().out.split())
    assert message in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--workload", "simulate,reconstruct"], "invalid choice: 'simulate,reconstruct'"),
        (["--workload", ","], "invalid choice"),
        (["--readers", "0,4"], "numbers of readers (readers 0: a storm runs 1 to 1000 concurrent readers)"),
        (["--readers", "many"], "'many': give comma-separated numbers of readers"),
        (
            ["--format", "rntuple,root6"],
            "invalid choice: 'rntuple,root6' (use a comma-separated list of rntuple, ttree)",
        ),
    ],
)
def test_bad_workloads_and_storm_sizes_are_argparse_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        cli.main(["compare", *argv])
    assert message in capsys.readouterr().err


def test_a_campaign_is_workloads_times_storm_sizes_times_formats() -> None:
    inventory = Inventory(Path("inv"), {"workload_nodes": ["n1"]}, {"n1": {"magellan_jobs_dir": "/srv/jobs"}})
    argv = ["compare", "--workload", "storm,simulate,storm,analyze", "--readers", "16,1,4", "--format", "ttree,rntuple"]
    campaign = cli._campaign(cli._parser().parse_args(argv), inventory)
    labels = [p.label for p in campaign.plans]
    assert labels == [
        "storm-n1-ttree",
        "storm-n4-ttree",
        "storm-n16-ttree",
        "storm-n1",
        "storm-n4",
        "storm-n16",
        "simulate",
        "analyze-ttree",
        "analyze",
    ]
    assert [p.repeat for p in campaign.plans] == [1] * 6 + [3] * 3 and all(p.spec.cold for p in campaign.plans)
    assert campaign.plans[0].nodes[0].jobs_dir == "/srv/jobs"  # the site's variable, from the inventory


@pytest.mark.parametrize("tolerance", ["nan", "-1", "inf", "ten"])
def test_a_tolerance_is_a_finite_percentage(tolerance: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["compare", "--tolerance", tolerance])
    assert f"{tolerance!r}: give the allowed deviation in percent" in capsys.readouterr().err


def test_an_unwritable_reports_dir_stops_the_campaign_before_it_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_prometheus(*_: object) -> None:
        pytest.fail("the campaign went on to Prometheus with a report it could not write")

    monkeypatch.setattr(cli.PromClient, "query", no_prometheus)
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("")
    assert cli.main(["compare", "--no-publish", "--reports-dir", str(blocked)]) == 1
    assert f"--reports-dir {blocked}: cannot write the campaign's report" in " ".join(capsys.readouterr().out.split())


def test_an_interrupted_campaign_keeps_what_it_measured_and_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C after the first comparison: campaign.json and the report hold it and say what is missing; --resume
    with the same options measures only the rest, into the same directory; other options are refused."""
    ran: list[str] = []
    interrupt = ["analyze"]  # Ctrl-C once, when analyze starts

    def measure(self: Campaign, inventory: Inventory, plan: Plan, *_: object) -> Comparison:
        if plan.label in interrupt:
            interrupt.remove(plan.label)
            raise KeyboardInterrupt
        ran.append(plan.label)
        full = NodeResult("compute1", "bare-metal", "j1", 1.0, 100, 10.0, 9.9, 10.0, runs=[10.0])
        return Comparison(plan.spec.workload, plan.spec.parameters(), "compute1", T0, T0, [full])

    monkeypatch.setattr(cli.PromClient, "query", lambda *_: [])
    monkeypatch.setattr(Campaign, "measure", measure)
    argv = ["compare", "--no-publish", "--workload", "simulate,analyze", "--reports-dir", str(tmp_path)]
    assert cli.main(argv) == 130
    (out,) = tmp_path.iterdir()
    assert "interrupted: 1 of 2 comparisons measured" in " ".join(capsys.readouterr().out.split())
    saved = report.load(out)
    assert ([c.label for c in saved.comparisons], saved.planned, saved.complete) == (
        ran,
        ["simulate", "analyze"],
        False,
    )
    assert "## Not measured" in (out / "report.md").read_text()

    assert cli.main([*argv[:-2], "--readers", "2", "--workload", "storm", "--resume", str(out)]) == 1
    assert "that campaign planned simulate, analyze" in " ".join(capsys.readouterr().out.split())
    assert cli.main([*argv[:-2], "--resume", str(out)]) == 0
    assert ran == ["simulate", "analyze"]  # simulate was not measured again
    saved = report.load(out)
    assert [c.label for c in saved.comparisons] == ["simulate", "analyze"] and saved.complete
    assert cli.main(["report", str(out)]) == 0 and "## Not measured" not in (out / "report.md").read_text()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "no campaign's report directory: run `testbed compare`"),
        (["--from", "2026-12-04T18:00:00Z", "--to", "2026-12-04T17:00:00Z"], "is not after --from"),
        (["--campaign", "{reports}/nowhere"], "no campaign.json: not the directory of a campaign"),
    ],
)
def test_render_needs_a_time_range(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # No Prometheus is asked before the time range is known: the URL is never reached.
    base = ["dashboards", "render", "--reports-dir", str(tmp_path), "--prometheus-url", "http://127.0.0.1:9"]
    assert cli.main(base + [a.format(reports=tmp_path) for a in argv]) == 1
    assert message in " ".join(capsys.readouterr().out.split())


def test_render_times_are_iso_8601(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["dashboards", "render", "--from", "yesterday"])
    assert "'yesterday' is not an ISO 8601 time" in capsys.readouterr().err

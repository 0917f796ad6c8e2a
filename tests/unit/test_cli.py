"""`testbed compare` refuses bad campaigns before anything runs, saying what to change."""

from __future__ import annotations

from pathlib import Path

import pytest

from testbed import cli
from testbed.inventory import Inventory


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

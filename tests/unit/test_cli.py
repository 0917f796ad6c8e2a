"""`testbed compare` refuses bad campaigns before anything runs, saying what to change."""

from __future__ import annotations

import pytest

from testbed import cli
from testbed.inventory import Node


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--workload", "analyze", "--events", "100"], "analyze run for --duration SECONDS"),
        (["--workload", "simulate,storm", "--duration", "0"], "storm run for --duration SECONDS"),
        (["--workload", "simulate", "--duration", "0"], "--duration or --events must be positive"),
        (["--repeat", "0"], "--repeat and --storm-repeat must be at least 1"),
        (["--storm-repeat", "0"], "--repeat and --storm-repeat must be at least 1"),
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
        (["--readers", "0,4"], "numbers of readers from 1 to 1000"),
        (["--readers", "many"], "numbers of readers from 1 to 1000"),
    ],
)
def test_bad_workloads_and_storm_sizes_are_argparse_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        cli.main(["compare", *argv])
    assert message in capsys.readouterr().err


def test_a_campaign_is_workloads_times_storm_sizes() -> None:
    args = cli._parser().parse_args(["compare", "--workload", "storm,simulate,storm", "--readers", "16,1,4"])
    plans = cli._plans(args, [Node("n1", "10.0.0.1", "p")])
    assert [p.label for p in plans] == ["storm-n1", "storm-n4", "storm-n16", "simulate"]
    assert [p.repeat for p in plans] == [1, 1, 1, 3] and all(p.cold for p in plans)

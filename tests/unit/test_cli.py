"""`testbed compare` refuses bad campaigns before anything runs, saying what to change."""

from __future__ import annotations

import pytest

from testbed import cli


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--workload", "analyze", "--events", "100"], "analyze runs for --duration SECONDS"),
        (["--duration", "0"], "--duration or --events must be positive"),
        (["--repeat", "0"], "--repeat must be at least 1"),
        (["--group", "no_such_platform"], "group 'no_such_platform' is not in inventory"),
    ],
)
def test_bad_campaigns_stop_before_anything_runs(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["compare", "--no-publish", *argv]) != 0
    out = " ".join(capsys.readouterr().out.split())
    assert message in out


def test_unknown_workload_is_an_argparse_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["compare", "--workload", "reconstruct"])
    assert "invalid choice: 'reconstruct'" in capsys.readouterr().err

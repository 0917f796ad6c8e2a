"""A campaign's report directory: reports/<UTC time>-campaign/ with campaign.json, report.md, report.html and the
plots.

The directory is made (and proven writable) before the campaign's first job, and campaign.json is rewritten after
every comparison, so that an interrupted campaign (Ctrl-C, a lost controller) keeps what it measured:
`testbed compare --resume DIR` measures the comparisons it still lacks, `testbed report DIR` writes the report of
what is there. Every file is written under a temporary name in the directory and renamed over its final name, so
a file is either whole or absent.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from testbed import analysis, pages, plots, render
from testbed.model import Comparison, load_campaign

CAMPAIGN = "campaign.json"


class ReportError(RuntimeError):
    """The report directory cannot be written or read; the message says which directory and what to do."""


def report_dir(started: datetime, reports_dir: Path) -> Path:
    return reports_dir / f"{started.astimezone(UTC):%Y%m%dT%H%M%SZ}-campaign"


def newest(reports_dir: Path) -> Path:
    """The report directory of the campaign that started last (their names sort by start time)."""
    found = sorted(p for p in reports_dir.glob("*-campaign") if (p / CAMPAIGN).is_file())
    if not found:
        raise ReportError(f"{reports_dir}: no campaign's report directory: run `testbed compare` (or make testbed)")
    return found[-1]


def atomic(path: Path, write: Callable[[Path], object]) -> None:
    """write(tmp) into a temporary file beside path, then fsync and rename it over path."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        with tmp.open("rb") as f:
            os.fsync(f.fileno())
        tmp.chmod(0o644)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def start(reports_dir: Path, started: datetime) -> Path:
    """Make the campaign's directory and prove that it can be written, before anything runs."""
    return writable(report_dir(started, reports_dir), f"--reports-dir {reports_dir}")


def writable(out: Path, what: str) -> Path:
    """out, made if need be, once a file could be written in it; ReportError naming `what` otherwise."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        atomic(out / ".writable", lambda p: p.write_text(""))
        (out / ".writable").unlink()
    except OSError as exc:
        raise ReportError(
            f"{what}: cannot write the campaign's report in {out} ({exc.strerror or exc}); give a writable directory"
        ) from None
    return out


@dataclass(frozen=True)
class Saved:
    """What campaign.json holds: the comparisons measured, the labels the campaign planned, whether it ended."""

    comparisons: list[Comparison]
    planned: list[str]
    complete: bool


def save(out: Path, comparisons: list[Comparison], planned: list[str], complete: bool) -> None:
    """Write campaign.json: the comparisons so far with their analysis, and what the campaign planned."""
    data = {**analysis.campaign_data(comparisons), "planned": planned, "complete": complete}
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    atomic(out / CAMPAIGN, lambda p: p.write_text(text))


def load(out: Path) -> Saved:
    """The campaign.json of a report directory; ReportError naming the file when it is missing or unreadable."""
    path = out / CAMPAIGN
    try:
        comparisons = load_campaign(path)
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ReportError(f"{out}: no {CAMPAIGN}: not the directory of a campaign") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ReportError(f"{path}: not a campaign file this testbed wrote ({type(exc).__name__}: {exc})") from None
    planned = data.get("planned") or [c.label for c in comparisons]
    return Saved(comparisons, [str(label) for label in planned], bool(data.get("complete", True)))


def write_report(
    comparisons: list[Comparison],
    reports_dir: Path | None = None,
    tolerance: float = 15.0,
    out: Path | None = None,
    planned: list[str] | None = None,
) -> Path:
    """Write the report directory (reports_dir/<start time>-campaign, or out): campaign.json, report.md and
    report.html, a PNG per comparison and one per storm format. planned: the campaign's labels when it did not
    measure them all."""
    if not comparisons:
        raise ValueError("a report needs at least one comparison")
    if out is None:
        if reports_dir is None:
            raise ValueError("write_report needs reports_dir or out")
        out = start(reports_dir, comparisons[0].started)
    labels = [c.label for c in comparisons]
    planned = planned or labels
    save(out, comparisons, planned, complete=set(planned) <= set(labels))
    missing = [label for label in planned if label not in labels]
    markdown = render.markdown(comparisons, tolerance, missing)
    atomic(out / "report.md", lambda p: p.write_text(markdown))
    atomic(out / "report.html", lambda p: p.write_text(pages.report_page(markdown)))
    for c in comparisons:
        if not c.is_storm:
            atomic(out / f"{c.label}.png", partial(plots.comparison, c))
    for storms in render.storm_groups(comparisons):
        atomic(out / render.storm_plot_name(storms), partial(plots.storm_scaling, storms))
    return out

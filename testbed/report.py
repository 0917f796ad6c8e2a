"""A campaign's report directory: reports/<UTC time>-campaign/ with report.md, campaign.json and the plots.

The directory is written under a temporary name beside it and renamed when complete, so a report is either whole
or absent; a campaign that is reported again (the same start time) replaces its report.
"""

from __future__ import annotations

import json
import shutil
from datetime import UTC
from pathlib import Path

from testbed import analysis, plots, render
from testbed.model import Comparison


def report_dir(comparisons: list[Comparison], reports_dir: Path) -> Path:
    return reports_dir / f"{comparisons[0].started.astimezone(UTC):%Y%m%dT%H%M%SZ}-campaign"


def write_report(comparisons: list[Comparison], reports_dir: Path, tolerance: float = 15.0) -> Path:
    """Write the report directory: report.md, campaign.json, a PNG per comparison and one per storm format."""
    if not comparisons:
        raise ValueError("a report needs at least one comparison")
    out = report_dir(comparisons, reports_dir)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    data = analysis.campaign_data(comparisons)
    (tmp / "campaign.json").write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    (tmp / "report.md").write_text(render.markdown(comparisons, tolerance))
    for c in comparisons:
        if not c.is_storm:
            plots.comparison(c, tmp / f"{c.label}.png")
    for storms in render.storm_groups(comparisons):
        plots.storm_scaling(storms, tmp / render.storm_plot_name(storms))
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out

"""Write the dashboards to dashboards/generated/<uid>.json, or check (--check) that the committed ones are current."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from grafana_foundation_sdk.builders.dashboard import Dashboard
from grafana_foundation_sdk.cog.encoder import JSONEncoder

from dashboards import (
    accounting,
    campaign_history,
    cluster_health,
    platform_comparison,
    storage_arrays,
    storage_concurrency,
    virtual_nodes,
)

BUILDERS: list[Callable[[], Dashboard]] = [
    platform_comparison.build,
    storage_concurrency.build,
    virtual_nodes.build,
    accounting.build,
    cluster_health.build,
    campaign_history.build,
    storage_arrays.build,
]
GENERATED = Path(__file__).resolve().parent / "generated"


def render(builder: Callable[[], Dashboard]) -> tuple[str, str]:
    """(uid, deterministic JSON text) of one dashboard."""
    model = builder().build()
    return str(model.uid), JSONEncoder(sort_keys=True, indent=2).encode(model) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dashboards", description=__doc__)
    p.add_argument("--check", action="store_true", help="fail if a committed file differs from the code")
    p.add_argument("--out", type=Path, default=GENERATED)
    args = p.parse_args(argv)
    stale = []
    for builder in BUILDERS:
        uid, text = render(builder)
        path = args.out / f"{uid}.json"
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            args.out.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        print("dashboards out of date (run make dashboards and commit): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

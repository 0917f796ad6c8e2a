"""`testbed` command line: run comparisons on the site and report them."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from testbed import compare
from testbed.inventory import InventoryError, load_inventory
from testbed.prom import PromClient, PromError
from testbed.report import print_comparison, write_report
from testbed.results import PublishError, publish

REPO = Path(__file__).resolve().parent.parent


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="testbed", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("compare", help="run a workload on several nodes side by side and compare them")
    c.add_argument("--inventory", type=Path, default=REPO / "inventories" / "local")
    c.add_argument("--group", default="workload_nodes", help="inventory group whose nodes are compared")
    c.add_argument(
        "--workload",
        default="simulate",
        choices=["simulate", "analyze"],
        help="simulate (CPU-bound) or analyze (reads a ROOT file of simulated events, made once per node)",
    )
    c.add_argument("--duration", type=int, default=20, help="seconds each job runs (default 20)")
    c.add_argument("--events", type=int, default=0, help="stop each job after this many events (0: no limit)")
    c.add_argument("--seed", type=int, default=12345)
    c.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="repetitions per node, interleaved A B A B; two or more give the ratios' spread (default 3)",
    )
    c.add_argument(
        "--concurrent",
        action="store_true",
        help="run all nodes at once instead of in turn (nodes sharing one host then slow each other down)",
    )
    c.add_argument("--reference", help="node the others are compared to (default: the largest CPU profile)")
    c.add_argument("--prometheus-url", help="default: the inventory's prometheus host, port 9090")
    c.add_argument("--reports-dir", type=Path, default=REPO / "reports")
    c.add_argument(
        "--tolerance",
        type=float,
        default=15.0,
        help="known-answer check: max %% deviation of a ratio from the configured CPU ratio (default 15)",
    )
    c.add_argument("--strict", action="store_true", help="exit 1 when a known-answer check fails")
    c.add_argument(
        "--publish",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="write the results as metrics into node_exporter's textfile directory on the Prometheus host, where "
        "the alert rules watch them (default: on)",
    )
    return p


def _compare(args: argparse.Namespace, console: Console) -> int:
    if args.workload == "analyze" and (args.events or args.duration <= 0):
        console.print(
            "[red]error:[/] analyze runs for --duration SECONDS (it re-reads its input); --events is for simulate"
        )
        return 2
    if args.duration <= 0 and args.events <= 0:
        console.print("[red]error:[/] --duration or --events must be positive")
        return 2
    if args.repeat < 1:
        console.print("[red]error:[/] --repeat must be at least 1")
        return 2
    inventory = load_inventory(args.inventory)
    nodes = inventory.nodes(args.group)
    prom = PromClient(args.prometheus_url or inventory.prometheus_url(), timeout=10.0)
    prom.query("up")  # fail early, with the URL, when Prometheus is not reachable
    plan = compare.Plan(
        nodes=nodes,
        workload=args.workload,
        duration=args.duration,
        events=args.events,
        seed=args.seed,
        reference=args.reference,
        repeat=args.repeat,
        concurrent=args.concurrent,
    )
    mode = "all at once" if plan.concurrent else "in turn (A B A B)"
    console.print(
        f"Running [bold]{plan.workload}[/] on {', '.join(n.name for n in nodes)} {mode}, {plan.repeat}× "
        f"({plan.duration or '-'} s, {plan.events or 'no'} event limit); live figures from {prom.base_url}"
    )
    total = float(plan.events * plan.repeat) if plan.events else None
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        tasks = {n.name: bar.add_task(n.name, total=total, rate="") for n in nodes}

        def show(done: dict[str, float]) -> None:
            for n in nodes:
                value = sum(v for job, v in done.items() if job.endswith("-" + n.name))
                if value:
                    bar.update(tasks[n.name], completed=value, rate=f"{value:,.0f} events")

        result = compare.run(inventory, plan, prom, REPO / ".testbed" / "logs", on_progress=show)
    print_comparison(console, result, tolerance=args.tolerance)
    out = write_report(result, args.reports_dir, tolerance=args.tolerance)
    console.print(f"Report written to [bold]{out}[/]")
    if args.publish:
        try:
            where = publish(result, inventory, args.tolerance)
        except PublishError as exc:
            console.print(f"[red]error:[/] {exc} (--no-publish skips this)")
            return 1
        console.print(f"Results published as metrics to {where}")
    if args.strict and not result.known_answer_ok(args.tolerance):
        console.print(f"[red]known-answer check failed:[/] a ratio deviates more than {args.tolerance} %")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # A report table is wide: do not squeeze it into 80 columns when the output is a pipe or a CI log.
    console = Console(width=None if sys.stdout.isatty() else 160)
    try:
        return _compare(args, console)
    except (InventoryError, PromError, compare.CompareError) as exc:
        console.print(f"[red]error:[/] {exc}")
        return 1
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""`testbed` command line: run comparisons on the site and report them."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from testbed import compare
from testbed.inventory import Inventory, InventoryError, Node, load_inventory
from testbed.prom import PromClient, PromError
from testbed.report import Comparison, print_campaign, write_report
from testbed.results import PublishError, publish

REPO = Path(__file__).resolve().parent.parent


WORKLOADS = ("simulate", "analyze", "storm")


def _workloads(text: str) -> list[str]:
    names = [w.strip() for w in text.split(",") if w.strip()]
    unknown = [w for w in names if w not in WORKLOADS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"invalid choice: {text!r} (use a comma-separated list of {', '.join(WORKLOADS)})"
        )
    return list(dict.fromkeys(names))


def _readers(text: str) -> list[int]:
    try:
        sizes = sorted({int(n) for n in text.split(",")})
    except ValueError:
        sizes = []
    if not sizes or not all(1 <= n <= 1000 for n in sizes):
        raise argparse.ArgumentTypeError(f"{text!r}: give comma-separated numbers of readers from 1 to 1000")
    return sizes


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="testbed", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("compare", help="run a workload on several nodes side by side and compare them")
    c.add_argument("--inventory", type=Path, default=REPO / "inventories" / "local")
    c.add_argument("--group", default="workload_nodes", help="inventory group whose nodes are compared")
    c.add_argument(
        "--workload",
        type=_workloads,
        default="simulate,analyze,storm",
        help="comma-separated workloads of the campaign, in order: simulate (CPU-bound), analyze (reads a ROOT file "
        "of simulated events, made once per node), storm (N analyze readers at once; see --readers) "
        "(default: %(default)s)",
    )
    c.add_argument(
        "--readers",
        type=_readers,
        default="1,4,16",
        help="storm sizes: comma-separated numbers of concurrent readers, 1 to 1000 (default: %(default)s)",
    )
    c.add_argument("--storm-repeat", type=int, default=1, help="repetitions of each storm size per node (default 1)")
    c.add_argument(
        "--cold",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="analyze and storm evict their input from the page cache before every pass, so they read the "
        "node's storage and its read throttle gives the known answer (default: on)",
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
        help="known-answer check: max %% deviation of a ratio from the one the device profiles predict (default 15)",
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


def _campaign_error(args: argparse.Namespace) -> str | None:
    """What is wrong with the campaign's parameters, before anything runs."""
    reading = [w for w in args.workload if w != "simulate"]
    if reading and (args.events or args.duration <= 0):
        return (
            f"{' and '.join(reading)} run for --duration SECONDS (they re-read their input); --events is for simulate"
        )
    if args.duration <= 0 and args.events <= 0:
        return "--duration or --events must be positive"
    if args.repeat < 1 or args.storm_repeat < 1:
        return "--repeat and --storm-repeat must be at least 1"
    return None


def _plans(args: argparse.Namespace, nodes: list[Node]) -> list[compare.Plan]:
    common = {
        "nodes": nodes,
        "duration": args.duration,
        "events": args.events,
        "seed": args.seed,
        "reference": args.reference,
        "concurrent": args.concurrent,
        "cold": args.cold,
    }
    plans = []
    for w in args.workload:
        if w == compare.STORM:
            plans += [compare.Plan(workload=w, repeat=args.storm_repeat, readers=n, **common) for n in args.readers]
        else:
            plans.append(compare.Plan(workload=w, repeat=args.repeat, **common))
    return plans


def _run(plan: compare.Plan, inventory: Inventory, prom: PromClient, console: Console) -> Comparison:
    """One comparison of the campaign, with a live progress bar per node."""
    total = float(plan.events * plan.repeat) if plan.events else None
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        tasks = {n.name: bar.add_task(f"{plan.label} {n.name}", total=total, rate="") for n in plan.nodes}

        mine = {n.name: re.compile(rf"-r\d+-{re.escape(n.name)}(-\d+)?$") for n in plan.nodes}

        def show(done: dict[str, float]) -> None:
            for n in plan.nodes:
                value = sum(v for job, v in done.items() if mine[n.name].search(job))
                if value:
                    bar.update(tasks[n.name], completed=value, rate=f"{value:,.0f} events")

        return compare.run(inventory, plan, prom, REPO / ".testbed" / "logs", on_progress=show)


def _compare(args: argparse.Namespace, console: Console) -> int:
    error = _campaign_error(args)
    if error:
        console.print(f"[red]error:[/] {error}")
        return 2
    inventory = load_inventory(args.inventory)
    nodes = inventory.nodes(args.group)
    if args.reference and args.reference not in {n.name for n in nodes}:
        console.print(f"[red]error:[/] --reference {args.reference} is not a node of group '{args.group}'")
        return 2
    prom = PromClient(args.prometheus_url or inventory.prometheus_url(), timeout=10.0)
    prom.query("up")  # fail early, with the URL, when Prometheus is not reachable
    plans = _plans(args, nodes)
    mode = "all at once" if args.concurrent else "in turn (A B A B)"
    console.print(
        f"Campaign: {', '.join(p.label for p in plans)} on {', '.join(n.name for n in nodes)} {mode}, "
        f"{args.duration or '-'} s per job ({args.events or 'no'} event limit); live figures from {prom.base_url}"
    )
    results, unpublished = [], 0
    for plan in plans:
        results.append(_run(plan, inventory, prom, console))
        if args.publish:
            try:
                where = publish(results[-1], inventory, args.tolerance, group=args.group)
                console.print(f"{plan.label}: results published as metrics to {where}")
            except PublishError as exc:
                unpublished += 1
                console.print(f"[red]error:[/] {exc} (--no-publish skips this)")
    print_campaign(console, results, tolerance=args.tolerance)
    out = write_report(results, args.reports_dir, tolerance=args.tolerance)
    console.print(f"Report written to [bold]{out}[/]")
    if unpublished:
        return 1
    failed = sum(c.failed_runs for c in results)
    if failed:
        console.print(f"[red]{failed} run(s) failed[/] (listed above and in the report); the others were measured")
        return 1
    if args.strict and not all(c.known_answer_ok(args.tolerance) for c in results):
        console.print(f"[red]known-answer check failed:[/] a ratio deviates more than {args.tolerance} %")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # A report table is wide: do not squeeze it into 80 columns when the output is a pipe or a CI log.
    console = Console(width=None if sys.stdout.isatty() else 200)
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

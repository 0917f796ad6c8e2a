"""`testbed` command line: run comparisons on the site and report them."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from dashboards import lint as dashboards_lint
from magellan import contract
from magellan.contract import ContractError, JobSpec
from testbed import accounting, analysis, arrays, compare, drill, grafana, pages, panels, report
from testbed.campaign import Campaign, Observer
from testbed.compare import Plan
from testbed.inventory import Inventory, InventoryError, load_inventory
from testbed.model import Comparison
from testbed.prom import PromClient, PromError
from testbed.render import print_campaign
from testbed.results import PublishError, publish
from testbed.tier3 import Tier3Error
from testbed.tier3 import spec as tier3_spec

REPO = Path(__file__).resolve().parent.parent
INVENTORY = REPO / "inventories" / "local"  # the site in a box
REPORTS = REPO / "reports"  # where campaigns write their report directories and render its pages
TIER3_SPECS = REPO / "inventories" / "tier3"  # testbed tier3 up NAME reads TIER3_SPECS/NAME.yml


def _names(text: str, known: tuple[str, ...]) -> list[str]:
    names = [w.strip() for w in text.split(",") if w.strip()]
    if not names or any(w not in known for w in names):
        raise argparse.ArgumentTypeError(f"invalid choice: {text!r} (use a comma-separated list of {', '.join(known)})")
    return list(dict.fromkeys(names))


def _workloads(text: str) -> list[str]:
    return _names(text, tuple(contract.CATALOGUE))


def _formats(text: str) -> list[str]:
    return _names(text, contract.FORMATS)


def _readers(text: str) -> list[int]:
    try:
        return sorted({contract.check_readers(int(n)) for n in text.split(",")})
    except (ValueError, ContractError) as exc:  # ContractError is a ValueError
        detail = f" ({exc})" if isinstance(exc, ContractError) else ""
        raise argparse.ArgumentTypeError(f"{text!r}: give comma-separated numbers of readers{detail}") from None


def _tolerance(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"{text!r}: give the allowed deviation in percent, a number from 0 (e.g. 15)")
    return value


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="testbed", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("compare", help="run a workload on several nodes side by side and compare them")
    c.add_argument("--inventory", type=Path, default=INVENTORY)
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
        help=f"storm sizes: comma-separated numbers of concurrent readers, 1 to {contract.READERS_MAX} "
        "(default: %(default)s)",
    )
    c.add_argument(
        "--format",
        type=_formats,
        default=contract.DEFAULT_FORMAT,
        help="event-file formats analyze and storm read, comma-separated: rntuple (ROOT's RNTuple, what uproot "
        "writes by default), ttree (a TTree, what ATLAS files hold today); each format is a comparison of its own "
        "on the same storage (default: %(default)s)",
    )
    c.add_argument("--storm-repeat", type=int, default=1, help="repetitions of each storm size per node (default 1)")
    c.add_argument(
        "--cold",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="analyze and storm evict their input from the page cache before every pass, so they read the "
        "node's storage and its read throttle gives the known answer (default: on)",
    )
    c.add_argument(
        "--duration",
        type=int,
        default=contract.DEFAULT_DURATION,
        help="seconds each job runs (default %(default)s)",
    )
    c.add_argument("--events", type=int, default=0, help="stop each job after this many events (0: no limit)")
    c.add_argument(
        "--seed", type=int, default=contract.DEFAULT_SEED, help="the jobs' random seed (default %(default)s)"
    )
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
    add_prometheus_arguments(c)
    c.add_argument(
        "--reports-dir",
        type=Path,
        default=REPORTS,
        help="where the campaign's report directory goes, made before the first job (default: %(default)s)",
    )
    c.add_argument(
        "--resume",
        type=Path,
        metavar="DIR",
        help="the report directory of an interrupted campaign: measure the comparisons it lacks, with the same "
        "options, and write the report there",
    )
    c.add_argument(
        "--tolerance",
        type=_tolerance,
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
    r = sub.add_parser("report", help="write the report of a campaign's directory again (also of an interrupted one)")
    r.add_argument("directory", type=Path, help="a campaign's report directory (reports/<time>-campaign)")
    r.add_argument("--tolerance", type=_tolerance, default=15.0, help="known-answer check, in %% (default 15)")
    d = sub.add_parser("dashboards", help="the generated Grafana dashboards: check them, push them into a Grafana")
    dsub = d.add_subparsers(dest="dashboards_command", required=True)
    push = dsub.add_parser("push", allow_abbrev=False, help="push them into a running Grafana, by uid, idempotently")
    grafana.add_push_arguments(push)
    lint = dsub.add_parser("lint", help="check datasources, rate windows, units, descriptions and metric names")
    lint.add_argument("directory", nargs="?", type=Path, default=dashboards_lint.GENERATED)
    draw = dsub.add_parser(
        "render",
        help="write every dashboard as a static HTML page, each panel drawn from its own queries on Prometheus "
        "(over the last campaign's time range), to look at without Grafana",
    )
    draw.add_argument("--inventory", type=Path, default=INVENTORY)
    add_prometheus_arguments(draw)
    draw.add_argument(
        "--reports-dir",
        type=Path,
        default=REPORTS,
        help="where the campaigns' report directories are (default: %(default)s)",
    )
    draw.add_argument(
        "--campaign", type=Path, metavar="DIR", help="draw this campaign's time range (default: the newest)"
    )
    draw.add_argument("--from", dest="start", type=_utc, metavar="TIME", help="start of the range instead (ISO 8601)")
    draw.add_argument("--to", dest="end", type=_utc, metavar="TIME", help="end of the range with --from (default: now)")
    draw.add_argument("--out", type=Path, help="output directory (default: <reports-dir>/dashboards)")
    draw.add_argument("--dashboards", type=Path, default=dashboards_lint.GENERATED, help=argparse.SUPPRESS)
    a = sub.add_parser("accounting", help="what each account (project) and user used, from Slurm's accounting")
    asub = a.add_subparsers(dest="accounting_command", required=True)
    ar = asub.add_parser(
        "report", help="jobs, CPU-hours, wall-hours, memory peak, I/O and database use per account and user"
    )
    ar.add_argument("--inventory", type=Path, default=INVENTORY)
    add_prometheus_arguments(ar)  # the database columns: the accounting exporter's series
    ar.add_argument(
        "--since",
        type=_since,
        required=True,
        metavar="WHEN",
        help="start: a duration back from now (24h, 7d) or a time",
    )
    ar.add_argument("--until", type=_utc, metavar="TIME", help="end: a time (ISO 8601; default: now)")
    ar.add_argument("--csv", type=Path, metavar="FILE", help="also write the rows as CSV (hours and bytes)")
    for add_parser in (_arrays_parser, _drill_parser, _tier3_parser):
        add_parser(sub)
    return p


def _arrays_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    st = sub.add_parser(
        "arrays",
        help="measure each storage node's arrays with fio against their known answers, and price a real array of each",
    )
    st.add_argument("--inventory", type=Path, default=INVENTORY)
    st.add_argument("--group", default=arrays.GROUP, help="inventory group of the storage nodes (default: %(default)s)")


def _arrays(args: argparse.Namespace, console: Console) -> int:
    inventory = load_inventory(args.inventory)
    hosts = inventory.groups.get(args.group, [])
    if not hosts:
        console.print(f"no hosts in group {args.group} of {args.inventory}: no arrays to measure")
        return 0
    found = []
    with console.status("measuring the arrays") as status:
        for host in hosts:
            found += arrays.measure(inventory, host, progress=status.update)
    console.print(arrays.table(found))
    return 0


def _drill_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dr = sub.add_parser(
        "drill",
        help="pull a member of a storage array, rebuild it idle and under readers, verify every checksum, check the "
        "alert (playbooks/drill_disk_failure.yml)",
    )
    dr.add_argument("--inventory", type=Path, default=INVENTORY)
    dr.add_argument("--node", help="the storage node (default: the inventory's group storage_nodes, one host)")
    dr.add_argument("--array", default="ssd", help="the array (default: %(default)s, whose rebuild is the fastest)")
    dr.add_argument("--member", default="", help="the member to pull, a path of its members (default: the last)")
    dr.add_argument(
        "--pull",
        choices=("detach", "fail"),
        help="detach the member's virtual disk from the running guest, or mdadm --fail it (default: detach on a "
        "virtual node, fail elsewhere)",
    )
    dr.add_argument("--data-mib", type=int, default=64, help="MiB of checksummed data (default: %(default)s)")
    dr.add_argument("--readers", type=int, default=4, help="readers during the loaded rebuild (default: %(default)s)")
    dr.add_argument(
        "--loads",
        type=lambda text: _names(text, drill.LOADS),
        default=list(drill.LOADS),
        help="the rebuilds, in order: idle, readers (default: both)",
    )
    dr.add_argument(
        "--capacity-tb",
        type=float,
        help="a real member's capacity for the exposure window (default: the catalogue's, of the array's model; "
        f"{drill.DEFAULT_CAPACITY_TB:g} when it names none)",
    )
    dr.add_argument("--result", type=Path, default=REPO / ".testbed" / "drill" / "result.json")
    dr.add_argument("--no-alert", action="store_true", help="do not look the alert up on Prometheus")
    add_prometheus_arguments(dr)


def _drill(args: argparse.Namespace, console: Console) -> int:
    inventory = load_inventory(args.inventory)
    extra = {
        "drill_array": args.array,
        "drill_member": args.member,
        "drill_data_mib": args.data_mib,
        "drill_readers": args.readers,
        "drill_loads": args.loads,
        "drill_result": str(args.result.resolve()),
    }
    if args.node:
        extra["drill_node"] = args.node
    if args.pull:
        extra["drill_pull"] = args.pull
    log = args.result.with_suffix(".log")
    if args.result.exists():
        args.result.unlink()  # a result is this run's or none
    with console.status(f"drilling array {args.array}: pull, degrade, rebuild {' then '.join(args.loads)} (log {log})"):
        status = drill.run_playbook(str(args.inventory), extra, log)
    if status != 0 or not args.result.exists():
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
        console.print(tail, markup=False, highlight=False)
        console.print(f"[red]the drill failed[/] (exit {status}); its log: {log}")
        return 1
    result = json.loads(args.result.read_text())
    capacity, source = drill.capacity(result, args.capacity_tb)
    alerts: list[drill.AlertSeen] | None = None
    unchecked = ""
    if not args.no_alert:
        try:
            alerts = drill.alerts(prometheus_client(args, inventory, timeout=10.0), result)
        except PromError as exc:
            unchecked = str(exc)
    console.print(drill.table(result, capacity, source, alerts))
    console.print(f"Result written to [bold]{args.result}[/]")
    if unchecked:
        console.print(f"[red]the alert could not be looked up:[/] {unchecked}", highlight=False)
    return 0 if drill.passed(result, alerts) and not unchecked else 1


def _tier3_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    t3 = sub.add_parser("tier3", help="a virtual Tier-3 from a small YAML description: up, status, scale, down")
    tsub = t3.add_subparsers(dest="tier3_command", required=True)
    spec_help = f"a Tier-3 description: a path, or a name of {TIER3_SPECS.relative_to(REPO)}/NAME.yml"
    for name, text in (
        ("up", "create what the description says, or complete it (idempotent; resumes a failed run)"),
        ("status", "what exists of the Tier-3"),
        ("scale", "grow or shrink it to --workers workers"),
        ("down", "remove everything labelled as the Tier-3's, and nothing else"),
    ):
        cmd = tsub.add_parser(name, help=text)
        cmd.add_argument("tier3", metavar="NAME" if name == "down" else "SPEC", help=spec_help)
        cmd.add_argument("--cloud", help="the clouds.yaml entry (default: the description's cloud)")
        if name in ("up", "scale"):
            cmd.add_argument("--workers", type=int, required=name == "scale", help="number of workers")
            cmd.add_argument(
                "--inventory-out",
                type=Path,
                help="where to write its inventory (default: .testbed/tier3/NAME/hosts.yml)",
            )


def _tier3_spec(text: str) -> Path:
    path = Path(text)
    return path if path.suffix in (".yml", ".yaml") or "/" in text else TIER3_SPECS / f"{text}.yml"


def _openstack_tier3(args: argparse.Namespace, spec: tier3_spec.Tier3Spec | None, console: Console) -> int:
    import openstack  # noqa: PLC0415 -- openstacksdk is slow to import, and only this command needs it

    from testbed.tier3 import inventory as tier3_inventory  # noqa: PLC0415
    from testbed.tier3.openstack import OpenStackProvider  # noqa: PLC0415

    cloud = args.cloud or (spec.cloud if spec else None)
    if not cloud:
        console.print(f"[red]error:[/] no description {_tier3_spec(args.tier3)}: give the cloud with --cloud")
        return 2
    name = spec.name if spec else args.tier3
    if not tier3_spec.NAME.fullmatch(name):
        raise tier3_spec.Tier3SpecError(f"{name!r} is not a Tier-3's name; give the name its description has")
    provider = OpenStackProvider(openstack.connect(cloud=cloud))
    if args.tier3_command == "down":
        outcome = provider.down(name)
        console.print("\n".join(f"deleted {what}" for what in outcome.deleted) or "nothing carries its label")
        return 0
    assert spec is not None
    if args.tier3_command == "status":
        table = Table("kind", "name", "state")
        for row in provider.status(spec):
            table.add_row(*row)
        console.print(table)
        return 0
    outcome = provider.scale(spec, spec.workers) if args.tier3_command == "scale" else provider.up(spec)
    for what in outcome.created:
        console.print(f"created {what}")
    console.print(f"{len(outcome.reused)} resources were there already; {len(outcome.deleted)} deleted")
    out = args.inventory_out or REPO / ".testbed" / "tier3" / spec.name / "hosts.yml"
    tier3_inventory.write(out, tier3_inventory.inventory(outcome.servers, spec.name, spec.ssh_user))
    console.print(f"head node: {spec.ssh_user}@{outcome.floating_ip}; inventory written to [bold]{out}[/]")
    console.print(f"next: ansible-playbook -i {out} playbooks/site.yml")
    return 0


def _local_tier3(args: argparse.Namespace, spec: tier3_spec.Tier3Spec | None, console: Console) -> int:
    console.print("[red]error:[/] the local Tier-3 provider is not available in this version; use provider: openstack")
    return 2


TIER3_PROVIDERS: dict[str, Callable[[argparse.Namespace, tier3_spec.Tier3Spec | None, Console], int]] = {
    "openstack": _openstack_tier3,
    "local": _local_tier3,
}


def _tier3(args: argparse.Namespace, console: Console) -> int:
    path = _tier3_spec(args.tier3)
    if args.tier3_command == "down" and (args.cloud or not path.exists()):
        return TIER3_PROVIDERS["openstack"](args, None, console)  # NAME on the cloud --cloud: no description needed
    spec = tier3_spec.load(path)
    if getattr(args, "workers", None) is not None:
        spec = spec.with_workers(args.workers)  # checks the number before anything is made
    return TIER3_PROVIDERS[spec.provider](args, spec, console)


def _since(text: str) -> datetime:
    """--since: a Prometheus-style duration back from now (24h, 7d, 90m) or an ISO 8601 time."""
    try:
        return datetime.now(UTC) - timedelta(seconds=panels.duration_seconds(text))
    except ValueError:
        try:
            return _utc(text)
        except argparse.ArgumentTypeError:
            raise argparse.ArgumentTypeError(f"{text!r} is neither a duration (24h, 7d) nor an ISO 8601 time") from None


def _accounting(args: argparse.Namespace, console: Console) -> int:
    end = args.until or datetime.now(UTC)
    if end <= args.since:
        console.print(f"[red]error:[/] --until {end.isoformat()} is not after --since {args.since.isoformat()}")
        return 2
    inventory = load_inventory(args.inventory)
    start_s, end_s = args.since.timestamp(), end.timestamp()
    with console.status("running sacct on the site's accounting host"):
        rows, unusable = accounting.report(inventory, start_s, end_s)
    with console.status("asking Prometheus for the database figures"):
        db, why = accounting.database_usage(lambda: prometheus_client(args, inventory, timeout=10.0), start_s, end_s)
    rows = accounting.merge(rows, db)
    window = f"{args.since:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M} UTC"
    console.print(accounting.table(rows, f"Usage per account and user, {window} (Slurm accounting, database)"))
    if not any(r.jobs for r in rows):
        console.print("no job ended in this window")
    if unusable:
        console.print(f"[yellow]{unusable} sacct line(s) could not be read[/] and are left out")
    if why:
        console.print(f"[yellow]database columns n/a:[/] {why}", highlight=False)
    if args.csv:
        accounting.write_csv(rows, args.csv)
        console.print(f"CSV written to [bold]{args.csv}[/]")
    return 0


def _utc(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time, e.g. 2026-12-04T17:00:00Z") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


# Margin around a campaign's jobs in a rendered dashboard: the rates of its first and last minute need samples
# from before and after it.
MARGIN = 60.0


def _time_range(args: argparse.Namespace, prom: PromClient) -> panels.TimeRange:
    if args.start is not None:
        end = args.end or datetime.now(UTC)
        if end <= args.start:
            raise report.ReportError(f"--to {end.isoformat()} is not after --from {args.start.isoformat()}")
        start_s, end_s = args.start.timestamp(), end.timestamp()
    else:
        saved = report.load(args.campaign or report.newest(args.reports_dir))
        if not saved.comparisons:
            raise report.ReportError(f"{args.campaign}: the campaign measured nothing yet; give --from")
        start_s = min(c.started for c in saved.comparisons).timestamp() - MARGIN
        end_s = max(c.finished for c in saved.comparisons).timestamp() + MARGIN
    return panels.TimeRange(start_s, min(end_s, datetime.now(UTC).timestamp()), panels.scrape_interval(prom))


def add_prometheus_arguments(parser: argparse.ArgumentParser) -> None:
    """How a command reaches the site's Prometheus (prometheus_client)."""
    parser.add_argument(
        "--prometheus-url",
        help="default: the inventory's prometheus host, at its magellan_ports.prometheus (https when the site's "
        "magellan_web_security is on)",
    )
    parser.add_argument(
        "--prometheus-ca",
        default=os.environ.get("MAGELLAN_PROMETHEUS_CA"),
        metavar="FILE",
        help="the CA that signed Prometheus' certificate, for a site with web security (env MAGELLAN_PROMETHEUS_CA)",
    )
    parser.add_argument(
        "--prometheus-auth-file",
        default=os.environ.get("MAGELLAN_PROMETHEUS_AUTH_FILE"),
        metavar="FILE",
        help="a file of yours alone (mode 600) holding USER:PASSWORD for Prometheus' basic auth "
        "(env MAGELLAN_PROMETHEUS_AUTH_FILE)",
    )


def prometheus_client(args: argparse.Namespace, inventory: Inventory | None, timeout: float) -> PromClient:
    """The site's Prometheus as add_prometheus_arguments's options give it; the inventory's when no URL is given."""
    url = args.prometheus_url or (inventory.prometheus_url() if inventory else "")
    return PromClient(url, timeout=timeout, ca_file=args.prometheus_ca, auth_file=args.prometheus_auth_file)


def _render(args: argparse.Namespace, console: Console) -> int:
    prom = prometheus_client(args, None if args.prometheus_url else load_inventory(args.inventory), timeout=30.0)
    rng = _time_range(args, prom)
    out = args.out or args.reports_dir / "dashboards"
    with console.status(f"drawing the dashboards from {prom.base_url}"):
        done = pages.render(prom, args.dashboards, out, rng)
    for line in done.failed:
        console.print(f"[red]query failed:[/] {line}", markup=True, highlight=False)
    for line in done.empty:
        console.print(f"[yellow]no data:[/] {line}", highlight=False)
    console.print(f"Dashboards ({done.panels} panels, {len(done.empty)} without data) written to [bold]{done.index}[/]")
    return 1 if done.failed else 0


def _dashboards(args: argparse.Namespace, console: Console) -> int:
    if args.dashboards_command == "lint":
        return dashboards_lint.main([str(args.directory)])
    if args.dashboards_command == "render":
        return _render(args, console)
    return grafana.run_push(args, lambda line: console.print(line, markup=False, highlight=False))


def _campaign(args: argparse.Namespace, inventory: Inventory) -> Campaign:
    """The campaign the options ask for; ContractError (naming the parameter) before anything runs."""
    spec = JobSpec(duration=args.duration, events=args.events, seed=args.seed, cold=args.cold)
    return Campaign.build(
        inventory.nodes(args.group),
        args.workload,
        spec,
        readers=args.readers,
        formats=args.format,
        repeat=args.repeat,
        storm_repeat=args.storm_repeat,
        concurrent=args.concurrent,
        reference=args.reference,
    )


class _Console(Observer):
    """A live progress bar per node and comparison; each comparison published as it ends."""

    def __init__(
        self, console: Console, inventory: Inventory, args: argparse.Namespace, out: Path, saved: report.Saved
    ) -> None:
        self.console, self.inventory, self.args = console, inventory, args
        self.out, self.planned = out, saved.planned
        self.results = list(saved.comparisons)  # measured so far: saved after each comparison
        self.bar: Progress | None = None
        self.unpublished = 0

    def stop_bar(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None

    def started(self, plan: Plan, attempt: int) -> Callable[[dict[str, float]], None]:
        self.stop_bar()
        total = float(plan.spec.events * plan.repeat) if plan.spec.events else None
        bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            console=self.console,
        )
        again = f" (try {attempt + 1})" if attempt else ""
        tasks = {n.name: bar.add_task(f"{plan.label}{again} {n.name}", total=total, rate="") for n in plan.nodes}
        bar.start()
        self.bar = bar

        def show(per_node: dict[str, float]) -> None:
            for node, value in per_node.items():
                if node in tasks and value:
                    bar.update(tasks[node], completed=value, rate=f"{value:,.0f} events")

        return show

    def measuring_again(self, plan: Plan, starved: dict[str, float]) -> None:
        self.stop_bar()
        shares = ", ".join(f"{node} got {share:.0%} of its CPU" for node, share in starved.items())
        self.console.print(f"[yellow]{plan.label} measured again:[/] starved ({shares})")

    def finished(self, comparison: Comparison) -> None:
        self.stop_bar()
        self.results.append(comparison)
        report.save(self.out, self.measured(), self.planned, complete=False)
        if not self.args.publish:
            return
        try:
            where = publish(comparison, self.inventory, self.args.tolerance, group=self.args.group)
            self.console.print(f"{comparison.label}: results published as metrics to {where}")
        except PublishError as exc:
            self.unpublished += 1
            self.console.print(f"[red]error:[/] {exc} (--no-publish skips this)")

    def measured(self) -> list[Comparison]:
        """The comparisons measured so far, in the campaign's order."""
        order = {label: i for i, label in enumerate(self.planned)}
        return sorted(self.results, key=lambda c: order.get(c.label, len(order)))


def _resumed(args: argparse.Namespace, campaign: Campaign) -> tuple[Path, report.Saved]:
    """The report directory and what it already holds: a new one, or the one --resume names (its campaign must be
    this one)."""
    labels = [p.label for p in campaign.plans]
    if args.resume is None:
        return report.start(args.reports_dir, datetime.now(UTC)), report.Saved([], labels, False)
    saved = report.load(args.resume)
    if saved.planned != labels:
        raise report.ReportError(
            f"--resume {args.resume}: that campaign planned {', '.join(saved.planned)}; these options plan "
            f"{', '.join(labels)}: give the options it was started with"
        )
    return report.writable(args.resume, f"--resume {args.resume}"), saved


def _compare(args: argparse.Namespace, console: Console) -> int:
    inventory = load_inventory(args.inventory)
    nodes = inventory.nodes(args.group)
    if args.reference and args.reference not in {n.name for n in nodes}:
        console.print(f"[red]error:[/] --reference {args.reference} is not a node of group '{args.group}'")
        return 2
    try:
        campaign = _campaign(args, inventory)
    except ContractError as exc:
        console.print(f"[red]error:[/] {exc} (see testbed compare --help)")
        return 2
    out, saved = _resumed(args, campaign)  # before anything runs: a report that cannot be written stops here
    prom = prometheus_client(args, inventory, timeout=10.0)
    prom.query("up")  # fail early, with the URL, when Prometheus is not reachable
    done = {c.label for c in saved.comparisons}
    todo = Campaign([p for p in campaign.plans if p.label not in done], campaign.starved_retries)
    resumed = f" (resumed: {len(done)} of {len(campaign.plans)} measured)" if done else ""
    console.print(f"Campaign: {campaign.describe()}{resumed}; live figures from {prom.base_url}; report in {out}")
    observer = _Console(console, inventory, args, out, saved)
    try:
        todo.run(inventory, prom, REPO / ".testbed" / "logs", observer)
    except KeyboardInterrupt:
        observer.stop_bar()
        measured = observer.measured()
        if measured:
            report.write_report(measured, tolerance=args.tolerance, out=out, planned=saved.planned)
        console.print(
            f"[yellow]interrupted:[/] {len(measured)} of {len(campaign.plans)} comparisons measured, kept in {out}; "
            f"`testbed compare --resume {out}` with the same options measures the rest"
        )
        return 130
    finally:
        observer.stop_bar()
    results = observer.measured()
    print_campaign(console, results, tolerance=args.tolerance)
    report.write_report(results, tolerance=args.tolerance, out=out, planned=saved.planned)
    console.print(f"Report written to [bold]{out}[/]")
    if observer.unpublished:
        return 1
    failed = sum(c.failed_runs for c in results)
    if failed:
        console.print(f"[red]{failed} run(s) failed[/] (listed above and in the report); the others were measured")
        return 1
    if args.strict and not all(analysis.known_answer_ok(c, args.tolerance) for c in results):
        console.print(f"[red]known-answer check failed:[/] a ratio deviates more than {args.tolerance} %")
        return 1
    return 0


def _report(args: argparse.Namespace, console: Console) -> int:
    saved = report.load(args.directory)
    if not saved.comparisons:
        console.print(f"[red]error:[/] {args.directory}: the campaign measured nothing yet")
        return 1
    print_campaign(console, saved.comparisons, tolerance=args.tolerance)
    report.write_report(saved.comparisons, tolerance=args.tolerance, out=args.directory, planned=saved.planned)
    console.print(f"Report written to [bold]{args.directory}[/]")
    missing = [label for label in saved.planned if label not in {c.label for c in saved.comparisons}]
    if missing:
        console.print(f"[yellow]not measured:[/] {', '.join(missing)} (`testbed compare --resume {args.directory}`)")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # A report table is wide: do not squeeze it into 80 columns when the output is a pipe or a CI log.
    console = Console(width=None if sys.stdout.isatty() else 200)
    try:
        run = {
            "report": _report,
            "dashboards": _dashboards,
            "accounting": _accounting,
            "arrays": _arrays,
            "drill": _drill,
            "tier3": _tier3,
        }.get(args.command, _compare)
        return run(args, console)
    except (
        InventoryError,
        PromError,
        compare.CompareError,
        report.ReportError,
        grafana.GrafanaError,
        accounting.AccountingError,
        pages.RenderError,
        arrays.ArraysError,
        drill.DrillError,
        tier3_spec.Tier3SpecError,
        Tier3Error,
    ) as exc:
        console.print(f"[red]error:[/] {exc}")
        return 1
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""magellan-virt-exporter: CPU, steal, block and network I/O, memory and state of a host's libvirt domains.

Runs on the hypervisor node. At each scrape it runs `virsh -r -c URI domstats --raw` (one run for every domain) and,
for a domain it has not seen in its current state, `virsh -r -c URI dumpxml --domain NAME` to learn the domain type
(`<domain type='qemu'>` is QEMU with TCG, 'kvm' QEMU with KVM, 'xen' Xen). Every virsh run shares one deadline, so
a hanging libvirtd costs a scrape at most --virsh.timeout. A missing, failing or hanging virsh and unusable lines
are counted by reason; nothing is reported for the domains then, rather than stale or made-up figures.
"""

from __future__ import annotations

import argparse
import logging
import re
import socket
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import Metric

from exporters import command, common, web
from exporters.common import Families, Figure, Health
from exporters.paths import Paths
from magellan import contract

LOG = logging.getLogger("magellan.virt_exporter")
ERROR_REASONS = (*command.REASONS, "parse", "dumpxml")  # exported from the start, at 0
# virDomainState, in libvirt's order
STATES = ("nostate", "running", "blocked", "paused", "shutdown", "shutoff", "crashed", "pmsuspended")
INACTIVE = frozenset({0, 5})  # no QEMU process: libvirt's cpu/balloon figures then are not the domain's
# <domain type=...> -> (hypervisor, accel)
DOMAIN_TYPES = {"qemu": ("qemu", "tcg"), "kvm": ("kvm", "kvm"), "xen": ("xen", "xen")}
URI_SCHEMES = {"qemu": "qemu", "xen": "xen", "libxl": "xen"}
DOMAIN_LABELS = ("node", "domain", "hypervisor", "accel")
HEADER = re.compile(r"^Domain: '(.*)'$")
INDEXED = re.compile(r"(vcpu|block|net)\.([0-9]{1,9})\.(.+)")  # ASCII digits ('٣' is \d too); fullmatch
MAX_BYTES = 16 << 20  # --virsh.max-bytes: domstats is ~3 KiB a domain, dumpxml ~10 KiB
BYTES = web.count(1 << 40)  # the value type of --virsh.max-bytes
NS_PER_S, KIB = 1e9, 1024


class ParseError(ValueError):
    """virsh output that cannot be used."""


@dataclass(frozen=True)
class VcpuStats:
    index: int
    state: int | None = None
    time_ns: int | None = None
    wait_ns: int | None = None
    delay_ns: int | None = None  # waiting in the host's run queue: the guest's steal time


@dataclass(frozen=True)
class BlockStats:
    index: int
    name: str = ""
    path: str = ""
    rd_reqs: int | None = None
    rd_bytes: int | None = None
    rd_times_ns: int | None = None
    wr_reqs: int | None = None
    wr_bytes: int | None = None
    wr_times_ns: int | None = None
    fl_reqs: int | None = None
    fl_times_ns: int | None = None
    allocation: int | None = None
    capacity: int | None = None
    physical: int | None = None


@dataclass(frozen=True)
class NetStats:
    index: int
    name: str = ""
    rx_bytes: int | None = None
    rx_pkts: int | None = None
    rx_errs: int | None = None
    rx_drop: int | None = None
    tx_bytes: int | None = None
    tx_pkts: int | None = None
    tx_errs: int | None = None
    tx_drop: int | None = None


@dataclass(frozen=True)
class DomainStats:
    """One domain of `virsh domstats --raw`; None where libvirt did not report the figure."""

    name: str
    state: int
    state_reason: int | None = None
    cpu_time_ns: int | None = None
    cpu_user_ns: int | None = None
    cpu_system_ns: int | None = None
    balloon: dict[str, int] = field(default_factory=dict)  # balloon.<key> (KiB, counts, seconds) as reported
    vcpu_current: int | None = None
    vcpu_maximum: int | None = None
    vcpus: tuple[VcpuStats, ...] = ()
    blocks: tuple[BlockStats, ...] = ()
    nets: tuple[NetStats, ...] = ()

    @property
    def state_name(self) -> str:
        return STATES[self.state] if 0 <= self.state < len(STATES) else "unknown"

    @property
    def active(self) -> bool:
        return self.state not in INACTIVE


@dataclass(frozen=True)
class DomainXML:
    name: str
    type: str
    uuid: str


# domstats key suffix -> dataclass field, for the indexed groups; all integers except name/path
_VCPU = {"state": "state", "time": "time_ns", "wait": "wait_ns", "delay": "delay_ns"}
_BLOCK = {
    "name": "name", "path": "path", "rd.reqs": "rd_reqs", "rd.bytes": "rd_bytes", "rd.times": "rd_times_ns",
    "wr.reqs": "wr_reqs", "wr.bytes": "wr_bytes", "wr.times": "wr_times_ns", "fl.reqs": "fl_reqs",
    "fl.times": "fl_times_ns", "allocation": "allocation", "capacity": "capacity", "physical": "physical",
}  # fmt: skip
_NET = {
    "name": "name", "rx.bytes": "rx_bytes", "rx.pkts": "rx_pkts", "rx.errs": "rx_errs", "rx.drop": "rx_drop",
    "tx.bytes": "tx_bytes", "tx.pkts": "tx_pkts", "tx.errs": "tx_errs", "tx.drop": "tx_drop",
}  # fmt: skip
_STRINGS = frozenset({"name", "path"})
_BALLOON = ("current", "maximum", "rss", "available", "usable", "unused", "disk_caches", "swap_in", "swap_out",
            "major_fault", "minor_fault")  # fmt: skip


def _integer(value: str) -> int:
    """domstats --raw prints unsigned integers; a sign, a unit, another script's digits ('²' passes str.isdigit())
    or a figure beyond 2^63-1 (a counter that would never come back) is not this format."""
    try:
        return contract.parse_count(value)
    except ValueError as exc:
        raise ParseError(str(exc)) from None


def _domain(name: str, fields: dict[str, str], problems: list[str]) -> DomainStats:
    """Typed figures of one domain block; a bad value is a problem and becomes None, a bad state drops the domain."""

    def number(key: str) -> int | None:
        if key not in fields:
            return None
        try:
            return _integer(fields[key])
        except ParseError as exc:
            problems.append(f"{key}: {exc}")
            return None

    try:
        state = _integer(fields.get("state.state", ""))
    except ParseError:
        raise ParseError(f"no usable state.state: {fields.get('state.state')!r}") from None
    groups: dict[str, dict[int, dict[str, Any]]] = {"vcpu": {}, "block": {}, "net": {}}
    for key, value in fields.items():
        m = INDEXED.fullmatch(key)
        attrs = {"vcpu": _VCPU, "block": _BLOCK, "net": _NET}[m.group(1)] if m else {}
        if not m or m.group(3) not in attrs:
            continue  # other groups and figures (dirtyrate, cpu.cache, vcpu.N.halted, ...) are not exported
        suffix = m.group(3)
        groups[m.group(1)].setdefault(int(m.group(2)), {})[attrs[suffix]] = value if suffix in _STRINGS else number(key)
    balloon = {k: v for k in _BALLOON if (v := number(f"balloon.{k}")) is not None}
    return DomainStats(
        name=name,
        state=state,
        state_reason=number("state.reason"),
        cpu_time_ns=number("cpu.time"),
        cpu_user_ns=number("cpu.user"),
        cpu_system_ns=number("cpu.system"),
        balloon=balloon,
        vcpu_current=number("vcpu.current"),
        vcpu_maximum=number("vcpu.maximum"),
        vcpus=tuple(VcpuStats(index=i, **v) for i, v in sorted(groups["vcpu"].items())),
        blocks=tuple(BlockStats(index=i, **v) for i, v in sorted(groups["block"].items())),
        nets=tuple(NetStats(index=i, **v) for i, v in sorted(groups["net"].items())),
    )


def parse_domstats(text: str) -> tuple[list[DomainStats], list[tuple[int, str]]]:
    """Parse `virsh domstats --raw`: the domains, and (line number, problem) pairs for what could not be used.

    A block is a `Domain: 'NAME'` line and indented `key=value` lines, blocks separated by a blank line. A value
    that should be an integer and is not becomes None; a domain without a usable state.state is dropped. A line
    with U+FFFD (bytes that were not UTF-8, decoded with errors="replace") is a problem, and so is any other line
    out of this shape; the indented lines after an unusable unindented line are dropped with it.
    """
    blocks: list[tuple[int, str, dict[str, str]]] = []
    problems: list[tuple[int, str]] = []
    current: dict[str, str] | None = None
    skipping = False  # in the lines of a header that could not be used
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        bad = "not UTF-8" if "\ufffd" in line else f"not a domstats line: {line[:80]!r}"
        if not line.startswith(" "):  # a header, or garbage that ends the block before it
            header = HEADER.match(line)
            if header and "\ufffd" not in line:
                current, skipping = {}, False
                blocks.append((number, header.group(1), current))
            else:
                problems.append((number, bad))
                current, skipping = None, True
            continue
        if skipping:
            continue  # dropped with the header they belong to
        key, sep, value = line.strip().partition("=")
        if not sep or not key or current is None or "\ufffd" in line:
            problems.append((number, bad))
            continue
        current[key] = value
    domains: list[DomainStats] = []
    seen: set[str] = set()
    for number, name, fields in blocks:
        if name in seen:
            problems.append((number, f"domain {name!r} twice"))
            continue
        seen.add(name)
        found: list[str] = []
        try:
            domains.append(_domain(name, fields, found))
        except ParseError as exc:
            found.append(str(exc))
        problems.extend((number, f"domain {name!r}: {p}") for p in found)
    return domains, problems


def parse_domain_xml(text: str) -> DomainXML:
    """Name, type and uuid of `virsh dumpxml` output."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise ParseError(f"not XML: {exc}") from None
    kind = root.get("type")
    if root.tag != "domain" or not kind:
        raise ParseError("not a <domain type=...> document")
    return DomainXML(name=root.findtext("name", ""), type=kind, uuid=root.findtext("uuid", ""))


def connection_hypervisor(uri: str) -> str:
    """The hypervisor of a libvirt URI: 'qemu:///system' -> qemu, 'xen:///' or 'libxl://' -> xen."""
    scheme = uri.partition(":")[0].partition("+")[0].lower()
    return URI_SCHEMES.get(scheme, scheme or "unknown")


def classify(domain_type: str | None, connection: str) -> tuple[str, str]:
    """(hypervisor, accel) of a domain: from its XML type, else the connection's hypervisor and accel 'unknown'."""
    if domain_type is None:
        return connection, "unknown"
    return DOMAIN_TYPES.get(domain_type, (domain_type, "unknown"))


@dataclass
class Options:
    virsh: str = "virsh"
    uri: str = "qemu:///system"
    node: str = field(default_factory=socket.gethostname)
    timeout: float = 5.0
    readonly: bool = True
    max_bytes: int = MAX_BYTES


@dataclass
class Snapshot:
    up: bool
    domains: list[tuple[DomainStats, str, str]]  # with hypervisor and accel


class VirtCollector:
    """Prometheus collector; runs virsh at each scrape, within one deadline, and yields fresh metric families."""

    def __init__(
        self,
        options: Options,
        clock: Callable[[], float] = time.time,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self.options = options
        self.clock = clock
        self.timer = timer
        self.health = Health(
            "virt",
            {"node": options.node},
            ERROR_REASONS,
            "virsh domstats",
            "Failed virsh runs (not_found, exec, timeout, exit_status, too_large of domstats; dumpxml) and unusable "
            "output (parse), by reason.",
        )
        self.lock = threading.Lock()
        self.types: dict[str, tuple[int, str]] = {}  # domain -> (state when read, <domain type>)
        self._failing: str | None = None  # the last failure logged, to log each kind once until it recovers
        self._warned: set[str] = set()  # warnings of this scrape and of the one before: each logged once in a row
        self._warned_before: set[str] = set()

    def virsh(self, args: list[str], deadline: float) -> str:
        """stdout of one virsh run within the scrape's deadline; command.CommandError otherwise."""
        o = self.options
        remaining = deadline - self.timer()
        if remaining <= 0:
            raise command.CommandError("timeout", f"no time left for virsh {args[0]} within {o.timeout:g} s")
        argv = [o.virsh, *(["-r"] if o.readonly else []), "-c", o.uri, *args]
        install = "install libvirt-clients or set --virsh.path"
        return command.run(argv, remaining, f"virsh {args[0]}", install, o.max_bytes, "--virsh.max-bytes")

    def _domain_type(self, d: DomainStats, deadline: float) -> str | None:
        """<domain type> from dumpxml, read again whenever the domain's state changed (a redefinition shows then)."""
        cached = self.types.get(d.name)
        if cached and cached[0] == d.state:
            return cached[1]
        try:
            kind = parse_domain_xml(self.virsh(["dumpxml", "--domain", d.name], deadline)).type
        except (command.CommandError, ParseError) as exc:  # the domain may have gone since domstats: read next scrape
            self.health.failed("dumpxml")
            self._warn(f"dumpxml of {d.name}: {exc}")
            return None
        self.types[d.name] = (d.state, kind)
        return kind

    def _warn(self, message: str) -> None:
        if message not in self._warned and message not in self._warned_before:
            LOG.warning("%s", message)
        self._warned.add(message)

    def scrape(self) -> Snapshot:
        deadline = self.timer() + self.options.timeout
        try:
            text = self.virsh(["domstats", "--raw"], deadline)
        except command.CommandError as exc:
            self.health.failed(exc.reason)
            self.health.read(False, self.clock())
            if self._failing != str(exc):
                LOG.error("%s", exc)
            self._failing = str(exc)
            return Snapshot(False, [])
        if self._failing is not None:
            LOG.info("virsh domstats works again")
        self._failing = None
        self._warned_before, self._warned = self._warned, set()  # forget what stopped happening: bounded memory
        domains, problems = parse_domstats(text)
        for number, problem in problems:
            self.health.failed("parse")
            self._warn(f"virsh domstats line {number}: {problem}")
        connection = connection_hypervisor(self.options.uri)
        result = []
        for d in domains:
            kind = self._domain_type(d, deadline)
            result.append((d, *classify(kind, connection)))
        names = {d.name for d in domains}
        self.types = {k: v for k, v in self.types.items() if k in names}
        self.health.read(True, self.clock())
        return Snapshot(True, result)

    def collect(self) -> Iterator[Metric]:
        with self.lock:  # one scrape at a time: the dumpxml cache and the error counters are shared
            start = self.timer()
            snapshot = self.scrape()
            metrics = list(self._metrics(snapshot, self.timer() - start))
        yield from metrics

    def _metrics(self, snapshot: Snapshot, duration: float) -> Iterator[Metric]:
        families = Families(DOMAIN_LABELS)
        for d, hypervisor, accel in snapshot.domains:
            base = [self.options.node, d.name, hypervisor, accel]
            families.state("magellan_virt_domain_state", "1 for the domain's current state, 0 for the others.",
                           STATES, d.state_name, base)  # fmt: skip
            if not d.active:
                continue  # shut off: libvirt 9.0 reports its own process's CPU time as the domain's (see fixtures)
            families.add(_domain_figures(d), base)
            for vcpu in d.vcpus:
                families.add(_vcpu_figures(vcpu), [*base, str(vcpu.index)], ("vcpu",))
            for b in d.blocks:
                families.add(_block_figures(b), [*base, b.name or str(b.index)], ("disk",))
            for n in d.nets:
                families.add(_net_figures(n), [*base, n.name or str(n.index)], ("interface",))
        yield from families
        yield from self.health.metrics()
        yield self.health.gauge("domains", "Domains virsh domstats reported, in any state.", len(snapshot.domains))
        yield self.health.gauge("scrape_duration_seconds", "Time this collector took, virsh runs included.", duration)


def _ns(value: int | None) -> float | None:
    return None if value is None else value / NS_PER_S


def _domain_figures(d: DomainStats) -> list[Figure]:
    b = d.balloon
    kib = {k: None if b.get(k) is None else b[k] * KIB for k in _BALLOON}
    return [
        ("counter", "magellan_virt_cpu_seconds", "CPU time of all the domain's threads (vCPUs, emulator, I/O).",
         _ns(d.cpu_time_ns)),
        ("gauge", "magellan_virt_vcpus", "Online vCPUs.", d.vcpu_current),
        ("gauge", "magellan_virt_vcpus_maximum", "vCPUs the domain may bring online.", d.vcpu_maximum),
        ("gauge", "magellan_virt_memory_current_bytes", "Memory the domain has now (balloon actual).", kib["current"]),
        ("gauge", "magellan_virt_memory_maximum_bytes", "Memory the domain may have (balloon maximum).",
         kib["maximum"]),
        ("gauge", "magellan_virt_memory_rss_bytes", "Resident set size of the domain's process on the host.",
         kib["rss"]),
        ("gauge", "magellan_virt_memory_available_bytes", "Memory the guest sees (virtio balloon statistics).",
         kib["available"]),
        ("gauge", "magellan_virt_memory_usable_bytes", "Memory the guest could give back without swapping.",
         kib["usable"]),
        ("gauge", "magellan_virt_memory_unused_bytes", "Memory the guest leaves unused.", kib["unused"]),
        ("gauge", "magellan_virt_memory_disk_caches_bytes", "Guest memory reclaimable without I/O (caches).",
         kib["disk_caches"]),
        ("counter", "magellan_virt_memory_swap_in_bytes", "Bytes the guest read from swap.", kib["swap_in"]),
        ("counter", "magellan_virt_memory_swap_out_bytes", "Bytes the guest wrote to swap.", kib["swap_out"]),
        ("counter", "magellan_virt_memory_major_faults", "Guest page faults that needed I/O.", b.get("major_fault")),
        ("counter", "magellan_virt_memory_minor_faults", "Guest page faults without I/O.", b.get("minor_fault")),
    ]  # fmt: skip


def _vcpu_figures(v: VcpuStats) -> list[Figure]:
    return [
        ("counter", "magellan_virt_vcpu_seconds", "CPU time of the vCPU.", _ns(v.time_ns)),
        ("counter", "magellan_virt_vcpu_steal_seconds", "Time the vCPU's thread waited in the host's run queue "
         "(libvirt vcpu.N.delay; the guest sees it as steal time).", _ns(v.delay_ns)),
        ("counter", "magellan_virt_vcpu_wait_seconds", "Time the vCPU waited on I/O (libvirt vcpu.N.wait).",
         _ns(v.wait_ns)),
    ]  # fmt: skip


def _block_figures(b: BlockStats) -> list[Figure]:
    return [
        ("counter", "magellan_virt_block_read_bytes", "Bytes read from the disk.", b.rd_bytes),
        ("counter", "magellan_virt_block_written_bytes", "Bytes written to the disk.", b.wr_bytes),
        ("counter", "magellan_virt_block_read_requests", "Read requests to the disk.", b.rd_reqs),
        ("counter", "magellan_virt_block_write_requests", "Write requests to the disk.", b.wr_reqs),
        ("counter", "magellan_virt_block_flush_requests", "Flush requests to the disk.", b.fl_reqs),
        ("counter", "magellan_virt_block_read_seconds", "Time spent on reads.", _ns(b.rd_times_ns)),
        ("counter", "magellan_virt_block_write_seconds", "Time spent on writes.", _ns(b.wr_times_ns)),
        ("counter", "magellan_virt_block_flush_seconds", "Time spent on flushes.", _ns(b.fl_times_ns)),
        ("gauge", "magellan_virt_block_capacity_bytes", "Size of the disk as the guest sees it.", b.capacity),
        ("gauge", "magellan_virt_block_allocation_bytes", "Highest offset written in the disk's image.", b.allocation),
        ("gauge", "magellan_virt_block_physical_bytes", "Size of the disk's image on the host.", b.physical),
    ]


def _net_figures(n: NetStats) -> list[Figure]:
    return [
        ("counter", "magellan_virt_net_receive_bytes", "Bytes the domain received on the interface.", n.rx_bytes),
        ("counter", "magellan_virt_net_transmit_bytes", "Bytes the domain sent on the interface.", n.tx_bytes),
        ("counter", "magellan_virt_net_receive_packets", "Packets the domain received.", n.rx_pkts),
        ("counter", "magellan_virt_net_transmit_packets", "Packets the domain sent.", n.tx_pkts),
        ("counter", "magellan_virt_net_receive_errors", "Receive errors.", n.rx_errs),
        ("counter", "magellan_virt_net_transmit_errors", "Transmit errors.", n.tx_errs),
        ("counter", "magellan_virt_net_receive_drops", "Received packets dropped.", n.rx_drop),
        ("counter", "magellan_virt_net_transmit_drops", "Sent packets dropped.", n.tx_drop),
    ]


SECONDS = web.seconds(600)  # the value type of --virsh.timeout


def _parser() -> argparse.ArgumentParser:
    d = Options(node="")
    p = argparse.ArgumentParser(prog="magellan-virt-exporter", description=__doc__.splitlines()[0])
    web.add_common_flags(p, contract.PORTS["virt_exporter"])
    p.add_argument("--virsh.path", dest="virsh", default=d.virsh, help="virsh command (default: %(default)s)")
    p.add_argument("--libvirt.uri", dest="uri", default=d.uri, help="libvirt connection (default: %(default)s)")
    p.add_argument(
        "--virsh.timeout", dest="timeout", type=SECONDS, default=d.timeout,
        help="time all virsh runs of one scrape may take together (s, default %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--virsh.readonly", dest="readonly", action=argparse.BooleanOptionalAction, default=d.readonly,
        help="connect read-only (virsh -r), which libvirtd allows any local user (default: on)",
    )  # fmt: skip
    p.add_argument(
        "--virsh.max-bytes", dest="max_bytes", type=BYTES, default=d.max_bytes,
        help="refuse a virsh run that prints more than this (default %(default)s)",
    )  # fmt: skip
    web.add_node_flag(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = web.parse_args(_parser(), argv)
    options = Options(args.virsh, args.uri, args.node, args.timeout, args.readonly, args.max_bytes)
    LOG.info("%s%s -c %s domstats at each scrape, timeout %g s, node=%s", options.virsh,
             " -r" if options.readonly else "", options.uri, options.timeout, options.node)  # fmt: skip
    return web.serve(common.registry([VirtCollector(options)], Paths().self_procfs), args.listen, LOG, args.web_config)


if __name__ == "__main__":
    sys.exit(main())

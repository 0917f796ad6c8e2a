"""The virtualization exporter: virsh parsing on captured output, labels, and a bad virsh as metrics, not a crash."""

from __future__ import annotations

import os
import random
import re
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from exporters import virt
from exporters.virt import Options, VirtCollector, parse_domain_xml, parse_domstats

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "virsh"
RUNNING = FIXTURES / "domstats-running.txt"  # magellan-tcg1 running (TCG), magellan-kvm-off shut off
GOLDEN = FIXTURES / "golden.prom"
TCG = 'accel="tcg",domain="magellan-tcg1",hypervisor="qemu",node="hv1"'
KVM_OFF = 'accel="kvm",domain="magellan-kvm-off",hypervisor="kvm",node="hv1"'


@pytest.mark.parametrize("path", sorted(FIXTURES.glob("domstats-*.txt")), ids=lambda p: p.name)
def test_every_capture_parses_cleanly(path: Path) -> None:
    domains, problems = parse_domstats(path.read_text())
    assert problems == []
    for d in domains:
        assert d.name.startswith("magellan-") and d.state_name in ("running", "paused", "shutoff")


def test_running_domain() -> None:
    domains, _ = parse_domstats(RUNNING.read_text())
    assert [d.name for d in domains] == ["magellan-kvm-off", "magellan-tcg1"]
    d = domains[1]
    assert (d.state, d.state_reason, d.state_name, d.active) == (1, 1, "running", True)
    assert (d.cpu_time_ns, d.cpu_user_ns, d.cpu_system_ns) == (11318301438, 10720000000, 590000000)
    assert d.balloon["current"] == d.balloon["maximum"] == 262144  # KiB: the 256 MiB of the definition
    assert d.balloon["rss"] == 232800 and d.balloon["available"] == 210612 and d.balloon["minor_fault"] == 3755
    assert "last-update" not in d.balloon  # a timestamp, not a figure we export
    assert (d.vcpu_current, d.vcpu_maximum) == (2, 2)
    v0, v1 = d.vcpus
    assert (v0.index, v0.state, v0.time_ns, v0.wait_ns, v0.delay_ns) == (0, 1, 8940000000, 0, 7848030531)
    assert (v1.index, v1.time_ns, v1.delay_ns) == (1, 1590000000, 832174384)
    # vcpu.N.time is in ns (virsh(1) says microseconds): the vCPUs' time fits inside the domain's cpu.time.
    assert v0.time_ns is not None and v1.time_ns is not None and d.cpu_time_ns is not None
    assert v0.time_ns + v1.time_ns <= d.cpu_time_ns
    (b,) = d.blocks
    assert (b.name, b.path) == ("vda", "/var/lib/libvirt/images/magellan-cap/disk.qcow2")
    assert (b.rd_reqs, b.rd_bytes, b.rd_times_ns) == (220, 27537920, 4096891)
    assert (b.wr_reqs, b.wr_bytes, b.wr_times_ns, b.fl_reqs, b.fl_times_ns) == (24, 12582912, 23129190, 12, 22348817)
    assert (b.allocation, b.capacity, b.physical) == (12910592, 67108864, 12853248)
    (n,) = d.nets
    assert (n.name, n.rx_bytes, n.rx_pkts, n.rx_errs, n.rx_drop) == ("vnet1", 3326, 37, 0, 0)
    assert (n.tx_bytes, n.tx_pkts, n.tx_errs, n.tx_drop) == (3216, 36, 0, 0)


def test_shut_off_domains() -> None:
    domains, _ = parse_domstats((FIXTURES / "domstats-all-shutoff.txt").read_text())
    for d in domains:
        assert (d.state_name, d.active, d.vcpus, d.nets) == ("shutoff", False, (), ())
        (b,) = d.blocks
        assert b.rd_bytes is None and b.capacity is not None
    # libvirt 9.0 reports a cpu.time for a shut-off domain: the same for both, i.e. not theirs (libvirtd's own).
    assert domains[0].cpu_time_ns == domains[1].cpu_time_ns == 1130000000
    destroyed = parse_domstats((FIXTURES / "domstats-destroyed.txt").read_text())[0][0]
    assert (destroyed.state, destroyed.state_reason) == (5, 2)  # VIR_DOMAIN_SHUTOFF_DESTROYED


def test_paused_domain_and_no_domains() -> None:
    (d,) = parse_domstats((FIXTURES / "domstats-paused.txt").read_text())[0]
    assert (d.state_name, d.active, d.vcpus[0].delay_ns) == ("paused", True, 8092328838)
    assert parse_domstats((FIXTURES / "domstats-none.txt").read_text()) == ([], [])


def test_bad_lines_and_values_are_problems() -> None:
    text = (
        "garbage before any domain\n"
        "Domain: 'a'\n  state.state=1\n  cpu.time=12x\n  vcpu.0.time=-5\n  vcpu.0.halted=no\n  net.0.name=vnet0\n"
        "no equals sign\n\n"
        "Domain: 'b'\n  state.state=running\n\n"
        "Domain: 'a'\n  state.state=5\n"
    )
    domains, problems = parse_domstats(text)
    (a,) = domains
    assert a.cpu_time_ns is None and a.vcpus[0].time_ns is None and a.nets[0].name == "vnet0"
    assert [n for n, _ in problems] == [1, 8, 2, 2, 10, 13]
    reasons = " ".join(p for _, p in problems)
    assert "cpu.time: '12x' is not an integer from 0 to 2^63-1 in ASCII digits" in reasons
    assert "domain 'b': no usable state.state: 'running'" in reasons
    assert "domain 'b': no usable state.state" in reasons and "domain 'a' twice" in reasons


def test_lines_that_were_not_utf8_are_problems() -> None:
    text = RUNNING.read_bytes().replace(b"vnet1", b"vnet\xff").replace(b"'magellan-kvm-off'", b"'\xfe'")
    domains, problems = parse_domstats(text.decode(errors="replace"))
    assert [d.name for d in domains] == ["magellan-tcg1"]  # the other's header was unusable: its lines go with it
    assert domains[0].nets[0].name == ""  # its line was dropped: the interface is then labelled by index
    assert [p for _, p in problems] == ["not UTF-8", "not UTF-8"]


def test_garbage_never_raises() -> None:
    lines = RUNNING.read_text().splitlines()
    rng = random.Random(9812)
    for _ in range(300):
        mutated = [
            line[: rng.randrange(len(line) + 1)] + rng.choice(["", "=", "'", "\x00", "é", " 1"]) for line in lines
        ]
        rng.shuffle(mutated)
        parse_domstats("\n".join(mutated))
    parse_domstats(os.urandom(4096).decode("latin-1"))


def test_domain_xml() -> None:
    tcg = parse_domain_xml((FIXTURES / "dumpxml-magellan-tcg1.xml").read_text())
    assert (tcg.name, tcg.type, tcg.uuid) == ("magellan-tcg1", "qemu", "9fb19a28-ab88-4c0e-8a35-9bc7d0777387")
    assert parse_domain_xml((FIXTURES / "dumpxml-magellan-kvm-off.xml").read_text()).type == "kvm"
    for bad in ("", "<domain>", "<domain><name>x</name></domain>", "<network type='qemu'/>", "error: failed"):
        with pytest.raises(virt.ParseError):
            parse_domain_xml(bad)


@pytest.mark.parametrize(
    ("domain_type", "expected"),
    [("qemu", ("qemu", "tcg")), ("kvm", ("kvm", "kvm")), ("xen", ("xen", "xen")), ("hvf", ("hvf", "unknown")),
     (None, ("qemu", "unknown"))],
)  # fmt: skip
def test_hypervisor_and_accel(domain_type: str | None, expected: tuple[str, str]) -> None:
    assert virt.classify(domain_type, "qemu") == expected


@pytest.mark.parametrize(
    ("uri", "hypervisor"),
    [("qemu:///system", "qemu"), ("qemu+ssh://root@hv1/system", "qemu"), ("xen:///system", "xen"),
     ("libxl:///", "xen"), ("", "unknown")],
)  # fmt: skip
def test_connection_hypervisor(uri: str, hypervisor: str) -> None:
    assert virt.connection_hypervisor(uri) == hypervisor


def fake_virsh(tmp_path: Path, domstats: str = f"cat {RUNNING}", dumpxml: str | None = None) -> str:
    """An executable standing in for virsh: records its arguments, answers domstats and dumpxml."""
    dumpxml = dumpxml or (
        f'f={FIXTURES}/dumpxml-$last.xml; [ -f "$f" ] && cat "$f" || '
        "{ echo \"error: failed to get domain '$last'\" >&2; exit 1; }"
    )
    path = tmp_path / "virsh"
    path.write_text(
        f'#!/bin/sh\necho "$*" >> {tmp_path}/calls\nfor a in "$@"; do last=$a; done\n'
        f'case " $* " in\n  *" domstats "*) {domstats} ;;\n  *" dumpxml "*) {dumpxml} ;;\nesac\n'
    )
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def calls(tmp_path: Path) -> list[str]:
    return (tmp_path / "calls").read_text().splitlines()


def collector(virsh: str, timeout: float = 5.0) -> VirtCollector:
    return VirtCollector(Options(virsh=virsh, node="hv1", timeout=timeout), clock=lambda: 1796097903.0)


def scrape(c: VirtCollector) -> str:
    registry = CollectorRegistry()
    registry.register(c)
    return generate_latest(registry).decode()


def test_exposition_from_a_real_capture(tmp_path: Path) -> None:
    c = VirtCollector(Options(virsh=fake_virsh(tmp_path), node="hv1"), clock=lambda: 1796097903.0, timer=lambda: 0.0)
    text = scrape(c)
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text(), "exposition changed: review it, then rerun with UPDATE_GOLDEN=1 to accept"
    assert calls(tmp_path) == [
        "-r -c qemu:///system domstats --raw",
        "-r -c qemu:///system dumpxml --domain magellan-kvm-off",
        "-r -c qemu:///system dumpxml --domain magellan-tcg1",
    ]
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing: make bootstrap installs Debian's prometheus package")
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr


def test_metric_names_and_labels(tmp_path: Path) -> None:
    text = scrape(collector(fake_virsh(tmp_path)))
    assert f"magellan_virt_cpu_seconds_total{{{TCG}}} 11.318301438" in text
    assert f'magellan_virt_vcpu_seconds_total{{{TCG},vcpu="0"}} 8.94' in text
    assert f'magellan_virt_vcpu_steal_seconds_total{{{TCG},vcpu="0"}} 7.848030531' in text
    disk = 'accel="tcg",disk="vda",domain="magellan-tcg1",hypervisor="qemu",node="hv1"'
    assert f"magellan_virt_block_read_bytes_total{{{disk}}} 2.753792e+07" in text
    assert f"magellan_virt_block_write_seconds_total{{{disk}}} 0.02312919" in text
    net = 'accel="tcg",domain="magellan-tcg1",hypervisor="qemu",interface="vnet1",node="hv1"'
    assert f"magellan_virt_net_transmit_packets_total{{{net}}} 36.0" in text
    assert f"magellan_virt_memory_rss_bytes{{{TCG}}} 2.383872e+08" in text  # 232800 KiB
    assert f'magellan_virt_domain_state{{{TCG},state="running"}} 1.0' in text
    assert f'magellan_virt_domain_state{{{KVM_OFF},state="shutoff"}} 1.0' in text
    # a shut-off domain has its state only: libvirt's CPU and memory figures for it are not the domain's
    assert not [line for line in text.splitlines() if "magellan-kvm-off" in line and "_state{" not in line]
    assert 'magellan_virt_up{node="hv1"} 1.0' in text and 'magellan_virt_domains{node="hv1"} 2.0' in text
    for reason in virt.ERROR_REASONS:
        assert f'magellan_virt_scrape_errors_total{{node="hv1",reason="{reason}"}} 0.0' in text


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (f"cat {FIXTURES}/domstats-no-daemon.stderr >&2; exit 1", "exit_status"),
        ("sleep 5", "timeout"),
        (None, "not_found"),
        ("", "exec"),
    ],
)
def test_a_bad_virsh_is_a_metric_not_a_crash(tmp_path: Path, body: str | None, reason: str) -> None:
    virsh = fake_virsh(tmp_path, domstats=body) if body is not None else str(tmp_path / "missing")
    if body == "":
        Path(virsh).chmod(0o644)  # not executable
    c = collector(virsh, timeout=0.5)
    started = time.monotonic()
    text = scrape(c)
    assert time.monotonic() - started < 3
    assert 'magellan_virt_up{node="hv1"} 0.0' in text
    assert f'magellan_virt_scrape_errors_total{{node="hv1",reason="{reason}"}} 1.0' in text
    assert "magellan_virt_cpu_seconds_total{" not in text and "magellan_virt_domain_state{" not in text  # none made up
    assert 'magellan_virt_domains{node="hv1"} 0.0' in text
    assert "magellan_virt_last_success_timestamp_seconds" not in text  # absent until a good run
    c.options.virsh = fake_virsh(tmp_path)  # virsh works again
    text = scrape(c)
    assert 'magellan_virt_up{node="hv1"} 1.0' in text and f"magellan_virt_cpu_seconds_total{{{TCG}}}" in text
    assert 'magellan_virt_last_success_timestamp_seconds{node="hv1"} 1.796097903e+09' in text
    assert f'magellan_virt_scrape_errors_total{{node="hv1",reason="{reason}"}} 1.0' in text


def test_garbage_output_is_counted(tmp_path: Path) -> None:
    virsh = fake_virsh(tmp_path, domstats="printf 'Domain: x\\n\\001\\377 nonsense\\n'; head -c 300 /dev/urandom")
    text = scrape(collector(virsh))
    assert 'magellan_virt_up{node="hv1"} 1.0' in text
    assert 'magellan_virt_domains{node="hv1"} 0.0' in text
    parse_errors = re.search(r'magellan_virt_scrape_errors_total\{node="hv1",reason="parse"\} (\S+)', text)
    assert parse_errors and float(parse_errors.group(1)) >= 2  # 'Domain: x' unquoted, the nonsense line, ...


def test_dumpxml_is_read_once_per_state_and_its_failure_degrades_labels(tmp_path: Path) -> None:
    virsh = fake_virsh(tmp_path, dumpxml="exit 1")
    c = collector(virsh)
    text = scrape(c)
    assert 'accel="unknown",domain="magellan-tcg1",hypervisor="qemu",node="hv1",state="running"} 1.0' in text
    assert 'magellan_virt_scrape_errors_total{node="hv1",reason="dumpxml"} 2.0' in text
    c.options.virsh = fake_virsh(tmp_path)
    scrape(c)
    scrape(c)
    assert sum("dumpxml" in call for call in calls(tmp_path)) == 4  # 2 failed, then 2 read once and kept
    c.options.virsh = fake_virsh(tmp_path, domstats=f"cat {FIXTURES}/domstats-paused.txt")
    text = scrape(c)  # magellan-tcg1 paused: its state changed, so its XML is read again
    assert calls(tmp_path)[-1].endswith("dumpxml --domain magellan-tcg1")
    assert f'magellan_virt_domain_state{{{TCG},state="paused"}} 1.0' in text
    assert c.types == {"magellan-tcg1": (3, "qemu")}  # the vanished domain is forgotten


def test_one_deadline_for_all_virsh_runs(tmp_path: Path) -> None:
    c = collector(fake_virsh(tmp_path, dumpxml="sleep 5"), timeout=1.0)
    started = time.monotonic()
    text = scrape(c)
    assert time.monotonic() - started < 4  # not 2 dumpxml runs x 1 s, nor either's 5 s
    # The first dumpxml used up the scrape's one deadline: the second was not started at all. (The time bound
    # alone could not fail here: two runs of 1 s each also end within it.)
    assert len([c for c in calls(tmp_path) if " dumpxml " in c]) == 1, calls(tmp_path)
    assert 'magellan_virt_up{node="hv1"} 1.0' in text
    assert 'magellan_virt_scrape_errors_total{node="hv1",reason="dumpxml"} 2.0' in text


def test_flags(capsys: pytest.CaptureFixture[str]) -> None:
    args = virt._parser().parse_args(["--libvirt.uri", "xen:///system", "--no-virsh.readonly", "--node.name", "hv2"])
    assert (args.uri, args.readonly, args.node, args.timeout, args.listen) == (
        "xen:///system", False, "hv2", 5.0, ("0.0.0.0", 9812)
    )  # fmt: skip
    with pytest.raises(SystemExit):
        virt.main(["--virsh.timeout", "-3"])
    assert "expected a number of seconds above 0, at most 600" in capsys.readouterr().err


def test_a_hanging_virsh_is_killed_with_its_children(tmp_path: Path) -> None:
    child = tmp_path / "child"
    scrape(collector(fake_virsh(tmp_path, domstats=f"sleep 30 & echo $! > {child}; wait"), timeout=0.5))
    pid = int(child.read_text())
    time.sleep(0.2)
    state = Path(f"/proc/{pid}/stat")
    assert not state.exists() or state.read_text().rsplit(")", 1)[1].split()[0] == "Z"  # gone, or dead unreaped


def test_each_problem_is_logged_once_while_it_lasts(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    c = collector(fake_virsh(tmp_path, dumpxml="exit 1"))
    for _ in range(3):
        scrape(c)
    assert len([r for r in caplog.records if "dumpxml of magellan-tcg1" in r.getMessage()]) == 1
    c.options.virsh = str(tmp_path / "missing")
    for _ in range(3):
        scrape(c)
    assert len([r for r in caplog.records if "not found" in r.getMessage()]) == 1
    assert 'magellan_virt_scrape_errors_total{node="hv1",reason="not_found"} 4.0' in scrape(c)  # counted every time


# --- bounded input (issue 15) -------------------------------------------------------------------------------------


def test_domstats_beyond_max_bytes_is_refused(tmp_path: Path) -> None:
    flood = f"cat {RUNNING}; yes '  balloon.rss=1' | head -c 3000000"
    c = VirtCollector(Options(virsh=fake_virsh(tmp_path, domstats=flood), node="hv1", max_bytes=1_000_000))
    started = time.monotonic()
    text = scrape(c)
    assert time.monotonic() - started < 5
    assert 'magellan_virt_up{node="hv1"} 0.0' in text
    assert 'magellan_virt_scrape_errors_total{node="hv1",reason="too_large"} 1.0' in text
    assert "magellan_virt_domain_state{" not in text  # nothing of the refused output


def test_an_endless_virsh_is_stopped_at_max_bytes_not_at_the_deadline(tmp_path: Path) -> None:
    c = VirtCollector(Options(virsh=fake_virsh(tmp_path, domstats="exec yes"), node="hv1", timeout=20,
                              max_bytes=1_000_000))  # fmt: skip
    started = time.monotonic()
    text = scrape(c)
    assert time.monotonic() - started < 5
    assert 'magellan_virt_scrape_errors_total{node="hv1",reason="too_large"} 1.0' in text


def test_max_bytes_flag() -> None:
    assert virt._parser().parse_args([]).max_bytes == Options().max_bytes
    assert virt._parser().parse_args(["--virsh.max-bytes=4096"]).max_bytes == 4096


FIGURES = {"state.state": "1", "cpu.time": "5", "balloon.rss": "7", "vcpu.0.time": "3", "block.0.rd.bytes": "9"}


def domain(**values: str) -> str:
    """One domstats block of FIGURES, with `values` (keys with '_' for '.') in place of some."""
    figures = {**FIGURES, **{k.replace("_", "."): v for k, v in values.items()}}
    return "Domain: 'd1'\n" + "".join(f"  {k}={v}\n" for k, v in figures.items())


DOMAIN = domain()


@pytest.mark.parametrize(
    "value", ["²", "٣", "٣٣", "9" * 400, str(2**63), "nan", "inf", "-1", "+1", " 1", "1_000", "0x10", "1.5", ""]
)
@pytest.mark.parametrize("key", ["cpu.time", "balloon.rss", "vcpu.0.time", "block.0.rd.bytes"])
def test_bad_numbers_are_problems_and_none(key: str, value: str) -> None:
    (d,), problems = parse_domstats(domain(**{key.replace(".", "_"): value}))
    assert len(problems) == 1 and key in problems[0][1], problems
    figures = {"cpu.time": d.cpu_time_ns, "balloon.rss": d.balloon.get("rss"), "vcpu.0.time": d.vcpus[0].time_ns,
               "block.0.rd.bytes": d.blocks[0].rd_bytes}  # fmt: skip
    assert figures.pop(key) is None
    assert all(v is not None for v in figures.values())  # the other figures are still read


@pytest.mark.parametrize("value", ["²", "٣", "9" * 400, "nan", "-1"])
def test_a_bad_state_drops_the_domain_as_a_problem(value: str) -> None:
    domains, problems = parse_domstats(domain(state_state=value))
    assert domains == [] and len(problems) == 1 and "state.state" in problems[0][1]


def test_an_index_of_other_digits_is_not_a_figure() -> None:
    (d,), _ = parse_domstats(DOMAIN + "  vcpu.٣.time=4\n")
    assert [v.index for v in d.vcpus] == [0]


def test_a_huge_counter_is_not_exported(tmp_path: Path) -> None:
    huge = tmp_path / "huge.txt"
    huge.write_text(RUNNING.read_text().replace("cpu.time=11318301438", "cpu.time=" + "9" * 400))
    text = scrape(collector(fake_virsh(tmp_path, domstats=f"cat {huge}")))
    assert 'magellan_virt_up{node="hv1"} 1.0' in text
    assert f"magellan_virt_cpu_seconds_total{{{TCG}}}" not in text and "Inf" not in text
    assert 'magellan_virt_scrape_errors_total{node="hv1",reason="parse"} 1.0' in text
    assert f'magellan_virt_vcpu_seconds_total{{{TCG},vcpu="0"}} 8.94' in text

#!/usr/bin/python3
"""Node-side helper of playbooks/drill_disk_failure.yml: it records and reads, the controller measures.

On the storage node (python3 standard library only; the guest has no project wheel):
  array NAME                      the array's device, md state and members, mount point (JSON)
  write DIR MIB FILES             a data set of random files and its SHA256SUMS manifest, each written under a
                                  temporary name and renamed; prints {files, bytes}
  verify DIR                      every file of the manifest read with O_DIRECT (from the array, not the page
                                  cache) and checked: {files, bytes, bad: [...]}
  sample MD OUT INTERVAL PIDFILE  a daemon writing md's sysfs files (sync_action, sync_completed, sync_speed,
                                  degraded, array_state) as one JSON line every INTERVAL s, raw: testbed.drill
                                  parses them on the controller
  readers DIR N OUT PIDFILE       a daemon of N readers, each reading the data set's files in turn with O_DIRECT;
                                  on SIGTERM each appends {reader, bytes, reads, errors, seconds} to OUT
  add DEVICE MEMBER                mdadm --manage DEVICE --add MEMBER, with the time it was asked
  stop PIDFILE                    SIGTERM to the daemon's process group, waits for it to end
On the hypervisor:
  disk DOMAIN SERIAL              the domain's disk of this serial, in its persistent definition and live: target,
                                  source file, iotune, and the persistent <disk> element (what is attached again)
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import mmap
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from typing import Any

MANIFEST = "SHA256SUMS"
BLOCK = 1 << 20  # one MiB: files are whole MiBs, so O_DIRECT reads stay aligned


def _read(path: str) -> str:
    with open(path, encoding="ascii", errors="replace") as f:
        return f.read().strip()


def array(name: str) -> dict[str, Any]:
    found = [
        p for p in [f"/dev/md/{name}", *sorted(glob.glob(f"/dev/disk/by-id/md-name-*:{name}"))] if os.path.exists(p)
    ]
    if not found:
        return {"name": name, "device": None}
    device = os.path.realpath(found[0])
    kernel = os.path.basename(device)
    md = f"/sys/block/{kernel}/md"
    members = {}
    for entry in sorted(glob.glob(f"{md}/dev-*")):
        block = os.path.basename(os.path.realpath(f"{entry}/block"))
        links = [p for p in glob.glob("/dev/disk/by-id/*") if os.path.basename(os.path.realpath(p)) == block]
        members[os.path.basename(entry).removeprefix("dev-")] = {
            "state": _read(f"{entry}/state"),
            "by_id": sorted(links),
        }
    mount = subprocess.run(["findmnt", "-rno", "TARGET", device], capture_output=True, text=True, check=False)
    detail = subprocess.run(["mdadm", "--detail", device], capture_output=True, text=True, check=False)
    return {
        "name": name, "device": device, "kernel": kernel, "sysfs": md, "mount": next(iter(mount.stdout.split()), None),
        "array_state": _read(f"{md}/array_state"), "sync_action": _read(f"{md}/sync_action"),
        "degraded": int(_read(f"{md}/degraded")), "raid_disks": _read(f"{md}/raid_disks"),
        "sync_speed_min": _read(f"{md}/sync_speed_min"), "members": members, "detail": detail.stdout,
        "mdstat": _read("/proc/mdstat"),
    }  # fmt: skip


def write(directory: str, mib: int, files: int) -> dict[str, Any]:
    os.makedirs(directory, exist_ok=True)
    per_file = max(1, mib // files)
    sums, total = [], 0
    with open("/dev/urandom", "rb") as rnd:
        for i in range(files):
            name = f"data-{i:03d}.bin"
            tmp = os.path.join(directory, f".{name}.part")
            digest = hashlib.sha256()
            with open(tmp, "wb") as out:
                for _ in range(per_file):
                    chunk = rnd.read(BLOCK)
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.rename(tmp, os.path.join(directory, name))
            sums.append(f"{digest.hexdigest()}  {name}\n")
            total += per_file * BLOCK
    tmp = os.path.join(directory, f".{MANIFEST}.part")
    with open(tmp, "w", encoding="ascii") as out:
        out.writelines(sums)
        out.flush()
        os.fsync(out.fileno())
    os.rename(tmp, os.path.join(directory, MANIFEST))
    dfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dfd)  # the renames too
    finally:
        os.close(dfd)
    return {"files": files, "bytes": total}


def _direct_read(path: str, buf: mmap.mmap, digest: Any = None) -> int:
    """Bytes of the file read with O_DIRECT into the page-aligned buffer (and hashed)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    done = 0
    try:
        while (n := os.readv(fd, [buf])) > 0:
            if digest is not None:
                digest.update(memoryview(buf)[:n])
            done += n
    finally:
        os.close(fd)
    return done


def verify(directory: str) -> dict[str, Any]:
    buf = mmap.mmap(-1, BLOCK)
    files = total = 0
    bad = []
    with open(os.path.join(directory, MANIFEST), encoding="ascii") as f:
        lines = [line.split(None, 1) for line in f if line.strip()]
    for want, listed in lines:
        name = listed.strip()
        digest = hashlib.sha256()
        try:
            n = _direct_read(os.path.join(directory, name), buf, digest)
        except OSError as exc:
            bad.append({"file": name, "error": str(exc)})
            continue
        if digest.hexdigest() != want:
            bad.append({"file": name, "error": "checksum differs"})
        else:
            files += 1
            total += n
    return {"files": files, "bytes": total, "bad": bad, "expected_files": len(lines)}


def _daemon(pidfile: str) -> bool:
    """Fork into a new session with no inherited stdio; True in the daemon (whose pid is in pidfile)."""
    if os.fork():
        for _ in range(100):  # return once the daemon has written its pid
            if os.path.exists(pidfile):
                return False
            time.sleep(0.05)
        return False
    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    tmp = f"{pidfile}.part"
    with open(tmp, "w", encoding="ascii") as f:
        f.write(f"{os.getpid()}\n")
    os.rename(tmp, pidfile)
    return True


_stop = [False]  # set by SIGTERM: the daemons finish their round and write what they counted


def _on_term(signum: int, frame: Any) -> None:
    _stop[0] = True


def sample(md: str, out: str, interval: float, pidfile: str) -> None:
    if not _daemon(pidfile):
        return
    signal.signal(signal.SIGTERM, _on_term)
    names = ("sync_action", "sync_completed", "sync_speed", "degraded", "array_state")
    with open(out, "a", encoding="ascii") as f:
        while not _stop[0]:
            row: dict[str, Any] = {"t": time.time()}
            for n in names:
                try:
                    row[n] = _read(f"{md}/{n}")
                except OSError as exc:
                    row[n] = None
                    row.setdefault("errors", []).append(f"{n}: {exc.strerror}")
            f.write(json.dumps(row) + "\n")
            f.flush()
            time.sleep(interval)


def readers(directory: str, count: int, out: str, pidfile: str) -> None:
    if not _daemon(pidfile):
        return
    files = sorted(os.path.join(directory, n) for n in os.listdir(directory) if n.startswith("data-"))
    for reader in range(count):
        if os.fork() == 0:
            signal.signal(signal.SIGTERM, _on_term)
            try:
                _reader(reader, files, out)
            finally:
                os._exit(0)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the group's SIGTERM is for the readers; this one waits for them
    while True:
        try:
            os.wait()
        except ChildProcessError:
            break
    with contextlib.suppress(FileNotFoundError):
        os.unlink(pidfile)


def _reader(reader: int, files: list[str], out: str) -> None:
    buf = mmap.mmap(-1, BLOCK)
    start, done, reads, errors, i = time.monotonic(), 0, 0, [], reader
    while not _stop[0] and files:
        try:
            done += _direct_read(files[i % len(files)], buf)
            reads += 1
        except OSError as exc:
            errors.append(f"{time.time():.1f} {files[i % len(files)]}: {exc.strerror}")
            time.sleep(0.2)
        i += 1
    line = {
        "reader": reader,
        "bytes": done,
        "reads": reads,
        "errors": errors[:20],
        "error_count": len(errors),
        "seconds": time.monotonic() - start,
    }
    with open(out, "a", encoding="ascii") as f:
        f.write(json.dumps(line) + "\n")


def stop(pidfile: str) -> dict[str, Any]:
    try:
        pid = int(_read(pidfile))
    except (OSError, ValueError):
        return {"stopped": False, "why": f"no pid in {pidfile}"}
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        os.unlink(pidfile)
        return {"stopped": False, "why": f"process group {pid} is gone"}
    for _ in range(300):
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(pidfile)
    return {"stopped": True, "pid": pid}


def add(device: str, member: str) -> dict[str, Any]:
    """mdadm --manage --add, timed on this node's clock (the sampler's)."""
    before = time.time()
    proc = subprocess.run(["mdadm", "--manage", device, "--add", member], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"mdadm --manage {device} --add {member}: exit {proc.returncode}: {proc.stderr.strip()}")
    return {"added": before, "stderr": proc.stderr.strip()}


def _disk(root: ET.Element, serial: str) -> ET.Element | None:
    return next((d for d in root.iter("disk") if (d.findtext("serial") or "") == serial), None)


def _describe(disk: ET.Element | None) -> dict[str, Any]:
    if disk is None:
        return {"present": False}
    target, source = disk.find("target"), disk.find("source")
    iotune = disk.find("iotune")
    return {
        "present": True,
        "target": target.get("dev") if target is not None else None,
        "rotation_rate": target.get("rotation_rate") if target is not None else None,
        "source": source.get("file") if source is not None else None,
        "iotune": {c.tag: int(c.text or 0) for c in iotune} if iotune is not None else {},
    }


def disk(domain: str, serial: str) -> dict[str, Any]:
    def dump(*flags: str) -> ET.Element:
        xml = subprocess.run(["virsh", "dumpxml", *flags, domain], capture_output=True, text=True, check=True).stdout
        return ET.fromstring(xml)

    persistent = _disk(dump("--inactive"), serial)
    live = _disk(dump(), serial)
    return {
        "domain": domain,
        "serial": serial,
        "persistent": _describe(persistent),
        "live": _describe(live),
        "xml": ET.tostring(persistent, encoding="unicode") if persistent is not None else None,
    }


def main(argv: list[str]) -> int:
    cmd, args = argv[0], argv[1:]
    if cmd == "array":
        result: Any = array(args[0])
    elif cmd == "write":
        result = write(args[0], int(args[1]), int(args[2]))
    elif cmd == "verify":
        result = verify(args[0])
    elif cmd == "sample":
        sample(args[0], args[1], float(args[2]), args[3])
        result = {"started": True}
    elif cmd == "readers":
        readers(args[0], int(args[1]), args[2], args[3])
        result = {"started": True}
    elif cmd == "stop":
        result = stop(args[0])
    elif cmd == "add":
        result = add(args[0], args[1])
    elif cmd == "disk":
        result = disk(args[0], args[1])
    else:
        print(f"unknown command {cmd}", file=sys.stderr)
        return 2
    if isinstance(result, dict):
        result["now"] = time.time()  # this node's clock: the sampler's too
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

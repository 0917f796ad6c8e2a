"""The storage arrays of roles/storage_array: the inventory's description checked and turned into commands, and the
decision, from what is on each member disk, whether an array is assembled, created, or refused.

`storage_array_plan(arrays, defaults)` checks each array {name, level, members, spares, chunk_kb, filesystem,
mount_point, mount_options, discard, readahead_kb, stripe_cache_size, wipe} (defaults fill what an array leaves out)
and adds what the role runs: the md device, the number of data disks, the mdadm --create and mkfs argument lists
(the file system aligned to the array's stripe) and the mount options. An error names the array, the field, what was
wrong and what to set.

`storage_array_actions(plan, probes)` decides per array from the role's probe of the arrays md runs and of each
member (`blkid -p -o export`, and whether the member has holders or partitions): `exists` (md runs an array of this
name, under whatever device), `assemble` (every member carries this array's md superblock), or `create` (the members
are blank, or the inventory lists them in `wipe`). Anything
else on a member (a file system, a partition table, another array's superblock, a device in use) is refused before
anything is written: the role never destroys data the inventory did not name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

from magellan import contract
from testbed.storage import (
    MIN_MEMBERS,
    array_economics,
    catalogue_exposition,
    data_disks,
    parse_catalogue,
    raid_level,
)

FILESYSTEMS = ("xfs", "ext4")
DISCARD = ("fstrim", "online", "none")  # periodic TRIM (fstrim.timer), the discard mount option, or neither
FIELDS = {"name", "level", "members", "spares", "chunk_kb", "filesystem", "mount_point", "mount_options", "discard",
          "readahead_kb", "stripe_cache_size", "wipe", "model"}  # fmt: skip
_NAME = re.compile(r"[a-z][a-z0-9_-]{0,11}")  # also the file system's label: XFS takes at most 12 characters
_OPTION = re.compile(r"[A-Za-z0-9_.=:/+-]+")
_PREFIX = "roles/storage_array: storage_array_arrays"


def _fail(array: str, field: str, message: str) -> AnsibleFilterError:
    return AnsibleFilterError(f"{_PREFIX}: array '{array}': {field}: {message}")


def _whole(array: str, field: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not re.fullmatch(r"[0-9]+", str(value).strip()) or int(value) < low:
        raise _fail(array, field, f"{value!r} is not a whole number >= {low}")
    return int(value)


def _devices(array: str, field: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(d, str) and d.startswith("/dev/") for d in value):
        raise _fail(array, field, f"{value!r} must be a list of device paths (/dev/disk/by-id/... names stay right)")
    return [str(d) for d in value]


def _commands(
    name: str, level: int, members: list[str], spares: list[str], chunk: int, filesystem: str
) -> tuple[list[str], list[str]]:
    """mdadm --create's and mkfs's argument lists: the file system aligned to the array's stripe (XFS su/sw, ext4
    stride/stripe_width in 4-KiB blocks); a mirror has no stripe."""
    device, data = f"/dev/md/{name}", data_disks(level, len(members))
    create = ["mdadm", "--create", device, "--run", "--metadata=1.2", f"--name={name}", f"--level={level}",
              f"--raid-devices={len(members)}"]  # fmt: skip
    if level != 1:
        create.append(f"--chunk={chunk}")
    if level == 10:
        create.append("--layout=n2")
    if spares:
        create.append(f"--spare-devices={len(spares)}")
    create += members + spares
    striped = level != 1
    if filesystem == "xfs":
        return create, ["mkfs.xfs", "-q", "-L", name, *(["-d", f"su={chunk}k,sw={data}"] if striped else []), device]
    stride = chunk // 4
    extended = ["-E", f"stride={stride},stripe_width={stride * data}"] if striped else []
    return create, ["mkfs.ext4", "-q", "-L", name, *extended, device]


def _one(raw: Any, defaults: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise AnsibleFilterError(f"{_PREFIX}: {raw!r} is not a mapping {{name, level, members, ...}}")
    name = str(raw.get("name", ""))
    if not _NAME.fullmatch(name):
        raise _fail(name or "(no name)", "name", "must be 1-12 of a-z, 0-9, '_', '-', starting with a letter"
                    " (it names /dev/md/<name> and is the file system's label)")  # fmt: skip
    unknown = sorted(set(raw) - FIELDS)
    if unknown:
        raise _fail(name, ", ".join(unknown), f"unknown field(s); an array takes {', '.join(sorted(FIELDS))}")
    a = {**defaults, **raw}
    try:
        level = raid_level(a.get("level"))
    except ValueError as exc:
        raise _fail(name, "level", str(exc)) from None
    members = _devices(name, "members", a.get("members"))
    spares = _devices(name, "spares", a.get("spares", []))
    wipe = _devices(name, "wipe", a.get("wipe", []))
    everything = members + spares
    if len(set(everything)) != len(everything):
        raise _fail(name, "members/spares", "a device is named twice")
    if len(members) < MIN_MEMBERS[level]:
        raise _fail(name, "members", f"RAID {level} needs at least {MIN_MEMBERS[level]} members, got {len(members)}")
    if not set(wipe) <= set(everything):
        raise _fail(name, "wipe", f"{sorted(set(wipe) - set(everything))} are not members or spares of this array")
    chunk = _whole(name, "chunk_kb", a.get("chunk_kb"), 4)
    if chunk & (chunk - 1):
        raise _fail(name, "chunk_kb", f"{chunk} is not a power of two (md chunks are 4, 8, ... KiB)")
    filesystem = a.get("filesystem")
    if filesystem not in FILESYSTEMS:
        raise _fail(name, "filesystem", f"{filesystem!r} is not one of {', '.join(FILESYSTEMS)}")
    mount_point = str(a.get("mount_point") or f"{defaults.get('mount_root', '/srv/arrays')}/{name}")
    if not mount_point.startswith("/") or mount_point.rstrip("/") in ("", "/") or ".." in mount_point.split("/"):
        raise _fail(name, "mount_point", f"{mount_point!r} is not an absolute path below /")
    options = a.get("mount_options")
    if not isinstance(options, list) or not all(isinstance(o, str) and _OPTION.fullmatch(o) for o in options):
        raise _fail(name, "mount_options", f"{options!r} must be a list of mount options such as noatime")
    discard = a.get("discard")
    if discard not in DISCARD:
        raise _fail(name, "discard", f"{discard!r} is not one of {', '.join(DISCARD)}")
    if "discard" in options and discard != "online":
        raise _fail(name, "mount_options", "lists discard: set discard: online instead (one owner for TRIM)")
    readahead = _whole(name, "readahead_kb", a.get("readahead_kb"), 0)
    stripe_cache = a.get("stripe_cache_size")
    if stripe_cache is not None:
        if level not in (5, 6):
            raise _fail(name, "stripe_cache_size", f"only RAID 5 and 6 have a stripe cache, this array is RAID {level}")
        stripe_cache = _whole(name, "stripe_cache_size", stripe_cache, 17)  # md's floor
    data = data_disks(level, len(members))
    device = f"/dev/md/{name}"
    create, mkfs = _commands(name, level, members, spares, chunk, filesystem)
    mount = [*options, "nofail"] + (["discard"] if discard == "online" else [])
    return {
        "name": name,
        "level": level,
        "members": members,
        "spares": spares,
        "wipe": wipe,
        "chunk_kb": chunk,
        "filesystem": filesystem,
        "mount_point": mount_point.rstrip("/"),
        "mount_options": ",".join(dict.fromkeys(mount)),
        "discard": discard,
        "readahead_kb": readahead,
        "stripe_cache_size": stripe_cache,
        "device": device,
        "data_disks": data,
        "create_argv": create,
        "mkfs_argv": mkfs,
        "model": str(a["model"]) if a.get("model") is not None else None,
    }


def storage_array_plan(arrays: Any, defaults: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """The arrays, checked and completed (see the module's docstring); an AnsibleFilterError names what is wrong."""
    if not isinstance(arrays, list):
        raise AnsibleFilterError(f"{_PREFIX} must be a list of arrays {{name, level, members, ...}}, got {arrays!r}")
    plan = [_one(raw, defaults or {}) for raw in arrays]
    for field in ("name", "mount_point"):
        values = [a[field] for a in plan]
        twice = sorted({v for v in values if values.count(v) > 1})
        if twice:
            raise AnsibleFilterError(f"{_PREFIX}: {field} {twice} is used by more than one array")
    devices = [d for a in plan for d in a["members"] + a["spares"]]
    twice = sorted({d for d in devices if devices.count(d) > 1})
    if twice:
        raise AnsibleFilterError(f"{_PREFIX}: {twice} belong to more than one array")
    return plan


def split_probes(output: str) -> dict[str, str]:
    """The output of roles/storage_array/files/storage-array-probe, a "== DEVICE" line before each device's part, as
    device -> its part."""
    parts: dict[str, list[str]] = {}
    lines: list[str] = []
    for line in output.splitlines():
        if line.startswith("== "):
            lines = parts.setdefault(line[3:].strip(), [])
        else:
            lines.append(line)
    return {device: "\n".join(lines) for device, lines in parts.items()}


def parse_probe(text: str) -> dict[str, Any]:
    """The probe's part for a member: `missing`, or HOLDERS=n and PARTITIONS=n lines followed by `blkid -p -o export`
    of the device (nothing when blkid found no signature)."""
    if text.strip() == "missing":
        return {"missing": True}
    found = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    counts = {key: int(found.pop(key, "0") or 0) for key in ("HOLDERS", "PARTITIONS")}
    return {"holders": counts["HOLDERS"], "partitions": counts["PARTITIONS"], "blkid": found}


def _assembled(array: Mapping[str, Any], text: str) -> str | None:
    """The device of the array when md has it assembled and running (under any name: /dev/md/HOST:NAME at boot);
    None when it is not assembled; an error when it is there but inactive, or twice."""
    lines = [line.split("=", 1)[1] for line in text.splitlines() if line.startswith(("MD_DEVICE=", "MD_STATE="))]
    found = list(zip(lines[::2], lines[1::2], strict=True))
    if len(found) > 1:
        raise AnsibleFilterError(
            f"{_PREFIX}: array '{array['name']}': md has it assembled twice ({found}): stop the stray one"
            " (mdadm --stop <device>) and run the role again."
        )
    if not found:
        return None
    device, state = found[0]
    if state in ("clear", "inactive"):
        raise AnsibleFilterError(
            f"{_PREFIX}: array '{array['name']}' is assembled at {device} but {state} (a member was missing when it"
            f" was assembled, at boot?). Look at mdadm --detail {device}: `mdadm --run {device}` starts it with the"
            f" members it has (degraded), or `mdadm --stop {device}` and run the role again to assemble it whole."
        )
    return str(device)


def storage_array_actions(plan: list[Mapping[str, Any]], output: str) -> list[dict[str, Any]]:
    """What to do per array: {name, action: exists|assemble|create, device, wipe: [devices to clear first]}, from the
    probe's output for every array (md:NAME) and member (split_probes, parse_probe). device is the array's device:
    where md runs it, else /dev/md/<name>, which assembling or creating it makes."""
    probes = split_probes(output)
    out = []
    for array in plan:
        running = _assembled(array, probes.get(f"md:{array['name']}", ""))
        if running:
            out.append({"name": array["name"], "action": "exists", "device": running, "wipe": []})
            continue
        ours, blank, wipe, refused = [], [], [], []
        for device in array["members"] + array["spares"]:
            probe = parse_probe(probes.get(device, "missing"))
            if probe.get("missing"):
                raise AnsibleFilterError(
                    f"{_PREFIX}: array '{array['name']}': member {device} does not exist on this host. Check the"
                    " device name (ls -l /dev/disk/by-id/) or the disks the node was given."
                )
            found = probe["blkid"]
            if found.get("TYPE") == "linux_raid_member" and found.get("LABEL", "").split(":")[-1] == array["name"]:
                ours.append(device)
            elif not found and not probe["partitions"] and not probe["holders"]:
                blank.append(device)
            elif device in array["wipe"] and not probe["holders"]:
                wipe.append(device)
            else:
                what = ", ".join(f"{k}={found[k]}" for k in ("TYPE", "PTTYPE", "LABEL") if k in found)
                parts = " partitioned" if probe["partitions"] else ""
                in_use = " in use (holders: another array or a mapping)" if probe["holders"] else ""
                refused.append(f"{device} ({what or 'signatures'}{parts}{in_use})")
        if refused:
            raise AnsibleFilterError(
                f"{_PREFIX}: array '{array['name']}': refusing to write on {'; '.join(refused)}: the device holds data"
                " this role did not put there. If it may be destroyed, list it in that array's `wipe` (and stop"
                " whatever uses it); otherwise give the array other members. Nothing was changed."
            )
        if ours and len(ours) == len(array["members"]) + len(array["spares"]):
            out.append({"name": array["name"], "action": "assemble", "device": array["device"], "wipe": []})
        elif ours:
            raise AnsibleFilterError(
                f"{_PREFIX}: array '{array['name']}': {ours} carry this array's superblock but"
                f" {sorted(set(blank + wipe))} do not: a member was replaced or the inventory changed. Assemble the"
                " array by hand (mdadm --assemble --run) and add the new disk (mdadm --add); the role does not"
                " rebuild a partial array on its own."
            )
        else:
            out.append({"name": array["name"], "action": "create", "device": array["device"], "wipe": wipe})
    return out


def storage_array_catalogue(
    plan: list[Mapping[str, Any]],
    catalogue: Any,
    economy: Mapping[str, Any],
    node: str,
    platform: str,
    textfile_dir: str,
) -> dict[str, str]:
    """The catalogue figures of the arrays that name a model (testbed.storage: cost, power, failures over the
    service life) as {path, content}: the textfile node_exporter exports, content "" when no array names a model.
    economy: {life_years, energy_price_per_kwh}."""
    priced = [a for a in plan if a.get("model")]
    path = f"{textfile_dir.rstrip('/')}/{contract.STORAGE_CATALOGUE_FILE}"
    if not priced:
        return {"path": path, "content": ""}
    try:
        models = parse_catalogue(catalogue)
    except ValueError as exc:
        raise AnsibleFilterError(f"roles/storage_array: {exc}") from exc
    for field in ("life_years", "energy_price_per_kwh"):
        value = economy.get(field)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise AnsibleFilterError(f"roles/storage_array: storage_array_{field}: {value!r} is not a positive number")
    arrays = []
    for a in priced:
        if a["model"] not in models:
            raise _fail(a["name"], "model", f"{a['model']!r} is not in storage_array_catalogue ({', '.join(models)}):"
                        " add it there, with its sources, or name one of these")  # fmt: skip
        figures = array_economics(a["level"], len(a["members"]), len(a["spares"]), models[a["model"]],
                                  float(economy["life_years"]), float(economy["energy_price_per_kwh"]))  # fmt: skip
        arrays.append((str(a["name"]), figures))
    return {"path": path, "content": catalogue_exposition(node, platform, arrays)}


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "storage_array_plan": storage_array_plan,
            "storage_array_actions": storage_array_actions,
            "storage_array_catalogue": storage_array_catalogue,
        }

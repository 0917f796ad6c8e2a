"""Filters of playbooks/drill_disk_failure.yml: which member to pull and how (from the inventory), and the drill's
result from what the node recorded (testbed.drill: one owner of the figures).

`drill_disk_failure_plan(arrays, data_disks, array, member, pull, virtual)`: the array of storage_array_arrays named
array, its member to pull (a path of its members; empty: the last), and how: `detach` (the member is one of the
node's virtual_node_data_disks, detached from the running guest on its hypervisor, as a dead disk disappears) or
`fail` (mdadm --fail and --remove, a real site's way); empty pull: detach on a virtual node whose member is a data
disk, else fail. An error names the variable to change.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

from testbed.drill import DrillError, summarize
from testbed.storage import BY_ID, raid_level

PULLS = ("detach", "fail")
REDUNDANT = (1, 5, 6, 10)  # levels that survive the loss of a member


def drill_disk_failure_plan(
    arrays: Any, data_disks: Any, array: str, member: str = "", pull: str = "", virtual: bool = False
) -> dict[str, Any]:
    if not isinstance(arrays, list):
        raise AnsibleFilterError(f"drill_disk_failure: storage_array_arrays is {arrays!r}, not a list of arrays")
    found = next((a for a in arrays if isinstance(a, Mapping) and a.get("name") == array), None)
    if found is None:
        names = ", ".join(str(a.get("name")) for a in arrays if isinstance(a, Mapping))
        raise AnsibleFilterError(f"drill_disk_failure: drill_array={array!r} is not an array of this node ({names})")
    try:
        level = raid_level(found.get("level"))
    except ValueError as exc:
        raise AnsibleFilterError(f"drill_disk_failure: array {array}: level {exc}") from None
    if level not in REDUNDANT:
        raise AnsibleFilterError(
            f"drill_disk_failure: array {array} is RAID {level}, which loses its data with a member: drill an array of"
            f" level {', '.join(map(str, REDUNDANT))}"
        )
    members = [str(m) for m in found.get("members", [])]
    chosen = member or (members[-1] if members else "")
    if chosen not in members:
        raise AnsibleFilterError(
            f"drill_disk_failure: drill_member={member!r} is not a member of array {array} ({', '.join(members)})"
        )
    disks = {str(d.get("name")): d for d in (data_disks or []) if isinstance(d, Mapping)}
    disk = disks.get(chosen.removeprefix(BY_ID)) if chosen.startswith(BY_ID) else None
    how = pull or ("detach" if virtual and disk is not None else "fail")
    if how not in PULLS:
        raise AnsibleFilterError(f"drill_disk_failure: drill_pull={pull!r} is not one of {', '.join(PULLS)}")
    if how == "detach" and disk is None:
        raise AnsibleFilterError(
            f"drill_disk_failure: drill_pull=detach needs a member that is one of the node's virtual_node_data_disks"
            f" ({BY_ID}<name>); {chosen} is not: set drill_pull=fail (mdadm --fail, a real site's way)"
        )
    return {
        "array": array,
        "level": level,
        "members": members,
        "member": chosen,
        "disk": str(disk["name"]) if disk else None,
        "size_mb": int(disk["size_mb"]) if disk else None,
        "profile": {str(k): int(v) for k, v in (disk.get("profile") or {}).items()} if disk else {},
        "rotational": bool(disk.get("rotational", False)) if disk else None,
        "pull": how,
        "model": found.get("model"),
    }


def drill_disk_failure_summary(raw: Mapping[str, Any]) -> dict[str, Any]:
    try:
        return summarize(raw)
    except DrillError as exc:
        raise AnsibleFilterError(f"drill_disk_failure: {exc}") from exc


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "drill_disk_failure_plan": drill_disk_failure_plan,
            "drill_disk_failure_summary": drill_disk_failure_summary,
        }

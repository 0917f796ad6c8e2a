"""Filters for roles/grafana: the generated dashboards a Grafana is provisioned with, each with its folder as
magellan.contract.dashboard_folder names it (the folder `testbed dashboards push` uses too)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleFilterError  # type: ignore[import-untyped]

_ROOT = Path(__file__).resolve().parents[2]  # plugins/filter/<this file>: the repository


def magellan_dashboards(directory: str) -> list[dict[str, str]]:
    """Every dashboard JSON in directory (dashboards/generated), by file name: file, uid, title, folder_uid,
    folder_title and relpath (<folder_uid>/<uid>.json, where a provisioned Grafana keeps it)."""
    if str(_ROOT) not in sys.path:
        sys.path.append(str(_ROOT))  # magellan.contract, when the project is not installed in Ansible's Python
    from magellan import contract  # noqa: PLC0415 - after the path is known

    found = []
    for path in sorted(Path(directory).glob("*.json")):
        try:
            dash = json.loads(path.read_text())
            uid = str(dash["uid"])
            folder_uid, folder_title = contract.dashboard_folder(uid, list(dash.get("tags") or []))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise AnsibleFilterError(f"{path}: not a generated dashboard ({exc}): run make dashboards") from None
        found.append(
            {
                "file": str(path),
                "uid": uid,
                "title": str(dash.get("title", uid)),
                "folder_uid": folder_uid,
                "folder_title": folder_title,
                "relpath": f"{folder_uid}/{uid}.json",
            }
        )
    return found


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"magellan_dashboards": magellan_dashboards}

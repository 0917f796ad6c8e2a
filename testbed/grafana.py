"""`testbed dashboards push`: the generated dashboards into a running Grafana, by uid, one folder per area.

Idempotent: each dashboard is read back by uid and saved only when its model (without the fields Grafana adds) or
its folder differs. The save carries the version it read, so a dashboard someone saved in between is a conflict
(412), not a silent overwrite; --overwrite replaces it. The token comes from GRAFANA_TOKEN or --token-file, never
from the command line. Model (plan, diff) is pure; Grafana is reached through grafana-client.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import stat
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import niquests.exceptions
from grafana_client.api import GrafanaApi
from grafana_client.client import GrafanaException

from dashboards.__main__ import GENERATED
from magellan import contract

GRAFANA_FIELDS = ("id", "version", "iteration")  # what Grafana adds to a saved model
TOKEN_HELP = "give a service-account token (Editor role) in GRAFANA_TOKEN or in a file named by --token-file"


class GrafanaError(RuntimeError):
    """A push that cannot go on; the message says which dashboard, what Grafana said and what to do.
    fatal: nothing else can succeed either (Grafana unreachable, token refused)."""

    def __init__(self, message: str, fatal: bool = False, status: int | None = None) -> None:
        super().__init__(message)
        self.fatal, self.status = fatal, status


@dataclass(frozen=True)
class Folder:
    uid: str
    title: str


@dataclass(frozen=True)
class Plan:
    """What pushing one dashboard does: status new / changed / unchanged, and for a changed one what differs."""

    uid: str
    title: str
    folder: Folder
    status: str
    changes: list[str] = field(default_factory=list)
    version: int | None = None  # the version in Grafana that a save replaces


def folder_for(dash: Mapping[str, Any]) -> Folder:
    """The folder of a dashboard's area (magellan.contract.dashboard_folder, as roles/grafana provisions it)."""
    try:
        return Folder(*contract.dashboard_folder(str(dash.get("uid")), list(dash.get("tags") or [])))
    except contract.ContractError as exc:
        raise GrafanaError(str(exc)) from None


def load_dashboards(directory: Path = GENERATED, uids: list[str] | None = None) -> list[dict[str, Any]]:
    """The generated dashboards (all, or those named by uid, in that order)."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.glob("*.json")):
        try:
            dash = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise GrafanaError(f"{path}: not a dashboard's JSON ({exc}): run make dashboards") from None
        found[str(dash.get("uid") or path.stem)] = dash
    if not found:
        raise GrafanaError(f"no dashboards in {directory}: run make dashboards")
    missing = [u for u in uids or [] if u not in found]
    if missing:
        raise GrafanaError(f"no generated dashboard with uid {', '.join(missing)} (there are: {', '.join(found)})")
    return [found[u] for u in uids] if uids else list(found.values())


def model(dash: Mapping[str, Any]) -> dict[str, Any]:
    """A dashboard's model without the fields Grafana adds when it saves one."""
    return {k: v for k, v in dash.items() if k not in GRAFANA_FIELDS}


def _panel_titles(panels: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i, p in enumerate(panels or []):
        out[str(p.get("title") or f"#{i}")] = p
    return out


def diff_summary(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Short lines naming what differs: dashboard fields, then panels added, removed or changed (by title)."""
    old, new = model(old), model(new)
    lines = [f"{k} changed" for k in sorted(set(old) | set(new)) if k != "panels" and old.get(k) != new.get(k)]
    before, after = _panel_titles(old.get("panels")), _panel_titles(new.get("panels"))
    for what, titles in (
        ("added", [t for t in after if t not in before]),
        ("removed", [t for t in before if t not in after]),
        ("changed", [t for t in after if t in before and before[t] != after[t]]),
    ):
        if titles:
            lines.append(f"panels {what}: {', '.join(repr(t) for t in titles)}")
    if not lines and old != new:
        lines.append("panel order changed")
    return lines


def plan(dash: Mapping[str, Any], existing: Mapping[str, Any] | None, folder: Folder) -> Plan:
    """What pushing `dash` does, given Grafana's answer for its uid (None: no such dashboard)."""
    uid, title = str(dash["uid"]), str(dash.get("title", ""))
    if existing is None:
        return Plan(uid, title, folder, "new")
    current = existing.get("dashboard") or {}
    version = current.get("version")
    changes = diff_summary(current, dash)
    there = (existing.get("meta") or {}).get("folderUid") or ""
    if there != folder.uid:
        changes.append(f"folder {there or '(root)'} -> {folder.uid}")
    status = "changed" if changes else "unchanged"
    return Plan(uid, title, folder, status, changes, version if isinstance(version, int) else None)


def save_body(dash: Mapping[str, Any], p: Plan, overwrite: bool, message: str) -> dict[str, Any]:
    """The POST /api/dashboards/db body: the model with the version it replaces (so that a save someone made in
    between is a 412 conflict), its folder, overwrite, and a message for the version history."""
    body = model(dash)
    if p.version is not None:
        body["version"] = p.version
    return {"dashboard": body, "folderUid": p.folder.uid, "overwrite": overwrite, "message": message}


# ---------------------------------------------------------------------------------------------------------------
# Grafana's HTTP API (grafana-client), its errors explained


def _said(exc: GrafanaException) -> str:
    response = exc.response
    if isinstance(response, Mapping) and response.get("message"):
        return str(response["message"])
    return str(response or exc.message)[:300]


class Grafana:
    """The calls push makes; every failure is a GrafanaError saying what to do."""

    def __init__(self, url: str, token: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.api = GrafanaApi.from_url(self.url, credential=token, timeout=timeout)

    def _call(self, what: str, call: Callable[[], Any], missing_ok: bool = False) -> Any:
        try:
            return call()
        except niquests.exceptions.RequestException as exc:
            reason = re.findall(r"\[Errno -?\d+\] [^'\")]+", str(exc)) or [f"{type(exc).__name__}: {exc}"]
            raise GrafanaError(
                f"cannot reach Grafana at {self.url} ({reason[-1]}) while {what}: check --url or GRAFANA_URL and "
                "that Grafana runs there",
                fatal=True,
            ) from None
        except GrafanaException as exc:
            if missing_ok and exc.status_code == 404:
                return None
            raise self._explain(exc, what) from None

    def _explain(self, exc: GrafanaException, what: str) -> GrafanaError:
        said, code = _said(exc), exc.status_code
        if code == 0:
            return GrafanaError(f"cannot reach Grafana at {self.url} while {what}: {exc.message}", fatal=True)
        if code == 401:
            return GrafanaError(
                f"Grafana at {self.url} refused the token while {what} (401 {said}): {TOKEN_HELP}", fatal=True
            )
        if code == 403:
            return GrafanaError(
                f"the token may not do this while {what} (403 {said}): give its service account the Editor role, "
                "or the permissions Grafana names",
                status=code,
            )
        if code == 412 and isinstance(exc.response, Mapping):
            status = exc.response.get("status")
            if status == "version-mismatch":
                return GrafanaError(
                    f"{what}: someone else saved it in Grafana after this push read it (412 {said}): run the push "
                    "again to see the difference, or give --overwrite to replace their version",
                    status=code,
                )
            return GrafanaError(
                f"{what}: Grafana refused it (412 {status}: {said}); --overwrite replaces it", status=code
            )
        return GrafanaError(f"{what}: Grafana at {self.url} answered {code}: {said}", status=code)

    def check(self) -> str:
        """Grafana's version, from GET /api/health (no token needed): fails clearly when the URL is not a Grafana."""
        try:
            health = self._call("reading /api/health", lambda: self.api.client.GET("/health"))
        except GrafanaError as exc:
            if exc.fatal:
                raise
            raise GrafanaError(f"{self.url} is not a Grafana ({exc}): check --url", fatal=True) from None
        if not isinstance(health, Mapping) or "database" not in health:
            raise GrafanaError(
                f"{self.url} is not a Grafana (GET /api/health answered {str(health)[:120]!r}): check --url", fatal=True
            )
        return str(health.get("version", "?"))

    def folder(self, folder: Folder) -> Any:
        return self._call(f"reading folder {folder.uid}", lambda: self.api.folder.get_folder(folder.uid), True)

    def create_folder(self, folder: Folder) -> None:
        try:
            self._call(
                f"creating folder '{folder.title}' (uid {folder.uid})",
                lambda: self.api.folder.create_folder(folder.title, uid=folder.uid),
            )
        except GrafanaError as exc:
            if exc.status != 409:
                raise
            raise GrafanaError(
                f"{exc}: a folder titled '{folder.title}' exists under another uid; rename or delete it in Grafana "
                f"so that push can create uid {folder.uid}",
                status=409,
            ) from None

    def dashboard(self, uid: str) -> Any:
        return self._call(f"reading dashboard {uid}", lambda: self.api.dashboard.get_dashboard(uid), True)

    def save(self, uid: str, body: dict[str, Any]) -> Any:
        return self._call(f"saving dashboard {uid}", lambda: self.api.dashboard.update_dashboard(body))


# ---------------------------------------------------------------------------------------------------------------
# The command


def push(
    grafana: Grafana,
    dashboards: list[dict[str, Any]],
    dry_run: bool,
    overwrite: bool,
    message: str,
    say: Callable[[str], None],
) -> list[str]:
    """Push each dashboard (dry_run: only say what would change); the errors, one line each."""
    errors: list[str] = []
    folders: set[str] = set()  # uids known to exist (or created)
    would = "would be " if dry_run else ""
    for dash in dashboards:
        try:
            folder = folder_for(dash)
            if folder.uid not in folders:
                if grafana.folder(folder) is None:
                    if not dry_run:
                        grafana.create_folder(folder)
                    say(f"folder {folder.uid} '{folder.title}': new, {would}created")
                folders.add(folder.uid)
            p = plan(dash, grafana.dashboard(str(dash["uid"])), folder)
            if p.status != "unchanged" and not dry_run:
                grafana.save(p.uid, save_body(dash, p, overwrite, message))
            done = {"new": "created", "changed": "updated", "unchanged": "left as it is"}[p.status]
            detail = f" ({'; '.join(p.changes)})" if p.changes else ""
            prefix = would if p.status != "unchanged" else ""
            say(f"{p.uid} '{p.title}' in {folder.uid}: {p.status}, {prefix}{done}{detail}")
        except GrafanaError as exc:
            if exc.fatal:
                raise
            errors.append(f"dashboard {dash.get('uid')}: {exc}")
    return errors


def read_token(token_file: Path | None, environ: Mapping[str, str] = os.environ) -> str:
    """The API token: from --token-file, else GRAFANA_TOKEN."""
    if token_file is not None:
        try:
            mode = token_file.stat().st_mode
            token = token_file.read_text().strip()
        except OSError as exc:
            raise GrafanaError(f"--token-file {token_file}: {exc.strerror}: {TOKEN_HELP}") from None
        if mode & (stat.S_IRGRP | stat.S_IROTH):
            print(f"warning: --token-file {token_file} is readable by other users: chmod 600 it", file=sys.stderr)
        where = f"--token-file {token_file}"
    else:
        token, where = environ.get("GRAFANA_TOKEN", "").strip(), "GRAFANA_TOKEN"
    if not token:
        raise GrafanaError(f"no Grafana token ({where} is empty or unset): {TOKEN_HELP}")
    return token


def check_url(url: str | None) -> str:
    if not url:
        raise GrafanaError("no Grafana URL: give --url or set GRAFANA_URL (e.g. http://grafana.example:3000)")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise GrafanaError(f"--url {url!r}: give Grafana's http(s)://host:port")
    if parts.username or parts.password:
        raise GrafanaError(f"--url: no credentials in the URL (they would be on the command line): {TOKEN_HELP}")
    return url


class _RefuseToken(argparse.Action):
    """--token is refused without echoing its value: a token on the command line is seen by every user (ps) and
    kept in shell histories."""

    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        parser.error(f"a token is never given on the command line: {TOKEN_HELP}")


def add_push_arguments(p: argparse.ArgumentParser) -> None:
    """The options of `push`; `p` must be made with allow_abbrev=False (else --token abbreviates --token-file)."""
    p.add_argument("--token", nargs="?", action=_RefuseToken, help=argparse.SUPPRESS)
    p.add_argument("uids", nargs="*", metavar="UID", help="dashboards to push, by uid (default: all generated)")
    p.add_argument("--url", default=os.environ.get("GRAFANA_URL"), help="Grafana's URL (default: $GRAFANA_URL)")
    p.add_argument(
        "--token-file",
        type=Path,
        help="file holding the API token (default: $GRAFANA_TOKEN); there is no option for the token itself",
    )
    p.add_argument("--dry-run", action="store_true", help="say what would change (new, changed, unchanged); save none")
    p.add_argument(
        "--overwrite", action="store_true", help="replace dashboards someone else saved in Grafana meanwhile"
    )
    p.add_argument("--directory", type=Path, default=GENERATED, help="where the dashboards are (default: %(default)s)")


def run_push(args: argparse.Namespace, say: Callable[[str], None]) -> int:
    """`testbed dashboards push`: 0 when every dashboard is (or would be) current, 1 on an error."""
    grafana = Grafana(check_url(args.url), read_token(args.token_file))
    dashboards = load_dashboards(args.directory, args.uids)
    version = grafana.check()
    say(f"Grafana {version} at {grafana.url}{' (dry run: nothing is saved)' if args.dry_run else ''}")
    errors = push(grafana, dashboards, args.dry_run, args.overwrite, "testbed dashboards push", say)
    for line in errors:
        say(f"error: {line}")
    return 1 if errors else 0

"""`testbed dashboards push` against a local server answering like Grafana's HTTP API (tests/fixtures/grafana)."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from testbed import cli, grafana
from testbed.grafana import Folder, GrafanaError
from tests.conftest import free_port

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "grafana"
TOKEN = "glsa_test_token"
UIDS = [
    "magellan-accounting",
    "magellan-campaign-history",
    "magellan-cluster-health",
    "magellan-platform-comparison",
    "magellan-storage-arrays",
    "magellan-storage-concurrency",
    "magellan-virtual-nodes",
]
FOLDERS = {
    "magellan-accounting",
    "magellan-campaigns",
    "magellan-health",
    "magellan-comparison",
    "magellan-storage",
    "magellan-virtualisation",
}


def recorded(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())  # type: ignore[no-any-return]


@dataclass
class FakeGrafana:
    """Grafana's state and rules, as far as push uses them; every request is kept."""

    folders: dict[str, str] = field(default_factory=dict)  # uid -> title
    dashboards: dict[str, tuple[dict[str, Any], str]] = field(default_factory=dict)  # uid -> (stored model, folder)
    requests: list[tuple[str, str, Any]] = field(default_factory=list)
    forbidden: set[tuple[str, str]] = field(default_factory=set)
    saved_meanwhile: set[str] = field(default_factory=set)  # dashboards someone saves right after push reads them

    def store(self, dash: dict[str, Any], folder: str, version: int = 1) -> None:
        self.dashboards[dash["uid"]] = ({**dash, "id": len(self.dashboards) + 1, "version": version}, folder)

    def answer(self, method: str, path: str, body: Any, auth: str | None) -> tuple[int, Any]:
        if path == "/api/health":
            return 200, recorded("health")
        if auth != f"Bearer {TOKEN}":
            return 401, recorded("unauthorized")
        if (method, path) in self.forbidden:
            return 403, recorded("forbidden")
        if method == "GET" and path.startswith("/api/folders/"):
            uid = path.removeprefix("/api/folders/")
            if uid not in self.folders:
                return 404, recorded("folder-not-found")
            return 200, {**recorded("folder-get"), "uid": uid, "title": self.folders[uid]}
        if method == "POST" and path == "/api/folders":
            if body["title"] in self.folders.values():
                return 409, recorded("folder-exists")
            self.folders[body["uid"]] = body["title"]
            return 200, {**recorded("folder-get"), "uid": body["uid"], "title": body["title"]}
        if method == "GET" and path.startswith("/api/dashboards/uid/"):
            uid = path.removeprefix("/api/dashboards/uid/")
            if uid not in self.dashboards:
                return 404, recorded("dashboard-not-found")
            stored, folder = self.dashboards[uid]
            answer = recorded("dashboard-get")
            answer["dashboard"] = copy.deepcopy(stored)
            answer["meta"].update(folderUid=folder, url=f"/d/{uid}/x", slug="x")
            if uid in self.saved_meanwhile:
                self.store(stored, folder, stored["version"] + 1)
            return 200, answer
        if method == "POST" and path == "/api/dashboards/db":
            dash, folder = body["dashboard"], body["folderUid"]
            if folder not in self.folders:
                return 400, recorded("folder-missing-on-save")
            existing = self.dashboards.get(dash["uid"])
            version = existing[0]["version"] if existing else 0
            if existing and dash.get("version", 0) != version and not body["overwrite"]:
                return 412, recorded("dashboard-version-mismatch")
            self.store(dash, folder, version + 1)
            return 200, {**recorded("dashboard-save"), "uid": dash["uid"], "version": version + 1}
        return 404, {"message": "Not found"}

    def posts(self) -> list[tuple[str, Any]]:
        return [(path, body) for method, path, body in self.requests if method == "POST"]


@pytest.fixture
def fake() -> Iterator[tuple[FakeGrafana, str]]:
    state = FakeGrafana()

    class Handler(BaseHTTPRequestHandler):
        def handle_one(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            state.requests.append((method, self.path, body))
            status, answer = state.answer(method, self.path, body, self.headers.get("Authorization"))
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self.handle_one("GET")

        def do_POST(self) -> None:
            self.handle_one("POST")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def run(
    url: str, *args: str, token: str = TOKEN, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str]:
    monkeypatch.setenv("GRAFANA_TOKEN", token)
    rc = cli.main(["dashboards", "push", "--url", url, *args])
    return rc, " ".join(capsys.readouterr().out.split())  # the console wraps long lines


@pytest.fixture
def push(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Any:  # (url, *args, token=...) -> (rc, output)
    return lambda url, *args, token=TOKEN: run(url, *args, token=token, monkeypatch=monkeypatch, capsys=capsys)


def test_new_dashboards_go_into_their_area_folders(fake: tuple[FakeGrafana, str], push: Any) -> None:
    state, url = fake
    rc, out = push(url)
    assert rc == 0, out
    posts = state.posts()
    folders = [body for path, body in posts if path == "/api/folders"]
    assert {(f["uid"], f["title"]) for f in folders} == {(u, u.replace("magellan-", "Magellan ")) for u in FOLDERS}
    saves = [body for path, body in posts if path == "/api/dashboards/db"]
    assert [s["dashboard"]["uid"] for s in saves] == UIDS
    for s in saves:
        assert s["folderUid"] == grafana.folder_for(s["dashboard"]).uid and s["overwrite"] is False
        assert s["message"] == "testbed dashboards push" and "version" not in s["dashboard"]
        assert "id" not in s["dashboard"]
    assert state.dashboards["magellan-virtual-nodes"][1] == "magellan-virtualisation"
    assert (
        "Grafana 5.1.3 at" in out
        and "magellan-storage-concurrency 'Storage concurrency' in magellan-storage: new, created" in out
    )


def test_a_second_push_saves_nothing(fake: tuple[FakeGrafana, str], push: Any) -> None:
    state, url = fake
    assert push(url)[0] == 0
    state.requests.clear()
    rc, out = push(url)
    assert rc == 0 and state.posts() == []
    assert [m for m, _, _ in state.requests] == ["GET"] * (1 + len(FOLDERS) + len(UIDS))  # health, folders, dashboards
    assert out.count("unchanged, left as it is") == len(UIDS)


def test_a_changed_dashboard_is_saved_with_the_version_it_replaces(fake: tuple[FakeGrafana, str], push: Any) -> None:
    state, url = fake
    push(url)
    stored, folder = state.dashboards["magellan-virtual-nodes"]
    edited = copy.deepcopy(stored)
    edited["panels"][1]["title"] = "vCPU use"  # someone edited it in Grafana: version 2
    edited["refresh"] = "1m"
    state.store(edited, "magellan-comparison", version=2)
    state.requests.clear()
    rc, out = push(url, "magellan-virtual-nodes")
    assert rc == 0
    [(path, body)] = state.posts()
    assert path == "/api/dashboards/db" and body["dashboard"]["version"] == 2 and body["folderUid"] == folder
    assert "magellan-virtual-nodes 'Virtual nodes' in magellan-virtualisation: changed, updated" in out
    assert "refresh changed; panels added: 'vCPU utilisation'; panels removed: 'vCPU use'" in out
    assert "folder magellan-comparison -> magellan-virtualisation" in out
    assert state.dashboards["magellan-virtual-nodes"][0]["version"] == 3


def test_dry_run_posts_nothing(fake: tuple[FakeGrafana, str], push: Any) -> None:
    state, url = fake
    rc, out = push(url, "--dry-run")
    assert rc == 0 and state.posts() == [] and state.folders == {}
    assert "(dry run: nothing is saved)" in out and out.count("new, would be created") == len(FOLDERS) + len(UIDS)
    push(url)
    stored, folder = state.dashboards["magellan-platform-comparison"]
    state.store({**stored, "title": "Platform comparison (edited)"}, folder, version=5)
    state.requests.clear()
    rc, out = push(url, "--dry-run")
    assert rc == 0 and state.posts() == []
    assert (
        "magellan-platform-comparison 'Platform comparison' in magellan-comparison: changed, would be updated " in out
    )
    assert "(title changed)" in out and out.count("unchanged") == len(UIDS) - 1


def test_a_bad_token_stops_with_what_to_do(fake: tuple[FakeGrafana, str], push: Any) -> None:
    state, url = fake
    rc, out = push(url, token="wrong")
    assert rc == 1 and state.posts() == []
    assert f"Grafana at {url} refused the token while reading folder magellan-accounting (401 Invalid API key)" in out
    assert "GRAFANA_TOKEN" in out and "--token-file" in out
    assert len(state.requests) == 2  # health, then the first call: no more after a refused token


def test_a_missing_permission_names_each_dashboard(fake: tuple[FakeGrafana, str], push: Any) -> None:
    state, url = fake
    state.forbidden.add(("POST", "/api/dashboards/db"))
    rc, out = push(url)
    assert rc == 1
    for uid in UIDS:
        assert f"error: dashboard {uid}: the token may not do this while saving dashboard {uid} (403 You'll need" in out
    assert "Permissions needed: dashboards:create): give its service account the Editor role" in out


def test_a_version_conflict_says_so_and_overwrite_replaces(fake: tuple[FakeGrafana, str], push: Any) -> None:
    state, url = fake
    push(url)
    stored, folder = state.dashboards["magellan-storage-concurrency"]
    state.store({**stored, "refresh": "1m"}, folder, version=2)
    state.saved_meanwhile.add("magellan-storage-concurrency")  # saved again between push's read and its save
    rc, out = push(url, "magellan-storage-concurrency")
    assert rc == 1
    assert "someone else saved it in Grafana after this push read it (412 The dashboard has been changed by" in out
    assert "--overwrite to replace their version" in out
    state.requests.clear()
    rc, out = push(url, "magellan-storage-concurrency", "--overwrite")
    assert rc == 0
    [(_, body)] = state.posts()
    assert body["overwrite"] is True and state.dashboards["magellan-storage-concurrency"][0]["refresh"] == "10s"


def test_connection_refused(push: Any) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    rc, out = push(url)
    assert rc == 1
    assert f"cannot reach Grafana at {url} ([Errno 111] Connection refused) while reading /api/health" in out
    assert "check --url or GRAFANA_URL" in out


def test_a_folder_that_cannot_be_created(fake: tuple[FakeGrafana, str], push: Any) -> None:
    state, url = fake
    state.folders["someone-elses"] = "Magellan storage"  # the title, under another uid
    rc, out = push(url)
    assert rc == 1
    assert (
        "error: dashboard magellan-storage-concurrency: creating folder 'Magellan storage' (uid magellan-storage): "
        f"Grafana at {url} answered 409: a folder or dashboard in the general folder with the same name already "
        "exists: a folder titled 'Magellan storage' exists under another uid; rename or delete it in Grafana"
    ) in out
    storage = {"magellan-storage-arrays", "magellan-storage-concurrency"}  # both in that folder
    assert set(state.dashboards) == set(UIDS) - storage  # the others went in


def test_a_url_that_is_not_grafana(fake: tuple[FakeGrafana, str], push: Any) -> None:
    _, url = fake
    rc, out = push(url + "/prometheus")
    assert rc == 1 and f"{url}/prometheus is not a Grafana (reading /api/health: " in out and "check --url" in out


# -- the pure parts ---------------------------------------------------------------------------------------------


def test_model_and_diff_ignore_what_grafana_adds() -> None:
    dash = {"uid": "u", "title": "T", "panels": [{"title": "a", "x": 1}, {"title": "b"}]}
    saved = {**dash, "id": 7, "version": 3, "iteration": 123}
    assert grafana.model(saved) == dash and grafana.diff_summary(saved, dash) == []
    swapped = {**dash, "panels": dash["panels"][::-1]}
    assert grafana.diff_summary(saved, swapped) == ["panel order changed"]
    changed = {**dash, "panels": [{"title": "a", "x": 2}, {"title": "c"}]}
    assert grafana.diff_summary(saved, changed) == ["panels added: 'c'", "panels removed: 'b'", "panels changed: 'a'"]
    existing = {"dashboard": saved, "meta": {"folderUid": "f"}}
    p = grafana.plan(dash, existing, Folder("f", "F"))
    assert (p.status, p.version) == ("unchanged", 3)
    body = grafana.save_body(changed, grafana.plan(changed, existing, Folder("g", "G")), True, "m")
    assert body == {"dashboard": {**changed, "version": 3}, "folderUid": "g", "overwrite": True, "message": "m"}


def test_folder_for_needs_one_area() -> None:
    assert grafana.folder_for({"tags": ["magellan", "generated", "storage"]}) == Folder(
        "magellan-storage", "Magellan storage"
    )
    with pytest.raises(GrafanaError, match="exactly one tag besides magellan and generated"):
        grafana.folder_for({"uid": "x", "tags": ["magellan", "a", "b"]})


def test_load_dashboards_by_uid(tmp_path: Path) -> None:
    assert [d["uid"] for d in grafana.load_dashboards()] == UIDS
    assert [d["uid"] for d in grafana.load_dashboards(uids=UIDS[::-1])] == UIDS[::-1]
    with pytest.raises(GrafanaError, match="no generated dashboard with uid nope \\(there are: magellan-accounting,"):
        grafana.load_dashboards(uids=["nope"])
    with pytest.raises(GrafanaError, match=r"no dashboards in .*: run make dashboards"):
        grafana.load_dashboards(tmp_path)


def test_token_from_the_environment_or_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert grafana.read_token(None, {"GRAFANA_TOKEN": " t1\n"}) == "t1"
    with pytest.raises(GrafanaError, match="GRAFANA_TOKEN is empty or unset"):
        grafana.read_token(None, {})
    path = tmp_path / "token"
    path.write_text("t2\n")
    path.chmod(0o600)
    assert grafana.read_token(path, {"GRAFANA_TOKEN": "t1"}) == "t2" and capsys.readouterr().err == ""
    path.chmod(0o644)
    assert grafana.read_token(path, {}) == "t2" and "readable by other users: chmod 600" in capsys.readouterr().err
    with pytest.raises(GrafanaError, match=r"--token-file .*/nope: No such file"):
        grafana.read_token(tmp_path / "nope", {})


@pytest.mark.parametrize(
    ("url", "error"),
    [
        (None, "give --url or set GRAFANA_URL"),
        ("grafana:3000", "give Grafana's http"),
        ("http://admin:admin@grafana:3000", "no credentials in the URL"),
    ],
)
def test_bad_urls(url: str | None, error: str) -> None:
    with pytest.raises(GrafanaError, match=error):
        grafana.check_url(url)


@pytest.mark.parametrize("args", [["--token", "s3cret"], ["--token=s3cret"]])
def test_a_token_on_the_command_line_is_refused_unechoed(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["dashboards", "push", "--url", "http://127.0.0.1:1", *args])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "never given on the command line" in err and "s3cret" not in err

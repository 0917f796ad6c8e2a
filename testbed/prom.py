"""A small Prometheus HTTP API client (instant and range queries, targets), on urllib: over HTTPS verified against a
site's CA, with basic auth, for a Prometheus that serves the site's web security (roles/web_config)."""

from __future__ import annotations

import base64
import json
import os
import ssl
import stat
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class PromError(RuntimeError):
    """Prometheus could not be reached or refused the request; the message says which and why."""


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float
    timestamp: float


@dataclass(frozen=True)
class Target:
    job: str
    instance: str
    labels: dict[str, str]
    health: str
    last_error: str


def read_auth_file(path: str) -> str:
    """The `user:password` in path, for basic auth. The file must be the caller's alone (no access for group or
    others, as ssh asks of a key): a password others can read is no secret."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        raise PromError(f"the Prometheus auth file {path} cannot be read: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise PromError(f"the Prometheus auth file {path} is not a regular file")
        if info.st_mode & 0o077:
            raise PromError(
                f"the Prometheus auth file {path} is readable by others (mode {stat.S_IMODE(info.st_mode):04o}): "
                f"chmod 600 {path}"
            )
        text = f.read(4096).decode("utf-8", errors="replace").strip()
    user, sep, password = text.partition(":")
    if not sep or not user or not password or "\n" in text:
        raise PromError(f"the Prometheus auth file {path} must hold one line USER:PASSWORD")
    return text


class PromClient:
    """Prometheus at base_url. ca_file: the CA that signed its certificate (https); auth_file: a file of the
    caller's alone holding USER:PASSWORD for its basic auth."""

    def __init__(
        self, base_url: str, timeout: float = 10.0, ca_file: str | None = None, auth_file: str | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._headers = {}
        if auth_file:
            token = base64.b64encode(read_auth_file(auth_file).encode()).decode()
            self._headers["Authorization"] = f"Basic {token}"
        try:
            self._context = ssl.create_default_context(cafile=ca_file) if ca_file else None
        except (OSError, ssl.SSLError) as exc:
            raise PromError(f"the Prometheus CA file {ca_file} is not a readable PEM certificate: {exc}") from None

    def _get(self, path: str, params: dict[str, str] | None = None) -> Any:
        url = f"{self.base_url}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        request = urllib.request.Request(url, headers=self._headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self._context) as resp:
                body = json.loads(resp.read().decode())
        except urllib.error.HTTPError as exc:
            if exc.code == 401:
                why = (
                    "wrong USER:PASSWORD in --prometheus-auth-file" if self._headers else "give --prometheus-auth-file"
                )
                raise PromError(f"Prometheus at {self.base_url} asks for basic auth (HTTP 401): {why}") from None
            try:
                body = json.loads(exc.read().decode())
            except ValueError:
                raise PromError(f"{url}: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if isinstance(reason, ssl.SSLError):
                raise PromError(
                    f"Prometheus at {self.base_url}: its certificate is not trusted ({reason}); give the site's CA with"
                    " --prometheus-ca"
                ) from None
            raise PromError(f"Prometheus at {self.base_url} is not reachable: {reason}") from None
        except ValueError as exc:
            raise PromError(f"{url}: the answer is not JSON: {exc}") from None
        if body.get("status") != "success":
            raise PromError(f"Prometheus refused {params or path}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    @staticmethod
    def _samples(data: dict[str, Any]) -> list[Sample]:
        kind, result = data["resultType"], data["result"]
        if kind == "scalar":
            return [Sample({}, float(result[1]), float(result[0]))]
        if kind == "vector":
            return [Sample(r["metric"], float(r["value"][1]), float(r["value"][0])) for r in result]
        if kind == "matrix":
            return [Sample(r["metric"], float(v[1]), float(v[0])) for r in result for v in r["values"]]
        raise PromError(f"unexpected result type {kind}")

    def query(self, expr: str, at: float | None = None) -> list[Sample]:
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        return self._samples(self._get("/api/v1/query", params))

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[Sample]:
        params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step}"}
        return self._samples(self._get("/api/v1/query_range", params))

    def config(self) -> str:
        """The YAML of the configuration Prometheus has loaded."""
        return str(self._get("/api/v1/status/config")["yaml"])

    def targets(self) -> list[Target]:
        data = self._get("/api/v1/targets", {"state": "active"})
        return [
            Target(
                t["labels"].get("job", ""),
                t["labels"].get("instance", ""),
                t["labels"],
                t["health"],
                t["lastError"],
            )
            for t in data["activeTargets"]
        ]

    def wait_until(self, predicate: Callable[[], bool], timeout: float, interval: float = 2.0) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if predicate():
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(interval)

"""A small Prometheus HTTP API client (instant and range queries, targets), on urllib."""

from __future__ import annotations

import json
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


class PromClient:
    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    def _get(self, path: str, params: dict[str, str] | None = None) -> Any:
        url = f"{self.base_url}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as resp:
                body = json.loads(resp.read().decode())
        except urllib.error.HTTPError as exc:
            try:
                body = json.loads(exc.read().decode())
            except ValueError:
                raise PromError(f"{url}: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
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

"""Shared fixtures: a real Prometheus on loopback (Debian's package), scraping what a test asks for."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from testbed.prom import PromClient, PromError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def live_prometheus(tmp_path: Path) -> Iterator[Callable[[list[str]], PromClient]]:
    """Factory: start /usr/bin/prometheus scraping the given host:port targets every second."""
    binary = shutil.which("prometheus")
    assert binary, "prometheus not found: install the Debian package prometheus (make bootstrap does)"
    procs: list[subprocess.Popen[bytes]] = []

    def start(targets: list[str]) -> PromClient:
        port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s}\nscrape_configs:\n"
            f"  - job_name: self\n    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n"
            f"  - job_name: magellan_job\n    honor_labels: true\n    static_configs: [{{targets: {targets!r}}}]\n"
        )
        log = (tmp_path / "prometheus.log").open("wb")
        procs.append(
            subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                stdout=log,
                stderr=log,
            )
        )
        client = PromClient(f"http://127.0.0.1:{port}", timeout=5)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.query("1")
                return client
            except PromError:
                assert procs[-1].poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
                assert time.monotonic() < deadline, "prometheus did not become ready in 30 s"
                time.sleep(0.3)

    yield start
    for p in procs:
        p.terminate()
        p.wait(timeout=20)

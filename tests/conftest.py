"""Shared fixtures: a real Prometheus on loopback (Debian's package), scraping what a test asks for, with or without
the site's web security; a CA and certificates made by openssl."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from testbed.prom import PromClient, PromError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LivePrometheus:
    """Starts /usr/bin/prometheus scraping the given host:port targets every second (call it with the targets), and
    restarts it on the same port and TSDB, as a site's Prometheus restarts (restart)."""

    def __init__(self, tmp_path: Path) -> None:
        binary = shutil.which("prometheus")
        assert binary, "prometheus not found: install the Debian package prometheus (make bootstrap does)"
        self.binary, self.dir = binary, tmp_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.web_config: Path | None = None
        self.client: tuple[str | None, str | None] = (None, None)

    def __call__(
        self,
        targets: list[str],
        web_config: Path | None = None,
        ca_file: str | None = None,
        auth_file: str | None = None,
    ) -> PromClient:
        """Start it; with web_config (Prometheus' --web.config.file) it serves TLS and basic auth, and the client
        returned trusts ca_file and logs in with auth_file's USER:PASSWORD."""
        self.port = free_port()
        self.web_config, self.client = web_config, (ca_file, auth_file)
        (self.dir / "prometheus.yml").write_text(
            "global: {scrape_interval: 1s}\nscrape_configs:\n"
            f"  - job_name: self\n    static_configs: [{{targets: ['127.0.0.1:{self.port}']}}]\n"
            f"  - job_name: magellan_job\n    honor_labels: true\n    static_configs: [{{targets: {targets!r}}}]\n"
        )
        return self._start()

    def _start(self) -> PromClient:
        log = (self.dir / "prometheus.log").open("ab")
        self.proc = subprocess.Popen(
            [
                self.binary,
                f"--config.file={self.dir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.dir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                *([f"--web.config.file={self.web_config}"] if self.web_config else []),
            ],
            stdout=log,
            stderr=log,
        )
        scheme = "https" if self.web_config else "http"
        ca_file, auth_file = self.client
        client = PromClient(f"{scheme}://127.0.0.1:{self.port}", timeout=5, ca_file=ca_file, auth_file=auth_file)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.query("1")
                return client
            except PromError:
                assert self.proc.poll() is None, (self.dir / "prometheus.log").read_text()[-2000:]
                assert time.monotonic() < deadline, "prometheus did not become ready in 30 s"
                time.sleep(0.3)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
            self.proc = None

    def restart(self, down: float = 0.0) -> None:
        """Stop Prometheus (its TSDB stays on disk), stay down for `down` seconds, start it again."""
        self.stop()
        time.sleep(down)
        self._start()


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA."""
    d = tmp_path_factory.mktemp("pki")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=magellan test CA",
            "-keyout", str(d / "ca.key"), "-out", str(d / "ca.crt"))  # fmt: skip
    for name, ext in (("server", "subjectAltName=IP:127.0.0.1"), ("client", "extendedKeyUsage=clientAuth")):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", str(d / f"{name}.key"),
                "-out", str(d / f"{name}.csr"))  # fmt: skip
        (d / f"{name}.ext").write_text(ext + "\n")
        openssl("x509", "-req", "-in", str(d / f"{name}.csr"), "-CA", str(d / "ca.crt"), "-CAkey", str(d / "ca.key"),
                "-CAcreateserial", "-days", "2", "-extfile", str(d / f"{name}.ext"),
                "-out", str(d / f"{name}.crt"))  # fmt: skip
    return d


@pytest.fixture
def live_prometheus(tmp_path: Path) -> Iterator[LivePrometheus]:
    """A real Prometheus on loopback (LivePrometheus), stopped after the test."""
    prom = LivePrometheus(tmp_path)
    yield prom
    prom.stop()

"""The controller's Prometheus client against a real Prometheus serving the site's web security (--web.config.file:
TLS and basic auth), and the errors a user gets for each thing that is missing or wrong."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import bcrypt
import pytest

from testbed import cli
from testbed.prom import PromClient, PromError
from tests.conftest import LivePrometheus

PASSWORD = "s3cret-query"


def auth_file(tmp_path: Path, text: str, mode: int = 0o600) -> str:
    path = tmp_path / f"auth-{mode:o}"
    path.write_text(text)
    path.chmod(mode)
    return str(path)


@pytest.fixture
def secured(tmp_path: Path, pki: Path, live_prometheus: LivePrometheus) -> Callable[..., PromClient]:
    """Prometheus over HTTPS with basic auth; the fixture gives PromClients for its URL with the options asked."""
    web = tmp_path / "web.yml"
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    web.write_text(
        f"tls_server_config:\n  cert_file: {pki / 'server.crt'}\n  key_file: {pki / 'server.key'}\n"
        f"basic_auth_users:\n  prometheus: '{hashed}'\n"
    )
    good = live_prometheus(
        [], web, ca_file=str(pki / "ca.crt"), auth_file=auth_file(tmp_path, f"prometheus:{PASSWORD}")
    )

    def client(**options: str) -> PromClient:
        return PromClient(good.base_url, timeout=5, **options)

    return client


def test_the_client_queries_over_tls_with_basic_auth(
    secured: Callable[..., PromClient], pki: Path, tmp_path: Path
) -> None:
    prom = secured(ca_file=str(pki / "ca.crt"), auth_file=auth_file(tmp_path, f"prometheus:{PASSWORD}\n"))
    assert prom.base_url.startswith("https://")
    assert [s.value for s in prom.query("1+1")] == [2.0]


def test_each_missing_or_wrong_part_is_named(secured: Callable[..., PromClient], pki: Path, tmp_path: Path) -> None:
    ca = str(pki / "ca.crt")
    with pytest.raises(PromError, match=r"asks for basic auth .*give --prometheus-auth-file"):
        secured(ca_file=ca).query("1")
    with pytest.raises(PromError, match="wrong USER:PASSWORD"):
        secured(ca_file=ca, auth_file=auth_file(tmp_path, "prometheus:guess")).query("1")
    with pytest.raises(PromError, match=r"certificate is not trusted .*--prometheus-ca"):
        secured(auth_file=auth_file(tmp_path, f"prometheus:{PASSWORD}")).query("1")


@pytest.mark.parametrize(
    ("text", "mode", "message"),
    [
        (f"prometheus:{PASSWORD}", 0o644, r"readable by others \(mode 0644\): chmod 600"),
        ("just-a-password", 0o600, "must hold one line USER:PASSWORD"),
        ("a:b\nc:d", 0o600, "must hold one line USER:PASSWORD"),
    ],
)
def test_an_unsafe_or_malformed_auth_file_is_refused(tmp_path: Path, text: str, mode: int, message: str) -> None:
    with pytest.raises(PromError, match=message):
        PromClient("https://127.0.0.1:1", auth_file=auth_file(tmp_path, text, mode))


def test_a_missing_auth_file_or_ca_is_named(tmp_path: Path) -> None:
    with pytest.raises(PromError, match=r"auth file .*nothing cannot be read"):
        PromClient("https://127.0.0.1:1", auth_file=str(tmp_path / "nothing"))
    (tmp_path / "ca.crt").write_text("not a certificate")
    with pytest.raises(PromError, match=r"CA file .* is not a readable PEM certificate"):
        PromClient("https://127.0.0.1:1", ca_file=str(tmp_path / "ca.crt"))


def test_the_cli_takes_them_from_options_or_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret = auth_file(tmp_path, "u:p")
    monkeypatch.setenv("MAGELLAN_PROMETHEUS_AUTH_FILE", secret)
    monkeypatch.setenv("MAGELLAN_PROMETHEUS_CA", os.devnull)
    args = cli._parser().parse_args(["dashboards", "render", "--prometheus-url", "https://prom:9090"])
    assert (args.prometheus_auth_file, args.prometheus_ca) == (secret, os.devnull)
    args = cli._parser().parse_args(["dashboards", "render", "--prometheus-ca", "/site/ca.crt"])
    assert args.prometheus_ca == "/site/ca.crt"

"""--web.config.file: the exporters' TLS and basic authentication in Prometheus' web-config format, parsed and
served for real (a job exporter process, certificates made by openssl, bcrypt hashes)."""

from __future__ import annotations

import base64
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import pytest

from exporters.webconfig import WebConfigError, parse_web_config
from tests.conftest import free_port

HASH = bcrypt.hashpw(b"s3cret-scrape", bcrypt.gensalt(rounds=4)).decode()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tls_config: {}", "unknown key(s) tls_config"),
        ("tls_server_config: {cert_file: a.crt}", "give both cert_file and key_file"),
        ("tls_server_config: {cert_file: a, key_file: b, cipher_suites: [x]}", "cipher_suites not supported"),
        ("tls_server_config: {cert_file: a, key_file: b, client_auth_type: RequireAnyClientCert}", "not supported"),
        ("tls_server_config: {cert_file: a, key_file: b, client_auth_type: RequireAndVerifyClientCert}",
         "needs client_ca_file"),
        ("tls_server_config: {cert_file: a, key_file: b, min_version: TLS9}", "min_version TLS9: one of TLS10"),
        ("basic_auth_users: {prometheus: hunter2}", "prometheus: not a bcrypt hash"),
        ("http_server_config: {http2: true}", "only headers is supported"),
        ("basic_auth_users: [a, b]", "basic_auth_users: expected a mapping"),
        ("tls_server_config: {cert_file: [", "not valid YAML"),
    ],
)  # fmt: skip
def test_a_bad_web_config_names_its_key(text: str, message: str) -> None:
    with pytest.raises(WebConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_web_config(text)


def test_basic_auth_checks_bcrypt_and_remembers_a_good_password() -> None:
    config = parse_web_config(f"basic_auth_users: {{prometheus: '{HASH}'}}")

    def header(user: str, password: str) -> str:
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    assert config.authorized(header("prometheus", "s3cret-scrape"))
    assert config.authorized(header("prometheus", "s3cret-scrape"))  # from the cache
    for bad in (header("prometheus", "wrong"), header("nobody", "s3cret-scrape"), "Bearer x", "Basic !!!", None):
        assert not config.authorized(bad), bad
    assert parse_web_config("").authorized(None)  # no users: open, as without a file


def exporter(tmp_path: Path, config: str) -> tuple[subprocess.Popen[str], int]:
    (tmp_path / "web.yml").write_text(config)
    (tmp_path / "jobs").mkdir(exist_ok=True)
    port = free_port()
    argv = [sys.executable, "-m", "exporters.job", f"--web.listen-address=127.0.0.1:{port}",
            f"--path.jobs={tmp_path / 'jobs'}", "--node.name=n1",
            f"--web.config.file={tmp_path / 'web.yml'}"]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 20
    while proc.poll() is None:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, port
        assert time.monotonic() < deadline, "the exporter did not listen within 20 s"
        time.sleep(0.1)
    return proc, port


@pytest.fixture
def secured(tmp_path: Path, pki: Path) -> Iterator[int]:
    """A job exporter serving HTTPS with a client certificate required and basic auth."""
    config = (
        f"tls_server_config:\n  cert_file: {pki / 'server.crt'}\n  key_file: {pki / 'server.key'}\n"
        f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {pki / 'ca.crt'}\n"
        f"basic_auth_users:\n  prometheus: '{HASH}'\n"
        "http_server_config:\n  headers:\n    Strict-Transport-Security: max-age=31536000\n"
    )
    proc, port = exporter(tmp_path, config)
    assert proc.poll() is None, proc.communicate()[0]
    yield port
    proc.terminate()
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0 and "listening on https://127.0.0.1" in out, out


def get(port: int, pki: Path, auth: str | None, cert: bool = True) -> tuple[int, dict[str, str], str]:
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    if cert:
        ctx.load_cert_chain(str(pki / "client.crt"), str(pki / "client.key"))
    request = urllib.request.Request(f"https://127.0.0.1:{port}/metrics")
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, context=ctx, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()


def test_tls_client_certificates_and_basic_auth_for_real(secured: int, pki: Path) -> None:
    status, headers, body = get(secured, pki, "prometheus:s3cret-scrape")
    assert status == 200 and "magellan_job_up" in body
    assert headers["Strict-Transport-Security"] == "max-age=31536000"
    status, headers, _ = get(secured, pki, "prometheus:wrong")
    assert status == 401 and headers["WWW-Authenticate"].startswith("Basic")
    assert get(secured, pki, None)[0] == 401
    with pytest.raises((ssl.SSLError, ConnectionError, urllib.error.URLError)):
        get(secured, pki, "prometheus:s3cret-scrape", cert=False)  # no client certificate: no handshake
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        urllib.request.urlopen(f"http://127.0.0.1:{secured}/metrics", timeout=10).read()  # plain HTTP


def test_a_silent_client_does_not_hold_up_the_scrapes(secured: int, pki: Path) -> None:
    with socket.create_connection(("127.0.0.1", secured)):  # connects, never says hello
        started = time.monotonic()
        assert get(secured, pki, "prometheus:s3cret-scrape")[0] == 200
        assert time.monotonic() - started < 5


def test_a_changed_web_config_applies_without_a_restart(secured: int, pki: Path, tmp_path: Path) -> None:
    web = tmp_path / "web.yml"
    new = bcrypt.hashpw(b"rotated-pw", bcrypt.gensalt(rounds=4)).decode()
    web.write_text(web.read_text().replace(HASH, new))
    assert get(secured, pki, "prometheus:rotated-pw")[0] == 200
    assert get(secured, pki, "prometheus:s3cret-scrape")[0] == 401
    good = web.read_text()
    web.write_text(good + "nonsense: [\n")  # an edit that cannot be used: logged, the settings of before stay
    assert get(secured, pki, "prometheus:rotated-pw")[0] == 200


def test_an_unusable_web_config_stops_the_exporter_saying_why(tmp_path: Path, pki: Path) -> None:
    proc, _ = exporter(tmp_path, f"tls_server_config: {{cert_file: {pki / 'ca.crt'}, key_file: {pki / 'server.key'}}}")
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 1 and "Traceback" not in out
    assert f"--web.config.file {tmp_path / 'web.yml'}: tls_server_config: cannot use cert_file" in out
    proc, _ = exporter(tmp_path, "basic_auth_users: {prometheus: plain}")
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 1 and "prometheus: not a bcrypt hash" in out

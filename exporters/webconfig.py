"""--web.config.file: TLS and basic authentication in the format of Prometheus' exporter-toolkit web-config file
(the one node_exporter and Prometheus read), so that a site gives every exporter of its hosts the same file.

    tls_server_config:
      cert_file: /etc/magellan/tls/exporter.crt
      key_file: /etc/magellan/tls/exporter.key
      client_auth_type: RequireAndVerifyClientCert   # NoClientCert (default), VerifyClientCertIfGiven
      client_ca_file: /etc/magellan/tls/ca.crt
      min_version: TLS12                             # TLS10 .. TLS13 (default TLS12)
    basic_auth_users:
      prometheus: $2y$10$...                         # bcrypt hashes (htpasswd -nBC 10 "" | tr -d ':')
    http_server_config:
      headers: {Strict-Transport-Security: max-age=31536000}

What this server cannot do the way exporter-toolkit does (cipher_suites, curve_preferences, max_version,
RequestClientCert, RequireAnyClientCert, http2) is refused with a message naming the key, not ignored: a
setting that would silently not apply is worse than one that stops the exporter. Parsing is pure (parse_web_config
on the YAML text; the files it names are read when the TLS context is made); bcrypt and PyYAML are imported only
when a file is given (Debian's python3-bcrypt and python3-yaml on the nodes).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

TLS_KEYS = {"cert_file", "key_file", "client_auth_type", "client_ca_file", "min_version"}
UNSUPPORTED_TLS = {"cipher_suites", "curve_preferences", "max_version", "prefer_server_cipher_suites", "cert", "key"}
CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
REALM = 'Basic realm="magellan exporter"'


class WebConfigError(ValueError):
    """A web-config file that cannot be used; the message names the file's key and what to change."""


@dataclass(frozen=True)
class TLS:
    cert_file: str
    key_file: str
    client_auth: ssl.VerifyMode = ssl.CERT_NONE
    client_ca_file: str | None = None
    min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2

    def context(self) -> ssl.SSLContext:
        """The server's TLS context; WebConfigError naming the file that cannot be read or used."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = self.min_version
        try:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise WebConfigError(
                f"tls_server_config: cannot use cert_file {self.cert_file} with key_file {self.key_file}: {exc}"
            ) from None
        ctx.verify_mode = self.client_auth
        if self.client_ca_file:
            try:
                ctx.load_verify_locations(cafile=self.client_ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise WebConfigError(
                    f"tls_server_config: cannot read client_ca_file {self.client_ca_file}: {exc}"
                ) from None
        return ctx


@dataclass
class WebConfig:
    tls: TLS | None = None
    users: dict[str, bytes] = field(default_factory=dict)  # user -> bcrypt hash
    headers: dict[str, str] = field(default_factory=dict)
    _verified: set[tuple[str, bytes]] = field(default_factory=set, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def authorized(self, header: str | None) -> bool:
        """Whether an Authorization header lets the request in (always, when no users are configured). A good
        password is checked by bcrypt once and then remembered by its SHA-256 (bcrypt takes ~50 ms per check)."""
        if not self.users:
            return True
        scheme, _, value = (header or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, sep, password = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        if not sep:
            return False
        key = (user, hashlib.sha256(password.encode()).digest())
        with self._lock:
            if key in self._verified:
                return True
        import bcrypt  # noqa: PLC0415 - only with basic_auth_users (checked at load)

        hashed = self.users.get(user)
        # An unknown user costs a bcrypt check too, so that timing does not tell which users exist.
        ok = bcrypt.checkpw(password.encode(), hashed or _DUMMY) and hashed is not None
        if ok:
            with self._lock:
                self._verified.add(key)
        return ok


_DUMMY = b"$2b$10$" + b"." * 53  # a well-formed bcrypt hash that matches no password


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise WebConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
    return value


def parse_web_config(text: str) -> WebConfig:
    """The web-config YAML text as a WebConfig; WebConfigError naming the key that is wrong and what to change."""
    import yaml  # noqa: PLC0415 - only with --web.config.file

    try:
        data = _mapping(yaml.safe_load(text), "the file")
    except yaml.YAMLError as exc:
        raise WebConfigError(f"not valid YAML: {exc}") from None
    unknown = set(data) - {"tls_server_config", "basic_auth_users", "http_server_config"}
    if unknown:
        raise WebConfigError(
            f"unknown key(s) {', '.join(sorted(unknown))}: the file has tls_server_config, basic_auth_users and "
            "http_server_config"
        )
    config = WebConfig(tls=_tls(_mapping(data.get("tls_server_config"), "tls_server_config")))
    for user, hashed in _mapping(data.get("basic_auth_users"), "basic_auth_users").items():
        if not isinstance(hashed, str) or not hashed.startswith(("$2a$", "$2b$", "$2y$")) or len(hashed) != 60:
            raise WebConfigError(
                f"basic_auth_users: {user}: not a bcrypt hash ($2y$10$ and 53 more characters); make one with "
                "htpasswd -nBC 10 \"\" | tr -d ':' (apache2-utils) or python3 -c 'import bcrypt; "
                "print(bcrypt.hashpw(input().encode(), bcrypt.gensalt()).decode())'"
            )
        config.users[str(user)] = hashed.encode()
    if config.users:
        try:
            import bcrypt  # noqa: F401, PLC0415
        except ImportError:
            raise WebConfigError("basic_auth_users needs the bcrypt module: install python3-bcrypt") from None
    http = _mapping(data.get("http_server_config"), "http_server_config")
    if set(http) - {"headers", "http2"} or http.get("http2"):
        raise WebConfigError("http_server_config: only headers is supported here (http2 is not)")
    for name, value in _mapping(http.get("headers"), "http_server_config.headers").items():
        config.headers[str(name)] = str(value)
    return config


def _tls(tls: Mapping[str, Any]) -> TLS | None:
    if not tls:
        return None
    if bad := set(tls) & UNSUPPORTED_TLS:
        raise WebConfigError(f"tls_server_config: {', '.join(sorted(bad))} not supported by this exporter: remove it")
    if unknown := set(tls) - TLS_KEYS:
        raise WebConfigError(f"tls_server_config: unknown key(s) {', '.join(sorted(unknown))}")
    if not tls.get("cert_file") or not tls.get("key_file"):
        raise WebConfigError("tls_server_config: give both cert_file and key_file")
    auth = str(tls.get("client_auth_type") or "NoClientCert")
    if auth not in CLIENT_AUTH:
        raise WebConfigError(
            f"tls_server_config: client_auth_type {auth} not supported here: one of {', '.join(CLIENT_AUTH)}"
        )
    if CLIENT_AUTH[auth] != ssl.CERT_NONE and not tls.get("client_ca_file"):
        raise WebConfigError(f"tls_server_config: client_auth_type {auth} needs client_ca_file")
    version = str(tls.get("min_version") or "TLS12")
    if version not in VERSIONS:
        raise WebConfigError(f"tls_server_config: min_version {version}: one of {', '.join(VERSIONS)}")
    ca = tls.get("client_ca_file")
    return TLS(
        str(tls["cert_file"]), str(tls["key_file"]), CLIENT_AUTH[auth], str(ca) if ca else None, VERSIONS[version]
    )

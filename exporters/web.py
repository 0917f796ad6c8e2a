"""What every exporter's main() shares: Go-style flags and their value types, logging, serving until SIGTERM."""

from __future__ import annotations

import argparse
import gzip
import logging
import math
import signal
import socket
import socketserver
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from operator import itemgetter
from pathlib import Path
from typing import Any, cast
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client import CollectorRegistry
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from exporters.webconfig import REALM, WebConfig, WebConfigError, parse_web_config

CLIENT_TIMEOUT = 30.0  # seconds a connection may take for its TLS handshake and request before it is dropped

LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}
LOG_LEVELS["warning"] = logging.WARNING


def listen_address(value: str) -> tuple[str, int]:
    """'[HOST]:PORT' (node_exporter style; an empty host means every IPv4 address) -> (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{value!r}: expected [HOST]:PORT with a port 1-65535, e.g. :9810")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    return host or "0.0.0.0", int(port)


def log_level(value: str) -> int:
    try:
        return LOG_LEVELS[value.lower()]
    except KeyError:
        raise argparse.ArgumentTypeError(f"{value!r}: one of debug, info, warn, error") from None


def label_value(value: str) -> str:
    """A label's value given on the command line (--node.name): not empty, not only blanks."""
    if not value.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return value


def seconds(maximum: float) -> Callable[[str], float]:
    """The value type of a duration flag: a number of seconds above 0 and at most `maximum`."""

    def parse(value: str) -> float:
        try:
            s = float(value)
        except ValueError:
            s = math.nan
        if not 0 < s <= maximum:  # nan too
            raise argparse.ArgumentTypeError(f"{value!r}: expected a number of seconds above 0, at most {maximum:.0f}")
        return s

    return parse


def count(maximum: int, unit: str = "bytes") -> Callable[[str], int]:
    """The value type of a size or count flag: a whole number of `unit` from 1 to `maximum`, in ASCII digits."""

    def parse(value: str) -> int:
        if not (value.isascii() and value.isdigit() and len(value) <= 19 and 0 < int(value) <= maximum):
            raise argparse.ArgumentTypeError(f"{value!r}: expected a number of {unit} from 1 to {maximum}")
        return int(value)

    return parse


def add_node_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--node.name",
        dest="node",
        type=label_value,
        default=socket.gethostname(),
        help="node label (default: hostname)",
    )


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """The command line (exit 2 with a message on a bad one), and logging started at its --log.level."""
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return args


def add_common_flags(parser: argparse.ArgumentParser, default_port: int) -> None:
    parser.add_argument(
        "--web.listen-address",
        dest="listen",
        type=listen_address,
        default=f":{default_port}",
        metavar="[HOST]:PORT",
        help="address to serve /metrics on (default: %(default)s)",
    )
    parser.add_argument(
        "--web.config.file",
        dest="web_config",
        type=Path,
        metavar="FILE",
        help="TLS and basic authentication, in the web-config format of Prometheus' exporters (exporters/webconfig.py)",
    )
    parser.add_argument(
        "--log.level",
        dest="log_level",
        type=log_level,
        default="info",
        metavar="LEVEL",
        help="debug|info|warn|error",
    )


class _Handler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class LiveWebConfig:
    """The --web.config.file as it is now. It is read again when it or a file it names (certificate, key, CA) has
    changed, at the next connection, as exporter-toolkit does: a renewed certificate or a new password needs no
    restart. A change that cannot be used is logged once and the previous settings stay; one that would turn TLS
    on or off needs a restart (the listening socket is plain or TLS from the start)."""

    def __init__(self, path: Path | None, log: logging.Logger) -> None:
        self.path, self.log = path, log
        self.lock = threading.Lock()
        self.config, self.context = self._load()  # WebConfigError at start: the exporter does not start
        self.stamp = self._stamp(self.config)

    def _stamp(self, config: WebConfig) -> tuple[tuple[int, int], ...]:
        """(mtime, size) of the file and of the files its settings name."""
        named = [config.tls.cert_file, config.tls.key_file, config.tls.client_ca_file] if config.tls else []
        stamps = []
        for f in [Path(p) for p in (self.path, *named) if p]:
            try:
                st = f.stat()
                stamps.append((st.st_mtime_ns, st.st_size))
            except OSError:
                stamps.append((-1, -1))
        return tuple(stamps)

    def _load(self) -> tuple[WebConfig, ssl.SSLContext | None]:
        if self.path is None:
            return WebConfig(), None
        try:
            config = parse_web_config(self.path.read_text())
            return config, config.tls.context() if config.tls else None
        except OSError as exc:
            raise WebConfigError(f"--web.config.file {self.path}: {exc.strerror or exc}") from None
        except WebConfigError as exc:
            raise WebConfigError(f"--web.config.file {self.path}: {exc}") from None

    def get(self) -> tuple[WebConfig, ssl.SSLContext | None]:
        with self.lock:
            stamp = self._stamp(self.config)
            if stamp != self.stamp:
                self.stamp = stamp
                try:
                    config, context = self._load()
                    if (config.tls is None) != (self.config.tls is None):
                        raise WebConfigError(f"--web.config.file {self.path}: TLS turned on or off: restart to apply")
                    self.config, self.context = config, context
                    self.stamp = self._stamp(config)  # the files the new settings name
                    self.log.info("%s read again", self.path)
                except WebConfigError as exc:
                    self.log.error("%s; the previous settings stay", exc)
            return self.config, self.context


def _server(host: str, port: int, live: LiveWebConfig) -> WSGIServer:
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]

    class Server(socketserver.ThreadingMixIn, WSGIServer):
        address_family = family
        daemon_threads = True

        def finish_request(self, request: Any, client_address: Any) -> None:
            """In the request's own thread: a bounded time for it, the TLS handshake here (a slow or silent client
            holds only its thread) with the settings of now, then the request."""
            request.settimeout(CLIENT_TIMEOUT)
            try:
                if isinstance(request, ssl.SSLSocket):
                    context = live.get()[1]
                    if context is not None:
                        request.context = context
                    request.do_handshake()
                super().finish_request(request, client_address)
            except (OSError, ssl.SSLError):
                pass  # the client went away, timed out or failed its handshake: nothing to answer

    server = Server((host, port), _Handler)
    if live.context is not None:
        server.socket = live.context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    return server


_VALUE_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", '"': '\\"'})
_HELP_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n"})
_TYPES = {"counter": "counter", "gauge": "gauge", "info": "gauge", "stateset": "gauge", "histogram": "histogram",
          "gaugehistogram": "histogram", "summary": "summary", "unknown": "untyped"}  # fmt: skip
_SUFFIXES = {"counter": "_total", "info": "_info"}
# The text format 0.0.4's content type (its constant's name differs across prometheus_client versions; nodes run 0.16).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LATE = ("_created", "_gsum", "_gcount")  # OpenMetrics-only samples, written as gauges after their family
_go = cast(Callable[[float], str], floatToGoString)  # a value as Go's client writes it (+Inf, 1e+06, ...)


def label_text(labels: dict[str, str]) -> str:
    """The `{name="value",...}` of a series in the text format, "" for none: formatted once for every series that
    has these labels (a collector's figures of one device share them)."""
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{v.translate(_VALUE_ESCAPES)}"' for k, v in sorted(labels.items())) + "}"


# label names -> a template of their label text (sorted by name) and what picks their values in that order
_TEMPLATES: dict[tuple[str, ...], tuple[str, Callable[[Sequence[str]], tuple[str, ...]]]] = {}


def _template(names: tuple[str, ...]) -> tuple[str, Callable[[Sequence[str]], tuple[str, ...]]]:
    order = sorted(range(len(names)), key=names.__getitem__)
    template = "{" + ",".join(f'{names[i]}="%s"' for i in order) + "}" if names else ""
    if len(order) > 1:
        return template, itemgetter(*order)
    return template, lambda values: tuple(values[i] for i in order)


def label_values_text(names: tuple[str, ...], values: Sequence[str]) -> str:
    """label_text of the labels `names` with `values` (in the same order), through a template made once per tuple of
    names: label_text's sort and formatting done once for every series that has these label names, and values
    escaped only when one needs it."""
    found = _TEMPLATES.get(names)
    if found is None:
        found = _TEMPLATES[names] = _template(names)
    template, pick = found
    picked = pick(values)
    joined = "".join(picked)
    if "\\" in joined or '"' in joined or "\n" in joined:
        picked = tuple(v.translate(_VALUE_ESCAPES) for v in picked)
    return template % picked


def go_float(value: float) -> str:
    """floatToGoString(value), the common case without its checks: a finite float whose repr Go writes as it is."""
    text = repr(float(value))
    if "n" in text or text.find(".") > 6:  # inf, nan; Go's exponent from 1e+06 on: floatToGoString knows it
        return _go(value)
    return text


def series_line(name: str, labels: str, value: float) -> str:
    """One series without a timestamp, `labels` from label_text: the line generate_latest writes for it."""
    return f"{name}{labels} {go_float(value)}\n"


def _sample(s: Sample) -> str:
    ts = "" if s.timestamp is None else f" {int(float(s.timestamp) * 1000):d}"
    return f"{s.name}{label_text(s.labels)} {go_float(s.value)}{ts}\n"


def exposition(registry: CollectorRegistry) -> bytes:
    """The registry in Prometheus' text format 0.0.4, byte for byte what prometheus_client's generate_latest writes
    for the metric and label names our exporters use (the legacy character set, checked by the unit tests), in a
    third of its time: it escapes label values only, where generate_latest also validates and escapes every label
    name of every sample, half of a scrape's cost (issue 16: a scrape at most twice node_exporter's). A family that
    carries its series already formatted (`lines`: common.Families, whose samples are made only when asked for) is
    written as it is."""
    out = []
    for metric in registry.collect():
        name = metric.name + _SUFFIXES.get(metric.type, "")
        doc = metric.documentation.translate(_HELP_ESCAPES)
        out.append(f"# HELP {name} {doc}\n# TYPE {name} {_TYPES[metric.type]}\n")
        lines: list[str] | None = getattr(metric, "lines", None)  # common.Families' series, formatted as added
        if lines is not None:
            out.extend(lines)
            continue
        late: dict[str, list[str]] = {}
        for s in metric.samples:
            suffix = s.name[len(metric.name) :]
            if suffix in _LATE and s.name.startswith(metric.name):
                late.setdefault(suffix, []).append(_sample(s))
            else:
                out.append(_sample(s))
        for suffix, lines in sorted(late.items()):
            out.append(f"# HELP {metric.name}{suffix} {doc}\n# TYPE {metric.name}{suffix} gauge\n")
            out.extend(lines)
    return "".join(out).encode()


def app(registry: CollectorRegistry, live: LiveWebConfig) -> Callable[..., Iterable[bytes]]:
    """The WSGI application, answering as prometheus_client's make_wsgi_app does (any path serves the metrics, as it
    does; OPTIONS, 405 for other methods, an empty favicon, gzip when accepted) for an authorized request, always in
    the text format 0.0.4 (node_exporter's default too; Prometheus asks for OpenMetrics first and takes it)."""

    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        config = live.get()[0]
        extra = list(config.headers.items())
        if not config.authorized(environ.get("HTTP_AUTHORIZATION")):
            start_response("401 Unauthorized", [("WWW-Authenticate", REALM), ("Content-Type", "text/plain"), *extra])
            return [b"Unauthorized\n"]
        method = environ.get("REQUEST_METHOD", "GET")
        if method == "OPTIONS":
            start_response("200 OK", [("Allow", "OPTIONS,GET"), *extra])
            return [b""]
        if method != "GET":
            start_response("405 Method Not Allowed", [("Allow", "OPTIONS,GET"), *extra])
            return [f"# HTTP 405 Method Not Allowed: {method}; use OPTIONS or GET\n".encode()]
        if environ.get("PATH_INFO") == "/favicon.ico":
            start_response("200 OK", extra)
            return [b""]
        body, headers = exposition(registry), [("Content-Type", CONTENT_TYPE)]
        if "gzip" in environ.get("HTTP_ACCEPT_ENCODING", ""):
            body = gzip.compress(body)
            headers.append(("Content-Encoding", "gzip"))
        start_response("200 OK", [*headers, *extra])
        return [body]

    return wsgi


def serve(
    registry: CollectorRegistry, listen: tuple[str, int], log: logging.Logger, web_config: Path | None = None
) -> int:
    """Serve the registry on (host, port), with the TLS and users of web_config, until SIGTERM or SIGINT; 0 on a
    clean stop, 1 when the address cannot be bound or the web config cannot be used."""
    host, port = listen
    # The handlers only set a flag: a handler that took a lock (Event.set) could deadlock the main thread it
    # interrupts, when the signal lands while that thread holds the same lock entering Event.wait (seen in CI: a
    # SIGTERM right after the first scrape, on a loaded machine, left the exporter running until it was killed).
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _: stopping.append(signum))
    signal.signal(signal.SIGINT, lambda signum, _: stopping.append(signum))
    try:
        live = LiveWebConfig(web_config, log)
    except WebConfigError as exc:
        log.error("%s", exc)
        return 1
    try:
        server = _server(host, port, live)
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", host, port, exc)
        return 1
    server.set_app(app(registry, live))
    config = live.config
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    scheme = "https" if config.tls else "http"
    auth = f", basic auth for {len(config.users)} user(s)" if config.users else ""
    log.info("listening on %s://%s:%d%s", scheme, host, port, auth)
    while not stopping:
        time.sleep(0.2)
    log.info("stopping")
    server.shutdown()
    server.server_close()
    return 0

"""What every exporter's main() shares: Go-style common flags, the listen address, serving until SIGTERM."""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from prometheus_client import CollectorRegistry, start_http_server

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
        "--log.level",
        dest="log_level",
        type=log_level,
        default="info",
        metavar="LEVEL",
        help="debug|info|warn|error",
    )


def serve(registry: CollectorRegistry, host: str, port: int, log: logging.Logger) -> int:
    """Serve the registry until SIGTERM or SIGINT; 0 on a clean stop, 1 when the address cannot be bound."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", host, port, exc)
        return 1
    log.info("listening on %s:%d", host, port)
    stop.wait()
    log.info("stopping")
    return 0

"""What every exporter's main() shares: Go-style flags and their value types, logging, serving until SIGTERM."""

from __future__ import annotations

import argparse
import logging
import math
import signal
import socket
import threading
from collections.abc import Callable

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
        "--log.level",
        dest="log_level",
        type=log_level,
        default="info",
        metavar="LEVEL",
        help="debug|info|warn|error",
    )


def serve(registry: CollectorRegistry, listen: tuple[str, int], log: logging.Logger) -> int:
    """Serve the registry on (host, port) until SIGTERM or SIGINT; 0 on a clean stop, 1 when the address cannot be
    bound."""
    host, port = listen
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

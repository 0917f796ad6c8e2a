"""What the storage exporter's collectors share: bounded reads of /proc and /sys, the problem counter, the
collector interface (exporters/storage.py runs them)."""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar

from exporters.common import Family, Health
from exporters.job import read_regular

LOG = logging.getLogger("magellan.storage_exporter")
SYSFS_MAX = 4096  # a sysfs attribute is at most a page
DEVICE_LABELS = ("node", "device")
T = TypeVar("T")


def read_text(path: str | Path, max_bytes: int) -> str | None:
    """A /proc or /sys file's text, read bounded; None when it does not exist. ValueError (ProgressError: not a
    regular file, too large) or OSError otherwise. A path may be given as a string: a scrape reads a dozen sysfs
    files an array, and building a Path for each costs more than reading it."""
    try:
        # read_regular is typed for Path, and hands the path to os.open, which takes a str as well
        return read_regular(path, max_bytes).decode("utf-8", errors="replace")  # type: ignore[arg-type]
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ENOTDIR:  # a parent is not a directory: absent as well
            return None
        raise


class Problems:
    """Counts a problem under its reason and logs it, once while it keeps happening (each message is logged again
    only after a scrape without it): bounded memory, no log flood at every scrape."""

    def __init__(self, health: Health) -> None:
        self.health = health
        self._now: set[str] = set()
        self._before: set[str] = set()
        self.count = 0  # problems of the current scrape

    def next_scrape(self) -> None:
        self._before, self._now = self._now, set()
        self.count = 0

    def __call__(self, reason: str, message: str, level: int = logging.WARNING) -> None:
        self.health.failed(reason)
        self.count += 1
        self.note(message, level)

    def note(self, message: str, level: int = logging.INFO) -> None:
        """Log without counting an error (a device without SMART data)."""
        if message not in self._now and message not in self._before:
            LOG.log(level, "%s", message)
        self._now.add(message)


# Not blocking (a FIFO or a terminal answers at once), not following a final symlink, not leaking into children
_ATTRIBUTE_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC


def read_attribute(path: str | Path) -> str | None:
    """A sysfs attribute's text, None when it is absent. A scrape reads a dozen an array, so this is read_text
    without its fstat and its read to the end: an attribute is at most a page and one read returns it whole. What is
    not an attribute is still bounded and refused: more than a page (a device, a large file) is a ValueError, a
    directory an OSError, a FIFO or a terminal reads empty or fails at once."""
    try:
        fd = os.open(path, _ATTRIBUTE_FLAGS)
    except (FileNotFoundError, NotADirectoryError):  # absent, or a parent is not a directory: absent as well
        return None
    try:
        data = os.read(fd, SYSFS_MAX + 1)
    finally:
        os.close(fd)
    if len(data) > SYSFS_MAX:
        raise ValueError(f"larger than {SYSFS_MAX} bytes: not a sysfs attribute")
    return data.decode("utf-8", errors="replace")


def read_sysfs(path: str | Path, parse: Callable[[str], T], problem: Problems, reason: str) -> T | None:
    """A sysfs attribute parsed, None when it is absent; an unreadable or unusable one is a problem of `reason`."""
    try:
        text = read_attribute(path)
        return None if text is None else parse(text)
    except (OSError, ValueError) as exc:
        problem(reason, f"{path}: {exc}")
        return None


class Subsystem(Protocol):
    """What Collector runs: the collector of one subsystem; `name` is its collector label, read() its families
    and whether it read its sources without a problem."""

    name: str

    def read(self) -> tuple[list[Family], bool]: ...

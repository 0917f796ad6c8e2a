"""A job's output file, written whole or not at all: under a temporary name beside it, renamed onto it on success.

A job that fails or is stopped by a signal removes its temporary and leaves an existing output as it was; one
killed outright (SIGKILL, the OOM killer) leaves its temporary, `.<name>.<pid>.partial`, and the output untouched.
Standard library only (simulate without --output runs without uproot)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


def _fsync(path: str | Path, flags: int = os.O_RDONLY) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(directory: str | Path) -> None:
    """Make a rename in `directory` durable; some file systems refuse fsync on a directory, which is fine."""
    with contextlib.suppress(OSError):
        _fsync(directory)


class AtomicOutput:
    """`partial` is where to write; commit() renames it onto `final`, discard() removes it (after a commit: nothing).

    An output named through a symlink replaces the symlink's target, as writing through it would."""

    def __init__(self, final: str | Path) -> None:
        self.final = Path(os.path.realpath(final))
        self.partial = self.final.with_name(f".{self.final.name}.{os.getpid()}.partial")

    def commit(self) -> None:
        """fsync the temporary, rename it onto the final name, fsync the directory."""
        _fsync(self.partial)
        os.replace(self.partial, self.final)
        fsync_dir(self.final.parent)

    def discard(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.partial)


@contextlib.contextmanager
def replacing(final: str | Path) -> Iterator[Path]:
    """Write to the path this yields: it becomes `final` when the block ends normally, and vanishes otherwise."""
    out = AtomicOutput(final)
    try:
        yield out.partial
        out.commit()
    finally:
        out.discard()

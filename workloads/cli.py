"""magellan-workload: run an ATLAS-like job and report its progress for the job exporter."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import signal
import stat
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, NoReturn

from magellan import contract
from magellan.contract import user_name
from workloads import db12
from workloads.progress import JobError, ProgressWriter, end_abandoned, read_record
from workloads.simulate import Simulator

if TYPE_CHECKING:
    from workloads.rootio import Analysis

SIGNAL_MESSAGES = {signal.SIGTERM: "terminated", signal.SIGINT: "interrupted"}
COLD_HELP = "evict each input from the page cache before every pass, so that every pass reads the storage"


class StopFlag:
    """Set by SIGTERM/SIGINT; the event loop looks at it between events (no exception mid-write). A storm passes the
    signal on to its readers (`children`) at once: a signal to the storm alone still stops every reader."""

    def __init__(self) -> None:
        self.signum = 0
        self.children: list[int] = []

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.signum = signum
        for pid in self.children:  # not reaped yet (a zombie at worst): the pid is still the reader's
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def install(self) -> None:
        for signum in SIGNAL_MESSAGES:
            signal.signal(signum, self)


def _common(s: argparse.ArgumentParser) -> None:
    s.add_argument("--job-id", required=True, help="unique id, [A-Za-z0-9_.-]{1,128}; names the progress file")
    s.add_argument(
        "--jobs-dir",
        default=os.environ.get("MAGELLAN_JOBS_DIR") or contract.user_dir(contract.JOBS_DIR, user_name(os.geteuid())),
        help="where the progress file goes, a directory of the job's user, made when missing (default: "
        "$MAGELLAN_JOBS_DIR or %(default)s)",
    )
    s.add_argument("--progress-interval", type=float, default=1.0, help="seconds between progress writes")


def _simulate_arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument("--events", type=int, default=0, help="stop after this many events (0: no limit)")
    s.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0: no limit)")
    s.add_argument(
        "--seed",
        type=int,
        default=contract.DEFAULT_SEED,
        help="random seed; the same seed gives the same events (default: %(default)s)",
    )
    s.add_argument("--output", help="also write the events to this ROOT file (needs uproot, awkward, numpy)")
    s.add_argument(
        "--format",
        choices=contract.FORMATS,
        help=f"what --output writes: an RNTuple or a TTree named events (default: {contract.DEFAULT_FORMAT})",
    )


def _input_arguments(s: argparse.ArgumentParser, readers: str) -> None:
    s.add_argument(
        "--input",
        nargs="+",
        required=True,
        metavar="FILE",
        help=f"ROOT files written by simulate, {readers}; a file or a URL (root://<server>/<path>: through XRootD)",
    )
    s.add_argument("--duration", type=float, default=0.0, help="read the inputs again until this many seconds")
    s.add_argument("--cold", action="store_true", help=COLD_HELP)


def _analyze_arguments(a: argparse.ArgumentParser) -> None:
    _input_arguments(a, "RNTuple or TTree (found in each file), all of one format")
    a.add_argument("--output", help="write the histograms to this ROOT file")
    a.add_argument(
        "--conditions", metavar="FILE", nargs="?", const=contract.CONDITIONS_FILE,
        help="calibrate each event with its run's conditions from the conditions database whose client options are "
        f"in FILE (a MySQL option file; without FILE: {contract.CONDITIONS_FILE})",
    )  # fmt: skip
    a.add_argument("--conditions-tag", metavar="TAG", help="the global tag to read (default: the option file's)")


def _storm_arguments(st: argparse.ArgumentParser) -> None:
    st.add_argument("--readers", type=int, required=True, help=f"concurrent analyze jobs (1 to {contract.READERS_MAX})")
    _input_arguments(st, "shared out among the readers")


ARGUMENTS: dict[str, Callable[[argparse.ArgumentParser], None]] = {
    "simulate": _simulate_arguments,
    "analyze": _analyze_arguments,
    "storm": _storm_arguments,
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="magellan-workload", description=__doc__)
    sub = p.add_subparsers(dest="workload", metavar="WORKLOAD")
    sub.required = True
    for w in contract.CATALOGUE.values():  # every workload of the catalogue has its arguments here
        s = sub.add_parser(w.name, help=w.summary)
        _common(s)
        ARGUMENTS[w.name](s)
    d = sub.add_parser("db12", help="this core's DB12 score (DIRAC Benchmark 2012), the unit of the jobs' scores")
    d.add_argument("--fraction", type=float, default=0.2, help="share of DB12's 12.5 M draws to run (default 0.2)")
    c = sub.add_parser("conditions-sql", help="the conditions database's schema and a tag's IOVs, as SQL to load")
    c.add_argument("--tag", required=True, help="the global tag, [A-Za-z0-9_.-]{1,64}")
    c.add_argument("--first-run", type=int, default=contract.FIRST_RUN, help="first run covered (default %(default)s)")
    c.add_argument("--runs", type=int, required=True, help="runs covered from --first-run")
    c.add_argument("--runs-per-iov", type=int, required=True, help="runs per interval of validity")
    return p


def _check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Reject what argparse cannot: exit 2 with a message saying what to change."""
    if args.workload == "db12":
        if not 0 < args.fraction <= 1:
            parser.error("--fraction must be in (0, 1]")
        return
    if args.workload == "conditions-sql":
        return
    events = getattr(args, "events", 0)
    if events < 0 or not 0 <= args.duration < math.inf:
        parser.error("--events and --duration must not be negative (and --duration finite)")
    if not 0 < args.progress_interval < math.inf:
        parser.error("--progress-interval must be a positive number of seconds")
    if args.workload == "simulate" and not events and not args.duration:
        parser.error("give --events N or --duration SECONDS (or both): the job needs a stopping condition")
    if getattr(args, "conditions_tag", None) and not args.conditions:
        parser.error("--conditions-tag chooses the tag --conditions reads: give --conditions too")
    if args.workload == "simulate" and args.format and not args.output:
        parser.error("--format chooses what --output writes: give --output FILE too")
    if args.workload == "storm":
        try:
            contract.check_readers(args.readers)
        except contract.ContractError as exc:
            parser.error(f"--{exc}")
    if not contract.valid_job_id(args.job_id):
        parser.error(f"--job-id {args.job_id!r}: use 1-128 characters of A-Z a-z 0-9 _ . -")
    if args.workload == "storm" and not contract.valid_job_id(contract.reader_job_id(args.job_id, args.readers - 1)):
        last = contract.reader_job_id(args.job_id, args.readers - 1)
        parser.error(f"--job-id {args.job_id!r}: too long for its readers' job ids ({last!r}): 128 characters at most")
    _check_jobs_dir(parser, args.jobs_dir)
    for path in getattr(args, "input", None) or []:
        if remote(path):  # a server's file (an XRootD export): the server says whether it exists and who may read it
            continue
        if not os.path.isfile(path):
            parser.error(f"--input {path}: no such file")
        owner, me = os.stat(path).st_uid, os.geteuid()
        if owner not in (0, me):
            whom = "by root" if me == 0 else f"by you ({user_name(me)}) nor by root"
            parser.error(
                f"--input {path}: owned by {user_name(owner)}, not {whom}: a job reads only its user's inputs and the "
                "site's (root's); copy it into a directory of yours if you trust it"
            )
    if getattr(args, "output", None):
        _check_output(parser, args.output, getattr(args, "input", None) or [])


def _check_jobs_dir(parser: argparse.ArgumentParser, jobs_dir: str) -> None:
    """--jobs-dir is a directory of the job's user, made (mode 0755) when it is missing: a job never writes its
    progress into a directory another user controls, where a link or a planted file could take its place."""
    me = os.geteuid()
    if not os.path.lexists(jobs_dir) and os.path.isdir(os.path.dirname(os.path.abspath(jobs_dir))):
        with contextlib.suppress(FileExistsError, PermissionError):  # PermissionError: said below
            os.mkdir(jobs_dir, 0o755)
    try:
        st = os.lstat(jobs_dir)
    except OSError as exc:
        parser.error(f"--jobs-dir {jobs_dir}: {exc.strerror}: create it, or set MAGELLAN_JOBS_DIR")
    if not stat.S_ISDIR(st.st_mode):
        parser.error(f"--jobs-dir {jobs_dir}: not a directory (a link is not taken either)")
    if st.st_uid != me:
        own = contract.user_dir(contract.JOBS_DIR, user_name(me))
        parser.error(
            f"--jobs-dir {jobs_dir}: owned by {user_name(st.st_uid)}, not by you ({user_name(me)}): a job writes its "
            f"progress in a directory of its user's only (default: {own})"
        )
    if not os.access(jobs_dir, os.W_OK):
        parser.error(f"--jobs-dir {jobs_dir}: not writable")


def _check_output(parser: argparse.ArgumentParser, output: str, inputs: list[str]) -> None:
    """--output names a file that the job can make (it writes a temporary beside it, output.AtomicOutput), and none
    of the inputs: reading a file while its replacement is written would destroy the events."""
    directory = os.path.dirname(os.path.realpath(output))
    if os.path.isdir(output):
        parser.error(f"--output {output}: is a directory: name the ROOT file to write")
    if not os.path.isdir(directory):
        parser.error(f"--output {output}: no such directory as {directory}: create it, or name a file elsewhere")
    if not os.access(directory, os.W_OK | os.X_OK):
        parser.error(f"--output {output}: cannot create files in {directory}: name a file in a writable directory")
    for path in inputs:
        if _same_file(path, output):
            parser.error(f"--output {output}: it is --input {path} (the same file): name another --output")


def _same_file(a: str, b: str) -> bool:
    """The same file: one resolved path, or (when both exist) one inode, which also catches hard links."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _emit(summary: dict[str, object]) -> None:
    """One JSON line on stdout in one write: a storm's readers share the stdout of their parent, and print() writes
    the text and its newline apart when Python runs unbuffered (PYTHONUNBUFFERED, -u), so lines could interleave."""
    sys.stdout.write(json.dumps(summary, sort_keys=True) + "\n")
    sys.stdout.flush()


def _finish(
    writer: ProgressWriter, events: int, stop: StopFlag, extra: dict[str, object], format: str | None = None
) -> int:
    """End the job: failed by a signal (128 + its number), or finished with its JSON summary on stdout; `format`:
    the event file's format of a job that learnt it as it ran (analyze)."""
    if stop.signum:
        writer.update(events, contract.FAILED, SIGNAL_MESSAGES[signal.Signals(stop.signum)], format=format)
        return 128 + stop.signum
    writer.update(events, contract.FINISHED, format=format)
    rec = writer.record
    wall = (rec.finished_at or rec.updated_at) - rec.started_at
    summary = {
        "job_id": rec.job_id,
        "workload": rec.workload,
        "events": events,
        "wall_seconds": round(wall, 3),
        "cpu_seconds": rec.cpu_seconds,
        "events_per_second": round(events / wall, 3) if wall > 0 else 0.0,
        "bytes_read": rec.bytes_read,
        "bytes_written": rec.bytes_written,
        **({"format": rec.format} if rec.format else {}),
        **extra,
    }
    _emit(summary)
    return 0


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _failed(
    workload: str,
    exc: Exception,
    writer: ProgressWriter | None = None,
    events: int = 0,
    format: str | None = None,
) -> int:
    """End the job as failed by `exc` (call it in the except block): the reason, the exception's type and message,
    on stderr and, when the job has a record (`writer`), in it as state failed; exit status 1. An error that is not
    the job's input or output (JobError, OSError), a bug, also prints its traceback."""
    if not isinstance(exc, (JobError, OSError)):
        traceback.print_exc()
    reason = _reason(exc)
    print(f"{workload}: {reason}", file=sys.stderr)
    if writer is not None:
        try:
            writer.update(events, contract.FAILED, reason, format=format)
        except Exception as err:  # the jobs directory went away, the disk is full: say so, the exit status stays
            print(f"{workload}: could not record the failure in {writer.path}: {_reason(err)}", file=sys.stderr)
    return 1


def simulate(args: argparse.Namespace, stop: StopFlag) -> int:
    """Run events until --events or --duration is reached (or a signal arrives); write progress throughout."""
    fmt = (args.format or contract.DEFAULT_FORMAT) if args.output else None
    writer = ProgressWriter(args.jobs_dir, args.job_id, "simulate", args.events, format=fmt)
    sim = Simulator(args.seed, record=bool(args.output))
    out = None
    try:
        writer.update(0)
        if args.output:
            from workloads.rootio import EventWriter  # noqa: PLC0415 - uproot only when writing ROOT

            out = EventWriter(Path(args.output), fmt or contract.DEFAULT_FORMAT)
        start = time.monotonic()
        next_write = start + args.progress_interval
        while not stop.signum:
            event = sim.event()
            if out is not None:
                out.add(event, sim.detail)
            now = time.monotonic()
            if (args.events and sim.events >= args.events) or (args.duration and now - start >= args.duration):
                break
            if now >= next_write:
                writer.update(sim.events)
                next_write = now + args.progress_interval
        if out is not None and not stop.signum:  # stopped by a signal: an existing output stays as it was
            out.close()
        extra: dict[str, object] = {"checksum": sim.checksum}
        if args.output:
            extra["output"] = args.output
        return _finish(writer, sim.events, stop, extra)
    except Exception as exc:  # the job fails, and says why, in its progress file
        return _failed("simulate", exc, writer, sim.events)
    finally:
        if out is not None:
            out.discard()  # the temporary, unless close() made it the output


def analyze(args: argparse.Namespace, stop: StopFlag) -> int:
    """Read the inputs (again until --duration), select events, fill histograms; a bad file fails the job."""
    writer = ProgressWriter(args.jobs_dir, args.job_id, "analyze", 0)  # first: the job's time includes the imports
    analysis: Analysis | None = None
    try:
        from workloads.rootio import Analysis  # noqa: PLC0415 - uproot only for ROOT workloads

        analysis = Analysis()
        if getattr(args, "conditions", None):  # a storm's readers read none
            from workloads.conditions import Conditions  # noqa: PLC0415 - PyMySQL only for jobs that read conditions

            analysis.conditions = Conditions.open(args.conditions, args.conditions_tag)
        return _analyze(args, stop, writer, analysis)
    except Exception as exc:
        events, fmt = (analysis.events, analysis.format) if analysis else (0, None)
        return _failed("analyze", exc, writer, events, fmt)
    finally:
        if analysis is not None and analysis.conditions is not None:
            analysis.conditions.close()


def _analyze(args: argparse.Namespace, stop: StopFlag, writer: ProgressWriter, analysis: Analysis) -> int:
    input_bytes = 0
    writer.update(0)
    start = time.monotonic()
    next_write = start + args.progress_interval

    def time_is_up() -> bool:
        return bool(args.duration) and time.monotonic() - start >= args.duration

    while not stop.signum:
        for path in args.input:
            if args.cold and not remote(path):
                evict(path)
            before = analysis.events
            for chunk in analysis.chunks(path if remote(path) else Path(path)):
                analysis.fill(chunk)
                if time.monotonic() >= next_write:
                    writer.update(analysis.events, format=analysis.format)
                    next_write = time.monotonic() + args.progress_interval
                if stop.signum or time_is_up():  # a long pass does not overrun --duration
                    break
            share = (analysis.events - before) / analysis.entries if analysis.entries else 1.0
            input_bytes += int(analysis.size * share)
            if stop.signum or time_is_up():
                break
        if not args.duration or time_is_up():
            break
    if args.output and not stop.signum:
        analysis.write(Path(args.output))
    wall = time.monotonic() - start
    extra: dict[str, object] = {
        "selected": analysis.selected,
        "input_bytes": input_bytes,
        "mb_per_second": round(input_bytes / wall / 1e6, 3) if wall > 0 else 0.0,
        **(analysis.conditions.summary() if analysis.conditions is not None else {}),
    }
    return _finish(writer, analysis.events, stop, extra, analysis.format)


def remote(path: str) -> bool:
    """An input read over the network (root://, roots://, http(s)://: uproot opens URLs), not a local file. --cold
    cannot reach a server's page cache: it evicts local inputs only."""
    return re.match(r"^[a-z][a-z0-9+.-]*://", path) is not None


def evict(path: str) -> None:
    """Drop the file's pages from the page cache (no privilege needed): the next read is cold. Its dirty pages are
    written back first: DONTNEED drops clean pages only, and an input just made (a storm's fresh copies) is dirty
    for up to 30 s; a storm of 16 readers read 10 of its 16 fresh copies from the page cache, 0 bytes from storage."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fdatasync(fd)  # a read-only descriptor will do (Linux)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def reader_inputs(inputs: list[str], readers: int, i: int) -> list[str]:
    """The inputs of storm reader i: every readers-th file from file i on, so that with at least a file per reader
    no two readers ever read the same file (one would find the other's pages cached and the storage would not be
    what they measure); with fewer files than readers, reader i reads file i modulo their number."""
    return inputs[i::readers] or [inputs[i % len(inputs)]]


def storm(args: argparse.Namespace, stop: StopFlag) -> int:
    """Fork --readers analyze jobs at once on the inputs; report their aggregate MB/s and efficiency. The readers
    share the inputs out (reader_inputs): with a file per reader each reads its own, again and again.

    uproot is imported once, before the fork, so N readers cost N processes but not N interpreter start-ups.
    Each reader is a job of its own (contract.reader_job_id: <job id>_<i>, its own progress file); SIGTERM reaches
    every reader. The storm's `format` is what its readers read; readers that read different formats fail it.
    Every reader's record ends: a reader killed outright, or one the storm could not start, is recorded failed by
    the storm (progress.end_abandoned); a storm that cannot start them all stops those it started."""
    ids = [contract.reader_job_id(args.job_id, i) for i in range(args.readers)]
    start = time.monotonic()
    pids: dict[int, str] = {}  # reader pid -> its job id
    unstarted = ""
    try:
        import workloads.rootio  # noqa: F401, PLC0415 - imported once, shared by the forked readers

        for i, job_id in enumerate(ids):
            # SIGTERM/SIGINT held back across the fork: CPython clears the signal flags in a new child, so one sent
            # to it before that (a storm stopping its readers at once) would be lost and the reader run on; and the
            # parent passes a signal on only to the readers it has recorded.
            held = signal.pthread_sigmask(signal.SIG_BLOCK, set(SIGNAL_MESSAGES))
            try:
                pid = os.fork()
                if pid == 0:
                    stop.children = []  # its siblings are the storm's to signal
                    signal.pthread_sigmask(signal.SIG_SETMASK, held)
                    _reader(args, i, stop)
                pids[pid] = job_id
                stop.children.append(pid)
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, held)
    except Exception as exc:  # no fork (process limit, memory), no uproot: the storm stops and says why
        unstarted = f"not started: the storm failed ({_reason(exc)})"
        print(f"storm: {_reason(exc)}: stopping its {len(pids)} started readers", file=sys.stderr)
        stop(signal.SIGTERM, None)
    failed = _wait_readers(args.jobs_dir, pids, stop)
    for job_id in ids[len(pids) :]:
        end_abandoned(args.jobs_dir, job_id, "analyze", os.getpid(), unstarted)
        failed += 1
    wall = time.monotonic() - start
    records = [r for r in (read_record(args.jobs_dir, job_id) for job_id in ids) if r]
    walls = [(r.cpu_seconds, (r.finished_at or 0.0) - r.started_at) for r in records]
    efficiency = [cpu / wall for cpu, wall in walls if wall > 0]
    formats = sorted({r.format for r in records if r.format})
    if len(formats) > 1:
        print(
            f"storm: its readers read different formats ({', '.join(formats)}): give inputs of one format",
            file=sys.stderr,
        )
    summary = {
        "job_id": args.job_id,
        "workload": "storm",
        "readers": args.readers,
        "failed": failed,
        "wall_seconds": round(wall, 3),
        "aggregate_mb_per_second": round(sum(r.bytes_read for r in records) / wall / 1e6, 3) if wall > 0 else 0.0,
        "events": sum(r.events_processed for r in records),
        "cpu_efficiency_per_job": round(sum(efficiency) / len(efficiency), 3) if efficiency else 0.0,
        "format": ",".join(formats) or None,
    }
    _emit(summary)
    return 1 if failed or stop.signum or len(formats) > 1 else 0


def _reader(args: argparse.Namespace, i: int, stop: StopFlag) -> NoReturn:
    """The forked reader i: an analyze job of its own; whatever happens, the process ends here (os._exit)."""
    code = 1
    try:
        stop.children = []  # its siblings are the storm's to signal
        reader = argparse.Namespace(**vars(args), output=None)
        reader.job_id = contract.reader_job_id(args.job_id, i)
        reader.input = reader_inputs(args.input, args.readers, i)
        code = analyze(reader, stop)
    except BaseException as exc:  # the reader could not start its record: the storm ends it with the exit status
        print(f"storm: reader {i}: {_reason(exc)}", file=sys.stderr)
    finally:
        sys.stderr.flush()
        os._exit(code)


def _wait_readers(jobs_dir: str, pids: dict[int, str], stop: StopFlag) -> int:
    """Reap the readers; end the record of any that died without ending it. The number that failed."""
    failed = 0
    for pid, job_id in pids.items():
        _, status = os.waitpid(pid, 0)
        stop.children.remove(pid)
        code = os.waitstatus_to_exitcode(status)
        failed += code != 0
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with status {code}"
        if code and end_abandoned(jobs_dir, job_id, "analyze", pid, how):
            print(f"storm: reader {job_id} {how} without ending its record: recorded it failed", file=sys.stderr)
    return failed


def db12_command(args: argparse.Namespace, stop: StopFlag) -> int:
    _emit({"unit": "DB12", "score": round(db12.measure(args.fraction), 2), "fraction": args.fraction})
    return 0


def conditions_sql(args: argparse.Namespace, stop: StopFlag) -> int:
    from workloads import conditions  # noqa: PLC0415

    try:
        text = conditions.sql(args.tag, args.first_run, args.runs, args.runs_per_iov)
    except ValueError as exc:
        print(f"conditions-sql: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    stop = StopFlag()
    stop.install()  # before anything slow, so an early SIGTERM is not lost
    parser = _parser()
    args = parser.parse_args(argv)
    _check(parser, args)
    commands = {
        "simulate": simulate, "analyze": analyze, "storm": storm, "db12": db12_command,
        "conditions-sql": conditions_sql,
    }  # fmt: skip
    try:
        return commands[args.workload](args, stop)
    except Exception as exc:  # before the job has a record (it cannot write one), or after a storm's readers
        return _failed(args.workload, exc)


if __name__ == "__main__":
    sys.exit(main())

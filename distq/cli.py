"""``distq master | worker | demo`` (also ``python -m distq``).

Bad options and unreadable files give one line on stderr and exit 2; every other
documented exit code is in ``distq.errors``. The authkey never comes from argv.
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import json
import os
import signal
import stat
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TextIO, TypeVar

from distq.errors import (
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    MIN_AUTHKEY_BYTES,
    DistqError,
    UsageError,
    weak_key_message,
)
from distq.jobsfile import JobSpec, read_jobs_file
from distq.protocol import parse_address
from distq.submissions import DEFAULT_WINDOW
from distq.worker import WorkerConfig, default_worker_name, run_worker

__all__ = ["main"]

AUTHKEY_ENV = "DISTQ_AUTHKEY"
MAX_COUNT = 1_000_000  # --count: jobs are held in memory (about 0.5 KB each)
MAX_KEY_FILE_BYTES = 4096
#: The longest duration any option takes (about 31 years). Longer ones mean "forever"
#: or a typo; far longer ones overflow the timers they reach (SO_RCVTIMEO, thread waits).
MAX_SECONDS = 1e9

_N = TypeVar("_N", int, float)

EXIT_CODES_HELP = """\
exit codes:
  0    success (master: every job has its terminal result; worker: the master finished)
  1    internal error (a bug: please report the traceback)
  2    usage error: bad option, unreadable or malformed file, missing or empty authkey
  3    worker: the master rejected the authkey
  4    worker: nothing listening at the address (after --connect-timeout-s)
  5    worker: lost the master mid-run (closed, killed, or silent for --rpc-timeout-s),
       and it did not come back within --reconnect-s
  6    worker: the peer accepted the connection but never answered the handshake
  7    worker: the master stayed busy (too many handshakes pending) for --connect-timeout-s
  8    cannot write --results, --events or --journal (e.g. disk full): the master stops
       serving and prints the accepted results it could not write on stderr; a worker leaves
  130  interrupted (Ctrl-C)

The authkey is read from the environment variable DISTQ_AUTHKEY or from --authkey-file,
never from the command line, and must be at least 16 bytes (make one with
python -c 'import secrets; print(secrets.token_hex(16))'). Jobs never see it. distq exchanges pickles: anyone holding the key can run
code on the master and the workers. Keep the key secret and bind to loopback unless the
network is trusted.
"""


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # No prefix matching: "--authkey SECRET" must never become "--authkey-file SECRET".
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def parse_args(self, args: Any = None, namespace: Any = None) -> Any:
        options, extras = self.parse_known_args(args, namespace)
        if extras:
            # Never echo what was not understood: "--auth-key SECRET" is a key on a screen.
            names = sorted({arg.split("=", 1)[0] for arg in extras if arg.startswith("-")})
            values = sum(1 for arg in extras if not arg.startswith("-"))
            shown = ", ".join(names) if names else "none"
            self.error(
                f"unrecognized options: {shown} (and {values} other argument(s), not shown)"
                if values
                else f"unrecognized options: {shown}"
            )
        return options


def _number(
    kind: type[_N],
    *,
    above: _N | None = None,
    at_least: _N | None = None,
    at_most: _N | None = None,
    unit: str = "",
) -> Callable[[str], _N]:
    """An argparse ``type``: the text as a ``kind`` (int or float) within the bounds.

    A value it refuses gets one line saying what is wrong with it (argparse puts the
    option in front): "'x' is not a number", "'0' must be > 0", "'inf' is more than
    1000000000 seconds", or without a ``unit`` "'99999' is out of range 0-65535". A
    float option needs ``at_most``: that is what refuses infinity."""
    noun = "whole number" if kind is int else "number"
    floor = above if above is not None else at_least
    if at_most is None:
        too_big = ""
    elif unit or floor is None:
        too_big = f"is more than {_shown(at_most)}{f' {unit}' if unit else ''}"
    else:
        too_big = f"is out of range {_shown(floor)}-{_shown(at_most)}"

    def parse(text: str) -> _N:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {noun}") from None
        if value != value:  # NaN: every comparison with it is false, no bound would hold it
            raise argparse.ArgumentTypeError(f"{text!r} is not a number")
        if above is not None and not value > above:
            raise argparse.ArgumentTypeError(f"{text!r} must be > {_shown(above)}")
        if at_least is not None and not value >= at_least:
            raise argparse.ArgumentTypeError(f"{text!r} must be >= {_shown(at_least)}")
        if at_most is not None and value > at_most:
            raise argparse.ArgumentTypeError(f"{text!r} {too_big}")
        return value

    bounds: list[str] = []
    if above is not None:
        bounds.append(f"> {_shown(above)}")
    if at_least is not None:
        bounds.append(f">= {_shown(at_least)}")
    if at_most is not None:
        bounds.append(f"<= {_shown(at_most)}")
    parse.__name__ = " ".join(
        [noun, " and ".join(bounds), unit]
    ).strip()  # argparse's name for the type
    return parse


def _shown(bound: float) -> str:
    """``1e9`` as ``1000000000``: a bound is read by a person."""
    return str(int(bound)) if float(bound).is_integer() else str(bound)


_positive_seconds = _number(float, above=0.0, at_most=MAX_SECONDS, unit="seconds")
_seconds = _number(float, at_least=0.0, at_most=MAX_SECONDS, unit="seconds")
_positive_int = _number(int, at_least=1)
_port = _number(int, at_least=0, at_most=65535)
_job_count = _number(int, at_least=0, at_most=MAX_COUNT, unit="jobs")


def _task_name(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a task: expected a built-in name or module:function"
        )
    return text


def _address(text: str) -> tuple[str, int]:
    try:
        return parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_job_options(parser: argparse.ArgumentParser) -> None:
    """Where jobs come from: a JSON-lines file, or N jobs of one task."""
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--jobs",
        metavar="FILE",
        help='JSON lines: {"task": ..., "args": [...], "id": N, "time_limit_s": S}',
    )
    source.add_argument(
        "--task",
        type=_task_name,
        help="--count jobs of this task (built-in name or module:function)",
    )
    parser.add_argument(
        "--count",
        type=_job_count,
        default=10,
        help="with --task: how many jobs (default 10)",
    )
    parser.add_argument(
        "--args",
        metavar="JSON",
        help="with --task: the args list of every job (default: [i] for job i)",
    )


def _add_authkey_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--authkey-file",
        metavar="FILE",
        help=f"read the authkey from this file (default: ${AUTHKEY_ENV})",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="distq",
        description="A manager/worker job queue: no job lost, exactly one result per job.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    master = commands.add_parser(
        "master",
        help="serve jobs to workers and collect their results",
        description="Serve jobs to workers; print 'READY host:port' once accepting, then "
        "one JSON line per terminal result. Exits 0 when every job has its result.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_job_options(master)
    master.add_argument(
        "--open",
        action="store_true",
        help="also accept jobs from 'distq submit' until it says --close; then stop once "
        "every job is terminal",
    )
    master.add_argument(
        "--submit-window",
        type=_positive_int,
        default=DEFAULT_WINDOW,
        help="with --open: jobs one submitter may have unfinished at once; it waits for "
        f"room beyond that (default {DEFAULT_WINDOW})",
    )
    master.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    master.add_argument(
        "--port",
        type=_port,
        default=0,
        help="port to bind (default 0: any free port, reported on the READY line)",
    )
    master.add_argument("--results", metavar="FILE", help="write results here instead of stdout")
    master.add_argument("--events", metavar="FILE", help="append the event log (JSON lines) here")
    master.add_argument(
        "--journal",
        metavar="FILE",
        help="keep the job board in this SQLite file; if it exists, resume the run it holds "
        "(same jobs, same --results file): finished jobs are not run again",
    )
    master.add_argument(
        "--journal-fsync",
        action="store_true",
        help="with --journal: sync every commit to disk, so a power loss loses nothing "
        "acknowledged either (slower; by default a commit survives the master's crash)",
    )
    master.add_argument(
        "--batch-size",
        type=_positive_int,
        help="release jobs in batches of this size; batch k+1 only once batch k is complete",
    )
    master.add_argument(
        "--lease-timeout-s",
        type=_positive_seconds,
        default=10.0,
        help="a lease not heartbeaten for this long expires and its job is retried (default 10)",
    )
    master.add_argument(
        "--time-limit-s",
        type=_positive_seconds,
        help="kill a job that runs longer than this (default: no limit)",
    )
    master.add_argument(
        "--max-attempts",
        type=_positive_int,
        default=3,
        help="after this many failed attempts a job is dead (default 3)",
    )
    master.add_argument(
        "--handshake-timeout-s",
        type=_positive_seconds,
        default=5.0,
        help="drop connections that do not finish the authkey handshake in time (default 5)",
    )
    _add_authkey_option(master)

    worker = commands.add_parser(
        "worker",
        help="connect to a master and run jobs",
        description="Connect to a master, lease jobs, run each in a child process under its "
        "time limit, and report results until the master finishes.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    worker.add_argument(
        "--connect",
        required=True,
        type=_address,
        metavar="HOST:PORT",
        help="the master's address (as printed on its READY line)",
    )
    worker.add_argument(
        "--name", help="worker name, unique among connected workers (default: HOST-PID)"
    )
    worker.add_argument(
        "--events", metavar="FILE", help="append this worker's event log (JSON lines) here"
    )
    worker.add_argument(
        "--prefetch",
        type=_positive_int,
        default=256,
        help="lease at most this many jobs at once (default 256); leases are sized to about 0.1 s of observed work and shared fairly among workers",
    )
    worker.add_argument(
        "--idle-exit-s",
        type=_positive_seconds,
        help="exit 0 after this long without work (default: wait for the master)",
    )
    worker.add_argument(
        "--connect-timeout-s",
        type=_positive_seconds,
        default=10.0,
        help="keep retrying a refused connection this long (default 10)",
    )
    worker.add_argument(
        "--handshake-timeout-s",
        type=_positive_seconds,
        default=5.0,
        help="give up on a peer that does not answer the handshake (default 5)",
    )
    worker.add_argument(
        "--rpc-timeout-s",
        type=_positive_seconds,
        default=60.0,
        help="treat the master as lost when a reply takes longer (default 60)",
    )
    worker.add_argument(
        "--reconnect-s",
        type=_seconds,
        default=0.0,
        help="on a lost connection, keep trying this long to rejoin as the same worker; "
        "its leases go back to the queue and what it finishes is still reported "
        "(default 0: exit 5 at once)",
    )
    _add_authkey_option(worker)

    submit = commands.add_parser(
        "submit",
        help="add jobs to a running master started with --open",
        description="Add jobs to a running master started with --open; print their ids. "
        "--close tells it no more will come, so it stops once every job is terminal.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    submit.add_argument(
        "--connect", required=True, type=_address, metavar="HOST:PORT", help="the master's address"
    )
    _add_job_options(submit)
    submit.add_argument("--close", action="store_true", help="then close submissions")
    _add_authkey_option(submit)

    demo = commands.add_parser(
        "demo",
        help="run a master and local workers, kill one half-way, print a summary",
        description="Start a master and a few local workers, show live progress, SIGKILL "
        "one worker half-way, and check that every job still has exactly one result.",
    )
    demo.add_argument("--jobs", type=_positive_int, default=200, help="how many jobs (default 200)")
    demo.add_argument(
        "--workers", type=_positive_int, default=3, help="how many workers (default 3)"
    )
    demo.add_argument(
        "--job-delay-s", type=_seconds, default=0.02, help="seconds each job takes (default 0.02)"
    )
    return parser


def read_authkey(path: str | None) -> bytes:
    """The key from ``path`` or ``$DISTQ_AUTHKEY``; at least ``MIN_AUTHKEY_BYTES``."""
    key = _read_key_file(path) if path is not None else _read_key_env()
    if len(key) < MIN_AUTHKEY_BYTES:
        raise UsageError(weak_key_message(len(key)))
    return key


def _read_key_file(path: str) -> bytes:
    try:
        # O_NONBLOCK: opening a FIFO nobody writes to must not hang; it is refused below.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise UsageError(f"cannot read --authkey-file {path}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UsageError(f"--authkey-file {path} is not a regular file")
        key = handle.read(MAX_KEY_FILE_BYTES + 1).rstrip(b"\r\n")
    if len(key) > MAX_KEY_FILE_BYTES:
        raise UsageError(f"--authkey-file {path} is over {MAX_KEY_FILE_BYTES} bytes: not a key")
    if not key:
        raise UsageError(f"--authkey-file {path} is empty")
    return key


def _read_key_env() -> bytes:
    value = os.environ.get(AUTHKEY_ENV)
    if value is None:
        raise UsageError(
            f"no authkey: set {AUTHKEY_ENV} or use --authkey-file (there is no default)"
        )
    if not value:
        raise UsageError(f"{AUTHKEY_ENV} is set but empty")
    # Read once, then gone: the jobs this process runs never see it in their environment.
    del os.environ[AUTHKEY_ENV]
    return os.fsencode(value)


def _task_jobs(task: str, count: int, args_json: str | None) -> list[JobSpec]:
    if args_json is None:
        return [JobSpec(task, (i,)) for i in range(count)]
    try:
        args = json.loads(args_json)
    except json.JSONDecodeError as exc:
        raise UsageError(f"--args is not JSON: {exc.msg}") from None
    if not isinstance(args, list):
        raise UsageError(f"--args must be a JSON list, got {args_json}")
    return [JobSpec(task, tuple(args)) for _ in range(count)]


def _open_output(path: str | None) -> TextIO:
    if path is None:
        return sys.stdout
    try:
        return open(path, "a", encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write --results {path}: {exc.strerror or exc}") from None


def _check_writable(path: str | None, option: str) -> None:
    if path is None:
        return
    try:
        with open(path, "a", encoding="utf-8"):
            pass
    except OSError as exc:
        raise UsageError(f"cannot write {option} {path}: {exc.strerror or exc}") from None


def _master(options: argparse.Namespace) -> int:
    from distq.master import MasterConfig, run_master

    if options.jobs is None and options.task is None and not options.open:
        raise UsageError("give the jobs: --jobs FILE, --task NAME, or --open for 'distq submit'")
    authkey = read_authkey(options.authkey_file)
    jobs = _jobs_from(options)
    _check_writable(options.events, "--events")
    if options.journal_fsync and options.journal is None:
        raise UsageError("--journal-fsync needs --journal FILE")
    config = MasterConfig(
        host=options.host,
        port=options.port,
        lease_timeout_s=options.lease_timeout_s,
        time_limit_s=options.time_limit_s,
        max_attempts=options.max_attempts,
        batch_size=options.batch_size,
        handshake_timeout_s=options.handshake_timeout_s,
        open_submissions=options.open,
        submit_window=options.submit_window,
    )
    results = _open_output(options.results)
    try:
        return run_master(
            config,
            authkey,
            jobs,
            results=results,
            ready=sys.stdout,
            events_path=options.events,
            journal_path=options.journal,
            journal_fsync=options.journal_fsync,
            results_path=options.results,
            results_name=options.results or "stdout",
        )
    finally:
        if results is not sys.stdout:
            with contextlib.suppress(OSError):  # a full disk was already reported
                results.close()


def _jobs_from(options: argparse.Namespace) -> list[JobSpec]:
    if options.jobs is not None:
        return read_jobs_file(options.jobs)
    if options.task is not None:
        return _task_jobs(options.task, options.count, options.args)
    return []


def _submit(options: argparse.Namespace) -> int:
    from distq.client import Submitter

    if options.jobs is None and options.task is None and not options.close:
        raise UsageError("nothing to do: give --jobs FILE or --task NAME, and/or --close")
    authkey = read_authkey(options.authkey_file)
    specs = _jobs_from(options)
    if any(s.job_id is not None for s in specs):
        raise UsageError(
            "submitted jobs get their ids from the master: drop 'id' from the jobs file"
        )
    # The same pipelined path as a program's submit(): one call per job, sent in batches,
    # acknowledged by the master when flush() returns.
    with Submitter.connect(options.connect, authkey, collect_results=False) as submitter:
        if specs:
            ids = [submitter.submit(s.task, s.args, s.time_limit_s) for s in specs]
            submitter.flush()
            print(f"submitted {len(ids)} jobs: ids {_id_ranges(ids)}")
        if options.close:
            submitter.close_submissions()
            print("submissions closed: the master stops once every job is terminal")
    return 0


def _id_ranges(ids: list[int]) -> str:
    """``[0, 1, 2, 7, 8]`` -> ``"0..2, 7..8"`` (ids come in blocks, so runs are long)."""
    runs: list[list[int]] = []
    for job_id in ids:
        if runs and job_id == runs[-1][1] + 1:
            runs[-1][1] = job_id
        else:
            runs.append([job_id, job_id])
    return ", ".join(f"{first}..{last}" if first != last else f"{first}" for first, last in runs)


def _worker(options: argparse.Namespace) -> int:
    authkey = read_authkey(options.authkey_file)
    _check_writable(options.events, "--events")
    config = WorkerConfig(
        address=options.connect,
        name=options.name or default_worker_name(),
        prefetch=options.prefetch,
        idle_exit_s=options.idle_exit_s,
        connect_timeout_s=options.connect_timeout_s,
        handshake_timeout_s=options.handshake_timeout_s,
        rpc_timeout_s=options.rpc_timeout_s,
        reconnect_s=options.reconnect_s,
    )
    return run_worker(config, authkey, options.events)


def main(argv: Sequence[str] | None = None) -> int:
    # A hung run can be diagnosed from outside: SIGUSR1 writes every thread's stack.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    parser = build_parser()
    arguments = sys.argv[1:] if argv is None else list(argv)
    if any(arg == "--authkey" or arg.startswith("--authkey=") for arg in arguments):
        print(
            f"distq: error: the authkey is never taken from the command line (ps shows it to "
            f"everyone); set {AUTHKEY_ENV} or use --authkey-file",
            file=sys.stderr,
        )
        return EXIT_USAGE
    options = parser.parse_args(arguments)
    prog = f"distq {options.command}"
    try:
        if options.command == "master":
            return _master(options)
        if options.command == "worker":
            return _worker(options)
        if options.command == "submit":
            return _submit(options)
        from distq.demo import run_demo

        return run_demo(jobs=options.jobs, workers=options.workers, job_delay_s=options.job_delay_s)
    except DistqError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())

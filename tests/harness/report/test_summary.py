"""Summary reports (a soak run's): plain accepted attempts as columns, histograms and a
side file; what is drawn of the rest is what a full report draws."""

from __future__ import annotations

import base64
import gzip
import itertools
import json
import math
import random
import re
import struct
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from harness.checks import Verdict, Violation
from harness.history import History
from harness.report import DETAIL_NAME, render_html, write_report
from harness.report import timeline as timeline_module
from harness.report.chart import bucket_of, buckets_of
from harness.report.page import detail_script
from harness.report.timeline import build_timeline
from harness.report.trace import trace_events
from tests.harness.report.test_report import by_class, many_jobs

_WRONG_JOB = 7


def _history_and_verdict() -> tuple[History, Verdict]:
    history = History(many_jobs(400))
    [accepted] = history.select("result_accepted", job=_WRONG_JOB)
    wrong = Violation("correct_values", "job 7: wrong value", (_WRONG_JOB,), (accepted.line,))
    return history, Verdict("fail", (wrong,), (), ("correct_values",))


def _sparse_lines(page: str) -> dict[int, str]:
    found = re.search(r'id="history" data-encoding="([^"]+)">(.*?)</script>', page, re.S)
    assert found is not None
    encoding, text = found.groups()
    assert encoding == "sparse-gzip-base64"
    return {int(k): v for k, v in json.loads(gzip.decompress(base64.b64decode(text))).items()}


def _detail(script: str) -> dict[str, Any]:
    found = re.fullmatch(r'window\.reportDetail\("([A-Za-z0-9+/=]*)"\);\n', script)
    assert found is not None
    columns: dict[str, Any] = json.loads(gzip.decompress(base64.b64decode(found.group(1))))
    return columns


def test_a_summary_draws_what_a_full_timeline_draws_of_the_notable_attempts() -> None:
    history, verdict = _history_and_verdict()
    full = build_timeline(history, verdict, summary=False)
    summary = build_timeline(history, verdict, summary=True)
    notable = [a for a in full.attempts if a.outcome != "accepted" or a.flagged]
    assert len(notable) == 11  # the ten lost with worker-1, and the job with a wrong value
    assert [replace(a, row=0) for a in summary.attempts] == [replace(a, row=0) for a in notable]
    assert full.plain is None
    assert summary.plain is not None
    assert len(summary.plain) == len(full.attempts) - len(notable)
    plain = {
        (job, summary.plain.lanes[lane], t_start, t_end)
        for job, lane, t_start, t_end in zip(
            summary.plain.job,
            summary.plain.lane,
            summary.plain.t_start,
            summary.plain.t_end,
            strict=True,
        )
    }
    assert plain == {(a.job, a.lane, a.t_start, a.t_end) for a in full.attempts if a not in notable}
    assert [replace(lane, rows=0) for lane in summary.lanes] == [
        replace(lane, rows=0) for lane in full.lanes
    ]
    assert summary.marks == full.marks
    assert summary.summary == full.summary
    assert summary.job_lines == {job: full.job_lines[job] for job in summary.job_lines}
    assert set(summary.job_lines) == {a.job for a in notable}


def test_a_summary_page_counts_every_plain_attempt_and_carries_only_the_lines_it_cites() -> None:
    history, verdict = _history_and_verdict()
    timeline = build_timeline(history, verdict, summary=True)
    page = render_html(timeline, history)
    svg_text = re.search(r"<svg .*?</svg>", page, re.DOTALL)
    model_text = re.search(r'<script type="application/json" id="model">(.*?)</script>', page, re.S)
    assert svg_text is not None
    assert model_text is not None
    svg, model = ET.fromstring(svg_text.group(0)), json.loads(model_text.group(1))
    assert timeline.plain is not None
    assert model["plain"] == {"count": len(timeline.plain), "detail": DETAIL_NAME}
    assert model["aggregated"]
    assert len(model["attempts"]) == 11
    assert len(by_class(svg, "rect", "att")) == 11
    # Each plain attempt is counted in every 3-pixel bucket it spans: 1.1 ms of a 0.22 s
    # run drawn 1180 pixels wide, two to four buckets.
    counted = sum(int(rect.get("data-n", "0")) for rect in by_class(svg, "rect", "agg"))
    assert 2 * len(timeline.plain) <= counted <= 4 * len(timeline.plain)
    lines = _sparse_lines(page)
    cited = {line for a in timeline.attempts for line in a.lines}
    assert cited <= set(lines)
    assert len(lines) < len(history) / 5
    assert all(history[line].render() == text for line, text in lines.items())
    assert "accepted attempts no violation names are drawn as per-lane histograms" in page


def test_the_side_file_holds_every_plain_attempt(tmp_path: Path) -> None:
    history, verdict = _history_and_verdict()
    timeline = build_timeline(history, verdict, summary=True)
    assert timeline.plain is not None
    columns = _detail(detail_script(timeline.plain))
    jobs = list(itertools.accumulate(columns["job"]))
    starts = list(itertools.accumulate(columns["t0"]))
    assert jobs == list(timeline.plain.job)
    assert starts == [round(t * 1e6) for t in timeline.plain.t_start]
    ends = [start + duration for start, duration in zip(starts, columns["dur"], strict=True)]
    assert ends == [round(t * 1e6) for t in timeline.plain.t_end]
    assert [columns["lanes"][lane] for lane in columns["lane"]] == [
        timeline.plain.lanes[lane] for lane in timeline.plain.lane
    ]


def test_write_report_writes_the_side_file_for_a_summary_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    history, verdict = _history_and_verdict()
    side = tmp_path / DETAIL_NAME
    write_report(tmp_path, history, verdict)  # 400 leases: a full report
    assert not side.exists()
    monkeypatch.setattr(timeline_module, "SUMMARY_OVER", 100)
    write_report(tmp_path, history, verdict)
    assert len(list(itertools.accumulate(_detail(side.read_text())["job"]))) == 399
    monkeypatch.undo()
    write_report(tmp_path, history, verdict)  # a stale side file goes with its summary
    assert not side.exists()


def test_a_summary_trace_counts_the_plain_attempts_and_says_so() -> None:
    history, verdict = _history_and_verdict()
    timeline = build_timeline(history, verdict, summary=True)
    assert timeline.plain is not None
    trace = trace_events(timeline)
    assert "accepted attempts no violation names are counted" in trace["otherData"]["aggregated"]
    drawn = [e for e in trace["traceEvents"] if e["ph"] == "X" and e.get("cat") != "fault"]
    attempts = [e for e in drawn if e["name"].startswith("job ")]
    assert len(attempts) == 11
    counters = [e for e in trace["traceEvents"] if e["ph"] == "C"]
    assert counters
    assert max(e["args"]["running"] for e in counters) >= 1
    assert {e["pid"] for e in counters} >= {2, 3, 4, 5} - {2}  # worker-2..4 ran plain ones


def _first_time_in(bucket: int, t_max: float) -> float:
    """The smallest non-negative float whose bucket is ``bucket`` or later, found by
    bisecting the floats' bit patterns (ordered as the floats are, for non-negative ones)."""
    low, high = 0, struct.unpack("<q", struct.pack("<d", 2 * t_max))[0]
    while low < high:
        middle = (low + high) // 2
        if bucket_of(struct.unpack("<d", struct.pack("<q", middle))[0], t_max) >= bucket:
            high = middle
        else:
            low = middle + 1
    return float(struct.unpack("<d", struct.pack("<q", low))[0])


@pytest.mark.parametrize("t_max", [1e-6, 0.37, 47.3, 1234.5678, 1e7])
def test_a_summary_places_each_time_in_the_bucket_its_own_x_falls_in(t_max: float) -> None:
    """``buckets_of`` (bisection, for a million attempts) answers as ``bucket_of`` one time
    at a time: on random times, on the first time of buckets and its neighbours."""
    rng = random.Random(t_max)
    times = [rng.uniform(-0.1 * t_max, 1.1 * t_max) for _ in range(5000)] + [0.0, -0.0, t_max]
    for bucket in (1, 2, 7, 100, bucket_of(t_max, t_max)):
        start = _first_time_in(bucket, t_max)
        times += [math.nextafter(start, -math.inf), start, math.nextafter(start, math.inf)]
    rng.shuffle(times)
    assert buckets_of(times, t_max) == [bucket_of(t, t_max) for t in times]
    assert buckets_of([], t_max) == []
    assert buckets_of([t_max / 2], t_max) == [bucket_of(t_max / 2, t_max)]
    # not all finite: placed one by one, as bucket_of places them
    assert buckets_of([math.nan, 1.0], t_max) == [bucket_of(math.nan, t_max), bucket_of(1.0, t_max)]
    with pytest.raises((ValueError, OverflowError)):
        buckets_of([math.inf], t_max)
    # a span of times whose width overflows, or far past the plot: one by one as well
    wide = [-1.7976931348623157e308, 5e304, 1e305]
    assert buckets_of(wide, 1e305) == [bucket_of(t, 1e305) for t in wide]
    far = [0.0, 1000.0 * t_max, t_max]
    assert buckets_of(far, t_max) == [bucket_of(t, t_max) for t in far]

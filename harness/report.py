"""``report.html``: a self-contained timeline of one run (inline SVG, CSS and JS, no network).

The chart is drawn here as SVG, so it reads without JavaScript and tests can parse it; the
script only adds hover, click and the history lines, from the JSON model embedded beside
it. Past ``AGGREGATE_OVER`` attempts, plain accepted attempts become per-lane histograms.
"""

from __future__ import annotations

import base64
import gzip
import html
import json
import math
import os
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

from harness.checks import Verdict, Violation
from harness.history import History
from harness.timeline import (
    OUTCOMES,
    Attempt,
    FaultMark,
    Lane,
    Timeline,
    build_timeline,
    stack_rows,
)
from harness.trace import write_trace

__all__ = [
    "AGGREGATE_OVER",
    "REPORT_NAME",
    "VERDICT_NAME",
    "ReportError",
    "rebuild_report",
    "render_html",
    "write_report",
]

REPORT_NAME = "report.html"
VERDICT_NAME = "verdict.json"
#: More attempts than this and the accepted ones are drawn as histograms, not bars.
AGGREGATE_OVER = 1500
#: History up to this many lines is embedded as plain JSON; beyond it, gzipped.
_PLAIN_HISTORY_LINES = 3000

WIDTH = 1400
GUTTER = 150  # lane names
RIGHT = 70  # exit codes
AXIS_H = 34
ROW_H = 18
BAR_H = 14
LANE_PAD = 5
LABEL_H = 13  # a strip at the top of each lane for the labels of faults
HIST_H = 34
BUCKET_PX = 3
PLOT_W = WIDTH - GUTTER - RIGHT


class ReportError(ValueError):
    """A run directory the report cannot be built from."""


# -- writing and rebuilding -------------------------------------------------------------


def write_report(
    run_dir: str | os.PathLike[str],
    history: History,
    verdict: Verdict | None,
    *,
    title: str = "",
    faults_planned: int | None = None,
) -> Path:
    """Write ``verdict.json`` (unless verdict is None), ``report.html`` and ``trace.json``."""
    root = Path(run_dir)
    if verdict is not None:
        record = {"title": title, "faults_planned": faults_planned, **_verdict_record(verdict)}
        (root / VERDICT_NAME).write_text(json.dumps(record, indent=1, default=repr) + "\n")
    timeline = build_timeline(history, verdict, title=title, faults_planned=faults_planned)
    path = root / REPORT_NAME
    path.write_text(render_html(timeline, history), encoding="utf-8")
    write_trace(root / "trace.json", timeline)
    return path


def rebuild_report(run_dir: str | os.PathLike[str]) -> Path:
    """(Re)build the report of a kept run from its event logs and its ``verdict.json``."""
    root = Path(run_dir)
    if not root.is_dir():
        raise ReportError(f"{root}: not a directory (expected a run directory)")
    if not any(root.glob("*.events.jsonl")):
        raise ReportError(f"{root}: no *.events.jsonl files (expected a run directory)")
    history = History.load_run(root)
    verdict, title, planned = None, root.name, None
    recorded = root / VERDICT_NAME
    if recorded.is_file():
        try:
            record = json.loads(recorded.read_text())
            verdict = _verdict_from(record)
        except (ValueError, KeyError, TypeError) as exc:
            raise ReportError(f"{recorded}: not a verdict record ({exc})") from None
        title = str(record.get("title") or title)
        planned = record.get("faults_planned")
    return write_report(root, history, verdict, title=title, faults_planned=planned)


def _verdict_record(verdict: Verdict) -> dict[str, Any]:
    def one(violation: Violation) -> dict[str, Any]:
        return {
            "check": violation.check,
            "message": violation.message,
            "jobs": list(violation.jobs),
            "lines": list(violation.lines),
            "severity": violation.severity,
        }

    return {
        "status": verdict.status,
        "checks": list(verdict.checks),
        "violations": [one(v) for v in verdict.violations],
        "unknowns": [one(v) for v in verdict.unknowns],
    }


def _verdict_from(record: dict[str, Any]) -> Verdict:
    def many(key: str) -> tuple[Violation, ...]:
        return tuple(
            Violation(
                str(v["check"]),
                str(v["message"]),
                tuple(int(j) for j in v["jobs"]),
                tuple(int(line) for line in v["lines"]),
                "unknown" if v["severity"] == "unknown" else "fail",
            )
            for v in record[key]
        )

    status = record["status"]
    if status not in ("pass", "fail", "unknown"):
        raise ValueError(f"status {status!r}")
    return Verdict(status, many("violations"), many("unknowns"), tuple(record["checks"]))


# -- the page ------------------------------------------------------------------------------


def render_html(timeline: Timeline, history: History) -> str:
    aggregate = len(timeline.attempts) > AGGREGATE_OVER
    chart = _Chart(timeline, aggregate)
    svg = chart.svg()
    model = _model(timeline, chart)
    asset = resources.files("harness")
    script = asset.joinpath("report.js").read_text(encoding="utf-8")
    style = asset.joinpath("report.css").read_text(encoding="utf-8")
    lines = [event.render() for event in history]
    if len(lines) <= _PLAIN_HISTORY_LINES:
        encoding, history_text = "json", _script_safe(json.dumps(lines))
    else:
        packed = gzip.compress("\n".join(lines).encode("utf-8"), mtime=0)
        encoding, history_text = "gzip-base64", base64.b64encode(packed).decode("ascii")
    title = timeline.title or "run"
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{_e(title)} - {_e(timeline.summary.status)}</title>",
            f"<style>{style}</style></head><body>",
            _header(timeline),
            _legend(),
            f'<div id="chart">{svg}</div>',
            '<div id="tip" hidden></div>',
            '<section id="details"><p class="hint">Hover a bar for its job; click it for '
            "every attempt of the job and the history lines behind them.</p></section>",
            f'<script type="application/json" id="model">{_script_safe(json.dumps(model))}'
            "</script>",
            f'<script type="text/plain" id="history" data-encoding="{encoding}">'
            f"{history_text}</script>",
            f"<script>{script}</script>",
            "</body></html>",
        ]
    )


def _header(timeline: Timeline) -> str:
    s = timeline.summary
    checks = "".join(
        f'<li class="check {_e(status.replace(" ", "-"))}">{_e(name)}: <b>{_e(status)}</b></li>'
        for name, status in s.checks.items()
    )
    planned = "?" if s.faults_planned is None else str(s.faults_planned)
    counts = [
        ("jobs", s.jobs),
        ("results", s.results),
        ("lost", s.lost),
        ("duplicated", s.duplicated),
        ("requeued", s.requeued),
        ("duplicates dropped", s.dropped),
        ("faults planned", planned),
        ("fired", s.faults_fired),
        ("hit", s.faults_hit),
        ("wall time", f"{s.wall_s:.2f} s"),
    ]
    facts = "".join(f'<span class="fact">{_e(k)} <b>{_e(str(v))}</b></span>' for k, v in counts)
    violations = "".join(
        f'<li class="violation {_e(v["severity"])}" data-v="{index}">'
        f"<b>{_e(v['severity'])} {_e(v['check'])}</b>: {_e(v['message'])}</li>"
        for index, v in enumerate(timeline.violations)
    )
    return (
        f"<header><h1>{_e(timeline.title or 'run')} "
        f'<span class="verdict {_e(s.status.replace(" ", "-"))}">{_e(s.status)}</span></h1>'
        f'<ul class="checks">{checks}</ul><div class="facts">{facts}</div>'
        + (f'<ul class="violations">{violations}</ul>' if violations else "")
        + "</header>"
    )


def _legend() -> str:
    items = "".join(
        f'<span class="key"><i class="sw o-{key}"></i>{_e(words)}</span>'
        for key, words in OUTCOMES.items()
    )
    extra = (
        '<span class="key"><i class="sw flag"></i>named by a violation</span>'
        '<span class="key"><i class="sw band-pause"></i>pause</span>'
        '<span class="key"><i class="sw band-partition"></i>partition</span>'
        '<span class="key"><i class="sw band-toxic"></i>toxic</span>'
        '<span class="key"><i class="sw kill"></i>kill</span>'
        '<span class="key"><i class="sw batch"></i>batch opens</span>'
    )
    return f'<div class="legend">{items}{extra}</div>'


class _Chart:
    """Lays out lanes top to bottom and time left to right, and draws them as SVG."""

    def __init__(self, timeline: Timeline, aggregate: bool) -> None:
        self.timeline = timeline
        self.aggregate = aggregate
        self.t_max = max(timeline.t_end, 1e-3) * 1.01
        self.notable = [
            i
            for i, a in enumerate(timeline.attempts)
            if not aggregate or a.outcome != "accepted" or a.flagged
        ]
        if aggregate:
            spans = [
                (a.lane, a.t_start, a.t_end)
                for a in map(timeline.attempts.__getitem__, self.notable)
            ]
            rows = stack_rows(spans)
        else:
            rows = [timeline.attempts[i].row for i in self.notable]
        self.rows = dict(zip(self.notable, rows, strict=True))
        lane_rows = {lane.name: 0 for lane in timeline.lanes}
        for index, row in self.rows.items():
            name = timeline.attempts[index].lane
            lane_rows[name] = max(lane_rows.get(name, 0), row + 1)
        self.lane_y: dict[str, tuple[float, float]] = {}
        self.hist_h = {
            lane.name: HIST_H if aggregate and lane.rows else 0 for lane in timeline.lanes
        }
        y = float(AXIS_H)
        for lane in timeline.lanes:
            bar_rows = max(1, lane_rows[lane.name])
            height = LABEL_H + 2 * LANE_PAD + self.hist_h[lane.name] + bar_rows * ROW_H
            self.lane_y[lane.name] = (y, y + height)
            y += height
        self.height = y + 8
        self.buckets: dict[str, dict[int, list[int]]] = {}

    def x(self, t: float) -> float:
        return round(GUTTER + PLOT_W * max(0.0, t) / self.t_max, 1)

    def svg(self) -> str:
        parts = [
            f'<svg xmlns="http://www.w3.org/2000/svg" id="timeline" width="{WIDTH}" '
            f'height="{self.height:.0f}" viewBox="0 0 {WIDTH} {self.height:.0f}">'
        ]
        parts.extend(self._lanes())
        parts.extend(self._axis())
        parts.extend(self._bands())
        parts.extend(self._markers())  # under the bars: a kill must not hide what it hit
        if self.aggregate:
            parts.extend(self._histograms())
        parts.extend(self._bars())
        parts.extend(self._marks())
        parts.append("</svg>")
        return "".join(parts)

    def _lanes(self) -> Iterable[str]:
        for index, lane in enumerate(self.timeline.lanes):
            top, bottom = self.lane_y[lane.name]
            yield (
                f'<g class="lane{" killed" if lane.killed else ""}" data-lane="{_e(lane.name)}" '
                f'data-t-start="{lane.t_start:.6f}" data-t-end="{lane.t_end:.6f}">'
                f'<rect class="stripe{index % 2}" x="0" y="{top}" width="{WIDTH}" height="{bottom - top}"/>'
                f'<rect class="alive" x="{self.x(lane.t_start)}" y="{top + 2}" '
                f'width="{max(1.0, self.x(lane.t_end) - self.x(lane.t_start)):.1f}" height="{bottom - top - 4}"/>'
                f'<text class="name" x="8" y="{(top + bottom) / 2 + 4:.1f}">{_e(lane.name)}</text>'
                + _exit_label(lane, top, bottom)
                + "</g>"
            )

    def _axis(self) -> Iterable[str]:
        step = _nice_step(self.t_max / 12)
        yield '<g class="axis">'
        for i in range(math.floor(self.t_max / step) + 1):
            t = i * step
            x = self.x(t)
            yield (
                f'<line x1="{x}" y1="{AXIS_H - 6}" x2="{x}" y2="{self.height}"/>'
                f'<text x="{x}" y="{AXIS_H - 10}">{_fmt_t(t, step)}</text>'
            )
        yield "</g>"
        for batch, t, line in self.timeline.batches:
            x = self.x(t)
            yield (
                f'<g class="batch" data-batch="{batch}" data-line="{line}">'
                f'<line x1="{x}" y1="{AXIS_H - 4}" x2="{x}" y2="{self.height}"/>'
                f'<text x="{x + 3}" y="{AXIS_H - 1}">batch {batch}</text></g>'
            )

    def _span(self, lane: str | None) -> tuple[float, float]:
        if lane is not None and lane in self.lane_y:
            return self.lane_y[lane]
        return float(AXIS_H), self.height - 8

    def _bands(self) -> Iterable[str]:
        for index, fault in enumerate(self.timeline.faults):
            if fault.t_end is None:
                continue
            top, bottom = self._span(fault.lane)
            x0, x1 = self.x(fault.t_start), self.x(fault.t_end)
            yield (
                f'<g class="fault band band-{_e(fault.action)}" data-f="{index}" '
                f'data-lane="{_e(fault.lane or "")}" data-action="{_e(fault.action)}" '
                f'data-t-start="{fault.t_start:.6f}" data-t-end="{fault.t_end:.6f}">'
                f'<rect x="{x0}" y="{top + 1}" width="{max(2.0, x1 - x0):.1f}" height="{bottom - top - 2}"/>'
                f'<text x="{x0 + 3}" y="{top + 10}">{_e(fault.label)} '
                f"{fault.t_end - fault.t_start:.2f} s</text></g>"
            )

    def _markers(self) -> Iterable[str]:
        for index, fault in enumerate(self.timeline.faults):
            if fault.t_end is not None:
                continue
            top, bottom = self._span(fault.lane)
            x = self.x(fault.t_start)
            kind = "missed" if fault.missed else "kill" if "kill" in fault.action else "other"
            label = fault.label + (f" (missed: {fault.missed})" if fault.missed else "")
            yield (
                f'<g class="fault marker {kind}" data-f="{index}" data-lane="{_e(fault.lane or "")}" '
                f'data-action="{_e(fault.action)}" data-t="{fault.t_start:.6f}">'
                f'<line x1="{x}" y1="{top}" x2="{x}" y2="{bottom}"/>'
                f'<rect class="hit" x="{x - 4}" y="{top}" width="8" height="{bottom - top}"/>'
                f'<text x="{x + 4}" y="{top + 10}">{"✕ " if kind == "kill" else ""}{_e(label)}</text></g>'
            )

    def _bars(self) -> Iterable[str]:
        attempts = self.timeline.attempts
        note_free: dict[tuple[str, int], float] = {}  # where the last note of a row ends
        for index in self.notable:
            attempt = attempts[index]
            if attempt.lane not in self.lane_y:
                continue
            top, _ = self.lane_y[attempt.lane]
            y = top + LABEL_H + LANE_PAD + self.hist_h[attempt.lane] + self.rows[index] * ROW_H
            x0, x1 = self.x(attempt.t_start), self.x(attempt.t_end)
            width = max(3.0, x1 - x0)
            flag = " flag" if attempt.flagged else ""
            yield (
                f'<rect class="att o-{attempt.outcome}{flag}" data-a="{index}" '
                f'data-job="{attempt.job}" x="{x0}" y="{y:.1f}" width="{width:.1f}" height="{BAR_H}"/>'
            )
            if attempt.t_lease_end is not None:
                # After its lease ended the holder still ran the job: drawn paler from there.
                xe = self.x(attempt.t_lease_end)
                yield (
                    f'<rect class="late" x="{xe}" y="{y:.1f}" width="{max(0.0, x0 + width - xe):.1f}" '
                    f'height="{BAR_H}"/><line class="lease-end" x1="{xe}" y1="{y - 1:.1f}" '
                    f'x2="{xe}" y2="{y + BAR_H + 1:.1f}"/>'
                )
            text_y = y + BAR_H - 3
            if width >= 8 * len(str(attempt.job)) + 6:
                yield f'<text class="jl" x="{x0 + 3}" y="{text_y:.1f}">{attempt.job}</text>'
            if attempt.outcome != "accepted" and not self.aggregate:
                words = OUTCOMES[attempt.outcome]
                note = f"job {attempt.job} {words}" if width < 60 else words
                x_note = x0 + width + 3 if width < 60 else x0 + 8 * len(str(attempt.job)) + 8
                row = (attempt.lane, self.rows[index])
                if x_note >= note_free.get(row, 0.0):  # never over the previous note
                    note_free[row] = x_note + 6 * len(note) + 6
                    yield f'<text class="note" x="{x_note:.1f}" y="{text_y:.1f}">{_e(note)}</text>'

    def _histograms(self) -> Iterable[str]:
        notable = set(self.notable)
        counts: dict[str, dict[int, list[int]]] = {}
        for index, attempt in enumerate(self.timeline.attempts):
            if index in notable:
                continue
            first = int((self.x(attempt.t_start) - GUTTER) // BUCKET_PX)
            last = int((self.x(attempt.t_end) - GUTTER) // BUCKET_PX)
            lane = counts.setdefault(attempt.lane, {})
            for bucket in range(first, last + 1):
                lane.setdefault(bucket, []).append(index)
        self.buckets = counts
        peak = max((len(v) for lane in counts.values() for v in lane.values()), default=1)
        for name, buckets in counts.items():
            if name not in self.lane_y:
                continue
            base = self.lane_y[name][0] + LABEL_H + LANE_PAD + HIST_H
            yield f'<g class="hist" data-lane="{_e(name)}">'
            for bucket, indices in sorted(buckets.items()):
                h = max(1.0, HIST_H * len(indices) / peak)
                yield (
                    f'<rect class="agg" data-b="{bucket}" data-n="{len(indices)}" '
                    f'x="{GUTTER + bucket * BUCKET_PX}" y="{base - h:.1f}" width="{BUCKET_PX}" height="{h:.1f}"/>'
                )
            yield "</g>"

    def _marks(self) -> Iterable[str]:
        for index, (lane, t, ev, _line) in enumerate(self.timeline.marks):
            if lane not in self.lane_y:
                continue
            bottom = self.lane_y[lane][1]
            x = self.x(t)
            yield (
                f'<rect class="mark ev-{_e(ev)}" data-m="{index}" x="{x - 1}" y="{bottom - 7}" '
                f'width="2" height="6"/>'
            )


def _exit_label(lane: Lane, top: float, bottom: float) -> str:
    y = (top + bottom) / 2 + 4
    text = "killed" if lane.killed else "" if lane.exit_code is None else f"exit {lane.exit_code}"
    return (
        f'<text class="exit" x="{WIDTH - RIGHT + 6}" y="{y:.1f}">{_e(text)}</text>' if text else ""
    )


def _model(timeline: Timeline, chart: _Chart) -> dict[str, Any]:
    lanes = [lane.name for lane in timeline.lanes]
    lane_index = {name: i for i, name in enumerate(lanes)}
    outcomes = list(OUTCOMES)

    def attempt(a: Attempt) -> list[Any]:
        return [
            a.job,
            a.attempt,
            lane_index.get(a.lane, -1),
            round(a.t_start, 6),
            round(a.t_end, 6),
            outcomes.index(a.outcome),
            a.reason,
            None if a.t_lease_end is None else round(a.t_lease_end, 6),
            list(a.lines),
            int(a.flagged),
        ]

    def fault(f: FaultMark) -> dict[str, Any]:
        return {
            "label": f.label,
            "action": f.action,
            "lane": f.lane,
            "t_start": round(f.t_start, 6),
            "t_end": None if f.t_end is None else round(f.t_end, 6),
            "lines": list(f.lines),
            "missed": f.missed,
        }

    s = timeline.summary
    return {
        "title": timeline.title,
        "summary": {
            "status": s.status,
            "checks": dict(s.checks),
            "jobs": s.jobs,
            "results": s.results,
            "lost": s.lost,
            "duplicated": s.duplicated,
            "requeued": s.requeued,
            "dropped": s.dropped,
            "faults_planned": s.faults_planned,
            "faults_fired": s.faults_fired,
            "faults_hit": s.faults_hit,
            "wall_s": s.wall_s,
        },
        "outcomes": [[key, words] for key, words in OUTCOMES.items()],
        "attempt_fields": [
            "job",
            "attempt",
            "lane",
            "t_start",
            "t_end",
            "outcome",
            "reason",
            "t_lease_end",
            "lines",
            "flagged",
        ],
        "lanes": [
            {
                "name": lane.name,
                "t_start": lane.t_start,
                "t_end": lane.t_end,
                "killed": lane.killed,
                "exit_code": lane.exit_code,
            }
            for lane in timeline.lanes
        ],
        "attempts": [attempt(a) for a in timeline.attempts],
        "faults": [fault(f) for f in timeline.faults],
        "batches": [list(b) for b in timeline.batches],
        "marks": [[lane, round(t, 6), ev, line] for lane, t, ev, line in timeline.marks],
        "violations": list(timeline.violations),
        "job_lines": {str(job): list(lines) for job, lines in timeline.job_lines.items()},
        "aggregated": chart.aggregate,
        "buckets": {
            name: {str(b): v for b, v in buckets.items()} for name, buckets in chart.buckets.items()
        },
        "t_end": timeline.t_end,
    }


def _nice_step(raw: float) -> float:
    exponent = math.floor(math.log10(max(raw, 1e-6)))
    for factor in (1, 2, 5, 10):
        step = factor * 10.0**exponent
        if step >= raw:
            return step
    return 10.0 ** (exponent + 1)


def _fmt_t(t: float, step: float) -> str:
    digits = max(0, -math.floor(math.log10(step))) if step < 1 else 0
    return f"{t:.{digits}f} s"


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _script_safe(text: str) -> str:
    """JSON inside <script>: no ``</script>`` can end it early."""
    return text.replace("<", "\\u003c")

"""``report.html``: a self-contained timeline of one run (inline SVG, CSS and JS, no network).

The chart is SVG (``harness.chart``), so it reads without JavaScript and tests can parse
it; the script only adds hover, click and the history lines, from the JSON model embedded
beside it. ``verdict.json`` keeps the verdict, so a kept run's report can be rebuilt.
"""

from __future__ import annotations

import base64
import gzip
import html
import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

from harness.checks import Outcome, Verdict, Violation
from harness.checks.violations import Severity
from harness.history import History, HistoryError
from harness.report.chart import AGGREGATE_OVER, MAX_ROWS, Chart
from harness.report.timeline import (
    OUTCOMES,
    Attempt,
    FaultMark,
    Plain,
    Timeline,
    build_timeline,
)
from harness.report.trace import write_trace

__all__ = [
    "AGGREGATE_OVER",
    "DETAIL_NAME",
    "REPORT_NAME",
    "VERDICT_NAME",
    "Outcome",
    "ReportError",
    "detail_script",
    "rebuild_report",
    "render_html",
    "write_report",
]

REPORT_NAME = "report.html"
VERDICT_NAME = "verdict.json"
#: A summary report's side file: its plain accepted attempts, which the page loads (as a
#: script, so that it works from ``file://``) when a reader zooms in far enough.
DETAIL_NAME = "report.detail.js"
#: History up to this many lines is embedded as plain JSON; beyond it, gzipped.
_PLAIN_HISTORY_LINES = 3000


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
    outcome: Outcome | None = None,
) -> Path:
    """Write ``report.html`` and ``trace.json`` (the verdict is ``write_verdict``'s)."""
    root = Path(run_dir)
    timeline = build_timeline(history, verdict, title=title, faults_planned=faults_planned)
    notes = () if verdict is None else verdict.notes
    path = root / REPORT_NAME
    path.write_text(render_html(timeline, history, outcome=outcome, notes=notes), encoding="utf-8")
    detail = root / DETAIL_NAME
    if timeline.plain is not None:
        detail.write_text(detail_script(timeline.plain), encoding="ascii")
    elif detail.exists():  # from an earlier build of the same run
        detail.unlink()
    write_trace(root / "trace.json", timeline)
    return path


def detail_script(plain: Plain) -> str:
    """The side file of a summary report: its plain attempts as gzipped JSON columns (job
    ids and start times as differences from the previous one, times in microseconds),
    handed to the page's ``reportDetail``."""
    jobs = list(plain.job)
    starts = [round(t * 1e6) for t in plain.t_start]
    columns = {
        "lanes": list(plain.lanes),
        "lane": list(plain.lane),
        "job": [b - a for a, b in zip([0, *jobs], jobs, strict=False)],
        "t0": [b - a for a, b in zip([0, *starts], starts, strict=False)],
        "dur": [
            max(0, round(t_end * 1e6) - start)
            for start, t_end in zip(starts, plain.t_end, strict=True)
        ],
    }
    # Level 3: a third of level 6's time on a million attempts, for a file 14% larger.
    packed = gzip.compress(json.dumps(columns, separators=(",", ":")).encode(), 3, mtime=0)
    return f'window.reportDetail("{base64.b64encode(packed).decode("ascii")}");\n'


def write_verdict(
    run_dir: str | os.PathLike[str],
    verdict: Verdict,
    *,
    title: str = "",
    faults_planned: int | None = None,
    outcome: Outcome | None = None,
) -> Path:
    """Write ``verdict.json``: the run's result, kept whether or not its report can be
    drawn (``rebuild_report`` draws it again from this and the event logs)."""
    record = {"title": title, "faults_planned": faults_planned, **_verdict_record(verdict)}
    if outcome is not None:
        record["scenario"] = _outcome_record(outcome)
    path = Path(run_dir) / VERDICT_NAME
    path.write_text(json.dumps(record, indent=1, default=repr) + "\n")
    return path


def rebuild_report(run_dir: str | os.PathLike[str]) -> Path:
    """(Re)build the report of a kept run from its event logs and its ``verdict.json``."""
    root = Path(run_dir)
    if not root.is_dir():
        raise ReportError(f"{root}: not a directory (expected a run directory)")
    if not any(root.glob("*.events.jsonl")):
        raise ReportError(f"{root}: no *.events.jsonl files (expected a run directory)")
    try:
        history = History.load_run(root)
    except HistoryError as exc:
        raise ReportError(f"{root}: its history cannot be read: {exc}") from None
    verdict, title, planned, outcome = None, root.name, None, None
    recorded = root / VERDICT_NAME
    if recorded.is_file():
        try:
            record = json.loads(recorded.read_text())
            verdict = _verdict_from(record)
            if "scenario" in record:
                outcome = _outcome_from(record["scenario"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ReportError(f"{recorded}: not a verdict record ({exc})") from None
        title = str(record.get("title") or title)
        planned = record.get("faults_planned")
    return write_report(
        root, history, verdict, title=title, faults_planned=planned, outcome=outcome
    )


def _verdict_record(verdict: Verdict) -> dict[str, Any]:
    def one(violation: Violation) -> dict[str, Any]:
        return {
            "check": violation.check,
            "message": violation.message,
            "jobs": list(violation.jobs),
            "lines": list(violation.lines),
            "severity": violation.severity,
            "cause": violation.cause,
        }

    return {
        "status": verdict.status,
        "checks": list(verdict.checks),
        "violations": [one(v) for v in verdict.violations],
        "unknowns": [one(v) for v in verdict.unknowns],
        "notes": [one(v) for v in verdict.notes],
        "evidence": [list(item) for item in verdict.evidence],
    }


def _verdict_from(record: dict[str, Any]) -> Verdict:
    def many(key: str, severity: Severity) -> tuple[Violation, ...]:
        return tuple(
            Violation(
                str(v["check"]),
                str(v["message"]),
                tuple(int(j) for j in v["jobs"]),
                tuple(int(line) for line in v["lines"]),
                severity,
                str(v.get("cause", "")),
            )
            for v in record.get(key, ())  # a record from before notes were kept has none
        )

    status = record["status"]
    if status not in ("pass", "fail", "unknown"):
        raise ValueError(f"status {status!r}")
    return Verdict(
        status,
        many("violations", "fail"),
        many("unknowns", "unknown"),
        tuple(record["checks"]),
        many("notes", "note"),
        tuple((str(c), int(n), str(u)) for c, n, u in record.get("evidence", ())),
    )


def _outcome_record(outcome: Outcome) -> dict[str, Any]:
    return {
        "status": outcome.status,
        "message": outcome.message,
        "expected": list(outcome.expected),
        "matched": list(outcome.matched),
    }


def _outcome_from(record: dict[str, Any]) -> Outcome:
    status = record["status"]
    if status not in ("pass", "fail", "unknown"):
        raise ValueError(f"scenario status {status!r}")
    expected, matched = (
        tuple(map(str, record["expected"])),
        tuple(map(str, record.get("matched", ()))),
    )
    return Outcome(status, str(record["message"]), expected, matched)


# -- the page ------------------------------------------------------------------------------


def render_html(
    timeline: Timeline,
    history: History,
    *,
    outcome: Outcome | None = None,
    notes: tuple[Violation, ...] = (),
) -> str:
    """The whole page: header, legend, chart, and the model and history its script reads.

    ``outcome`` is the scenario's, when it differs from the run's verdict or may; ``notes``
    are what the checks measured (recovery latencies)."""
    aggregate = len(timeline.attempts) > AGGREGATE_OVER or timeline.plain is not None
    chart = Chart(timeline, aggregate)
    svg = chart.svg()
    model = _model(timeline, chart, outcome)
    asset = resources.files("harness.report")
    script = asset.joinpath("report.js").read_text(encoding="utf-8")
    style = asset.joinpath("report.css").read_text(encoding="utf-8")
    if timeline.plain is not None:  # a summary carries the lines it points at, no others
        cited = {
            line: history[line].render()
            for line in sorted(_cited_lines(timeline))
            if 0 <= line < len(history)
        }
        packed = gzip.compress(json.dumps(cited).encode("utf-8"), compresslevel=6, mtime=0)
        encoding, history_text = "sparse-gzip-base64", base64.b64encode(packed).decode("ascii")
    else:
        lines = [event.render() for event in history]
        if len(lines) <= _PLAIN_HISTORY_LINES:
            encoding, history_text = "json", _script_safe(json.dumps(lines))
        else:
            packed = gzip.compress("\n".join(lines).encode("utf-8"), compresslevel=6, mtime=0)
            encoding, history_text = "gzip-base64", base64.b64encode(packed).decode("ascii")
    title = timeline.title or "run"
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{_e(title)} - "
            f"{_e(timeline.summary.status if outcome is None else outcome.status)}</title>",
            f"<style>{style}</style></head><body>",
            _header(timeline, outcome, notes),
            _summary_note(timeline, len(history)),
            _legend(),
            '<div class="zoom">Drag across the chart to zoom into a stretch of time, '
            'double-click to see it all. <span id="zoom-window" hidden>Showing <b></b>'
            '<button id="zoom-reset" type="button">show all</button></span></div>',
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


def _header(timeline: Timeline, outcome: Outcome | None, notes: tuple[Violation, ...]) -> str:
    s = timeline.summary
    expected = set(() if outcome is None else outcome.expected)

    def check(name: str, status: str) -> str:
        known = name in expected and status == "fail"
        css = status.replace(" ", "-") + (" expected" if known else "")
        return (
            f'<li class="check {_e(css)}">{_e(name)}: <b>{_e(status)}</b>'
            + (" (expected)" if known else "")
            + "</li>"
        )

    checks = "".join(check(name, status) for name, status in s.checks.items())
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
        f'<li class="violation {_e(v["severity"])}{" expected" if known else ""}" '
        f'data-v="{index}"><b>{"expected " if known else ""}{_e(v["severity"])} '
        f"{_e(v['check'])}</b>: {_e(v['message'])}</li>"
        for index, v in enumerate(timeline.violations)
        for known in [v["check"] in expected and v["severity"] == "fail"]
    )
    measured = "".join(
        f'<li class="note"><b>{_e(n.check)}</b>: {_e(n.message)}</li>' for n in notes
    )
    status_css = _e(s.status.replace(" ", "-"))
    if outcome is None:
        badges = f'<span class="verdict {status_css}">{_e(s.status)}</span>'
        said = ""
    else:  # the scenario's outcome first: it is what pytest and the exit code say
        badges = (
            f'<span class="outcome {_e(outcome.status)}">scenario {_e(outcome.status)}</span> '
            f'<span class="verdict {status_css}">run {_e(s.status)}</span>'
        )
        said = f'<p class="said">{_e(outcome.message)}</p>'
    return (
        f"<header><h1>{_e(timeline.title or 'run')} {badges}</h1>{said}"
        f'<ul class="checks">{checks}</ul><div class="facts">{facts}</div>'
        + (f'<ul class="violations">{violations}</ul>' if violations else "")
        + (f'<ul class="notes" title="measured by the checks">{measured}</ul>' if notes else "")
        + "</header>"
    )


def _cited_lines(timeline: Timeline) -> set[int]:
    """Every history line a summary's model points at."""
    cited: set[int] = set()
    for attempt in timeline.attempts:
        cited.update(attempt.lines)
    for own in timeline.job_lines.values():
        cited.update(own)
    for violation in timeline.violations:
        cited.update(violation["lines"])
    for fault in timeline.faults:
        cited.update(fault.lines)
    cited.update(line for *_, line in timeline.marks)
    cited.update(line for *_, line in timeline.batches)
    return cited


def _summary_note(timeline: Timeline, history_lines: int) -> str:
    """What a summary report draws as histograms, and where the rest of the run is."""
    plain = timeline.plain
    if plain is None:
        return ""
    left_out = ""
    if timeline.attempts_left_out:
        left_out += f" {timeline.attempts_left_out} more notable attempts are not drawn."
    if timeline.violations_left_out:
        left_out += (
            f" {timeline.violations_left_out} more violations are in {VERDICT_NAME}, not here."
        )
    return (
        f'<p class="summary-note">A summary of {history_lines} history lines: the '
        f"{len(plain)} accepted attempts no violation names are drawn as per-lane histograms; "
        f"zoom in to see them as bars (from {DETAIL_NAME}, beside this page). The page "
        "carries the history lines of the attempts, faults and violations it draws; every "
        f"other line is in the run's event logs.{_e(left_out)}</p>"
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


def _model(timeline: Timeline, chart: Chart, outcome: Outcome | None) -> dict[str, Any]:
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
            a.row,
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
            "unverified": f.unverified,
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
            "row",
        ],
        "max_rows": MAX_ROWS,
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
        "scenario": None if outcome is None else _outcome_record(outcome),
        "violations": [
            {**v, "expected": outcome is not None and v["check"] in outcome.expected}
            for v in timeline.violations
        ],
        "job_lines": {str(job): list(lines) for job, lines in timeline.job_lines.items()},
        "aggregated": chart.aggregate,
        "buckets": {
            name: {str(b): v for b, v in buckets.items()} for name, buckets in chart.buckets.items()
        },
        "t_end": timeline.t_end,
        "plain": None
        if timeline.plain is None
        else {"count": len(timeline.plain), "detail": DETAIL_NAME},
    }


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _script_safe(text: str) -> str:
    """JSON inside <script>: no ``</script>`` can end it early."""
    return text.replace("<", "\\u003c")

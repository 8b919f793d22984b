"""The timeline of a run as SVG: lanes top to bottom, time left to right.

Bars, bands and markers carry ``data-`` attributes (attempt, job, lane, times) so that the
page's script and the tests can find what is drawn. Past ``AGGREGATE_OVER`` attempts, plain
accepted attempts become per-lane histograms and only the rest stay bars.
"""

from __future__ import annotations

import html
import math
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import compress, repeat
from operator import add, mul, ne

from harness.contract import fault_action
from harness.report.timeline import MAX_ROWS, OUTCOMES, Lane, Timeline, stack_rows

__all__ = ["AGGREGATE_OVER", "MAX_ROWS", "Chart"]

#: More attempts than this and the accepted ones are drawn as histograms, not bars.
AGGREGATE_OVER = 1500

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


class Chart:
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
        plain_lanes = set() if timeline.plain is None else set(timeline.plain.lanes)
        self.hist_h = {
            lane.name: HIST_H if aggregate and (lane.rows or lane.name in plain_lanes) else 0
            for lane in timeline.lanes
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
        # Everything placed in time sits in #plot, clipped to the plot area, so that the
        # page's script can zoom it: each x moves with its time, text keeps its data-dx.
        parts = [
            f'<svg xmlns="http://www.w3.org/2000/svg" id="timeline" width="{WIDTH}" '
            f'height="{self.height:.0f}" viewBox="0 0 {WIDTH} {self.height:.0f}" '
            f'data-gutter="{GUTTER}" data-plot-w="{PLOT_W}" data-t-max="{self.t_max:.6f}">'
            f'<defs><clipPath id="plot-clip"><rect x="{GUTTER - 2}" y="0" '
            f'width="{PLOT_W + 4}" height="{self.height:.0f}"/></clipPath></defs>'
        ]
        parts.extend(self._lanes())
        parts.extend(self._axis())
        parts.append('<g id="plot" clip-path="url(#plot-clip)">')
        parts.extend(self._alive())
        parts.extend(self._batches())
        parts.extend(self._bands())
        parts.extend(self._markers())  # under the bars: a kill must not hide what it hit
        if self.aggregate:
            parts.extend(self._histograms())
        parts.extend(self._bars())
        parts.extend(self._marks())
        parts.append(
            '</g><rect id="brush" hidden="hidden" x="0" y="0" width="0" height="0"/></svg>'
        )
        return "".join(parts)

    def _lanes(self) -> Iterable[str]:
        for index, lane in enumerate(self.timeline.lanes):
            top, bottom = self.lane_y[lane.name]
            yield (
                f'<g class="lane{" killed" if lane.killed else ""}" data-lane="{_e(lane.name)}" '
                f'data-t-start="{lane.t_start:.6f}" data-t-end="{lane.t_end:.6f}">'
                f'<rect class="stripe{index % 2}" x="0" y="{top}" width="{WIDTH}" height="{bottom - top}"/>'
                f'<text class="name" x="8" y="{(top + bottom) / 2 + 4:.1f}">{_e(lane.name)}</text>'
                + _exit_label(lane, top, bottom)
                + (
                    ""
                    if lane.seen
                    else f'<text class="unseen" x="{GUTTER + 6}" y="{(top + bottom) / 2 + 4:.1f}">'
                    "no events of its own in the history</text>"
                )
                + "</g>"
            )

    def _alive(self) -> Iterable[str]:
        for lane in self.timeline.lanes:
            if not lane.seen:
                continue
            top, bottom = self.lane_y[lane.name]
            x0, x1 = self.x(lane.t_start), self.x(lane.t_end)
            yield (
                f'<rect class="alive{" killed" if lane.killed else ""}" '
                f'data-lane="{_e(lane.name)}" x="{x0}" y="{top + 2}" '
                f'width="{max(1.0, x1 - x0):.1f}" height="{bottom - top - 4}"/>'
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

    def _batches(self) -> Iterable[str]:
        for batch, t, line in self.timeline.batches:
            x = self.x(t)
            yield (
                f'<g class="batch" data-batch="{batch}" data-line="{line}">'
                f'<line x1="{x}" y1="{AXIS_H - 4}" x2="{x}" y2="{self.height}"/>'
                f'<text x="{x + 3}" data-dx="3" y="{AXIS_H - 1}">batch {batch}</text></g>'
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
                f'<g class="fault band band-{_e(fault.action)}{" unverified" if fault.unverified else ""}" data-f="{index}" '
                f'data-lane="{_e(fault.lane or "")}" data-action="{_e(fault.action)}" '
                f'data-t-start="{fault.t_start:.6f}" data-t-end="{fault.t_end:.6f}">'
                f'<rect x="{x0}" y="{top + 1}" width="{max(2.0, x1 - x0):.1f}" height="{bottom - top - 2}"/>'
                f'<text x="{x0 + 3}" data-dx="3" y="{top + 10}">{_e(fault.label)} '
                f"{fault.t_end - fault.t_start:.2f} s</text></g>"
            )

    def _markers(self) -> Iterable[str]:
        for index, fault in enumerate(self.timeline.faults):
            if fault.t_end is not None:
                continue
            top, bottom = self._span(fault.lane)
            x = self.x(fault.t_start)
            drawn = fault_action(fault.action).drawn
            kind = "missed" if fault.missed else "kill" if drawn == "kill" else "other"
            kind += " unverified" if fault.unverified else ""
            label = fault.label + (f" (missed: {fault.missed})" if fault.missed else "")
            label += f" (no effect: {fault.unverified})" if fault.unverified else ""
            yield (
                f'<g class="fault marker {kind}" data-f="{index}" data-lane="{_e(fault.lane or "")}" '
                f'data-action="{_e(fault.action)}" data-t="{fault.t_start:.6f}">'
                f'<line x1="{x}" y1="{top}" x2="{x}" y2="{bottom}"/>'
                f'<rect class="hit" x="{x - 4}" data-dx="-4" data-fixed="1" y="{top}" width="8" '
                f'height="{bottom - top}"/><text x="{x + 4}" data-dx="4" y="{top + 10}">{"✕ " if kind == "kill" else ""}{_e(label)}</text></g>'
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
                yield f'<text class="jl" x="{x0 + 3}" data-dx="3" y="{text_y:.1f}">{attempt.job}</text>'
            if attempt.outcome != "accepted" and not self.aggregate:
                words = OUTCOMES[attempt.outcome]
                note = f"job {attempt.job} {words}" if width < 60 else words
                # Beside a short bar (anchored at its end), else inside after the job id.
                anchor, dx = (
                    (x0 + width, 3.0) if width < 60 else (x0, 8.0 * len(str(attempt.job)) + 8)
                )
                row = (attempt.lane, self.rows[index])
                if anchor + dx >= note_free.get(row, 0.0):  # never over the previous note
                    note_free[row] = anchor + dx + 6 * len(note) + 6
                    yield (
                        f'<text class="note" x="{anchor + dx:.1f}" data-dx="{dx:.0f}" '
                        f'y="{text_y:.1f}">{_e(note)}</text>'
                    )

    def _bucket(self, t: float) -> int:
        return bucket_of(t, self.t_max)

    def _histograms(self) -> Iterable[str]:
        notable = set(self.notable)
        counts: dict[str, dict[int, list[int]]] = {}
        for index, attempt in enumerate(self.timeline.attempts):
            if index in notable:
                continue
            first = self._bucket(attempt.t_start)
            last = self._bucket(attempt.t_end)
            lane = counts.setdefault(attempt.lane, {})
            for bucket in range(first, last + 1):
                lane.setdefault(bucket, []).append(index)
        self.buckets = counts
        totals = {name: {b: len(v) for b, v in lane.items()} for name, lane in counts.items()}
        for name, plain_counts in self._plain_counts().items():
            lane_totals = totals.setdefault(name, {})
            for bucket, n in plain_counts.items():
                lane_totals[bucket] = lane_totals.get(bucket, 0) + n
        peak = max((n for lane in totals.values() for n in lane.values()), default=1)
        for name, buckets in totals.items():
            if name not in self.lane_y:
                continue
            base = self.lane_y[name][0] + LABEL_H + LANE_PAD + HIST_H
            yield (
                f'<g class="hist" data-lane="{_e(name)}" data-top="{base - HIST_H:.1f}" '
                f'data-h="{HIST_H}">'
            )
            for bucket, n in sorted(buckets.items()):
                h = max(1.0, HIST_H * n / peak)
                yield (
                    f'<rect class="agg" data-b="{bucket}" data-n="{n}" '
                    f'x="{GUTTER + bucket * BUCKET_PX}" y="{base - h:.1f}" width="{BUCKET_PX}" height="{h:.1f}"/>'
                )
            yield "</g>"

    def _plain_counts(self) -> dict[str, dict[int, int]]:
        """How many of a summary's plain accepted attempts ran in each bucket of each lane."""
        plain = self.timeline.plain
        if plain is None:
            return {}
        # The bucket of x(t) of every start and end, as _bucket computes it, in C-level
        # passes (a soak run has a million); then a count per (lane, bucket).
        firsts, lasts = self._buckets_of(plain.t_start), self._buckets_of(plain.t_end)
        spread = 1 << 32  # a (lane, bucket) pair as one int
        counted = Counter(map(add, map(mul, plain.lane, repeat(spread)), firsts))
        for index in compress(range(len(firsts)), map(ne, firsts, lasts)):  # a few span more
            at = plain.lane[index] * spread
            counted.update(range(at + firsts[index] + 1, at + lasts[index] + 1))
        counts: list[dict[int, int]] = [{} for _ in plain.lanes]
        for pair in sorted(counted):
            counts[pair // spread][pair % spread] = counted[pair]
        return {name: own for name, own in zip(plain.lanes, counts, strict=True) if own}

    def _buckets_of(self, times: Sequence[float]) -> list[int]:
        return buckets_of(times, self.t_max)

    def _marks(self) -> Iterable[str]:
        for index, (lane, t, ev, _line) in enumerate(self.timeline.marks):
            if lane not in self.lane_y:
                continue
            bottom = self.lane_y[lane][1]
            x = self.x(t)
            yield (
                f'<rect class="mark ev-{_e(ev)}" data-m="{index}" x="{x - 1}" data-dx="-1" '
                f'data-fixed="1" y="{bottom - 7}" '
                f'width="2" height="6"/>'
            )


#: ``buckets_of`` finds at most this many bucket starts (a plot has PLOT_W / BUCKET_PX).
_MAX_BISECTED = 4096


def bucket_of(t: float, t_max: float) -> int:
    """The histogram bucket of time ``t``: where its x (``Chart.x``) falls, BUCKET_PX wide."""
    return int((round(GUTTER + PLOT_W * max(0.0, t) / t_max, 1) - GUTTER) // BUCKET_PX)


def buckets_of(times: Sequence[float], t_max: float) -> list[int]:
    """``bucket_of`` each time (a soak run's summary has millions), in C-level passes.

    ``bucket_of`` never decreases as ``t`` grows (each step of it is monotone), so a time's
    bucket is the lowest time's plus how many buckets start at or before it: each start is
    found by bisecting between two floats (a few dozen calls a bucket), then every time is
    placed among the starts by ``bisect_right``. Times that are not all finite numbers, or
    that span more than a plot's buckets, are placed one by one, as ``bucket_of`` places
    (or refuses) them."""
    if not times:
        return []
    low, high = min(times), max(times)
    if any(map(ne, times, times)) or not math.isfinite(high - low):  # NaN, inf, overflow
        return [bucket_of(t, t_max) for t in times]
    first, last = bucket_of(low, t_max), bucket_of(high, t_max)
    if last - first > _MAX_BISECTED:  # far past the plot (a chart's times never are)
        return [bucket_of(t, t_max) for t in times]
    starts: list[float] = []
    below = low
    for bucket in range(first + 1, last + 1):
        above = high  # bucket_of(below) < bucket <= bucket_of(above)
        while True:
            middle = below + (above - below) / 2
            if not below < middle < above:
                break  # neighbouring floats: ``above`` is the first time in ``bucket``
            if bucket_of(middle, t_max) >= bucket:
                above = middle
            else:
                below = middle
        starts.append(above)
        below = above if bucket_of(above, t_max) == bucket else below
    placed = map(bisect_right, repeat(starts), times)
    return list(map(add, repeat(first), placed)) if first else list(placed)


def _exit_label(lane: Lane, top: float, bottom: float) -> str:
    y = (top + bottom) / 2 + 4
    text = "killed" if lane.killed else "" if lane.exit_code is None else f"exit {lane.exit_code}"
    return (
        f'<text class="exit" x="{WIDTH - RIGHT + 6}" y="{y:.1f}">{_e(text)}</text>' if text else ""
    )


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

"""The guarantees matrix: scenario x system -> pass / fail (first violation) / unknown.

A scenario of the default kind (distq) runs against every system, each with its defaults
(``[cluster]`` keys a kind does not take are dropped, and the cell says which); a scenario
that sets distq's own ``[system]`` keys (a journal, a handshake timeout, a producer) is about
distq and is n/a elsewhere; a scenario written for one engine
runs against that engine only, and shares its row with the other engines' files of the
same name (``celery_kill_default`` and ``rq_kill_default`` are the row ``kill_default``).
"""

from __future__ import annotations

import dataclasses
import html
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from harness import systems
from harness.checks import duplicate_executions
from harness.scenario import ClusterSpec, Scenario, run_scenario
from harness.systems.base import BROKER

__all__ = ["COLUMNS", "Cell", "Matrix", "build_matrix", "render_html", "render_markdown"]


def _columns() -> dict[str, dict[str, Any]]:
    """One column per registered kind, or per variant a kind lists (``matrix_variants``:
    column name -> the rest of its ``[system]`` table), the default kind first. A kind that
    cannot run without its own keys (the commands of a user's program) has no column."""
    columns: dict[str, dict[str, Any]] = {systems.DEFAULT_KIND: {}}
    for name in sorted(systems.KINDS):
        facts = systems.get_kind(name).facts
        variants = getattr(facts, "matrix_variants", {name: {}})
        for column, table in variants.items():
            try:
                systems.parse_table({"kind": name, **table})
            except systems.SystemConfigError:
                continue
            columns.setdefault(
                column, {} if name == systems.DEFAULT_KIND else {"kind": name, **table}
            )
    return columns


#: The systems of the matrix, in column order, as ``[system]`` tables.
COLUMNS: dict[str, dict[str, Any]] = _columns()
#: An engine's producer stops collecting this long before a scenario's bound.
COLLECT_MARGIN_S = 4.0
_MESSAGE_CHARS = 70


@dataclass(frozen=True, slots=True)
class Cell:
    """One scenario against one system: its verdict and what explains it."""

    status: str  # pass | fail | unknown | n/a
    detail: str = ""
    pinned: bool = False  # the scenario expects this violation (a documented loss)
    duplicates: int = 0
    elapsed_s: float = 0.0
    dropped: tuple[str, ...] = ()  # ``[cluster]`` keys of the scenario this system ran without

    def text(self) -> str:
        words = [self.status]
        if self.detail:
            words.append(f"({self.detail})" if self.status == "n/a" else f": {self.detail}")
        if self.duplicates:
            words.append(f"[{self.duplicates} duplicated]")
        if self.pinned:
            words.append("(documented)")
        if self.dropped:
            words.append(f"(without {', '.join(self.dropped)})")
        return " ".join(words).replace(" :", ":")


@dataclass(frozen=True, slots=True)
class Matrix:
    rows: dict[str, dict[str, Cell]]  # row -> column -> cell
    columns: tuple[str, ...]
    wall_s: float


def column_of(scenario: Scenario) -> str:
    """The column a scenario's own ``[system]`` table belongs to."""
    table = scenario.system
    for column, columns_table in COLUMNS.items():
        if all(table.get(key) == value for key, value in columns_table.items()) and (
            columns_table or table.get("kind", systems.DEFAULT_KIND) == systems.DEFAULT_KIND
        ):
            return column
    return str(table.get("kind"))


def row_of(path: Path, scenario: Scenario) -> str:
    column = column_of(scenario)
    return path.stem.removeprefix(f"{column}_")


def variant(scenario: Scenario, column: str) -> Scenario | str:
    """The scenario as it runs against ``column``, or why it does not apply."""
    own = column_of(scenario)
    if own != systems.DEFAULT_KIND and column != own:
        return ""  # written for one engine: the other columns are other files of the row
    kind = systems.get_kind(COLUMNS[column].get("kind", systems.DEFAULT_KIND))
    if any(f.target == BROKER for f in scenario.faults) and BROKER not in kind.facts.roles:
        return "no broker"
    if column == own:
        return scenario
    own_keys = sorted(key for key in scenario.system if key != "kind")
    if own_keys:
        return f"needs distq's {', '.join(own_keys)}"[:_MESSAGE_CHARS]
    raw = msgspec.to_builtins(scenario)
    raw["system"] = dict(COLUMNS[column])
    if column != systems.DEFAULT_KIND:
        raw["system"]["collect_s"] = max(1.0, scenario.expect.within_s - COLLECT_MARGIN_S)
    raw["cluster"] = {
        k: v for k, v in raw["cluster"].items() if k not in dropped_keys(scenario, column)
    }
    try:
        return msgspec.convert(raw, Scenario)
    except (msgspec.ValidationError, ValueError) as exc:
        return str(exc).split(" - at ")[0].split(" (it supports")[0][:_MESSAGE_CHARS]


def dropped_keys(scenario: Scenario, column: str) -> tuple[str, ...]:
    """The ``[cluster]`` keys of ``scenario`` set away from their defaults that the system
    of ``column`` does not take (the cell runs without them and says so)."""
    kind = systems.get_kind(COLUMNS[column].get("kind", systems.DEFAULT_KIND))
    keep = {"workers", *kind.facts.cluster_keys}
    defaults = msgspec.to_builtins(ClusterSpec())
    cluster = msgspec.to_builtins(scenario.cluster)
    return tuple(k for k, v in cluster.items() if k not in keep and v != defaults[k])


def _run_cell(scenario: Scenario, run_dir: Path) -> Cell:
    outcome = run_scenario(scenario, run_dir)
    verdict = outcome.result.verdict
    first = (*verdict.violations, *verdict.unknowns)
    detail = f"{first[0].check}: {first[0].message}"[:_MESSAGE_CHARS] if first else ""
    known = scenario.expect.known_checks
    found = {violation.check for violation in verdict.violations}
    pinned = bool(known) and all(check in found for check in known)
    duplicates = len(duplicate_executions(outcome.result.history))
    return Cell(verdict.status, detail, pinned, duplicates, outcome.result.elapsed_s)


def build_matrix(
    scenarios: Sequence[tuple[Path, Scenario]],
    runs_dir: Path,
    *,
    columns: Sequence[str] = tuple(COLUMNS),
    jobs: int = 1,
    progress: Callable[[str, str, Cell], None] | None = None,
) -> Matrix:
    """Run every applicable (scenario, system) pair, ``jobs`` at a time."""
    started = time.monotonic()
    rows: dict[str, dict[str, Cell]] = {}
    work: list[tuple[str, str, Scenario, tuple[str, ...]]] = []
    for path, scenario in scenarios:
        row = row_of(path, scenario)
        cells = rows.setdefault(row, {})
        for column in columns:
            chosen = variant(scenario, column)
            if isinstance(chosen, Scenario):
                work.append((row, column, chosen, dropped_keys(scenario, column)))
            elif chosen and column not in cells:
                cells[column] = Cell("n/a", chosen)

    def one(item: tuple[str, str, Scenario, tuple[str, ...]]) -> tuple[str, str, Cell]:
        row, column, scenario, dropped = item
        cell = dataclasses.replace(
            _run_cell(scenario, runs_dir / f"{row}-{column}"), dropped=dropped
        )
        if progress is not None:
            progress(row, column, cell)
        return row, column, cell

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for row, column, cell in pool.map(one, work):
            rows[row][column] = cell
    return Matrix(rows, tuple(columns), time.monotonic() - started)


def render_markdown(matrix: Matrix) -> str:
    def escape(text: str) -> str:
        return text.replace("|", "\\|")

    lines = [
        "| scenario | " + " | ".join(matrix.columns) + " |",
        "|---|" + "---|" * len(matrix.columns),
    ]
    for row, cells in matrix.rows.items():
        texts = [escape(cells[c].text()) if c in cells else "" for c in matrix.columns]
        lines.append(f"| {row} | " + " | ".join(texts) + " |")
    lines.append("")
    lines.append(f"wall time: {matrix.wall_s:.0f} s")
    return "\n".join(lines) + "\n"


_COLOURS = {"pass": "#d7f5d7", "fail": "#f8d4d4", "unknown": "#f7ecc5", "n/a": "#eeeeee"}


def render_html(matrix: Matrix) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in matrix.columns)
    body = []
    for row, cells in matrix.rows.items():
        tds = []
        for column in matrix.columns:
            cell = cells.get(column)
            if cell is None:
                tds.append("<td></td>")
                continue
            colour = _COLOURS.get(cell.status, "#ffffff")
            tds.append(f'<td style="background:{colour}">{html.escape(cell.text())}</td>')
        body.append(f"<tr><th>{html.escape(row)}</th>{''.join(tds)}</tr>")
    return (
        "<!doctype html><meta charset=utf-8><title>guarantees matrix</title>"
        "<style>td,th{border:1px solid #999;padding:4px;font:13px sans-serif}"
        "table{border-collapse:collapse}</style>"
        f"<table><tr><th>scenario</th>{head}</tr>{''.join(body)}</table>"
        f"<p>wall time: {matrix.wall_s:.0f} s</p>\n"
    )

"""``python -m harness run FILE... | check FILE... | matrix DIR... | report RUN_DIR...``:
scenarios outside pytest.

``run`` shows a live line per scenario and a summary table; ``--repeat N`` counts how
often each verdict came out (for flaky bugs); a failed or unknown run prints the link to
its ``report.html``, and ``report`` rebuilds the report of a kept run directory. ``matrix``
runs scenarios against every system. Exit codes (``checks.VERDICT_EXIT_CODES``): 0 every
scenario passed, 1 any failed, 2 a bad option or invalid file, 3 any unknown.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from harness.checks import EXIT_USAGE, VERDICT_EXIT_CODES
from harness.runtime.cluster import ClusterError
from harness.scenario import Scenario, ScenarioError, is_scenario_file, load_scenario, run_scenario

__all__ = ["main"]

EXIT_PASS, EXIT_FAIL, EXIT_UNKNOWN = (VERDICT_EXIT_CODES[s] for s in ("pass", "fail", "unknown"))


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m harness",
        description="Run, validate or explore distq scenario files outside pytest.",
        epilog=f"exit codes: {EXIT_PASS} all passed, {EXIT_FAIL} any failed, {EXIT_USAGE} bad "
        f"option or invalid file, {EXIT_UNKNOWN} any unknown (a run that proved nothing, "
        "e.g. a fault that never landed); the first that applies wins",
        allow_abbrev=False,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser("run", help="run scenarios and judge them", allow_abbrev=False)
    run.add_argument("paths", nargs="+", metavar="FILE", help="scenario files or directories")
    run.add_argument(
        "--repeat",
        type=int,
        default=1,
        metavar="N",
        help="run each scenario N times and count the verdicts",
    )
    run.add_argument(
        "--runs-dir",
        default="runs",
        metavar="DIR",
        help="where run directories go (default ./runs)",
    )
    run.add_argument(
        "--keep-runs", action="store_true", help="keep the run directories of passing runs too"
    )
    check = commands.add_parser(
        "check", help="validate scenario files without running them", allow_abbrev=False
    )
    check.add_argument("paths", nargs="+", metavar="FILE", help="scenario files or directories")
    matrix = commands.add_parser(
        "matrix",
        help="run scenarios against every system: a table scenario x system",
        allow_abbrev=False,
    )
    matrix.add_argument("paths", nargs="+", metavar="DIR", help="scenario files or directories")
    matrix.add_argument("--runs-dir", default="runs/matrix", metavar="DIR")
    matrix.add_argument(
        "--html", default="runs/matrix.html", metavar="FILE", help="also write the table here"
    )
    matrix.add_argument("--jobs", type=int, default=1, metavar="N", help="runs at a time")
    upgrade = commands.add_parser(
        "upgrade",
        help="rewrite scenario files in the current format, in place (comments kept)",
        description="Rewrite scenario files of an older format in the current one, in place, "
        "keeping comments and layout. A file is rewritten only when its new text loads to the "
        "same scenario; files already current are left alone.",
        allow_abbrev=False,
    )
    upgrade.add_argument("paths", nargs="+", metavar="FILE", help="scenario files or directories")
    explore = commands.add_parser(
        "explore",
        help="search fault plans against a scenario; write the smallest failing one",
        description="Draw fault plans against BASE (its system, jobs and checks kept, its "
        "faults replaced) with Hypothesis, one real run per example; stop at the first "
        "failure, shrink it, write the smallest failing plan as a scenario file, and rerun "
        "it to say how often it reproduces. Unknown examples never count as passes.",
        allow_abbrev=False,
    )
    explore.add_argument("base", metavar="BASE", help="the scenario file to start from")
    explore.add_argument(
        "--examples", type=int, default=20, metavar="N", help="plans to try (default 20)"
    )
    explore.add_argument(
        "--budget-s",
        type=float,
        default=600.0,
        metavar="S",
        help="stop trying new plans after S seconds (shrinking a failure gets as long again; "
        "default 600)",
    )
    explore.add_argument("--seed", type=int, default=0, metavar="N", help="the search's seed")
    explore.add_argument(
        "--max-faults", type=int, default=3, metavar="N", help="faults per plan (default 3)"
    )
    explore.add_argument(
        "--out",
        default="scenarios/regressions",
        metavar="PATH",
        help="where the smallest failing plan goes: a .toml file or a directory "
        "(default scenarios/regressions)",
    )
    explore.add_argument(
        "--reruns", type=int, default=5, metavar="K", help="reruns of the written file (default 5)"
    )
    explore.add_argument(
        "--runs-dir",
        default=None,
        metavar="DIR",
        help="run directories and the example database (default runs/explore-BASE); a "
        "second search there replays the last failure first",
    )
    report = commands.add_parser(
        "report",
        help="(re)build report.html and trace.json of kept run directories",
        allow_abbrev=False,
    )
    report.add_argument("paths", nargs="+", metavar="RUN_DIR", help="run directories")
    return parser


def expand(paths: Sequence[str]) -> list[Path]:
    """Files as given; directories expand to the scenario files under them, sorted."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(p for p in sorted(path.rglob("*.toml")) if is_scenario_file(p))
        else:
            found.append(path)
    return found


def skipped(paths: Sequence[str]) -> list[str]:
    """The ``.toml`` files under the directories given that are not scenario files, each
    with why: nothing is left out without a word."""
    return [
        f"skipped {path}: no 'scenario = N' at its top level, so not a scenario file"
        for raw in paths
        if Path(raw).is_dir()
        for path in sorted(Path(raw).rglob("*.toml"))
        if not is_scenario_file(path)
    ]


def _load_all(paths: list[Path]) -> tuple[list[tuple[Path, Scenario]], list[str]]:
    loaded, errors = [], []
    for path in paths:
        try:
            loaded.append((path, load_scenario(path)))
        except ScenarioError as exc:
            errors.append(str(exc))
    return loaded, errors


class _Ticker:
    """Redraws one progress line from a background thread while a scenario runs."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._live = sys.stderr.isatty()

    def __enter__(self) -> _Ticker:
        if self._live:
            self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._live:
            self._thread.join()
            sys.stderr.write("\r\033[K")

    def _loop(self) -> None:
        while not self._stop.wait(0.2):
            sys.stderr.write(
                f"\r\033[K{self.label} running {time.monotonic() - self.started:.1f} s"
            )
            sys.stderr.flush()


def _run(options: argparse.Namespace) -> int:
    if options.repeat < 1:
        print(
            f"python -m harness run: error: --repeat must be >= 1, got {options.repeat}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    loaded, errors = _load_all(expand(options.paths))
    for error in errors:
        print(error, file=sys.stderr)
    if not loaded and not errors:
        print("python -m harness run: error: no scenario files found", file=sys.stderr)
        return EXIT_USAGE
    runs_dir = Path(options.runs_dir)
    rows: list[tuple[str, Counter[str], float, str]] = []
    setup_failed = False
    for index, (path, scenario) in enumerate(loaded, start=1):
        verdicts: Counter[str] = Counter()
        elapsed = 0.0
        last_dir = ""
        for attempt in range(1, options.repeat + 1):
            suffix = f"-{attempt}" if options.repeat > 1 else ""
            run_dir = runs_dir / f"{index:03d}-{path.stem}{suffix}"  # unique per file
            if run_dir.exists():
                shutil.rmtree(run_dir)
            label = f"[{index}/{len(loaded)}] {path}" + (
                f" ({attempt}/{options.repeat})" if suffix else ""
            )
            try:
                with _Ticker(label):
                    outcome = run_scenario(scenario, run_dir)
            except ClusterError as exc:  # the app could not be brought up: its setup is wrong
                print(f"{path}: setup: {exc.summary}", file=sys.stderr)
                verdicts["invalid"] += 1
                setup_failed = True
                break
            verdicts[outcome.status] += 1
            elapsed += outcome.result.elapsed_s
            print(f"{label}: {outcome.status} in {outcome.result.elapsed_s:.1f} s", file=sys.stderr)
            for note in outcome.result.verdict.notes:  # measurements, e.g. recovery latencies
                print(f"    {note.check}: {note.message}", file=sys.stderr)
            for matched in outcome.outcome.matched:  # what a known-bug run found, and pinned
                print(f"    known: {matched}", file=sys.stderr)
            if outcome.status != "pass":
                print(outcome.report(), file=sys.stderr)
                last_dir = str(run_dir)
            elif options.keep_runs:
                last_dir = last_dir or str(run_dir)
                if outcome.result.report_path is not None:
                    print(f"report: {outcome.result.report_path.as_uri()}", file=sys.stderr)
            else:
                shutil.rmtree(run_dir, ignore_errors=True)
        rows.append((str(path), verdicts, elapsed / options.repeat, last_dir))
    rows += [(error.split(": ", 1)[0], Counter({"invalid": 1}), 0.0, "") for error in errors]
    _table(rows, options.repeat)
    if any(v["fail"] for _, v, _, _ in rows):
        return EXIT_FAIL
    if errors or setup_failed:
        return EXIT_USAGE
    if any(v["unknown"] for _, v, _, _ in rows):
        return EXIT_UNKNOWN
    return EXIT_PASS


def _table(rows: list[tuple[str, Counter[str], float, str]], repeat: int) -> None:
    width = max([len("scenario"), *(len(name) for name, *_ in rows)])
    print(f"{'scenario':<{width}}  {'verdict':<22}  {'mean s':>7}  run directory")
    for name, verdicts, mean_s, run_dir in rows:
        if repeat == 1:
            verdict = next(iter(verdicts))
        else:
            verdict = ", ".join(
                f"{status} {verdicts[status]}/{repeat}"
                for status in ("pass", "fail", "unknown")
                if verdicts[status]
            )
        print(f"{name:<{width}}  {verdict:<22}  {mean_s:>7.1f}  {run_dir}")


def _check(options: argparse.Namespace) -> int:
    paths = expand(options.paths)
    loaded, errors = _load_all(paths)
    for path, _scenario in loaded:
        print(f"ok {path}")
    for line in skipped(options.paths):
        print(line)
    for error in errors:
        print(error, file=sys.stderr)
    if not paths:
        print("python -m harness check: error: no scenario files found", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_USAGE if errors else EXIT_PASS


def _matrix(options: argparse.Namespace) -> int:
    from harness.matrix import build_matrix, render_html, render_markdown

    loaded, errors = _load_all(expand(options.paths))
    for error in errors:
        print(error, file=sys.stderr)
    if errors or not loaded:
        if not loaded and not errors:
            print("python -m harness matrix: error: no scenario files found", file=sys.stderr)
        return EXIT_USAGE
    runs_dir = Path(options.runs_dir)
    shutil.rmtree(runs_dir, ignore_errors=True)

    def progress(row: str, column: str, cell: object) -> None:
        print(f"{row} x {column}: {cell.text()}", file=sys.stderr)  # type: ignore[attr-defined]

    table = build_matrix(loaded, runs_dir, jobs=options.jobs, progress=progress)
    print(render_markdown(table), end="")
    html_path = Path(options.html)
    html_path.parent.mkdir(parents=True, exist_ok=True)
    html_path.write_text(render_html(table), encoding="utf-8")
    print(f"wall time {table.wall_s:.0f} s; HTML: {html_path}", file=sys.stderr)
    return EXIT_PASS


def _upgrade(options: argparse.Namespace) -> int:
    from harness.scenario.upgrade import UpgradeError, upgrade_file

    paths = expand(options.paths)
    if not paths:
        print("python -m harness upgrade: error: no scenario files found", file=sys.stderr)
        return EXIT_USAGE
    status = EXIT_PASS
    for path in paths:
        try:
            changed = upgrade_file(path)
        except (ScenarioError, UpgradeError, OSError) as exc:
            print(f"{path}: not upgraded: {exc}", file=sys.stderr)
            status = EXIT_USAGE
            continue
        print(f"{'upgraded' if changed else 'current'} {path}")
    return status


def _explore(options: argparse.Namespace) -> int:
    from harness.gen.explore import explore

    for name in ("examples", "reruns", "max_faults"):
        if getattr(options, name) < (0 if name == "reruns" else 1):
            flag = "--" + name.replace("_", "-")
            print(f"python -m harness explore: error: {flag} must be >= 1", file=sys.stderr)
            return EXIT_USAGE
    base_path = Path(options.base)
    try:
        base = load_scenario(base_path)
    except ScenarioError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    runs_dir = Path(options.runs_dir or f"runs/explore-{base_path.stem}")
    for old in (*runs_dir.glob("example-*"), *runs_dir.glob("rerun-*")):
        shutil.rmtree(old, ignore_errors=True)  # the example database stays
    print(f"exploring {base_path}: up to {options.examples} plans, seed {options.seed}")
    try:
        found = explore(
            base,
            base_path,
            examples=options.examples,
            budget_s=options.budget_s,
            seed_=options.seed,
            max_faults=options.max_faults,
            runs_dir=runs_dir,
            out=Path(options.out),
            reruns=options.reruns,
            say=lambda line: print(line, flush=True),
        )
    except ClusterError as exc:
        print(f"{base_path}: setup: {exc.summary}", file=sys.stderr)
        return EXIT_USAGE
    verdicts = ", ".join(f"{n} {status}" for status, n in sorted(found.verdicts.items()))
    fired = ", ".join(f"{action} x{n}" for action, n in sorted(found.faults_fired.items()))
    print(
        f"summary: {found.examples} example(s) run in {found.elapsed_s:.0f} s "
        f"({verdicts or 'none'}; {found.skipped} not run: budget spent); faults that fired: "
        f"{fired or 'none'}"
    )
    if found.flaky_runs:
        shown = " and ".join(str(path / "report.html") for path in found.flaky_runs)
        print(f"failed once, not reproduced when replayed: see {shown}")
        return EXIT_FAIL
    if found.written is not None and found.reproduced is not None:
        failed, reruns = found.reproduced
        first = f"{found.first_failure_s:.0f} s" if found.first_failure_s is not None else "-"
        print(f"first failure after {first}: {found.failure_message}")
        print(f"smallest failing plan: {found.written} (reproduced {failed} of {reruns} reruns)")
        print(f"rerun it with: python -m harness run {found.written} --repeat 5")
        return EXIT_FAIL
    if found.too_little:
        print(
            f"no failure found, but only {found.decided} of {found.examples} example(s) were "
            "decided (the rest unknown): the search proved little",
            file=sys.stderr,
        )
        return EXIT_UNKNOWN
    print("no failure found")
    return EXIT_PASS


def _report(options: argparse.Namespace) -> int:
    from harness.report import ReportError, rebuild_report

    status = EXIT_PASS
    for raw in options.paths:
        try:
            print(rebuild_report(Path(raw)).resolve().as_uri())
        except (ReportError, OSError) as exc:
            print(f"python -m harness report: error: {exc}", file=sys.stderr)
            status = EXIT_USAGE
    return status


def main(argv: Sequence[str] | None = None) -> int:
    options = _parser().parse_args(argv)
    try:
        if options.command == "run":
            return _run(options)
        if options.command == "matrix":
            return _matrix(options)
        if options.command == "report":
            return _report(options)
        if options.command == "upgrade":
            return _upgrade(options)
        if options.command == "explore":
            return _explore(options)
        return _check(options)
    except KeyboardInterrupt:
        print(
            "python -m harness: interrupted; every process of the run was torn down",
            file=sys.stderr,
        )
        return 130

"""Search fault plans against a base scenario of any kind, and hand back the smallest
failing one as a scenario file.

Hypothesis draws plans (``strategies.fault_plans``), each example is a real run, a
``fail`` verdict is a failure Hypothesis shrinks, and the shrunk plan is written with the
command that reruns it, then rerun to say how often it reproduces. ``unknown`` examples
are counted, never passes; a search that decided almost nothing says so. The example
database lives in the run directory, so a second search replays the failure first.
"""

from __future__ import annotations

import importlib.metadata
import shlex
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis.database import DirectoryBasedExampleDatabase
from hypothesis.errors import Flaky

from harness.gen.strategies import fault_plans
from harness.scenario import Scenario, ScenarioOutcome, WhenSpec, dump_scenario, run_scenario

__all__ = ["Exploration", "ExploreFailure", "explore", "regression_text"]

#: A search whose share of decided examples is below this proved too little (exit 3).
MIN_DECIDED_SHARE = 0.5


class ExploreFailure(AssertionError):
    """A generated plan made the system fail (what Hypothesis shrinks)."""


@dataclass(slots=True)
class Exploration:
    """What one search did: its examples' verdicts and what it found."""

    examples: int = 0
    verdicts: Counter[str] = field(default_factory=Counter)
    faults_fired: Counter[str] = field(default_factory=Counter)
    elapsed_s: float = 0.0
    first_failure_s: float | None = None
    failure: Scenario | None = None  # the smallest failing plan seen (the last one)
    failure_run: Path | None = None
    failure_message: str = ""
    flaky_runs: tuple[Path, ...] = ()  # a failure that did not fail again: both runs
    written: Path | None = None
    reproduced: tuple[int, int] | None = None  # (failed, reruns)
    skipped: int = 0  # examples not run: the budget was spent

    @property
    def decided(self) -> int:
        return self.verdicts["pass"] + self.verdicts["fail"]

    @property
    def too_little(self) -> bool:
        """Most examples were unknown (or none ran): the search proved little."""
        ran = self.decided + self.verdicts["unknown"]
        return ran == 0 or self.decided < MIN_DECIDED_SHARE * ran


def _versions() -> str:
    def version(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    return f"distq {version('distq')}, hypothesis {version('hypothesis')}"


def regression_text(found: Scenario, path: Path, base: Path, seed_: int, why: str) -> str:
    """The smallest failing plan as a scenario file, its folders relative to where it lies."""
    rerun = f"python -m harness run {shlex.quote(str(path))} --repeat 5"
    again = f"python -m harness explore {shlex.quote(str(base))} --seed {seed_}"
    description = (
        f"Found by python -m harness explore from {base} (seed {seed_}; {_versions()}): {why}"
    )[:600]
    named = msgspec.structs.replace(found, name=path.stem, description=description)
    header = f"Found by a search. Rerun it with:\n  {rerun}\nSearch again with:\n  {again}"
    return dump_scenario(named, header, relative_to=path.parent)


def explore(
    base: Scenario,
    base_path: Path,
    *,
    examples: int,
    budget_s: float,
    seed_: int,
    max_faults: int,
    runs_dir: Path,
    out: Path,
    reruns: int,
    say: Callable[[str], None],
) -> Exploration:
    """Search plans against ``base``; write the smallest failing one to ``out`` (a file or
    a directory) and rerun it ``reruns`` times."""
    found = Exploration()
    started = time.monotonic()
    runs_dir.mkdir(parents=True, exist_ok=True)
    runs: list[Path] = []

    def probe(scenario: Scenario) -> None:
        spent = time.monotonic() - started
        if found.failure is None and spent > budget_s:
            found.skipped += 1  # the budget is spent: no more runs, nothing more to find
            return
        if found.failure is not None and spent > 2 * budget_s:
            found.skipped += 1  # shrinking stops where it is
            return
        found.examples += 1
        run_dir = runs_dir / f"example-{found.examples:03d}"
        runs.append(run_dir)
        outcome = run_scenario(scenario, run_dir)
        status = outcome.result.verdict.status
        found.verdicts[status] += 1
        fired = [f.get("action") for f in outcome.result.history.faults() if not f.get("missed")]
        found.faults_fired.update(str(action) for action in fired)
        say(_line(found.examples, scenario, outcome))
        if status == "fail":
            if found.first_failure_s is None:
                found.first_failure_s = time.monotonic() - started
            found.failure, found.failure_run = scenario, run_dir
            found.failure_message = "; ".join(
                v.message for v in outcome.result.verdict.violations[:3]
            )
            raise ExploreFailure(found.failure_message)

    search = settings(
        max_examples=examples,
        database=DirectoryBasedExampleDatabase(str(runs_dir / "examples.db")),
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
        report_multiple_bugs=False,
        print_blob=False,
    )(seed(seed_)(given(fault_plans(base, max_faults))(probe)))
    try:
        search()
    except ExploreFailure:
        pass
    except Flaky:  # the shrunk failure passed when replayed: the failing run and the replay
        failing = found.failure_run
        found.flaky_runs = tuple(p for p in (failing, runs[-1] if runs else None) if p)
    found.elapsed_s = time.monotonic() - started
    if found.failure is not None and not found.flaky_runs:
        path = out / f"{base_path.stem}-explored.toml" if out.suffix != ".toml" else out
        path.parent.mkdir(parents=True, exist_ok=True)
        text = regression_text(found.failure, path, base_path, seed_, found.failure_message)
        path.write_text(text, encoding="utf-8")
        found.written = path
        found.reproduced = _rerun(found.failure, runs_dir, reruns, say)
    return found


def _rerun(
    scenario: Scenario, runs_dir: Path, reruns: int, say: Callable[[str], None]
) -> tuple[int, int]:
    failed = 0
    for number in range(1, reruns + 1):
        outcome = run_scenario(scenario, runs_dir / f"rerun-{number}")
        failed += outcome.result.verdict.status == "fail"
        say(f"rerun {number}/{reruns}: {outcome.result.verdict.status}")
    return failed, reruns


def _line(number: int, scenario: Scenario, outcome: ScenarioOutcome) -> str:
    plan = ", ".join(
        f"{f.do}{'' if f.target is None else ' ' + f.target} at {_trigger(f.when)}"
        for f in scenario.faults
    )
    result = outcome.result
    return (
        f"example {number}: {result.verdict.status} in {result.elapsed_s:.1f} s "
        f"({scenario.cluster.workers} worker(s), {scenario.jobs.count} job(s); "
        f"{plan or 'no faults'})"
    )


def _trigger(when: WhenSpec) -> str:
    trigger = when.trigger()
    value = f"{trigger.value:g}" if isinstance(trigger.value, float) else str(trigger.value)
    wait = f" +{trigger.wait_s:g} s" if trigger.wait_s else ""
    return f"{trigger.kind}={value}{wait}"

"""The pytest plugin: every scenario file is one test item.

Registered through the ``pytest11`` entry point, so ``pytest scenarios/`` works once the
package is installed. Only files that declare ``scenario = N`` (the format version) are
collected; other TOML (``pyproject.toml``, ...) is never touched. A failing item's report shows the verdict,
each violation with its history lines, the last lines of each process's log, the run
directory and a ``file://`` link to its ``report.html`` (a timeline of the run).

A scenario whose verdict is ``unknown`` (a check could not decide, e.g. a fault never
landed) is neither a pass nor a bug found: it is reported as ``UNKNOWN`` (``U``), counted
apart in the summary line, its report printed in an ``UNKNOWN VERDICTS`` section, and it
still makes the session fail: a run that proved nothing must not look green.

The plugin loads light: the harness (msgspec, psutil, asyncio...) is imported only when a
scenario file is collected, and an environment without those dependencies still runs its
other tests; its scenario files each get one line saying what to install.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from harness.scenario.detect import is_scenario_file

if TYPE_CHECKING:
    from harness.scenario import Scenario, ScenarioOutcome

__all__ = ["ScenarioFile", "ScenarioItem"]

INSTALL_HINT = "pip install 'distq[test]'"


class HarnessMissing(Exception):
    """The harness's dependencies are not installed; the message says what to install."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("distq", "distq scenarios")
    group.addoption(
        "--keep-runs",
        action="store_true",
        default=False,
        help="keep the run directory (and its report.html) of every scenario "
        "(default: only of failures)",
    )
    group.addoption(
        "--regressions-dir",
        metavar="DIR",
        default="scenarios/regressions",
        help="where property tests write the scenario file of a failure they found "
        "(default scenarios/regressions)",
    )
    group.addoption(
        "--runs-dir",
        metavar="DIR",
        default=None,
        help="put scenario run directories here (default: pytest's temporary directory)",
    )


@pytest.fixture
def scenario_property(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """A :class:`harness.gen.PropertyRun` for a Hypothesis search in your own tests: call
    ``scenario_property.check(scenario)`` in a ``@given(harness.gen.fault_plans(base))``
    test. A failing example is shrunk and written to ``--regressions-dir`` under the
    test's name; a search that decided no example fails."""
    from harness.gen.properties import PropertyRun

    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
    runs = tmp_path_factory.getbasetemp() / f"property-runs-{name}"
    regressions = Path(request.config.getoption("--regressions-dir"))
    with PropertyRun(runs, regressions, name) as prop:
        yield prop


#: The system kind of the four engines (``harness.systems``): its scenarios are marked
#: ``engines``, so ``-m "not engines"`` runs the library without a broker.
_ENGINE_KIND = "engine"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: a long-running scenario")
    config.addinivalue_line("markers", "scenario: a distq scenario file")
    config.addinivalue_line(
        "markers", "engines: a scenario of an engine (Celery, RQ, Dramatiq, Huey) on its broker"
    )


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> ScenarioFile | None:
    if file_path.suffix != ".toml":
        return None
    # A .toml named on the command line is collected even without its marker, so
    # ``pytest FILE`` says what is wrong with it instead of "not found".
    if is_scenario_file(file_path) or _named(file_path, parent.config):
        return ScenarioFile.from_parent(parent, path=file_path)
    return None


def _named(file_path: Path, config: pytest.Config) -> bool:
    given = {Path(arg.split("::", 1)[0]).resolve() for arg in config.args}
    return file_path.resolve() in given


def _is_unknown(report: pytest.TestReport | pytest.CollectReport) -> bool:
    return (
        isinstance(report, pytest.TestReport)
        and report.when == "call"
        and report.failed
        and ("verdict", "unknown") in report.user_properties
    )


def pytest_report_teststatus(
    report: pytest.TestReport | pytest.CollectReport, config: pytest.Config
) -> tuple[str, str, tuple[str, dict[str, bool]]] | None:
    if _is_unknown(report):
        return "unknown", "U", ("UNKNOWN", {"yellow": True})
    return None


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    unknown = terminalreporter.stats.get("unknown", [])
    if not unknown:
        return
    terminalreporter.write_sep("=", "UNKNOWN VERDICTS", yellow=True)
    for report in unknown:
        terminalreporter.write_sep("_", report.head_line or report.nodeid, yellow=True)
        terminalreporter.write_line(str(report.longrepr))
    for report in unknown:
        terminalreporter.write_line(f"UNKNOWN {report.nodeid} - {_first_unknown(report)}")


def _first_unknown(report: pytest.TestReport) -> str:
    """The first undecided check of a report, as ``check: why``."""
    for line in str(report.longrepr).splitlines():
        if line.startswith("unknown "):
            return line.removeprefix("unknown ")
    return "a check could not decide"


def _scenario_module() -> Any:
    try:
        import harness.scenario
        import harness.scenario.running  # the package loads its names lazily: load them now
    except ImportError as exc:
        missing = exc.name or str(exc)
        raise HarnessMissing(
            f"{missing} is not installed: scenario files need the harness's dependencies "
            f"({INSTALL_HINT})"
        ) from None
    return harness.scenario


class ScenarioFile(pytest.File):
    def collect(self) -> Iterator[ScenarioItem]:
        module = _scenario_module()
        try:
            scenario = module.load_scenario(self.path)
        except module.ScenarioError as exc:
            from harness.systems import NOT_INSTALLED

            if NOT_INSTALLED in str(exc):  # its system needs an extra: skipped, saying which
                pytest.skip(str(exc))
            raise
        item = ScenarioItem.from_parent(self, name=self.path.stem, scenario=scenario)
        item.add_marker(pytest.mark.scenario)
        if scenario.slow:
            item.add_marker(pytest.mark.slow)
        if scenario.system.get("kind") == _ENGINE_KIND:
            item.add_marker(pytest.mark.engines)
        yield item

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException]) -> str:  # type: ignore[override]
        if isinstance(excinfo.value, HarnessMissing):
            return f"{self.path}: {excinfo.value}"
        if isinstance(excinfo.value, _scenario_module().ScenarioError):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo))


class ScenarioFailed(Exception):
    def __init__(self, outcome: ScenarioOutcome) -> None:
        super().__init__(outcome.message)
        self.outcome = outcome


class ScenarioItem(pytest.Item):
    def __init__(self, *, scenario: Scenario, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scenario = scenario

    def _run_dir(self) -> Path:
        chosen = self.config.getoption("--runs-dir")
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.nodeid)
        if chosen:
            base = Path(chosen)
        else:
            base = self.config._tmp_path_factory.getbasetemp() / "scenario-runs"  # type: ignore[attr-defined]
        run_dir = base / safe
        if run_dir.exists():
            shutil.rmtree(run_dir)
        return run_dir

    def runtest(self) -> None:
        if self.scenario.network.hosts:  # a machine that cannot build a lab: say why, run nothing
            from harness.net.hosts import kernel_unavailable

            missing = kernel_unavailable(fault.do for fault in self.scenario.faults)
            if missing is not None:
                pytest.skip(missing)
        if any(fault.do == "disk_full" for fault in self.scenario.faults):
            from harness.runtime.disks import disks_unavailable

            missing = disks_unavailable()
            if missing is not None:  # a machine that cannot mount a tmpfs: say why
                pytest.skip(missing)
        run_dir = self._run_dir()
        outcome = _scenario_module().run_scenario(self.scenario, run_dir)
        self.user_properties.append(("run_dir", str(run_dir)))
        self.user_properties.append(("verdict", outcome.status))
        notes = outcome.result.verdict.notes  # measurements: shown with -rP, kept in JUnit XML
        for note in notes:
            self.user_properties.append((note.check, note.message))
        if notes:
            text = "\n".join(f"{note.check}: {note.message}" for note in notes)
            self.add_report_section("call", "measurements", text)
        for matched in outcome.outcome.matched:  # a known-bug run: which violations it found
            self.user_properties.append(("known_violation", matched))
        if outcome.outcome.matched:
            text = "\n".join([outcome.message, *outcome.outcome.matched])
            self.add_report_section("call", "known violations", text)
        if outcome.status != "pass":
            raise ScenarioFailed(outcome)
        if not self.config.getoption("--keep-runs"):
            shutil.rmtree(run_dir, ignore_errors=True)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException]) -> str:  # type: ignore[override]
        from harness.runtime.cluster import ClusterError

        if isinstance(excinfo.value, ScenarioFailed):
            return excinfo.value.outcome.report()
        if isinstance(excinfo.value, ClusterError):  # the app could not be brought up
            error = excinfo.value
            return f"{self.path}: setup: {error.summary}\n--- log ---\n{error.log_tail}"
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"scenario: {self.scenario.name}"

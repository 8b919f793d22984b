"""The report of real runs: a kill and a pause inside one batch, against distq and against a
variant that forgets its results (so a violation is drawn on the job it names), and a kill
in another system that runs a broker besides its master and workers."""

from __future__ import annotations

import html
import json
from pathlib import Path

import msgspec
import pytest

from harness.scenario import load_scenario, run_scenario
from tests.harness.report.test_report import attempt_bar, by_class, lane_of, parse
from tests.harness.systems.test_toy_system import write
from tests.support import REPO

pytestmark = pytest.mark.processes

SCENARIOS = REPO / "scenarios"
DEATH_AND_PAUSE = SCENARIOS / "batches/death_and_pause.toml"


def test_kill_and_pause_are_drawn_as_they_happened(tmp_path: Path) -> None:
    outcome = run_scenario(load_scenario(DEATH_AND_PAUSE), tmp_path / "run")
    result = outcome.result
    assert outcome.status == "pass", outcome.report()
    assert result.report_path == tmp_path / "run" / "report.html"
    page = result.report_path.read_text()
    svg, model, lines = parse(page)
    history = result.history

    # What recovery_latency measured is in the header, as the verdict reports it.
    assert result.verdict.notes
    for note in result.verdict.notes:
        assert f"<b>{note.check}</b>: {html.escape(note.message)}</li>" in page

    # One lane per process of the run (master, three workers, the one added mid-run).
    lanes = [g.get("data-lane", "") for g in by_class(svg, "g", "lane")]
    assert sorted(lanes) == sorted(result.exit_codes)
    assert len(lanes) == 5

    [kill] = [f for f in history.faults() if f.get("action") == "kill"]
    killed = kill.get("target")
    [lane] = [g for g in by_class(svg, "g", "lane") if g.get("data-lane") == killed]
    assert "killed" in lane.get("class", "").split()
    assert float(lane.get("data-t-end", "0")) == pytest.approx(kill.t, abs=1e-5)
    [marker] = by_class(svg, "g", "fault", "marker", "kill")
    assert marker.get("data-lane") == killed

    # The job whose start triggered the kill: lost with its holder, then accepted elsewhere.
    first, second = attempt_bar(svg, model, 5, 1), attempt_bar(svg, model, 5, 2)
    assert "o-lost" in first.get("class", "")
    assert lane_of(svg, first) == killed
    assert "o-accepted" in second.get("class", "")
    assert lane_of(svg, second) != killed

    [pause] = [f for f in history.faults() if f.get("action") == "pause"]
    [resume] = [f for f in history.faults() if f.get("action") == "resume"]
    paused = pause.get("target")
    [band] = by_class(svg, "g", "fault", "band", "band-pause")
    assert band.get("data-lane") == paused
    assert float(band.get("data-t-start", "0")) == pytest.approx(pause.t, abs=1e-5)
    assert float(band.get("data-t-end", "0")) == pytest.approx(resume.t, abs=1e-5)
    # Job 6 reported twice: its paused holder's late result and the re-run's. Whichever came
    # second is the dropped duplicate (on a loaded machine the re-run may be the later one),
    # and that is the attempt drawn as one, with the history line behind it.
    [dropped] = [e for e in history.events if e.ev == "duplicate_dropped" and e.get("job") == 6]
    duplicate = attempt_bar(svg, model, 6, int(dropped.get("attempt")))
    assert "o-duplicate" in duplicate.get("class", "")
    [index] = [i for i, a in enumerate(model["attempts"]) if a[:2] == [6, dropped.get("attempt")]]
    assert any("duplicate_dropped job=6" in lines[n] for n in model["attempts"][index][8])
    accepted = attempt_bar(svg, model, 6, 3 - int(dropped.get("attempt")))
    assert "o-accepted" in accepted.get("class", "")
    late = attempt_bar(svg, model, 6, 1)
    assert lane_of(svg, late) == paused  # the first attempt is the paused holder's

    batches = [g.get("data-batch") for g in by_class(svg, "g", "batch")]
    assert batches == ["0", "1", "2"]
    trace = json.loads((tmp_path / "run" / "trace.json").read_text())
    tracks = {
        e["args"]["name"]
        for e in trace["traceEvents"]
        if e["ph"] == "M" and e["name"] == "process_name"
    }
    assert tracks == {"run", *lanes}


def test_a_violation_is_marked_on_its_job_and_the_failure_links_the_report(
    tmp_path: Path,
) -> None:
    broken = {
        "command": ["python", "-m", "tests.broken_distq"],
        "env": {"DISTQ_BROKEN": "no-dedup"},
    }
    loaded = load_scenario(DEATH_AND_PAUSE)
    scenario = msgspec.structs.replace(loaded, system={**loaded.system, **broken})
    outcome = run_scenario(scenario, tmp_path / "run")
    assert outcome.status == "fail", outcome.report()
    report_path = tmp_path / "run" / "report.html"
    assert outcome.report().splitlines()[-1] == f"report: {report_path.as_uri()}"
    named = {job for v in outcome.result.verdict.violations for job in v.jobs}
    assert 6 in named  # the paused worker's late result was accepted a second time
    svg, model, _ = parse(report_path.read_text())
    flagged = {int(bar.get("data-job", "-1")) for bar in by_class(svg, "rect", "att", "flag")}
    assert flagged == named
    assert model["summary"]["status"] == "fail"
    assert model["summary"]["checks"]["exactly_once"] == "fail"
    late = attempt_bar(svg, model, 6, 1)
    assert "o-accepted" in late.get("class", "")  # accepted, late: the bug, drawn


def test_another_system_with_a_broker_gets_a_lane_per_process(tmp_path: Path) -> None:
    """The toy queue (tests/toy_queue.py) is not distq and runs a broker besides."""
    outcome = run_scenario(load_scenario(write(tmp_path, "broker = true")), tmp_path / "run")
    assert outcome.status == "pass", outcome.report()
    assert outcome.result.report_path is not None
    svg, model, _ = parse(outcome.result.report_path.read_text())
    lanes = [g.get("data-lane", "") for g in by_class(svg, "g", "lane")]
    assert sorted(lanes) == sorted(outcome.result.exit_codes)
    assert "broker" in lanes
    [kill] = outcome.result.history.faults()
    [marker] = by_class(svg, "g", "fault", "marker", "kill")
    assert marker.get("data-lane") == kill.get("target")
    outcomes = {model["outcomes"][a[5]][0] for a in model["attempts"]}
    assert {"accepted", "lost"} <= outcomes  # the holder's job went back and was redone


def test_a_known_bug_found_says_scenario_pass_and_run_fail(tmp_path: Path) -> None:
    """The unmodified tutorial app (kind ``managers``, watched on the wire) loses the job its
    killed worker held: the scenario expects that violation, so it passes while the run
    fails, and the report's header says both, the violation marked expected."""
    scenario = load_scenario(SCENARIOS / "tutorial/kill_after_get.toml")
    outcome = run_scenario(scenario, tmp_path / "run")
    assert outcome.status == "pass", outcome.report()
    assert outcome.result.verdict.status == "fail"
    assert outcome.result.report_path is not None
    page = outcome.result.report_path.read_text()
    assert '<span class="outcome pass">scenario pass</span>' in page
    assert '<span class="verdict fail">run fail</span>' in page
    svg, model, _ = parse(page)
    assert model["scenario"]["expected"] == list(scenario.expect.known_checks)
    assert model["violations"]
    assert all(v["expected"] for v in model["violations"])
    [killed] = [lane["name"] for lane in model["lanes"] if lane["killed"]]
    lost = by_class(svg, "rect", "att", "o-lost")
    assert lost
    assert all(lane_of(svg, bar) == killed for bar in lost)

"""report.html and trace.json from hand-written histories: what is drawn, and that it scales.

The page is parsed as it is written: the SVG as XML, the embedded model and history as
JSON (gzip for big runs). No browser is needed.
"""

from __future__ import annotations

import base64
import gzip
import itertools
import json
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from harness.checks import Verdict, Violation
from harness.history import History
from harness.report import (
    AGGREGATE_OVER,
    Outcome,
    ReportError,
    rebuild_report,
    render_html,
    write_report,
    write_verdict,
)
from harness.report.timeline import build_timeline
from harness.report.trace import trace_events
from tests.support import HistoryBuilder

SVG = "{http://www.w3.org/2000/svg}"


def _event(t: float, src: str, ev: str, **fields: Any) -> dict[str, Any]:
    return {"t": t, "src": src, "ev": ev, **fields}


def kill_and_pause() -> list[dict[str, Any]]:
    """Job 1's holder worker-2 is killed, job 1 reruns on worker-1; worker-3 is paused
    while it holds job 2, its lease expires, job 2 reruns and the late result is dropped."""
    return [
        *(
            _event(0.01, "master", "job_submitted", job=j, task="sleep", args=[0.1])
            for j in range(4)
        ),
        _event(0.02, "master", "master_ready"),
        _event(0.03, "worker-1", "connected"),
        _event(0.03, "worker-2", "connected"),
        _event(0.03, "worker-3", "connected"),
        _event(0.05, "master", "leased", job=0, attempt=1, lease=1, worker="worker-1"),
        _event(0.05, "master", "leased", job=1, attempt=1, lease=2, worker="worker-2"),
        _event(0.05, "master", "leased", job=2, attempt=1, lease=3, worker="worker-3"),
        _event(0.06, "worker-2", "started", job=1, attempt=1, worker="worker-2"),
        _event(0.07, "harness", "fault", fault=0, action="kill", target="worker-2"),
        _event(0.08, "harness", "fault", fault=1, action="pause", target="worker-3"),
        _event(0.09, "master", "worker_lost", worker="worker-2", jobs=[1], reason="closed"),
        _event(0.09, "master", "attempt_failed", job=1, attempt=1, reason="closed (worker-2)"),
        _event(0.09, "master", "requeued", job=1, attempts=1, reason="closed (worker-2)"),
        _event(0.15, "master", "result_accepted", job=0, attempt=1, worker="worker-1", value=0.1),
        _event(0.16, "master", "leased", job=1, attempt=2, lease=4, worker="worker-1"),
        _event(0.30, "master", "lease_expired", job=2, attempt=1, lease=3, worker="worker-3"),
        _event(0.30, "master", "attempt_failed", job=2, attempt=1, reason="lease expired"),
        _event(0.31, "master", "result_accepted", job=1, attempt=2, worker="worker-1", value=0.1),
        _event(0.32, "master", "leased", job=2, attempt=2, lease=5, worker="worker-1"),
        _event(0.33, "master", "leased", job=3, attempt=1, lease=6, worker="broker"),
        _event(0.34, "broker", "started", job=3, attempt=1, worker="broker"),
        _event(
            0.40, "harness", "fault", fault=1, action="resume", target="worker-3", scheduled=True
        ),
        _event(0.42, "master", "result_accepted", job=2, attempt=2, worker="worker-1", value=0.1),
        _event(0.43, "master", "duplicate_dropped", job=2, attempt=1, worker="worker-3"),
        _event(0.44, "master", "result_accepted", job=3, attempt=1, worker="broker", value=0.1),
        _event(0.45, "worker-3", "worker_exit", code=0),
        _event(0.46, "master", "master_stopped"),
        _event(
            0.44, "harness", "fault", fault=2, action="pause", target="proxy", missed="no proxy"
        ),
        _event(0.46, "harness", "fault", fault=3, action="kill", target="valkey"),
        _event(
            0.47,
            "harness",
            "run_finished",
            elapsed_s=0.5,
            exit_codes={"worker-2": -9, "valkey": -9},
        ),
    ]


def parse(page: str) -> tuple[ET.Element, dict[str, Any], list[str]]:
    """The page's SVG (as XML), its embedded model and its history lines."""
    svg_text = re.search(r"<svg .*?</svg>", page, re.DOTALL)
    assert svg_text is not None
    svg = ET.fromstring(svg_text.group(0))
    model_text = re.search(r'<script type="application/json" id="model">(.*?)</script>', page, re.S)
    assert model_text is not None
    model = json.loads(model_text.group(1))
    found = re.search(r'id="history" data-encoding="([^"]+)">(.*?)</script>', page, re.S)
    assert found is not None
    encoding, text = found.groups()
    if encoding == "json":
        lines = json.loads(text)
    else:
        assert encoding == "gzip-base64"
        lines = gzip.decompress(base64.b64decode(text)).decode().split("\n")
    return svg, model, lines


def by_class(svg: ET.Element, tag: str, *classes: str) -> list[ET.Element]:
    return [
        node for node in svg.iter(SVG + tag) if set(classes) <= set(node.get("class", "").split())
    ]


def attempt_bar(svg: ET.Element, model: dict[str, Any], job: int, attempt: int) -> ET.Element:
    [index] = [i for i, a in enumerate(model["attempts"]) if a[0] == job and a[1] == attempt]
    [bar] = [node for node in by_class(svg, "rect", "att") if node.get("data-a") == str(index)]
    return bar


def lane_of(svg: ET.Element, bar: ET.Element) -> str:
    """The lane whose band holds the bar vertically."""
    y = float(bar.get("y", "0"))
    for lane in by_class(svg, "g", "lane"):
        stripe = lane.find(SVG + "rect")
        assert stripe is not None
        top = float(stripe.get("y", "0"))
        if top <= y < top + float(stripe.get("height", "0")):
            return lane.get("data-lane", "")
    raise AssertionError(f"bar at y={y} is in no lane")


def test_one_lane_per_process_from_the_events_alone() -> None:
    svg, model, _ = parse(render_html(build_timeline(History(kill_and_pause()), None), History([])))
    lanes = [g.get("data-lane") for g in by_class(svg, "g", "lane")]
    # Names this module knows nothing of: "broker" wrote events, "valkey" wrote none but
    # was spawned (its exit code) and killed; a missed fault's target is no process.
    assert lanes == ["master", "broker", "valkey", "worker-1", "worker-2", "worker-3"]
    assert [lane["name"] for lane in model["lanes"]] == lanes


def test_kill_ends_the_lane_loses_the_attempt_and_is_drawn() -> None:
    history = History(kill_and_pause())
    svg, model, _ = parse(render_html(build_timeline(history, None), history))
    [killed] = [g for g in by_class(svg, "g", "lane") if g.get("data-lane") == "worker-2"]
    assert "killed" in killed.get("class", "").split()
    assert float(killed.get("data-t-end", "0")) == pytest.approx(0.07)
    first, second = attempt_bar(svg, model, 1, 1), attempt_bar(svg, model, 1, 2)
    assert "o-lost" in first.get("class", "")
    assert lane_of(svg, first) == "worker-2"
    assert "o-accepted" in second.get("class", "")
    assert lane_of(svg, second) == "worker-1"
    kills = {g.get("data-lane", ""): g for g in by_class(svg, "g", "fault", "marker", "kill")}
    assert sorted(kills) == ["valkey", "worker-2"]
    assert float(kills["worker-2"].get("data-t", "0")) == pytest.approx(0.07)
    [valkey] = [g for g in by_class(svg, "g", "lane") if g.get("data-lane") == "valkey"]
    assert float(valkey.get("data-t-end", "0")) == pytest.approx(0.46)


def test_a_pause_is_a_band_and_the_late_result_a_dropped_duplicate() -> None:
    history = History(kill_and_pause())
    svg, model, lines = parse(render_html(build_timeline(history, None), history))
    [band] = by_class(svg, "g", "fault", "band", "band-pause")
    assert band.get("data-lane") == "worker-3"
    assert float(band.get("data-t-start", "0")) == pytest.approx(0.08)
    assert float(band.get("data-t-end", "0")) == pytest.approx(0.40)
    late = attempt_bar(svg, model, 2, 1)
    assert "o-duplicate" in late.get("class", "")
    assert lane_of(svg, late) == "worker-3"
    [index] = [i for i, a in enumerate(model["attempts"]) if a[:2] == [2, 1]]
    _, _, _, t_start, t_end, _, reason, t_lease_end, cited, _, _ = model["attempts"][index]
    assert (t_start, t_lease_end, t_end) == (0.05, 0.30, 0.43)
    assert "lease expired" in reason
    assert "dropped" in reason
    # The history lines behind the bar are embedded, in the format of the failure report.
    assert any("duplicate_dropped job=2 attempt=1 worker=worker-3" in lines[n] for n in cited)
    assert all(lines[n] == history[n].render() for n in cited)


def test_a_fault_that_did_not_take_effect_is_drawn_apart_with_why() -> None:
    events = kill_and_pause()
    why = "pid 9 (python) gained 0.50 s of CPU while paused"
    events.append(
        _event(0.41, "harness", "fault_effect", fault=1, action="pause", target="worker-3",
               verified=False, why=why)
    )  # fmt: skip
    events.append(
        _event(0.07, "harness", "fault_effect", fault=0, action="kill", target="worker-2",
               verified=True, pids=[5])
    )  # fmt: skip
    history = History(sorted(events, key=lambda e: e["t"]))
    svg, model, _ = parse(render_html(build_timeline(history, None), history))
    [band] = by_class(svg, "g", "fault", "band", "band-pause")
    assert "unverified" in band.get("class", "").split()
    [kill] = [g for g in by_class(svg, "g", "fault", "kill") if g.get("data-lane") == "worker-2"]
    assert "unverified" not in kill.get("class", "").split()
    [pause] = [f for f in model["faults"] if f["action"] == "pause" and not f["missed"]]
    assert pause["unverified"] == why


def test_violations_are_named_in_the_header_and_marked_on_their_jobs() -> None:
    history = History(kill_and_pause())
    verdict = Verdict(
        "fail",
        (Violation("exactly_once", "job 2 has 2 terminal results", (2,), (0, 30)),),
        (),
        ("exactly_once", "correct_values"),
    )
    page = render_html(build_timeline(history, verdict, title="t"), history)
    svg, model, _ = parse(page)
    flagged = {int(node.get("data-job", "-1")) for node in by_class(svg, "rect", "att", "flag")}
    assert flagged == {2}
    assert model["summary"]["checks"] == {"exactly_once": "fail", "correct_values": "pass"}
    assert '<span class="verdict fail">fail</span>' in page
    assert "job 2 has 2 terminal results" in page


def test_write_report_records_the_verdict_and_rebuild_draws_the_same(tmp_path: Path) -> None:
    for src in ("master", "worker-1", "worker-2", "worker-3", "broker", "harness"):
        events = [e for e in kill_and_pause() if e["src"] == src]
        (tmp_path / f"{src}.events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    history = History.load_run(tmp_path)
    verdict = Verdict(
        "unknown",
        (),
        (Violation("fault_coverage", "missed", (), (), "unknown"),),
        ("fault_coverage",),
    )
    first = write_run(tmp_path, history, verdict, title="kill and pause", faults_planned=2)
    written = first.read_text()
    (tmp_path / "report.html").unlink()
    assert rebuild_report(tmp_path).read_text() == written
    assert json.loads((tmp_path / "verdict.json").read_text())["status"] == "unknown"
    assert (tmp_path / "trace.json").is_file()


def write_run(run_dir: Path, history: History, verdict: Verdict, **fields: Any) -> Path:
    """What a run writes: its verdict record, then its report."""
    write_verdict(run_dir, verdict, **fields)
    return write_report(run_dir, history, verdict, **fields)


def write_events(run_dir: Path) -> History:
    for src in ("master", "worker-1", "worker-2", "worker-3", "broker", "harness"):
        events = [e for e in kill_and_pause() if e["src"] == src]
        (run_dir / f"{src}.events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    return History.load_run(run_dir)


def header(page: str) -> str:
    found = re.search(r"<header>.*?</header>", page, re.S)
    assert found is not None
    return found.group(0)


def test_a_known_bug_found_is_a_passing_scenario_and_its_violation_is_expected(
    tmp_path: Path,
) -> None:
    history = write_events(tmp_path)
    verdict = Verdict(
        "fail",
        (Violation("liveness", "job 3 was lost with its holder", (3,), (0,)),),
        (),
        ("liveness", "exactly_once"),
    )
    outcome = Outcome(
        "pass",
        "t: pass (the known liveness violation is still there)",
        ("liveness",),
        ("liveness: job 3 was lost with its holder",),
    )
    page = write_run(tmp_path, history, verdict, title="t", outcome=outcome).read_text()
    top = header(page)
    assert '<span class="outcome pass">scenario pass</span>' in top
    assert '<span class="verdict fail">run fail</span>' in top
    assert "the known liveness violation is still there" in top
    assert '<li class="check fail expected">liveness: <b>fail</b> (expected)</li>' in top
    assert '<li class="check pass">exactly_once: <b>pass</b></li>' in top
    assert re.search(r'<li class="violation fail expected"[^>]*><b>expected fail liveness</b>', top)
    _, model, _ = parse(page)
    assert model["scenario"] == {
        "status": "pass",
        "message": outcome.message,
        "expected": ["liveness"],
        "matched": ["liveness: job 3 was lost with its holder"],
    }
    assert [v["expected"] for v in model["violations"]] == [True]
    (tmp_path / "report.html").unlink()
    assert rebuild_report(tmp_path).read_text() == page


def test_without_a_scenario_outcome_the_header_shows_the_verdict_alone(tmp_path: Path) -> None:
    history = write_events(tmp_path)
    verdict = Verdict("fail", (Violation("liveness", "lost", (3,), (0,)),), (), ("liveness",))
    top = header(write_run(tmp_path, history, verdict, title="t").read_text())
    assert '<span class="verdict fail">fail</span>' in top
    assert "outcome" not in top
    assert "expected" not in top


def test_the_measured_latencies_are_shown_and_survive_the_round_trip(tmp_path: Path) -> None:
    history = write_events(tmp_path)
    note = Violation(
        "recovery_latency", "worker-2 killed: job 1 back in 0.020 s", (1,), (12,), "note"
    )
    verdict = Verdict("pass", (), (), ("recovery_latency",), (note,))
    page = write_run(tmp_path, history, verdict, title="t").read_text()
    assert "recovery_latency</b>: worker-2 killed: job 1 back in 0.020 s" in header(page)
    record = json.loads((tmp_path / "verdict.json").read_text())
    assert [(n["check"], n["severity"], n["jobs"]) for n in record["notes"]] == [
        ("recovery_latency", "note", [1])
    ]
    (tmp_path / "report.html").unlink()
    assert rebuild_report(tmp_path).read_text() == page


def test_a_system_without_leases_draws_its_attempts_from_the_workers() -> None:
    """An engine's master logs no leases (the broker hands jobs out): the workers' own
    started and completed events are the attempts, and a worker killed as a tree
    (``kill_tree``) ends its lane and loses what it ran."""
    history = History(
        [
            _event(0.1, "master", "job_submitted", job=0, task="square", args=[0]),
            _event(0.1, "master", "job_submitted", job=1, task="square", args=[1]),
            _event(0.2, "worker-1", "started", job=0, attempt=1, worker="worker-1"),
            _event(0.2, "worker-2", "started", job=1, attempt=1, worker="worker-2"),
            _event(0.3, "harness", "fault", fault=0, action="kill_tree", target="worker-1"),
            _event(0.5, "worker-2", "completed", job=1, attempt=1, worker="worker-2", ok=True),
            _event(0.6, "master", "result_accepted", job=1, ok=True, value=1),
            _event(0.7, "master", "master_stopped", missing=[0]),
            _event(0.8, "harness", "run_finished", exit_codes={"worker-1": -9, "worker-2": 0}),
        ]
    )
    svg, model, _ = parse(render_html(build_timeline(history, None), history))
    lost, done = attempt_bar(svg, model, 0, 1), attempt_bar(svg, model, 1, 1)
    assert "o-lost" in lost.get("class", "")
    assert lane_of(svg, lost) == "worker-1"
    assert "o-accepted" in done.get("class", "")
    assert lane_of(svg, done) == "worker-2"
    [killed] = [lane for lane in model["lanes"] if lane["killed"]]
    assert killed["name"] == "worker-1"
    assert killed["t_end"] == 0.3


def test_rebuild_refuses_what_is_not_a_run_directory(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match=r"no \*\.events\.jsonl"):
        rebuild_report(tmp_path)
    with pytest.raises(ReportError, match="not a directory"):
        rebuild_report(tmp_path / "missing")
    (tmp_path / "master.events.jsonl").write_text(json.dumps(_event(0.1, "master", "x")) + "\n")
    (tmp_path / "verdict.json").write_text('{"status": "maybe"}')
    with pytest.raises(ReportError, match=r"verdict\.json: not a verdict record"):
        rebuild_report(tmp_path)
    (tmp_path / "master.events.jsonl").write_text(
        '{"t": 0.1, "src": "master", "ev": "x"}\n}{\n{}\n'
    )
    with pytest.raises(ReportError, match=r"its history cannot be read: .*master\.events\.jsonl:2"):
        rebuild_report(tmp_path)


def test_harness_report_command_prints_the_link_or_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "master.events.jsonl").write_text(
        "".join(json.dumps(e) + "\n" for e in kill_and_pause() if e["src"] == "master")
    )
    done = subprocess.run(
        [sys.executable, "-m", "harness", "report", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (tmp_path / "run" / "report.html").resolve().as_uri()
    bad = subprocess.run(
        [sys.executable, "-m", "harness", "report", str(tmp_path / "nothing")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1
    assert "not a directory" in bad.stderr


def many_jobs(jobs: int, workers: int = 4) -> list[dict[str, Any]]:
    """A streaming run of ``jobs`` jobs of 1 ms; worker-1 is killed holding ten leases."""
    events = [
        _event(0.0, "master", "job_submitted", job=j, task="square", args=[j]) for j in range(jobs)
    ]
    t = 0.01
    kill_at = jobs // 2
    alive = [f"worker-{w + 1}" for w in range(workers)]
    held: list[int] = []
    for job in range(jobs):
        worker = alive[job % len(alive)]
        t += 0.0005
        events.append(_event(t, "master", "leased", job=job, attempt=1, lease=job, worker=worker))
        events.append(_event(t + 0.0001, worker, "started", job=job, attempt=1, worker=worker))
        if worker == "worker-1" and kill_at <= job < kill_at + 40:
            held.append(job)
            continue
        events.append(_event(t + 0.001, worker, "completed", job=job, attempt=1, worker=worker))
        events.append(
            _event(
                t + 0.0011,
                "master",
                "result_accepted",
                job=job,
                attempt=1,
                worker=worker,
                value=job * job,
            )
        )
        if job == kill_at + 40:
            events.append(_event(t, "harness", "fault", fault=0, action="kill", target="worker-1"))
            events.append(_event(t + 0.001, "master", "worker_lost", worker="worker-1", jobs=held))
            alive.remove("worker-1")
    for job in held:
        t += 0.0005
        events.append(
            _event(t, "master", "leased", job=job, attempt=2, lease=jobs + job, worker="worker-2")
        )
        events.append(
            _event(
                t + 0.001,
                "master",
                "result_accepted",
                job=job,
                attempt=2,
                worker="worker-2",
                value=job * job,
            )
        )
    return events


def test_five_thousand_jobs_aggregate_and_stay_small(tmp_path: Path) -> None:
    history = History(many_jobs(5000))
    started = time.perf_counter()
    page = render_html(build_timeline(history, None), history)
    assert time.perf_counter() - started < 30  # a hang guard; the speed is measured in benchmarks/
    svg, model, lines = parse(page)
    assert len(model["attempts"]) == 5010 > AGGREGATE_OVER
    assert model["aggregated"]
    # The lost attempts stay bars of their own; the plain accepted ones become histograms.
    bars = by_class(svg, "rect", "att")
    assert len(bars) == 10
    assert all("o-lost" in bar.get("class", "") for bar in bars)
    aggregates = by_class(svg, "rect", "agg")
    assert 0 < len(aggregates) < 2000
    counted = {
        index for bucket in model["buckets"].values() for ids in bucket.values() for index in ids
    }
    assert len(counted) == 5000  # every accepted attempt is in some bucket
    assert len(page) < 3_000_000
    assert len(lines) == len(history)
    assert lines[-1] == history[len(history) - 1].render()


def test_a_small_run_draws_every_attempt() -> None:
    history = History(many_jobs(AGGREGATE_OVER // 2))
    svg, model, _ = parse(render_html(build_timeline(history, None), history))
    assert not model["aggregated"]
    assert not by_class(svg, "rect", "agg")
    assert len(by_class(svg, "rect", "att")) == len(model["attempts"])


def test_trace_has_one_track_per_process_and_no_overlap_within_a_thread() -> None:
    trace = trace_events(build_timeline(History(many_jobs(300)), None))
    json.dumps(trace)  # serialisable as is
    names = {
        e["args"]["name"]
        for e in trace["traceEvents"]
        if e["ph"] == "M" and e["name"] == "process_name"
    }
    assert names == {"run", "master", "worker-1", "worker-2", "worker-3", "worker-4"}
    spans: dict[tuple[int, int], list[tuple[float, float]]] = {}
    for e in trace["traceEvents"]:
        if e["ph"] == "X" and e.get("cat") != "fault":
            spans.setdefault((e["pid"], e["tid"]), []).append((e["ts"], e["ts"] + e["dur"]))
    for track in spans.values():
        track.sort()
        assert all(end <= start for (_, end), (start, _) in itertools.pairwise(track))
    lost = [e for e in trace["traceEvents"] if e.get("cat") == "lost"]
    assert len(lost) == 10
    assert {e["args"]["worker"] for e in lost} == {"worker-1"}
    assert any(e["ph"] == "i" and e["name"] == "kill worker-1" for e in trace["traceEvents"])


@pytest.mark.skipif(shutil.which("node") is None, reason="no node to parse the script with")
def test_the_page_script_parses() -> None:
    script = resources.files("harness.report").joinpath("report.js")
    with resources.as_file(script) as path:
        done = subprocess.run(
            ["node", "--check", str(path)], capture_output=True, text=True, timeout=60
        )
    assert done.returncode == 0, done.stderr


def test_a_run_where_nothing_happened_still_gets_a_page() -> None:
    history = History([_event(0.1, "harness", "run_finished", exit_codes={"master": 1})])
    svg, model, lines = parse(render_html(build_timeline(history, None), history))
    assert [g.get("data-lane") for g in by_class(svg, "g", "lane")] == ["master"]
    assert model["attempts"] == []
    assert model["summary"]["status"] == "not recorded"
    assert len(lines) == 1


def test_the_fault_actions_and_checks_the_timeline_names_are_the_registries() -> None:
    from harness import contract
    from harness.checks import CHECKS
    from harness.report import timeline

    # Read from the fault-action table: a pause is drawn as a band until its resume.
    assert timeline._BAND_ENDS == {
        "pause": "resume",
        "isolate": "heal_hosts",
        "partition_hosts": "heal_hosts",
        "one_way": "heal_hosts",
        "loss": "heal_hosts",
        "bandwidth": "heal_hosts",
        "delay": "heal_hosts",
    }
    assert {"kill", "kill_tree", "kill_master"} == contract.KILLS
    assert "fault_coverage" in CHECKS


def test_a_kernel_fault_is_labelled_with_what_the_kernel_counted() -> None:
    built = HistoryBuilder()
    built.submit(0)
    built.lease(0, "worker-1")
    built.harness("fault", fault=0, action="isolate", target="worker-1", trigger={"after_s": 0})
    built.harness("fault", fault=0, action="heal_hosts", target="worker-1", scheduled=True)
    built.harness(
        "fault_effect", fault=0, action="isolate", target="worker-1", verified=True, pids=[],
        dropped=26, seen=26, held_back=0,
    )  # fmt: skip
    built.accept(0, "worker-1")
    marks = build_timeline(built.history(), None).faults
    assert [(mark.label, mark.lane) for mark in marks] == [
        ("isolate worker-1 (26 packets dropped)", "worker-1")
    ]
    assert marks[0].t_end is not None  # a band, from the isolation to its heal

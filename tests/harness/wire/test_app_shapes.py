"""How the translator reads the shapes BaseManager apps come in: hand-outs other than get,
keys inside items, equal items, results on other connections, in a mapping or a list, or
absent; control items; what it cannot tie to a job. Frames are built here: no processes."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from harness import contract
from harness.checks import correct_values, exactly_once, judge, known_bug_outcome
from harness.checks.context import CheckContext
from harness.checks.verdict import Pin
from harness.history import History
from harness.scenario import ScenarioError, load_scenario
from harness.wire.frames import WireFrame
from harness.wire.identity import Keyer, Skipper, key_text, path_of
from harness.wire.relay import FrameHolds
from harness.wire.translate import QueueNames, WireTranslator, keyer

MASTER = contract.MASTER


class Wire:
    """A conversation with a BaseManager server, frame by frame, fed to a translator."""

    def __init__(self, names: QueueNames) -> None:
        self.translator = WireTranslator(names)
        self.events: list[dict[str, Any]] = []
        self.clock = itertools.count()
        self.idents: dict[str, str] = {}

    def _feed(self, frame: WireFrame) -> None:
        self.events.extend(self.translator.feed(frame))

    def proxy(self, route: str, typeid: str, conn: int = 0) -> str:
        """``route`` makes a proxy of ``typeid`` (its server-side id)."""
        ident = self.idents.setdefault(typeid, f"id-{typeid}")
        self.call(route, None, "create", typeid, result=[ident, ["put"]], conn=conn)
        return ident

    def call(
        self,
        route: str,
        ident: str | None,
        method: str,
        *args: Any,
        result: Any = None,
        reply: str | None = "#RETURN",
        conn: int = 0,
        kwargs: dict[str, Any] | None = None,
    ) -> None:
        """A request and (unless ``reply`` is None) its answer."""
        value = [ident, method, list(args), kwargs or {}]
        request = WireFrame(next(self.clock), route, conn, "upstream", "request", 1, value)
        self._feed(request)
        if reply is not None:
            answer = [reply, result]
            self._feed(
                WireFrame(next(self.clock), route, conn, "downstream", "reply", 1, answer, request)
            )

    def close(self, route: str, conn: int = 0) -> None:
        self._feed(WireFrame(next(self.clock), route, conn, "upstream", "end"))

    def history(self) -> History:
        return History(list(self.events))

    def of(self, ev: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["ev"] == ev]


def squares(item: Any, value: Any) -> bool:
    return bool(value == item * item)


def test_a_deque_filled_inside_the_server_and_taken_with_popleft_is_seen_job_by_job() -> None:
    wire = Wire(QueueNames("get_jobs", "get_results", take=frozenset({"popleft"})))
    jobs, results = wire.proxy("worker-1", "get_jobs"), wire.proxy("worker-1", "get_results")
    master_results = wire.proxy(MASTER, "get_results")
    for n in range(3):
        wire.call("worker-1", jobs, "popleft", result=n)
        wire.call("worker-1", results, "put", n * n)
        wire.call(MASTER, master_results, "get", result=n * n)
    wire.call("worker-1", jobs, "popleft", reply="#ERROR", result="IndexError")
    wire.call("worker-1", jobs, "get", result=9)  # not how this app hands out

    history = wire.history()
    assert sorted(history.submitted()) == [0, 1, 2]
    assert [e["job"] for e in wire.of("leased")] == [0, 1, 2]
    assert exactly_once(history) == []


def test_equal_items_are_matched_first_in_first_out() -> None:
    wire = Wire(QueueNames("tasks", "results"))
    tasks, results = wire.proxy(MASTER, "tasks"), wire.proxy(MASTER, "results")
    for _ in range(3):
        wire.call(MASTER, tasks, "put", 5)
    for route in ("worker-1", "worker-2", "worker-1"):
        wire.call(route, tasks, "get", result=5)
        wire.call(route, results, "put", 25)
        wire.call(MASTER, results, "get", result=25)

    assert [e["job"] for e in wire.of("leased")] == [0, 1, 2]
    assert [e["attempt"] for e in wire.of("leased")] == [1, 1, 1]
    assert exactly_once(wire.history()) == []


def test_a_lost_job_put_back_by_the_app_is_the_same_job_handed_out_again() -> None:
    wire = Wire(QueueNames("tasks", "results"))
    tasks, results = wire.proxy(MASTER, "tasks"), wire.proxy(MASTER, "results")
    wire.call(MASTER, tasks, "put", 7)
    wire.call("worker-1", tasks, "get", result=7)
    wire.close("worker-1")
    wire.call(MASTER, tasks, "put", 7)  # the app's own retry
    wire.call("worker-2", tasks, "get", result=7)
    wire.call("worker-2", results, "put", 49)
    wire.call(MASTER, results, "get", result=49)

    assert list(wire.history().submitted()) == [0]
    assert [(e["job"], e["attempt"]) for e in wire.of("leased")] == [(0, 1), (0, 2)]
    assert exactly_once(wire.history()) == []


def test_results_are_matched_per_process_across_its_connections() -> None:
    wire = Wire(QueueNames("tasks", "results"))
    tasks, results = wire.proxy(MASTER, "tasks"), wire.proxy(MASTER, "results")
    wire.call(MASTER, tasks, "put", 3)
    wire.call("worker-1", tasks, "get", result=3, conn=0)
    wire.call("worker-1", results, "put", 9, conn=1)  # its collector thread's connection
    wire.call(MASTER, results, "get", result=9)

    assert [(e["src"], e["job"]) for e in wire.of("completed")] == [("worker-1", 0)]
    assert exactly_once(wire.history()) == []


@pytest.mark.parametrize("order", ["in order", "reversed"])
def test_a_worker_that_keeps_several_jobs_is_matched_by_value_with_expected(order: str) -> None:
    wire = Wire(QueueNames("tasks", "results", matches=squares))
    tasks, results = wire.proxy(MASTER, "tasks"), wire.proxy(MASTER, "results")
    items = [2, 3, 4]
    for n in items:
        wire.call(MASTER, tasks, "put", n)
    for n in items:
        wire.call("worker-1", tasks, "get", result=n)
    for n in items if order == "in order" else reversed(items):
        wire.call("worker-1", results, "put", n * n)

    assert {e["job"]: e["value"] for e in wire.of("completed")} == {0: 4, 1: 9, 2: 16}


def test_a_result_left_out_leaves_its_own_job_held_not_the_next() -> None:
    wire = Wire(QueueNames("tasks", "results", matches=squares))
    tasks, results = wire.proxy(MASTER, "tasks"), wire.proxy(MASTER, "results")
    for n in (1, 2, 3):
        wire.call(MASTER, tasks, "put", n)
    wire.call("worker-1", tasks, "get", result=1)  # its result is never put
    for n in (2, 3):
        wire.call("worker-1", tasks, "get", result=n)
        wire.call("worker-1", results, "put", n * n)
        wire.call(MASTER, results, "get", result=n * n)
    wire.call("worker-1", results, "put", 9)  # 3's result again
    wire.call(MASTER, results, "get", result=9)

    lost = exactly_once(wire.history())
    assert sorted((v.jobs, v.message.split(":")[0]) for v in lost) == [
        ((0,), "job 0 lost"),
        ((2,), "job 2 has 2 terminal results"),
    ]


def test_results_written_to_a_mapping_are_accepted_once_answered() -> None:
    wire = Wire(QueueNames("tasks", "squares", results_as="mapping"))
    tasks, squares_ = wire.proxy(MASTER, "tasks"), wire.proxy(MASTER, "squares")
    for n in (1, 2, 3, 4):
        wire.call(MASTER, tasks, "put", n)
    for n in (1, 2, 3, 4):
        wire.call("worker-1", tasks, "get", result=n)
    wire.call("worker-1", squares_, "__setitem__", 1, 1)
    wire.call("worker-1", squares_, "update", {"2": 4, "3": 9})  # keys rendered as text
    wire.call("worker-1", squares_, "__setitem__", 4, 16, reply="#ERROR")  # refused
    wire.call(MASTER, squares_, "copy", result={"1": 1, "2": 4, "3": 9})  # a read

    accepted = {e["job"]: e["value"] for e in wire.of("result_accepted")}
    assert accepted == {0: 1, 1: 4, 2: 9}
    assert [v.jobs for v in exactly_once(wire.history())] == [(3,)]


def test_rows_appended_to_a_list_are_results_the_master_reads_in_place() -> None:
    wire = Wire(QueueNames("tasks", "rows"))
    tasks, rows = wire.proxy(MASTER, "tasks"), wire.proxy(MASTER, "rows")
    wire.call(MASTER, tasks, "put", 6)
    wire.call("worker-1", tasks, "get", result=6)
    wire.call("worker-1", rows, "append", [6, 36])
    wire.call(MASTER, rows, "pop", result=[6, 36])  # taking it does not count it twice

    assert len(wire.of("result_accepted")) == 1
    assert exactly_once(wire.history()) == []


def test_without_results_a_job_is_done_when_its_holder_asks_for_the_next() -> None:
    wire = Wire(QueueNames("chores", None, skip=Skipper(function=lambda item: item is None)))
    chores = wire.proxy(MASTER, "chores")
    for item in ("a.png", "b.png", None):
        wire.call(MASTER, chores, "put", item)
    wire.call("worker-1", chores, "get", result="a.png")
    wire.call("worker-1", chores, "get", result="b.png")  # asking again: a.png is done
    wire.close("worker-1")  # killed working on b.png

    history = wire.history()
    assert sorted(history.submitted()) == [0, 1]  # the None stop sign is no job
    assert [e["implied"] for e in wire.of("result_accepted")] == ["asked_for_next"]
    assert [v.jobs for v in exactly_once(history)] == [(1,)]
    assert correct_values(history, CheckContext()) == []


def test_items_keyed_by_index_path_and_function() -> None:
    assert path_of("payload.id") == ("payload", "id")
    assert path_of([1, "id"]) == (1, "id")
    assert path_of("rows.0") == ("rows", 0)
    assert Keyer(path_of(0))([7, "x"]) == "7"
    assert Keyer(path_of("payload.id"))({"payload": {"id": 3}}) == "3"
    assert Keyer(path_of([1, "id"]))([0, {"id": "a"}]) == '"a"'
    assert Keyer(path_of(0))({"$call": "app.Task", "args": [4, 5]}) == "4"  # a namedtuple
    assert Keyer(path_of("job_id"))({"$class": "app.Job", "n": 1}) is None
    inside = Keyer(function=lambda payload: payload[:2])
    assert inside({"$bytes": "ab-rest"}) == key_text(b"ab")  # handed bytes, not their text


def test_a_task_item_no_key_names_and_a_result_that_answers_no_job_are_violations() -> None:
    wire = Wire(QueueNames("tasks", "results", job_key="job_id", result_key="job_id"))
    tasks, results = wire.proxy(MASTER, "tasks"), wire.proxy(MASTER, "results")
    wire.call(MASTER, tasks, "put", {"job_id": 1})
    wire.call(MASTER, tasks, "put", {"id": 2})  # no job_id
    wire.call("worker-1", tasks, "get", result={"job_id": 1})
    wire.call("worker-1", results, "put", {"job_id": 1, "v": 1})
    wire.call("worker-1", results, "put", {"job_id": 99, "v": 0})  # no such job
    wire.call(MASTER, results, "get", result={"job_id": 1, "v": 1})

    messages = [v.message for v in exactly_once(wire.history())]
    assert len(messages) == 2
    assert 'task item {"id": 2}' in messages[0]
    assert "job key 'job_id'" in messages[0]
    assert "answers no job" in messages[1]
    assert "99" in messages[1]


def test_a_typeid_the_app_never_created_makes_the_run_unknown_whatever_failed() -> None:
    wire = Wire(QueueNames("tasks", "get_reslts"))  # a typo
    tasks = wire.proxy(MASTER, "tasks")
    wire.proxy("worker-1", "get_results")
    wire.call(MASTER, tasks, "put", 1)
    wire.call("worker-1", tasks, "get", result=1)
    unseen = wire.translator.unseen_typeids()
    assert unseen == [
        {"role": "results", "typeid": "get_reslts", "created": ["get_results", "tasks"]}
    ]
    events = [*wire.events, {"t": 99, "src": MASTER, "ev": contract.TYPEID_UNSEEN, **unseen[0]}]
    history = History(events)

    verdict = judge(history, ["exactly_once"])
    assert verdict.status == "unknown"
    assert verdict.violations  # job 0 "lost": kept to read, but it decides nothing
    assert "never created" in verdict.unknowns[0].message
    outcome = known_bug_outcome("typo", (Pin("exactly_once"),), verdict)
    assert outcome.status == "unknown"


def test_a_scenario_key_spec_becomes_a_keyer() -> None:
    assert keyer(None) is None
    names = QueueNames("t", "r", job_key=[0, "id"])
    assert isinstance(names.job_key, Keyer)
    assert names.job_key([{"id": 5}]) == "5"
    assert QueueNames("t", "r").job_key(5) == "5"  # the item itself


def test_a_held_frame_waits_for_its_fault_once_and_only_for_its_attempt() -> None:
    holds = FrameHolds()
    holds.arm("job_leased", 4, 2)
    first = {"ev": "leased", "job": 4, "attempt": 1}
    second = {"ev": "leased", "job": 4, "attempt": 2}

    assert holds.gate_for(first) is None  # another attempt
    gate = holds.gate_for(second)
    assert gate is not None
    assert not gate.is_set()
    assert holds.gate_for(second) is None  # one frame per hold
    holds.release("job_leased", 4)
    assert gate.is_set()
    assert holds.gate_for({"ev": "completed", "job": 4}) is None


@pytest.mark.parametrize(
    ("kind", "when", "message"),
    [
        ("managers", "job_completed = 1, hold = true", "hold applies to job_leased"),
        ("distq", "job_leased = 1, hold = true", "system kind 'distq' cannot hold a frame"),
    ],
)
def test_hold_is_refused_where_it_cannot_work(
    tmp_path: Path, kind: str, when: str, message: str
) -> None:
    system = (
        '[system]\nkind = "managers"\nmaster = ["m"]\nworker = ["w"]\ntasks = "t"\nresults = "r"\n'
        if kind == "managers"
        else ""
    )
    path = tmp_path / "s.toml"
    path.write_text(
        f'scenario = 2\nname = "n"\ndescription = "d"\n\n{system}\n'
        f'[[faults]]\nwhen = {{ {when} }}\ndo = "kill"\ntarget = "holder"\n',
        encoding="utf-8",
    )
    with pytest.raises(ScenarioError) as raised:
        load_scenario(path)
    assert message in str(raised.value)


def test_without_results_a_task_done_finishes_the_oldest_job_its_caller_holds() -> None:
    wire = Wire(QueueNames("chores", None))
    chores = wire.proxy(MASTER, "chores")
    for item in ("a", "b"):
        wire.call(MASTER, chores, "put", item)
    wire.call("worker-1", chores, "get", result="a")
    wire.call("worker-1", chores, "task_done")

    assert [(e["job"], e["implied"]) for e in wire.of("result_accepted")] == [(0, "task_done")]
    wire.call("worker-1", chores, "get_nowait", reply="#ERROR", result="Empty")  # asks: none held
    assert len(wire.of("result_accepted")) == 1

"""The wire decoder and translator, on bytes built here and on frames captured from the
tutorial apps (tests/wire_captures): no processes."""

from __future__ import annotations

import json
import os
import pickle
import queue
import struct
import xmlrpc.client
from pathlib import Path
from typing import Any

import pytest

from harness.checks import batch_barrier, exactly_once
from harness.history import History
from harness.wire.decode import MAX_DECODED_BYTES, decode_payload
from harness.wire.frames import Connection, replay
from harness.wire.translate import QueueNames, WireTranslator
from tests.support import TESTS

CAPTURES = TESTS / "wire_captures"


class Job:
    def __init__(self, job_id: int, n: int) -> None:
        self.job_id = job_id
        self.n = n


class Hostile:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (os.system, (f"touch {self.marker}",))


def test_a_hostile_pickle_is_rendered_as_the_call_it_would_make_and_nothing_runs(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "ran"
    payload = pickle.dumps(("#RETURN", Hostile(marker)))

    assert pickle.loads(pickle.dumps(Hostile(tmp_path / "control"))) == 0  # it does run...
    assert (tmp_path / "control").exists()
    value = decode_payload(payload)  # ...but not here

    assert value == ["#RETURN", {"$call": "posix.system", "args": [f"touch {marker}"]}]
    assert not marker.exists()


def test_a_user_class_is_a_record_of_its_name_and_state_without_importing_it() -> None:
    payload = pickle.dumps(("abc123", "put", (Job(7, 8),), {}))
    payload = payload.replace(b"test_wire", b"nowhere_x")  # same length: still a valid pickle

    assert decode_payload(payload) == [
        "abc123",
        "put",
        [{"$class": "tests.harness.wire.nowhere_x.Job", "job_id": 7, "n": 8}],
        {},
    ]


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_every_pickle_protocol_decodes(protocol: int) -> None:
    payload = pickle.dumps(("#ERROR", queue.Empty(), {1, 2}, b"\x00\xff"), protocol=protocol)

    kind, empty, numbers, raw = decode_payload(payload)

    assert kind == "#ERROR"
    assert empty["$class"].endswith(".Empty")
    assert numbers == {"$set": [1, 2]}
    assert raw == {"$bytes": "\x00\xff"}


def test_xmlrpclib_frames_decode_too() -> None:
    request = xmlrpc.client.dumps((("7f00", "put", [5], {}),), None, None, None, True)
    reply = xmlrpc.client.dumps((("#RETURN", None),), None, None, None, True)

    assert decode_payload(request.encode()) == ["7f00", "put", [5], {}]
    assert decode_payload(reply.encode()) == ["#RETURN", None]


def test_bad_bytes_and_huge_frames_are_described_not_raised() -> None:
    assert decode_payload(b"\x80\x04garbage")["$undecodable"].startswith("UnpicklingError")
    assert decode_payload(b"\x00" * (MAX_DECODED_BYTES + 1))["$undecoded"] == "too large"


def _framed(payload: bytes) -> bytes:
    return struct.pack("!i", len(payload)) + payload


def test_a_connection_tells_handshake_requests_and_replies_apart_across_chunk_borders() -> None:
    conn = Connection("worker-1", 0)
    down = _framed(b"#CHALLENGE#{sha256}" + b"n" * 40)
    up = _framed(b"{sha256}" + b"d" * 32)
    frames = conn.feed(0.0, "downstream", down) + conn.feed(0.1, "upstream", up)
    frames += conn.feed(0.2, "downstream", _framed(b"#WELCOME#"))
    frames += conn.feed(0.3, "upstream", _framed(b"#CHALLENGE#" + b"x" * 20))
    frames += conn.feed(0.4, "downstream", _framed(b"y" * 16))
    frames += conn.feed(0.5, "upstream", _framed(b"#WELCOME#"))
    request = _framed(pickle.dumps(("7f00", "get", (), {"timeout": 1})))
    frames += conn.feed(0.6, "upstream", request[:3])  # a chunk ends inside the header
    frames += conn.feed(0.7, "upstream", request[3:])
    frames += conn.feed(0.8, "upstream", b"")  # the client died
    frames += conn.feed(0.9, "downstream", _framed(pickle.dumps(("#RETURN", 42))))

    kinds = [frame.kind for frame in frames]
    assert kinds[:6] == ["challenge", "answer", "welcome", "challenge", "answer", "welcome"]
    assert frames[0].value == {"digest": "sha256"}
    assert frames[3].value == {"digest": "md5"}
    assert kinds[6:] == ["request", "end", "reply"]
    reply = frames[-1]
    assert (reply.method, reply.ident, reply.result) == ("get", "7f00", 42)
    assert reply.client_gone  # an orphaned server thread's reply: it can never be delivered


def test_a_welcome_read_together_with_the_first_request_is_still_the_welcome() -> None:
    """The client's welcome and its first request, written back to back, arrive in one
    read: each frame is numbered by its own place, so the welcome is not taken for a
    request (whose missing reply would pair every later reply with the wrong request)."""
    conn = Connection("worker-1", 7)
    frames = conn.feed(0.0, "downstream", _framed(b"#CHALLENGE#{sha256}" + b"n" * 40))
    frames += conn.feed(0.1, "upstream", _framed(b"{sha256}" + b"d" * 32))
    frames += conn.feed(0.2, "downstream", _framed(b"#WELCOME#"))
    frames += conn.feed(0.3, "upstream", _framed(b"#CHALLENGE#{sha256}" + b"x" * 40))
    frames += conn.feed(0.4, "downstream", _framed(b"{sha256}" + b"y" * 32))
    get = _framed(pickle.dumps(("7f00", "get", (), {"timeout": 1})))
    frames += conn.feed(0.5, "upstream", _framed(b"#WELCOME#") + get)  # one read, two frames
    frames += conn.feed(0.6, "downstream", _framed(pickle.dumps(("#RETURN", 0))))

    assert [frame.kind for frame in frames] == [
        *("challenge", "answer", "welcome", "challenge", "answer", "welcome"),
        *("request", "reply"),
    ]
    reply = frames[-1]
    assert (reply.method, reply.result) == ("get", 0)


def _captured(name: str) -> list[dict[str, Any]]:
    lines = (CAPTURES / name).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def _translate(name: str, names: QueueNames) -> History:
    translator = WireTranslator(names)
    events: list[dict[str, Any]] = []
    for frame in replay(_captured(name)):
        events.extend(translator.feed(frame))
    return History(events)


def test_the_task_app_capture_gives_one_lease_report_and_acceptance_per_job() -> None:
    history = _translate(
        "task_app_py311.frames.jsonl", QueueNames("get_task_queue", "get_result_queue")
    )

    assert sorted(history.submitted()) == list(range(6))
    assert len(history.select("leased")) == 6
    assert len(history.select("completed")) == 6
    assert len(history.select("master_stopped")) == 1
    assert {e.get("worker") for e in history.select("worker_joined")} == {"worker-1", "worker-2"}
    assert exactly_once(history) == []
    accepted = history.select("result_accepted")
    assert [e.get("value") for e in accepted][:1] == ["1000 * 1000 = 1000000"]


def test_the_batch_app_capture_shows_the_broken_barrier_and_the_uncollected_results() -> None:
    names = QueueNames("get_dispatch_queue", "get_result_queue", "job_id", "job_id", 10)
    history = _translate("batch_app_py313.frames.jsonl", names)

    assert len(history.submitted()) == 30
    assert [e.get("batch") for e in history.select("batch_opened")] == [0, 1, 2]
    assert 0 in [e.get("batch") for e in history.select("batch_closed")]
    barrier = batch_barrier(history)
    assert any("of batch 1 leased before batch 0 closed" in v.message for v in barrier)
    lost = exactly_once(history)
    assert lost, "the batch loop stops collecting before the last results"
    assert all("lost" in v.message for v in lost)
    assert any("put by worker-" in v.message for v in lost)


def test_a_wrong_key_is_an_auth_rejection_seen_on_the_wire() -> None:
    conn = Connection("intruder-1", 0)
    translator = WireTranslator(QueueNames("t", "r"))
    frames = conn.feed(0.0, "downstream", _framed(b"#CHALLENGE#" + b"z" * 20))
    frames += conn.feed(0.1, "upstream", _framed(b"w" * 16))
    frames += conn.feed(0.2, "downstream", _framed(b"#FAILURE#"))

    events = [event for frame in frames for event in translator.feed(frame)]

    assert [(e["src"], e["ev"], e["route"]) for e in events] == [
        ("master", "auth_rejected", "intruder-1")
    ]
    assert "worker" not in events[0]  # a refused worker was never served


def test_a_frames_log_round_trips_through_replay() -> None:
    records = _captured("task_app_py311.frames.jsonl")
    again = [frame.record() for frame in replay(records)]
    assert again == [{k: v for k, v in r.items() if k != "n"} for r in records]

"""The door policy on its own (distq.door): per-address limits, slow-down, refusal counts."""

from __future__ import annotations

from distq.door import Door, DoorPolicy


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_one_address_holds_at_most_its_share_of_pending_handshakes() -> None:
    door = Door(DoorPolicy(max_pending_per_peer=3), Clock())
    assert [door.admit("10.0.0.1") for _ in range(4)] == [True, True, True, False]
    assert door.admit("10.0.0.2")  # another address is not held back
    door.release("10.0.0.1", ok=True)
    assert door.admit("10.0.0.1")
    # While the door is not crowded, one address may hold more (workers starting at once).
    assert door.admit("10.0.0.1", crowded=False)


def test_repeated_failures_from_one_address_wait_longer_and_longer() -> None:
    clock = Clock()
    door = Door(DoorPolicy(free_failures=2, penalty_base_s=0.1, max_penalty_s=0.5), clock)
    waits = []
    for _ in range(7):
        waits.append(door.penalty_s("10.0.0.1"))
        door.admit("10.0.0.1")
        door.release("10.0.0.1", ok=False)
    assert waits == [0.0, 0.0, 0.0, 0.1, 0.2, 0.4, 0.5]
    assert door.penalty_s("10.0.0.2") == 0.0
    door.admit("10.0.0.1")
    door.release("10.0.0.1", ok=None)  # turned away before its handshake: no verdict
    assert door.penalty_s("10.0.0.1") == 0.5
    door.admit("10.0.0.1")
    door.release("10.0.0.1", ok=True)  # the right key: no more waiting
    assert door.penalty_s("10.0.0.1") == 0.0


def test_an_address_quiet_long_enough_starts_afresh() -> None:
    clock = Clock()
    door = Door(DoorPolicy(free_failures=0, forget_after_s=10), clock)
    door.admit("h")
    door.release("h", ok=False)
    assert door.penalty_s("h") > 0
    clock.now = 11
    assert door.penalty_s("h") == 0.0


def test_refusals_past_the_first_few_are_counted_and_every_one_is_accounted() -> None:
    clock = Clock()
    door = Door(DoorPolicy(logged_per_peer=5, summary_every_s=1.0), clock)
    alone = 0
    lines = 0
    total = 0
    for i in range(10_000):
        clock.now = i * 0.001  # 10 s of a flood from one address
        alone += door.refused("auth_rejected", "h", "bad_key" if i % 2 else "busy")
        summaries = door.summaries()
        lines += len(summaries)
        total += sum(fields["count"] for _, fields in summaries)
    final = door.summaries(force=True)
    lines += len(final)
    total += sum(fields["count"] for _, fields in final)
    assert alone == 5
    assert alone + total == 10_000  # none uncounted
    assert lines <= 2 * 11  # one line per kind per second at most


def test_many_addresses_at_once_are_logged_one_by_one_only_up_to_a_rate() -> None:
    door = Door(DoorPolicy(logged_per_s=50), Clock())
    alone = sum(
        door.refused("auth_rejected", f"10.0.{i // 256}.{i % 256}", "bad_key") for i in range(5000)
    )
    assert alone == 50
    counted = sum(fields["count"] for _, fields in door.summaries(force=True))
    assert alone + counted == 5000


def test_a_flood_from_many_addresses_still_costs_few_summary_lines() -> None:
    clock = Clock()
    door = Door(DoorPolicy(logged_per_peer=0, summary_peers=20), clock)
    for i in range(5000):
        door.refused("auth_rejected", f"fd00::{i:x}", "bad_key")
    summaries = door.summaries(force=True)
    assert len(summaries) == 21
    assert sum(fields["count"] for _, fields in summaries) == 5000
    assert summaries[-1][1] == {"peer": "others", "kind": "bad_key", "count": 4980, "peers": 4980}

"""Each bug class that once passed every scenario is now caught by a scenario file.

Every case runs a scenario file from the library, unchanged but for its system (a broken
variant from tests/broken_semantics.py), and asserts the verdict fails on the named check.
The same files pass against the real queue when the library runs (``pytest scenarios/``).
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from harness.scenario import load_scenario, run_scenario
from tests.support import REPO

pytestmark = pytest.mark.processes

SCENARIOS = REPO / "scenarios"

#: (bug class, variant, scenario file, the check that must fail)
CAUGHT = [
    ("retried once more than max_attempts", "attempt-too-many", "timeouts/poison_attempts_2.toml", "attempts_bounded"),
    ("dead one attempt early", "attempt-too-few", "timeouts/poison_attempts_5.toml", "attempts_bounded"),
    ("late result for a dead job accepted", "accept-after-dead", "timeouts/pause_last_attempt.toml", "one_terminal"),
    ("batches one job too large", "batch-plus-one", "batches/uneven_last_batch.toml", "batch_shape"),
    ("graceful hand-back counted", "count-bye", "worker_death/terminate_holder_mid_batch.toml", "attempts_bounded"),
    ("result for a requeued job dropped", "drop-requeued-result", "timeouts/pause_result_wins.toml", "first_result_wins"),
    ("closed connection keeps its leases", "slow-close", "worker_death/kill_holder_long_lease.toml", "recovery_latency"),
    ("heartbeating worker loses its lease", "heartbeat-ignored", "timeouts/long_jobs_keep_lease.toml", "no_spurious_expiry"),
    ("limit not enforced in a mixed lease", "limit-mixed", "timeouts/mixed_time_limits.toml", "time_limits"),
    ("limit counted from the lease's start", "limit-from-lease", "timeouts/chunk_time_limit.toml", "time_limits"),
    ("rejoin's hand-back counted", "count-rejoin", "network/rejoin_hand_back.toml", "attempts_bounded"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("variant", "scenario_file", "check"),
    [pytest.param(variant, path, check, id=variant) for _, variant, path, check in CAUGHT],
)
def test_a_scenario_file_catches_the_broken_variant(
    variant: str, scenario_file: str, check: str, tmp_path: Path
) -> None:
    scenario = load_scenario(SCENARIOS / scenario_file)
    broken = msgspec.structs.replace(
        scenario,
        system={  # the scenario's own distq knobs, on the broken variant's command
            **scenario.system,
            "command": ["python", "-m", "tests.broken_semantics"],
            "env": {"DISTQ_BROKEN": variant},
        },
    )
    outcome = run_scenario(broken, tmp_path / "run")
    failed = {violation.check for violation in outcome.result.verdict.violations}
    assert outcome.status == "fail", outcome.report()
    assert check in failed, outcome.report()


def test_every_variant_is_tested() -> None:
    from tests import broken_semantics

    documented = {
        line.split("``")[1]
        for line in (broken_semantics.__doc__ or "").splitlines()
        if line.startswith("- ``")
    }
    assert documented == {variant for _, variant, _, _ in CAUGHT}

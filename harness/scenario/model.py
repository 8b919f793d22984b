"""The scenario format as typed structures: every table, key, default and bound.

A file is a scenario when its top level says ``scenario = N`` (the format version); any
other TOML is not ours and is left alone. Every field has a default and its unit in its
name; unknown keys are rejected.
"""

from __future__ import annotations

import typing
from typing import Annotated, Any, Final, Literal

import msgspec

from harness import contract, systems
from harness.checks import Pin, Reach
from harness.checks.verdict import task_text
from harness.contract import (
    HOST_ACTIONS,
    NETWORK_ACTIONS,
    SUSPENDS,
    ActionName,
    actions_where,
    fault_action,
)
from harness.net.toxics import Toxic
from harness.runtime.faults import Trigger
from harness.scenario.limits import MIN_DURATION_S, check_reachable, check_targets

FORMAT_VERSION: Final = 2
#: Format 1 kept the distq kind's own knobs in [cluster]; format 2 keeps them in [system]
#: with the kind's other keys. A format-1 file still loads (the loader moves them).
FORMAT_VERSIONS = (1, FORMAT_VERSION)

CheckName = Literal[
    "exactly_once",
    "at_least_once",
    "correct_values",
    "batch_barrier",
    "auth",
    "liveness",
    "fault_coverage",
    "clean_exits",
    "attempts_bounded",
    "one_terminal",
    "batch_shape",
    "recovery_latency",
    "no_spurious_expiry",
    "first_result_wins",
    "time_limits",
    "reached",
    "acknowledged",
    "prefetch_bounded",
    "admitted",
    "no_overlap",
    "no_stale_results",
    "outputs_kept",
]
CHECK_NAMES: tuple[str, ...] = typing.get_args(CheckName)
ToxicKind = Literal[
    "latency", "bandwidth", "slicer", "limit_data", "reset", "blackhole", "slow_close"
]
Flow = Literal["upstream", "downstream"]
CauseName = Literal[
    "never_handed_out",
    "handed_to_dead_get",
    "result_after_shutdown",
    "result_unanswered",
    "result_not_taken",
    "no_result",
    "holder_killed",
    "holder_exited",
    "holder_lost",
    "connection_cut",
    "master_shut_down",
]
# CheckName, ToxicKind, ActionName, CauseName and WhenSpec's fields spell out their
# registries (checks.CHECKS, toxics.TOXIC_KINDS, contract.ACTIONS, contract.LOST_CAUSES,
# contract.TRIGGERS) for the schema; tests/harness/systems/test_systems.py holds them equal.

PositiveFloat = Annotated[float, msgspec.Meta(ge=MIN_DURATION_S)]
NonNegativeFloat = Annotated[float, msgspec.Meta(ge=0)]
JobId = Annotated[int, msgspec.Meta(ge=0)]


class ScenarioError(ValueError):
    """A scenario file that cannot be used; the message is one line for a person."""


class _Strict(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    pass


class ClusterSpec(_Strict, frozen=True):
    workers: Annotated[
        int, msgspec.Meta(ge=0, le=32, description="workers started at the beginning")
    ] = 2
    lease_timeout_s: Annotated[
        float,
        msgspec.Meta(
            ge=MIN_DURATION_S, description="a lease not heartbeaten for this long expires"
        ),
    ] = 10.0
    time_limit_s: (
        Annotated[
            float,
            msgspec.Meta(ge=MIN_DURATION_S, description="kill a job running longer than this"),
        ]
        | None
    ) = None
    max_attempts: Annotated[
        int, msgspec.Meta(ge=1, description="failed attempts before a job is dead")
    ] = 3
    batch_size: (
        Annotated[int, msgspec.Meta(ge=1, description="release jobs in batches of this size")]
        | None
    ) = None


class ExtraJob(_Strict, frozen=True):
    task: str
    args: list[Any] = []
    time_limit_s: PositiveFloat | None = None
    count: Annotated[int, msgspec.Meta(ge=1)] = 1


class JobsSpec(_Strict, frozen=True):
    task: Annotated[str, msgspec.Meta(description="built-in task or module:function")] = "square"
    count: Annotated[int, msgspec.Meta(ge=0, le=1_000_000)] = 20
    args: list[Any] | None = None
    delay_s: NonNegativeFloat = 0.0
    time_limit_s: PositiveFloat | None = None
    extra: list[ExtraJob] = []
    file: (
        Annotated[
            str,
            msgspec.Meta(
                description="a JSON-lines file of jobs, relative to the scenario: each line the "
                "args (an array) or {args, task?}; read into extra when the file is loaded"
            ),
        ]
        | None
    ) = None

    def __post_init__(self) -> None:
        if self.delay_s and self.task != "square":
            raise ValueError(f"delay_s applies to the square task only, not {self.task!r}")
        if self.delay_s and self.args is not None:
            raise ValueError("give either args or delay_s, not both")


#: The keys of a ``when`` table that modify its one trigger.
_MODIFIERS = ("attempt", "hold", "wait_s")


class WhenSpec(_Strict, frozen=True):
    after_s: NonNegativeFloat | None = None
    job_leased: JobId | None = None
    job_started: JobId | None = None
    job_completed: JobId | None = None
    results: Annotated[int, msgspec.Meta(ge=1)] | None = None
    batch_closed: JobId | None = None
    workers_joined: Annotated[int, msgspec.Meta(ge=1)] | None = None
    auth_rejected: Annotated[int, msgspec.Meta(ge=1)] | None = None
    attempt: (
        Annotated[
            int,
            msgspec.Meta(
                ge=1,
                description="with job_leased or job_started: fire on this attempt of the job "
                "(default: the first seen)",
            ),
        ]
        | None
    ) = None

    hold: Annotated[
        bool,
        msgspec.Meta(
            description="with job_leased: hold the frame that fired it at the relay until the "
            "fault has acted (the worker is struck before the hand-out reaches it)"
        ),
    ] = False
    wait_s: Annotated[
        float,
        msgspec.Meta(
            ge=0,
            description="with an event trigger: act this many seconds after the event (e.g. "
            "once a worker that started a job has also reserved the next ones)",
        ),
    ] = 0.0

    def __post_init__(self) -> None:
        if self.hold and self.job_leased is None:
            raise ValueError("hold applies to job_leased (the hand-out a relay can hold back)")
        kinds = [name for name in self.__struct_fields__ if name not in _MODIFIERS]
        given = [name for name in kinds if getattr(self, name) is not None]
        if len(given) != 1:
            got = ", ".join(given) or "none"
            raise ValueError(f"needs exactly one trigger of {', '.join(kinds)} (got {got})")
        self.trigger()  # attempt with a trigger it does not apply to: one line, from Trigger

    def trigger(self) -> Trigger:
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if value is not None and name not in _MODIFIERS:
                # Counts and job ids stay integers (in the history too); after_s is seconds.
                number = value if name != "after_s" else float(value)
                return Trigger(name, number, self.attempt, self.hold, float(self.wait_s))
        raise AssertionError("validated in __post_init__")


NonNegative = Annotated[float, msgspec.Meta(ge=0)]


class ToxicSpec(_Strict, frozen=True):
    """A network toxic on a worker's fault proxy (see harness.toxics.Toxic)."""

    name: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.-]+$")]
    kind: ToxicKind
    direction: Literal["upstream", "downstream", "both"] = "both"
    probability: Annotated[
        float, msgspec.Meta(ge=0, le=1, description="per connection, from the seed")
    ] = 1.0
    latency_ms: NonNegative = 0.0
    jitter_ms: NonNegative = 0.0
    rate_kbps: NonNegative = 0.0
    chunk_bytes: Annotated[int, msgspec.Meta(ge=0)] = 0
    chunk_delay_ms: NonNegative = 0.0
    limit_bytes: Annotated[int, msgspec.Meta(ge=0)] = 0
    delay_ms: NonNegative = 0.0
    after_frames: (
        Annotated[int, msgspec.Meta(ge=0, description="act from this frame on")] | None
    ) = None
    frames_direction: Flow | None = None
    frames_matching: (
        Annotated[str, msgspec.Meta(description="count only requests naming this method")] | None
    ) = None
    workers: list[str] = []  # in [[network.toxics]]: the workers it applies to; empty: all

    def __post_init__(self) -> None:
        self.to_toxic()  # the proxy's own validation, as a one-line error

    def to_toxic(self) -> Toxic:
        fields = msgspec.structs.asdict(self)
        fields.pop("workers")
        matching = fields.pop("frames_matching")
        return Toxic(**fields, frames_matching=None if matching is None else matching.encode())


class NetworkSpec(_Strict, frozen=True):
    proxy: Annotated[
        bool, msgspec.Meta(description="each worker reaches the master through its own fault proxy")
    ] = False
    toxics: list[ToxicSpec] = []
    hosts: Annotated[
        bool,
        msgspec.Meta(
            description="each process runs on a host of its own (a network namespace with "
            "an address from 198.18.0.0/15), for kernel faults; needs CAP_NET_ADMIN"
        ),
    ] = False

    def __post_init__(self) -> None:
        if self.toxics and not self.proxy:
            raise ValueError("toxics need proxy = true")
        if self.proxy and self.hosts:
            raise ValueError(
                "proxy and hosts exclude each other: a fault proxy listens on the harness's "
                "loopback, which no host reaches"
            )


#: The actions ``duration_s`` ends by itself: those that stop their target, and kernel faults.
_TIMED = frozenset(SUSPENDS) | actions_where(lambda row: row.kernel and bool(row.ended_by))


class FaultSpec(_Strict, frozen=True):
    when: WhenSpec
    do: ActionName
    target: Annotated[str, msgspec.Meta(pattern=r"^(holder|random|all|[A-Za-z0-9_.-]+)$")] = (
        "random"
    )
    count: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 1
    duration_s: PositiveFloat | None = None
    expect: Literal["holder", "outlast_lease"] | None = None
    toxic: ToxicSpec | None = None
    toxic_name: str | None = None
    scope: (
        Annotated[
            Literal["tree", "main"],
            msgspec.Meta(
                description="kill, terminate, pause, resume: the target's whole process tree "
                "(default) or its top process only"
            ),
        ]
        | None
    ) = None
    peers: Annotated[
        list[Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.-]+$")]],
        msgspec.Meta(description="partition_hosts, one_way: the hosts on the other side"),
    ] = []
    probability: (
        Annotated[float, msgspec.Meta(gt=0, le=1, description="loss: per packet")] | None
    ) = None
    rate_kbit: (
        Annotated[float, msgspec.Meta(gt=0, description="bandwidth: kilobits per second")] | None
    ) = None
    delay_ms: (
        Annotated[float, msgspec.Meta(gt=0, le=60000, description="delay: each packet, each way")]
        | None
    ) = None
    output: (
        Annotated[
            Literal["results", "events"],
            msgspec.Meta(description="disk_full, truncate: the master's output acted on"),
        ]
        | None
    ) = None
    keep_bytes: (
        Annotated[int, msgspec.Meta(ge=0, description="truncate: the bytes of output kept")] | None
    ) = None
    keep_fraction: (
        Annotated[float, msgspec.Meta(ge=0, le=1, description="truncate: the share of output kept")]
        | None
    ) = None
    mid_line: Annotated[
        bool,
        msgspec.Meta(
            description="truncate: cut where the size says, in the middle of a line (default: "
            "back to the start of the line it falls in)"
        ),
    ] = False

    def __post_init__(self) -> None:
        facts = fault_action(self.do)
        if facts.names_output != (self.output is not None):
            named = " and ".join(sorted(actions_where(lambda row: row.names_output)))
            raise ValueError(f"{named} need an output, and only they take one")
        cuts = self.keep_bytes is not None or self.keep_fraction is not None or self.mid_line
        if cuts and self.do != "truncate":
            raise ValueError(
                f"keep_bytes, keep_fraction and mid_line apply to truncate only, not {self.do!r}"
            )
        if self.do == "truncate" and (self.keep_bytes is None) == (self.keep_fraction is None):
            raise ValueError("truncate needs one of keep_bytes and keep_fraction")
        if (self.do == "loss") != (self.probability is not None):
            raise ValueError("loss needs a probability, and only loss takes one")
        if (self.do == "bandwidth") != (self.rate_kbit is not None):
            raise ValueError("bandwidth needs rate_kbit, and only bandwidth takes it")
        if (self.do == "delay") != (self.delay_ms is not None):
            raise ValueError("delay needs delay_ms, and only delay takes it")
        if self.peers and not (facts.kernel and facts.suspends and self.do != "isolate"):
            raise ValueError(f"peers applies to partition_hosts and one_way only, not {self.do!r}")
        if self.scope is not None and not fault_action(self.do).scoped:
            scoped = ", ".join(sorted(actions_where(lambda row: row.scoped)))
            raise ValueError(f"scope applies to {scoped} only, not {self.do!r}")
        if self.target == "holder" and self.when.trigger().job is None:
            raise ValueError(
                'target = "holder" needs a job trigger (job_leased, job_started, job_completed)'
            )
        if self.duration_s is not None and self.do not in _TIMED:
            timed = ", ".join(sorted(_TIMED))
            raise ValueError(f"duration_s applies to {timed} only, not {self.do!r}")
        if (self.do == "add_toxic") != (self.toxic is not None):
            raise ValueError("add_toxic needs a toxic table, and only add_toxic takes one")
        if (self.do == "remove_toxic") != (self.toxic_name is not None):
            raise ValueError("remove_toxic needs toxic_name, and only remove_toxic takes one")
        if self.target == "all" and self.do not in NETWORK_ACTIONS | HOST_ACTIONS:
            raise ValueError(f'target = "all" applies to network faults only, not {self.do!r}')


class KnownViolation(_Strict, frozen=True):
    """A known violation pinned to its jobs and cause (``expect_violation`` as a table)."""

    check: CheckName
    jobs: (
        Annotated[
            list[JobId],
            msgspec.Meta(min_length=1, description="exactly the jobs it names, no other"),
        ]
        | None
    ) = None
    cause: (
        Annotated[
            CauseName | list[CauseName],
            msgspec.Meta(description="why each of those jobs was lost (one of these causes)"),
        ]
        | None
    ) = None
    tasks: (
        Annotated[
            list[Any],
            msgspec.Meta(
                min_length=1,
                description="exactly the jobs of these tasks (a task's one argument, or a list "
                "of its arguments), for apps whose jobs are numbered in the order they are "
                "seen taken; instead of jobs",
            ),
        ]
        | None
    ) = None

    def __post_init__(self) -> None:
        if self.jobs is not None and self.tasks is not None:
            raise ValueError("expect_violation names its jobs by jobs or by tasks, not both")

    def pin(self) -> Pin:
        jobs = None if self.jobs is None else tuple(sorted(set(self.jobs)))
        cause = self.cause
        causes = None if cause is None else (cause,) if isinstance(cause, str) else tuple(cause)
        tasks = None if self.tasks is None else tuple(dict.fromkeys(map(task_text, self.tasks)))
        return Pin(self.check, jobs, causes, tasks)


#: Every event a history may hold, for ``reached``.
EVENT_NAMES = sorted(
    contract.SYSTEM_EVENTS
    | contract.HARNESS_EVENTS
    | contract.OBSERVER_EVENTS
    | contract.ENGINE_EVENTS
    | contract.PRODUCER_EVENTS
)


class ReachSpec(_Strict, frozen=True):
    """An event the run must reach at least once (``[expect] reached`` as a table)."""

    event: str
    src: str | None = None
    job: JobId | None = None
    worker: str | None = None
    during: Annotated[
        ActionName | None,
        msgspec.Meta(description="while a fault of this action was in force (to its end)"),
    ] = None

    def __post_init__(self) -> None:
        if self.event not in EVENT_NAMES:
            raise ValueError(
                f"event: got {self.event!r}, expected one of: {', '.join(EVENT_NAMES)}"
            )

    def reach(self) -> Reach:
        return Reach(self.event, self.src, self.job, self.worker, self.during)


class ExpectSpec(_Strict, frozen=True):
    checks: Annotated[list[CheckName], msgspec.Meta(min_length=1)] = msgspec.field(
        default_factory=lambda: ["exactly_once", "correct_values", "liveness"]
    )
    within_s: Annotated[
        float, msgspec.Meta(ge=MIN_DURATION_S, le=3600, description="bound on the whole run")
    ] = 30.0
    expect_violation: (
        Annotated[
            CheckName | KnownViolation | list[CheckName | KnownViolation],
            msgspec.Meta(
                description="a known-bug reproduction: passes while each is violated, and "
                "nothing else is; a table pins the jobs and the cause"
            ),
        ]
        | None
    ) = None
    recovery_bound_s: Annotated[
        float,
        msgspec.Meta(
            ge=MIN_DURATION_S,
            le=3600,
            description="recovery_latency: a killed or stopped holder's leases are back "
            "within this long",
        ),
    ] = 1.0
    reached: Annotated[
        list[str | ReachSpec],
        msgspec.Meta(
            description="events the run must show at least once (else the verdict is unknown): "
            "names, or tables { event, src, job, worker, during }"
        ),
    ] = []
    time_limit_slack_s: Annotated[
        float,
        msgspec.Meta(
            ge=0, le=3600, description="time_limits: how late past its limit a job may end"
        ),
    ] = 0.5
    exit_codes: Annotated[
        dict[
            Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.-]+$")],
            Annotated[int, msgspec.Meta(ge=-64, le=255)],
        ],
        msgspec.Meta(
            description="clean_exits: the exit code a process is expected to end with, by "
            "name (a producer meant to fail: { producer = 1 }), instead of the documented one"
        ),
    ] = {}

    @property
    def known_violations(self) -> tuple[Pin, ...]:
        """``expect_violation`` as pins (empty when not set)."""
        known = self.expect_violation
        given = [] if known is None else known if isinstance(known, list) else [known]
        return tuple(Pin(item) if isinstance(item, str) else item.pin() for item in given)

    def __post_init__(self) -> None:
        for number, item in enumerate(self.reached):
            if isinstance(item, str) and item not in EVENT_NAMES:
                known = ", ".join(EVENT_NAMES)
                raise ValueError(f"reached[{number}]: got {item!r}, expected one of: {known}")

    @property
    def reaches(self) -> tuple[Reach, ...]:
        """``reached`` as what the check is told."""
        return tuple(
            ReachSpec(event=item).reach() if isinstance(item, str) else item.reach()
            for item in self.reached
        )

    @property
    def known_checks(self) -> tuple[str, ...]:
        """The checks ``expect_violation`` names, each once."""
        return tuple(dict.fromkeys(pin.check for pin in self.known_violations))


class Scenario(_Strict, frozen=True):
    """One scenario file. Cross-checks between tables are in ``__post_init__``."""

    scenario: Literal[2]
    name: Annotated[str, msgspec.Meta(min_length=1)]
    description: Annotated[str, msgspec.Meta(min_length=1, description="what the scenario proves")]
    seed: Annotated[
        int,
        msgspec.Meta(
            ge=0, le=2**63 - 1, description="every random choice of the run derives from it"
        ),
    ] = 0
    slow: bool = False
    cluster: ClusterSpec = ClusterSpec()
    jobs: JobsSpec = JobsSpec()
    faults: list[FaultSpec] = []
    expect: ExpectSpec = ExpectSpec()
    system: Annotated[
        dict[str, Any],
        msgspec.Meta(
            description='the system under test: kind = "distq" (default) and that kind\'s keys'
        ),
    ] = {}
    network: NetworkSpec = NetworkSpec()

    def __post_init__(self) -> None:
        try:
            kind, _config = systems.parse_table(self.system)
        except systems.SystemConfigError as exc:
            raise ValueError(str(exc)) from None
        self._supported_by(kind.facts, str(self.system.get("kind", systems.DEFAULT_KIND)))
        refused = getattr(_config, "refused_checks", None)
        if callable(refused):  # a check this configuration of the kind has no evidence for
            reasons: dict[str, str] = refused()
            for check in (*self.expect.checks, *self.expect.known_checks):
                if check in reasons:
                    raise ValueError(f"expect.checks: {check!r} cannot judge it: {reasons[check]}")
        if self.network.hosts and not kind.facts.binds_host:
            raise ValueError(
                f"network.hosts: system kind {kind.name!r} cannot run on hosts of their own "
                "yet (its servers bind loopback)"
            )
        hosts_only = getattr(_config, "hosts_only", None)
        if callable(hosts_only) and not self.network.hosts:  # e.g. a {host} placeholder
            used: str | None = hosts_only()
            if used is not None:
                raise ValueError(f"system.{used}; set [network] hosts = true or leave it out")
        total = self.jobs.count + sum(extra.count for extra in self.jobs.extra)
        for number, fault in enumerate(self.faults):
            if fault.do in NETWORK_ACTIONS and not self.network.proxy:
                raise ValueError(f"faults[{number}]: {fault.do} needs [network] proxy = true")
            if fault.do in HOST_ACTIONS and not self.network.hosts:
                raise ValueError(f"faults[{number}]: {fault.do} needs [network] hosts = true")
            trigger = fault.when.trigger()
            if trigger.job is not None and trigger.job >= total:
                raise ValueError(
                    f"faults[{number}].when.{trigger.kind} = {trigger.job} names no job "
                    f"(there are {total} jobs: 0..{total - 1})"
                )
        check_reachable(self)
        # A role the kind runs only when its [system] key says how (a producer) is there
        # only then.
        optional = kind.config.__struct_fields__
        roles = tuple(r for r in kind.facts.roles if r not in optional or self.system.get(r))
        check_targets(self, roles)

    def _supported_by(self, facts: type[systems.System], kind: str) -> None:
        """Every check, trigger, action and [cluster] key used is one the kind supports."""

        def refuse(where: str, what: str, supported: frozenset[str]) -> None:
            raise ValueError(
                f"{where}: {what!r} is not supported by system kind {kind!r} "
                f"(it supports: {', '.join(sorted(supported)) or 'none'})"
            )

        for check in (*self.expect.checks, *self.expect.known_checks):
            if check not in facts.checks:
                refuse("expect.checks", check, facts.checks)
        for number, fault in enumerate(self.faults):
            if fault.do not in facts.actions:
                refuse(f"faults[{number}].do", fault.do, facts.actions)
            if fault.when.hold and not issubclass(facts, systems.HoldsFrames):
                raise ValueError(
                    f"faults[{number}].when.hold: system kind {kind!r} cannot hold a frame "
                    "(kinds managers and distq can)"
                )
            needs_proxy = getattr(facts, "holds_need_proxy", False)
            if fault.when.hold and needs_proxy and not self.network.proxy:
                raise ValueError(
                    f"faults[{number}].when.hold: kind {kind!r} holds a lease at the "
                    "worker's fault proxy: it needs [network] proxy = true"
                )
            if fault.when.trigger().kind not in facts.triggers:
                refuse(f"faults[{number}].when", fault.when.trigger().kind, facts.triggers)
        defaults = ClusterSpec()
        for key in self.cluster.__struct_fields__:
            changed = getattr(self.cluster, key) != getattr(defaults, key)
            if changed and key != "workers" and key not in facts.cluster_keys:
                refuse(f"cluster.{key}", key, facts.cluster_keys)

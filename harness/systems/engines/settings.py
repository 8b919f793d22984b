"""Each engine's settings as a scenario's ``[system.settings]`` gives them, validated per
engine, and the environment through which they reach the workers and the producer.

Defaults are the engine's own documented defaults unless a comment says why not; the
harness only shortens what would make a scenario wait for minutes when a scenario asks.
"""

from __future__ import annotations

import json
import os
from typing import Annotated, Any, Literal, TypeVar

import msgspec

__all__ = [
    "BROKER_URL_ENV",
    "ENGINES",
    "RESULTS_URL_ENV",
    "RUN_DIR_ENV",
    "SETTINGS_ENV",
    "CelerySettings",
    "DramatiqSettings",
    "EngineName",
    "EngineSettings",
    "HueySettings",
    "RqSettings",
    "engine_of",
    "from_env",
    "parse_settings",
    "settings_from_env",
    "to_env",
]

BROKER_URL_ENV = "DISTQ_BROKER_URL"  # workers: through their fault proxy; producer: direct
RESULTS_URL_ENV = "DISTQ_RESULTS_URL"
RUN_DIR_ENV = "DISTQ_RUN_DIR"
SETTINGS_ENV = "DISTQ_ENGINE_SETTINGS"

_T = TypeVar("_T")

EngineName = Literal["celery", "rq", "dramatiq", "huey"]

Positive = Annotated[float, msgspec.Meta(gt=0)]
Count = Annotated[int, msgspec.Meta(ge=0, le=100)]
Workers = Annotated[int, msgspec.Meta(ge=1, le=16)]


class _Settings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    appendonly: Annotated[
        bool, msgspec.Meta(description="the broker fsyncs every write to an append-only file")
    ] = False


class CelerySettings(_Settings, frozen=True):
    acks_late: Annotated[
        bool, msgspec.Meta(description="task_acks_late: ack after the task ran (default False)")
    ] = False
    reject_on_worker_lost: Annotated[
        bool, msgspec.Meta(description="task_reject_on_worker_lost (default False)")
    ] = False
    visibility_timeout_s: Annotated[
        float, msgspec.Meta(gt=0, description="broker_transport_options visibility_timeout")
    ] = 3600.0
    unacked_restore_interval_s: Annotated[
        int,
        msgspec.Meta(ge=1, description="broker_transport_options unacked_restore_interval (10)"),
    ] = 10
    unacked_restore_throttle: Annotated[
        int,
        msgspec.Meta(ge=1, description="broker_transport_options unacked_restore_throttle (10)"),
    ] = 10
    prefetch: Annotated[
        int, msgspec.Meta(ge=0, le=100, description="worker_prefetch_multiplier (default 4)")
    ] = 4
    concurrency: Workers = 1  # Celery's default is one per CPU; one keeps runs comparable
    max_retries: Count = 0  # retries on an exception (autoretry_for); Celery retries none


class RqSettings(_Settings, frozen=True):
    retry_max: Annotated[
        int, msgspec.Meta(ge=0, le=100, description="Retry(max=...) per job (default none)")
    ] = 0
    maintenance_interval_s: Annotated[
        int, msgspec.Meta(ge=1, description="rq worker --maintenance-interval (default 600)")
    ] = 600
    job_monitoring_interval_s: Annotated[
        int, msgspec.Meta(ge=1, description="rq worker --job-monitoring-interval (default 30)")
    ] = 30
    job_timeout_s: Annotated[int, msgspec.Meta(ge=1, description="job timeout (default 180)")] = 180


class DramatiqSettings(_Settings, frozen=True):
    heartbeat_timeout_s: Annotated[
        float, msgspec.Meta(gt=0, description="RedisBroker heartbeat_timeout (default 60 s)")
    ] = 60.0
    maintenance_chance: Annotated[
        int,
        msgspec.Meta(
            ge=0, le=1_000_000, description="RedisBroker maintenance_chance per million (1000)"
        ),
    ] = 1000
    max_retries: Annotated[
        int, msgspec.Meta(ge=0, le=100, description="Retries max_retries (default 20)")
    ] = 20
    min_backoff_s: Annotated[
        float, msgspec.Meta(gt=0, description="Retries min_backoff (default 15 s)")
    ] = 15.0
    threads: Workers = 1  # dramatiq's default is 8 threads per process
    prefetch: Annotated[
        int, msgspec.Meta(ge=0, le=100, description="dramatiq_queue_prefetch (0: 2 x threads)")
    ] = 0


class HueySettings(_Settings, frozen=True):
    retries: Annotated[
        int, msgspec.Meta(ge=0, le=100, description="task retries on an exception (default 0)")
    ] = 0
    retry_delay_s: Annotated[float, msgspec.Meta(ge=0, description="retry_delay (default 0)")] = 0.0
    threads: Workers = 1  # huey_consumer --workers (default 1), of --worker-type thread
    graceful_signal: Annotated[
        Literal["INT", "TERM"],
        msgspec.Meta(
            description="huey_consumer --graceful-signal: the signal that lets running tasks "
            "finish (default INT; the other one interrupts them)"
        ),
    ] = "INT"


EngineSettings = CelerySettings | RqSettings | DramatiqSettings | HueySettings

ENGINES: dict[str, type[EngineSettings]] = {
    "celery": CelerySettings,
    "rq": RqSettings,
    "dramatiq": DramatiqSettings,
    "huey": HueySettings,
}


def parse_settings(engine: str, raw: dict[str, Any]) -> EngineSettings:
    """The settings of ``engine``; ValueError with one line naming the bad key otherwise."""
    kind = ENGINES.get(engine)
    if kind is None:
        raise ValueError(f"engine: got {engine!r}, expected one of: {', '.join(ENGINES)}")
    try:
        return msgspec.convert(raw, kind)
    except msgspec.ValidationError as exc:
        message = str(exc)
        unknown = message.startswith("Object contains unknown field")
        if unknown:
            valid = ", ".join(kind.__struct_fields__)
            message = f"{message.split(' - ')[0]} for engine {engine} (expected one of: {valid})"
        raise ValueError(f"settings: {message}") from None


def engine_of(settings: EngineSettings) -> str:
    return next(name for name, kind in ENGINES.items() if isinstance(settings, kind))


def to_env(settings: EngineSettings) -> str:
    return json.dumps({"engine": engine_of(settings), **msgspec.to_builtins(settings)})


def settings_from_env(kind: type[_T]) -> _T:
    """The settings of the engine whose module calls it; a mismatch is a harness bug."""
    settings = from_env()
    if not isinstance(settings, kind):
        raise RuntimeError(f"{SETTINGS_ENV} names {engine_of(settings)}, not {kind.__name__}")
    return settings


def from_env() -> EngineSettings:
    """The settings a worker or producer was started with (by the harness)."""
    raw = json.loads(os.environ.get(SETTINGS_ENV, "{}"))
    engine = raw.pop("engine", None)
    if engine is None:
        raise RuntimeError(f"{SETTINGS_ENV} is not set: this module runs under the harness")
    return parse_settings(str(engine), raw)

"""Systems under test: one adapter per kind behind the ``System`` protocol, and the registry.

A scenario's ``[system]`` table names its kind (``kind = "distq"`` by default); the rest of
the table is that kind's own keys, validated by its ``config`` type. An adapter module is
imported only when its kind is used (this ``__init__`` names them as strings), and keeps
heavy imports inside the functions that need them. Nothing else in the harness names a
system.

Layering, from the core outwards:
  base      the System protocol, the process and launch records, the exit-code table
  engines/  the engine side of the engine kind: task modules, producer, broker, observer,
            and the wrappers that run a user's own app with the engine's hooks
  distq     the distq adapter (the only module of the harness that imports distq)
  managers  an unmodified BaseManager app, observed on the wire
  engine    Celery, RQ, Dramatiq and Huey on a real Redis-protocol server
Each imports only from the layers above it, and from the core, checks and wire.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping
from typing import Any

import msgspec

from harness.explain import explain
from harness.systems.base import (
    BROKER,
    MASTER,
    NOT_INSTALLED,
    WORKER,
    ExitCodes,
    HoldsFrames,
    Kind,
    Launch,
    Observer,
    Process,
    ProcessSpec,
    RunSetup,
    System,
)

__all__ = [
    "BROKER",
    "DEFAULT_KIND",
    "KINDS",
    "MASTER",
    "NOT_INSTALLED",
    "WORKER",
    "ExitCodes",
    "HoldsFrames",
    "Kind",
    "Launch",
    "Observer",
    "Process",
    "ProcessSpec",
    "RunSetup",
    "System",
    "SystemConfigError",
    "build",
    "default_system",
    "get_kind",
    "parse_table",
]

DEFAULT_KIND = "distq"

#: Every kind the harness ships: kind -> the module whose ``KIND`` describes it. A kind
#: given as ``package.module:NAME`` is imported from there instead (a user's own system).
KINDS: dict[str, str] = {
    "distq": "harness.systems.distq",
    "managers": "harness.systems.managers",
    "engine": "harness.systems.engine",
}


class SystemConfigError(ValueError):
    """A ``[system]`` table that names no known kind or has a key its kind does not take."""


_IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def get_kind(name: str) -> Kind:
    """The kind called ``name``; raises SystemConfigError (one line) when there is none."""
    if name in KINDS:
        module_name, attribute = KINDS[name], "KIND"
    elif _IMPORT_PATH.match(name):
        module_name, attribute = name.split(":")
    else:
        known = ", ".join(sorted(KINDS))
        raise SystemConfigError(
            f"system.kind: got {name!r}, expected one of: {known} (or package.module:NAME)"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SystemConfigError(
            f"system.kind: {name!r} cannot be loaded: {exc} (is its package installed?)"
        ) from None
    kind = getattr(module, attribute, None)
    if not isinstance(kind, Kind):
        raise SystemConfigError(f"system.kind: {module_name}.{attribute} is not a systems.Kind")
    return kind


def parse_table(table: Mapping[str, Any]) -> tuple[Kind, msgspec.Struct]:
    """Validate a ``[system]`` table: its kind, and the rest by that kind's config type."""
    name = table.get("kind", DEFAULT_KIND)
    if not isinstance(name, str):
        raise SystemConfigError(f"system.kind: got {name!r}, expected a string")
    kind = get_kind(name)
    rest = {key: value for key, value in table.items() if key != "kind"}
    try:
        return kind, msgspec.convert(rest, kind.config)
    except msgspec.ValidationError as exc:
        message = explain(exc, rest, kind.config, "system", ("kind",))
        if message.startswith("unknown key "):
            key, _, valid = message.removeprefix("unknown key ").partition(" ")
            message = f"unknown key {key} for kind {kind.name!r} {valid}"
        raise SystemConfigError(message) from None


def build(table: Mapping[str, Any]) -> System:
    """The ``System`` for one run from a ``[system]`` table."""
    kind, config = parse_table(table)
    return kind.build(config)


def default_system() -> System:
    """The system a run tests when nothing names one: ``DEFAULT_KIND`` with its defaults."""
    return build({})

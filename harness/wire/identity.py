"""How an item on the wire names its job: keys by attribute, dict key, index or path, or a
user function; control items that are not jobs.

Pure: it reads the plain data ``decode.render`` makes of an item (records as dicts, tuples
as lists, bytes as ``{"$bytes": text}``) and never imports the app. A user function is
handed the item with its bytes given back as bytes (a key inside a payload).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgspec

__all__ = ["MISSING", "KeySpec", "Keyer", "Skipper", "key_text", "path_of", "plain"]

#: A key that resolves on no part of an item.
MISSING: Final = object()

#: How a scenario names a key: an attribute or dict key, an index, a dotted path, a list path.
KeySpec = str | int | list[str | int]


def path_of(spec: KeySpec) -> tuple[str | int, ...]:
    """``"job_id"`` -> ("job_id",); ``0`` -> (0,); ``"payload.id"`` -> ("payload", "id");
    ``[1, "id"]`` -> (1, "id"). A dotted segment of digits is an index."""
    if isinstance(spec, int):
        return (spec,)
    if isinstance(spec, list):
        return tuple(spec)
    return tuple(int(part) if part.isdigit() else part for part in spec.split("."))


def _step(value: Any, step: str | int) -> Any:
    if isinstance(value, dict):
        if step in value:
            return value[step]
        if isinstance(step, int) and str(step) in value:  # rendered keys are text
            return value[str(step)]
        args = value.get("args")  # a record built by a call (a namedtuple): its arguments
        if isinstance(step, int) and "$call" in value and isinstance(args, list):
            return args[step] if -len(args) <= step < len(args) else MISSING
        return MISSING
    if isinstance(value, list) and isinstance(step, int):
        return value[step] if -len(value) <= step < len(value) else MISSING
    return MISSING


def plain(value: Any) -> Any:
    """The rendered item for a user function: ``{"$bytes": text}`` back to bytes."""
    if isinstance(value, dict):
        if set(value) <= {"$bytes", "size"} and isinstance(value.get("$bytes"), str):
            return value["$bytes"].encode("latin-1")
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    return value


_encode_sorted = msgspec.json.Encoder(order="sorted", enc_hook=repr).encode


def key_text(value: Any) -> str:
    """A resolved key as one comparable string (equal values, equal text)."""
    try:
        return _encode_sorted(value).decode()
    except (TypeError, ValueError, OverflowError):  # a value no JSON holds: its repr
        return repr(value)


@dataclass(frozen=True, slots=True)
class Keyer:
    """The key of an item: the item itself, a path into it, or what a function returns."""

    path: tuple[str | int, ...] = ()
    function: Callable[[Any], Any] | None = None
    spec: str = "the item itself"

    def __call__(self, item: Any) -> str | None:
        """The key's text, or None when it resolves on no part of ``item``."""
        if self.function is not None:
            try:
                found = self.function(plain(item))
            except Exception:  # the user's function: an item it cannot read has no key
                return None
            return None if found is None else key_text(found)
        value = item
        for step in self.path:
            value = _step(value, step)
            if value is MISSING:
                return None
        return key_text(value)


@dataclass(frozen=True, slots=True)
class Skipper:
    """Control items that are not jobs: literal values, or a predicate on the item."""

    values: tuple[str, ...] = ()  # key_text of each literal
    function: Callable[[Any], Any] | None = None

    @classmethod
    def of(
        cls, values: Sequence[Any] = (), function: Callable[[Any], Any] | None = None
    ) -> Skipper:
        return cls(tuple(key_text(value) for value in values), function)

    def __call__(self, item: Any) -> bool:
        if self.values and key_text(item) in self.values:
            return True
        if self.function is None:
            return False
        try:
            return bool(self.function(plain(item)))
        except Exception:  # the user's predicate: what it cannot read is a job
            return False

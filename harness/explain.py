"""One line for a person from a msgspec validation error: key path, bad value, what was expected.

Shared by scenario files and the per-kind ``[system]`` tables, so both speak alike.
"""

from __future__ import annotations

import json
import re
import types
import typing
from typing import Annotated, Any, Literal

import msgspec

__all__ = ["explain", "show"]


def show(value: Any) -> str:
    text = json.dumps(value, default=repr) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_PATH_PART = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")


def _lookup(raw: Any, path: str) -> tuple[bool, Any]:
    node = raw
    for key, index in _PATH_PART.findall(path):
        try:
            node = node[key] if key else node[int(index)]
        except (KeyError, IndexError, TypeError):
            return False, None
    return True, node


def _struct_at(path: str, root: type[msgspec.Struct]) -> type[msgspec.Struct] | None:
    """The Struct type found at a ``$.a.b[0]`` path, for listing its valid keys."""
    current: Any = root
    for key, _index in _PATH_PART.findall(path):
        if not key:
            continue
        hints = typing.get_type_hints(current, include_extras=True)
        current = _unwrap(hints.get(key))
        if current is None:
            return None
    return current if isinstance(current, type) and issubclass(current, msgspec.Struct) else None


def _unwrap(hint: Any) -> Any:
    """Strip Annotated, Optional and list[] down to a Struct type, if there is one."""
    while True:
        origin = typing.get_origin(hint)
        if origin is Annotated or origin is list:
            hint = typing.get_args(hint)[0]
        elif origin is not None and type(None) in typing.get_args(hint):
            hint = next(a for a in typing.get_args(hint) if a is not type(None))
        elif origin is not None and str(origin) in ("typing.Union", "<class 'types.UnionType'>"):
            hint = typing.get_args(hint)[0]
        else:
            return hint


_KIND_WORDS = {
    "int": "an integer",
    "float": "a number",
    "str": "a string",
    "bool": "true or false",
    "array": "a list",
    "object": "a table",
}


def explain(
    exc: msgspec.ValidationError,
    raw: Any,
    root: type[msgspec.Struct],
    prefix: str = "",
    prefix_keys: tuple[str, ...] = (),
) -> str:
    """One line for a person from a validation error of ``raw`` converted to ``root``:
    the key path (under ``prefix``), the bad value and what was expected. ``prefix_keys``
    are keys the table under ``prefix`` takes besides ``root``'s fields."""
    message, _, at = str(exc).rpartition(" - at `")
    if not _:
        message, at = str(exc), "$"
    path = at.rstrip("`")
    key = path[2:] if path.startswith("$.") else path.lstrip("$")
    if prefix:
        key = f"{prefix}.{key}" if key else prefix
    unknown = re.match(r"Object contains unknown field `([^`]+)`", message)
    if unknown:
        struct = _struct_at(path, root)
        valid = ", ".join(struct.__struct_fields__) if struct else "see the schema"
        if prefix and struct is root:
            valid = ", ".join([*prefix_keys, *struct.__struct_fields__])
        full = f"{key}.{unknown[1]}" if key else unknown[1]
        return f"unknown key {full} (expected one of: {valid})"
    missing = re.match(r"Object missing required field `([^`]+)`", message)
    if missing:
        full = f"{key}.{missing[1]}" if key else missing[1]
        return f"{full}: missing (required)"
    if path.endswith("[...]"):  # a value in a table of arbitrary keys: find the bad one
        found, table = _lookup(raw, path[: -len("[...]")])
        bad = (
            [k for k, v in table.items() if not isinstance(v, str)]
            if found and isinstance(table, dict)
            else []
        )
        if bad:
            key = f"{key[: -len('[...]')]}.{bad[0]}"
            path = f"{path[: -len('[...]')]}.{bad[0]}"
    found, value = _lookup(raw, path)
    got = f"got {show(value)}, " if found and not isinstance(value, dict) else ""
    enum = re.match(r"Invalid enum value (.+)", message)
    if enum:
        allowed = _allowed_values(path, root)
        return f"{key}: {got}expected one of: {allowed}"
    expected = re.match(r"Expected `([^`]+)`(.*?)(?:, got `[^`]+`)?$", message)
    if expected:
        kinds = [_KIND_WORDS.get(k.strip(), k.strip()) for k in expected[1].split("|")]
        words = " or ".join(k for k in kinds if k != "null")
        return f"{key}: {got}expected {words}{expected[2]}"
    return f"{key}: {got}{message[:1].lower()}{message[1:]}" if key else message


def _allowed_values(path: str, root: type[msgspec.Struct]) -> str:
    parts = [key for key, _ in _PATH_PART.findall(path) if key]
    parent = _struct_at("$." + ".".join(parts[:-1]), root) if len(parts) > 1 else root
    if parent is None or not parts:
        return "see the schema"
    hint = typing.get_type_hints(parent, include_extras=True).get(parts[-1])
    while typing.get_origin(hint) in (Annotated, list, typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        hint = args[0]
    values = typing.get_args(hint) if typing.get_origin(hint) is Literal else ()
    return ", ".join(str(v) for v in values) or "see the schema"

"""Safe decoding of ``multiprocessing.connection`` frames: pickles that never import or call.

``find_class`` answers every global with a stand-in class; calling one, or building an
instance of one, records what would have happened. A user ``Job`` decodes to its class name
and state, a hostile ``os.system`` pickle to a record of the call it would have made.
"""

from __future__ import annotations

import io
import math
import pickle
import xmlrpc.client
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

__all__ = [
    "MAX_DECODED_BYTES",
    "StandIn",
    "decode_payload",
    "render",
]

#: Frames larger than this are not decoded (their size is recorded instead).
MAX_DECODED_BYTES = 1 << 20
_MAX_DEPTH = 30
_MAX_ITEMS = 1000
_MAX_TEXT = 4000


class StandIn:
    """An instance of a global the pickle named: what it was given, never run.

    ``call_args``/``call_kwargs``: the arguments of the call (REDUCE, NEWOBJ, INST);
    ``state``: what BUILD handed over; ``items``/``entries``: APPENDS and SETITEMS.
    """

    qualified_name = "?"
    call_args: tuple[Any, ...]
    call_kwargs: dict[str, Any]
    state: Any
    items: list[Any]
    entries: list[tuple[Any, Any]]

    def __new__(cls, *args: Any, **kwargs: Any) -> StandIn:
        self = object.__new__(cls)
        object.__setattr__(self, "call_args", args)
        object.__setattr__(self, "call_kwargs", kwargs)
        object.__setattr__(self, "state", None)
        object.__setattr__(self, "items", [])
        object.__setattr__(self, "entries", [])
        return self

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        object.__setattr__(self, "state", state)

    def __setattr__(self, name: str, value: Any) -> None:  # BUILD's slot state lands here
        self.entries.append((name, value))

    def __setitem__(self, key: Any, value: Any) -> None:
        self.entries.append((key, value))

    def append(self, item: Any) -> None:
        self.items.append(item)

    def extend(self, items: Any) -> None:
        self.items.extend(list(items)[:_MAX_ITEMS])

    def __reduce__(self) -> Any:  # never pickled back: a stand-in is for reading only
        raise TypeError("a stand-in record cannot be pickled")


@lru_cache(maxsize=512)
def _stand_in(module: str, name: str) -> type[StandIn]:
    # A class (not an instance): NEWOBJ insists on a type, and REDUCE calls it.
    return type(name[:100] or "_", (StandIn,), {"qualified_name": f"{module}.{name}"})


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        return _stand_in(module, name)

    def persistent_load(self, pid: Any) -> Any:
        return _stand_in("$persistent", repr(pid)[:100])()


def decode_payload(payload: bytes) -> Any:
    """The frame's payload as plain data (see :func:`render`); never raises.

    XML-RPC payloads (``serializer="xmlrpclib"``) are told apart by their leading ``<``;
    anything that is neither decodes to ``{"$undecodable": reason, "size": n}``.
    """
    size = len(payload)
    if size > MAX_DECODED_BYTES:
        return {"$undecoded": "too large", "size": size}
    try:
        if payload[:1] == b"<":
            params, method = xmlrpc.client.loads(payload.decode("utf-8"), use_builtin_types=True)
            value: Any = params[0] if len(params) == 1 else list(params)
            if method is not None:
                value = {"$xmlrpc_method": method, "params": list(params)}
        else:
            value = _SafeUnpickler(io.BytesIO(payload)).load()
    except Exception as exc:  # hostile or torn bytes: say so, never break the relay
        return {"$undecodable": f"{type(exc).__name__}: {str(exc)[:200]}", "size": size}
    return render(value)


def render(value: Any, depth: int = 0) -> Any:
    """JSON-able data: tuples become lists, bytes ``{"$bytes": text}``, a stand-in
    ``{"$class": name, **state}`` or, when it was called, ``{"$call": name, "args": [...]}``."""
    kind = type(value)  # exact types first: this runs for every value of every frame
    if kind is str:
        return value if len(value) <= _MAX_TEXT else value[:_MAX_TEXT] + "..."
    if kind is int or kind is bool or value is None:
        return value
    if depth > _MAX_DEPTH:
        return {"$truncated": "too deep"}
    if kind is tuple or kind is list:
        return [render(item, depth + 1) for item in value[:_MAX_ITEMS]]
    if kind is dict:
        return _render_mapping(value, depth)
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, bytes | bytearray):
        text = bytes(value[:_MAX_TEXT]).decode("latin-1")
        return {"$bytes": text, "size": len(value)} if len(value) > _MAX_TEXT else {"$bytes": text}
    if isinstance(value, StandIn):
        return _render_stand_in(value, depth)
    if isinstance(value, int | str | list | tuple | dict):  # subclasses of the plain types
        return render(kind.__mro__[-2](value), depth)
    if isinstance(value, set | frozenset):
        return {"$set": [render(item, depth + 1) for item in list(value)[:_MAX_ITEMS]]}
    return {"$value": repr(value)[:200]}


def _key(key: Any) -> str:
    return key if isinstance(key, str) else repr(render(key, _MAX_DEPTH))


def _render_mapping(mapping: Mapping[Any, Any], depth: int) -> dict[str, Any]:
    if len(mapping) > _MAX_ITEMS:
        shown = dict(list(mapping.items())[:_MAX_ITEMS])
        return {**_render_mapping(shown, depth), "$truncated": len(mapping)}
    return {
        key if type(key) is str else _key(key): render(item, depth + 1)
        for key, item in mapping.items()
    }


#: Calls old pickle protocols use to rebuild plain data; shown as that data (still not run).
_SETS = frozenset(
    {"builtins.set", "builtins.frozenset", "__builtin__.set", "__builtin__.frozenset"}
)
_BYTES = frozenset({"_codecs.encode", "builtins.bytes", "__builtin__.bytes", "builtins.bytearray"})


def _render_stand_in(record: StandIn, depth: int) -> Any:
    name = record.qualified_name
    args = record.call_args
    kwargs = record.call_kwargs
    state = record.state
    plain = not kwargs and state is None and len(args) >= 1
    if plain and name in _SETS and isinstance(args[0], list):
        return {"$set": [render(item, depth + 1) for item in args[0][:_MAX_ITEMS]]}
    if plain and name in _BYTES and isinstance(args[0], str) and args[1:] in ((), ("latin1",)):
        return render(args[0].encode("latin-1", "replace"), depth)
    if plain and name in _BYTES and not args[0]:
        return {"$bytes": ""}
    # NEWOBJ of a plain class: no arguments, the state is the object's __dict__.
    out: dict[str, Any] = (
        {"$call": name, "args": render(list(args), depth + 1)}
        if args or kwargs
        else {"$class": name}
    )
    if kwargs:
        out["kwargs"] = _render_mapping(kwargs, depth)
    if isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict):
        state = {**(state[0] or {}), **state[1]}  # (dict, slots)
    if isinstance(state, dict):
        for key, item in _render_mapping(state, depth).items():
            out.setdefault(key, item)
    elif state is not None:
        out["$state"] = render(state, depth + 1)
    items = record.items
    if items:
        out["$items"] = render(items, depth + 1)
    entries = record.entries
    if entries:
        out["$entries"] = [[render(k, depth + 1), render(v, depth + 1)] for k, v in entries]
    return out

"""The JSON Schema of the scenario format, for editors (scenarios/scenario.schema.json)."""

from __future__ import annotations

from typing import Any

import msgspec

from harness import systems
from harness.scenario.model import (
    Scenario,
)


def scenario_schema() -> dict[str, Any]:
    """The JSON Schema of the format, for editors (committed as scenario.schema.json).

    ``[system]`` is one of the registered kinds' tables, each with its own keys."""
    schema: dict[str, Any] = msgspec.json.schema(Scenario)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "distq scenario"
    system = schema["$defs"]["Scenario"]["properties"]["system"]
    one_of = []
    for name in sorted(systems.KINDS):
        kind = systems.get_kind(name)
        (config_schema,), defs = msgspec.json.schema_components([kind.config])
        schema["$defs"].update(defs)
        ref = config_schema["$ref"].rsplit("/", 1)[-1]
        table = dict(schema["$defs"][ref])
        kind_schema: dict[str, Any] = {"const": name}
        table["properties"] = {"kind": kind_schema, **table.get("properties", {})}
        if name != systems.DEFAULT_KIND:
            table["required"] = ["kind", *table.get("required", [])]
        schema["$defs"][ref] = table
        one_of.append({"$ref": f"#/$defs/{ref}"})
    schema["$defs"]["Scenario"]["properties"]["system"] = {
        "description": system.get("description", ""),
        "oneOf": one_of,
        "default": {},
    }
    return schema

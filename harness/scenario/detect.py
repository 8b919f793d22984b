"""Tell a scenario file from any other TOML without parsing it.

Standard library only: the pytest plugin asks this of every ``.toml`` file it sees, in
environments that may not have the harness's dependencies.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["is_scenario_file"]

# The key may be quoted ("scenario" = 1 is the same TOML), and a byte order mark some
# editors write does not hide it.
_MARKER = re.compile(r"""^\s*(?:scenario|"scenario"|'scenario')\s*=""", re.MULTILINE)
_TABLE_HEADER = re.compile(r"^\s*\[", re.MULTILINE)


def is_scenario_file(path: Path) -> bool:
    """A ``.toml`` file whose top level declares ``scenario = ...``. Cheap: no parsing
    beyond a look for the key, so other TOML files are never touched further."""
    if path.suffix != ".toml":
        return False
    try:
        text = path.read_text(encoding="utf-8", errors="replace").removeprefix("\ufeff")
    except OSError:
        return False
    table = _TABLE_HEADER.search(text)
    head = text if table is None else text[: table.start()]  # the top level: before any table
    return bool(_MARKER.search(head))

"""RQ job functions (the scenario gives a Retry policy of one retry)."""

from tests.engine_apps import probe_common


def probe(kind: str, marker: str) -> str:
    return probe_common.probe(kind, marker)

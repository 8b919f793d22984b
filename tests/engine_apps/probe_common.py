"""What ``probe`` does, the same in every engine's app: ``flaky`` fails its first run,
``fail`` always fails, ``slow`` runs long on its first run (to be killed), then returns."""

import os
import time


def probe(kind: str, marker: str) -> str:
    first = not os.path.exists(marker)
    if first:
        open(marker, "w").close()
    if kind == "flaky" and first:
        raise RuntimeError("flaky: first run fails")
    if kind == "fail":
        raise ValueError("fail: always")
    if kind == "slow" and first:
        time.sleep(60)
    return f"{kind} ok"

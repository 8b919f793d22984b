"""A deliberately broken engine adapter: its workers read another database of the broker
than the producer writes to (a wiring bug), so no job is ever run. The harness must fail it."""

from __future__ import annotations

from typing import Any

from harness.systems import Kind
from harness.systems.base import WORKER, Launch, ProcessSpec, RunSetup
from harness.systems.engine import EngineConfig, EngineSystem
from harness.systems.engines.settings import BROKER_URL_ENV


class MiswiredEngine(EngineSystem):
    def launch(self, process: ProcessSpec, setup: RunSetup) -> Launch:
        launch = super().launch(process, setup)
        if process.role != WORKER:
            return launch
        wrong = launch.env[BROKER_URL_ENV].rsplit("/", 1)[0] + "/2"
        argv = tuple(wrong if arg == launch.env[BROKER_URL_ENV] else arg for arg in launch.argv)
        return Launch(argv, {**launch.env, BROKER_URL_ENV: wrong}, launch.cwd)


def _build(config: Any) -> MiswiredEngine:
    return MiswiredEngine(config)


KIND = Kind("engine", EngineConfig, _build, MiswiredEngine)

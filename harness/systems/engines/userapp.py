"""A team's own engine app under the harness: what the scenario names, how each process
finds it, and the settings that would defeat a test, refused before any run.

``[system] app`` names the user's object (Celery app, Huey instance: ``module:name``;
Dramatiq: the module that builds the broker; RQ: an optional settings module), ``task``
the registered task (Celery or Huey name, Dramatiq actor name, RQ dotted function),
``queues`` the queues it consumes, ``pythonpath`` where the project is importable from.
The wrapper modules (``wrap_*``) import it through here, in the workers and the producer.

``python -m harness.systems.engines.userapp`` (the environment as for a worker) imports
the app and says in one line what would defeat a test: exit 2 when refused, 0 otherwise
(a warning, if any, on stdout).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["USER_APP_ENV", "UserApp", "inspect_app", "load_object", "user_app"]

USER_APP_ENV = "DISTQ_USER_APP"


@dataclass(frozen=True, slots=True)
class UserApp:
    engine: str
    app: str | None
    task: str
    queues: tuple[str, ...]
    pythonpath: tuple[str, ...]  # absolute
    broker_env: str | None

    def to_env(self) -> str:
        return json.dumps(asdict(self))


def user_app() -> UserApp | None:
    """The user's app this process runs (from the harness's environment), or None."""
    raw = os.environ.get(USER_APP_ENV)
    if not raw:
        return None
    fields = json.loads(raw)
    fields["queues"], fields["pythonpath"] = tuple(fields["queues"]), tuple(fields["pythonpath"])
    app = UserApp(**fields)
    for folder in reversed(app.pythonpath):
        if folder not in sys.path:
            sys.path.insert(0, folder)
    return app


def load_object(path: str) -> Any:
    """``module:name`` -> that object; ``module`` -> the module."""
    module_name, _, attribute = path.partition(":")
    module = importlib.import_module(module_name)
    if not attribute:
        return module
    found = getattr(module, attribute, None)
    if found is None:
        raise LookupError(f"{module_name} has no {attribute!r}")
    return found


def _celery(app: UserApp) -> tuple[str | None, str | None]:
    celery_app = load_object(str(app.app))
    celery_app.loader.import_default_modules()  # the app's include / imports
    if celery_app.conf.task_always_eager:
        return "task_always_eager = True runs tasks in the caller: no worker, no broker", None
    if app.task not in celery_app.tasks:
        mine = sorted(name for name in celery_app.tasks if not name.startswith("celery."))
        return f"task {app.task!r} is not registered (registered: {', '.join(mine)})", None
    return None, None


def _rq(app: UserApp) -> tuple[str | None, str | None]:
    if app.app is not None:
        load_object(app.app)
    module_name, _, function = app.task.rpartition(".")
    if not module_name or not callable(
        getattr(importlib.import_module(module_name), function, None)
    ):
        return f"task {app.task!r} is not a function (module.function)", None
    return None, None


def _dramatiq(app: UserApp) -> tuple[str | None, str | None]:
    import dramatiq

    load_object(str(app.app))
    broker = dramatiq.get_broker()
    try:
        actor = broker.get_actor(app.task)
    except Exception:
        known = ", ".join(sorted(broker.actors))
        return f"task: no actor {app.task!r} on the app's broker (actors: {known})", None
    warning = None
    if actor.options.get("max_retries") == 0:
        warning = f"actor {app.task!r} has max_retries = 0: Dramatiq never redelivers its failures"
    return None, warning


def _huey(app: UserApp) -> tuple[str | None, str | None]:
    huey = load_object(str(app.app))
    if getattr(huey, "immediate", False):
        return "immediate = True runs tasks in the caller: no consumer, no broker", None
    registered = huey._registry._registry
    if app.task not in registered:
        return f"task {app.task!r} is not registered (registered: {', '.join(registered)})", None
    return None, None


_INSPECT = {"celery": _celery, "rq": _rq, "dramatiq": _dramatiq, "huey": _huey}


def inspect_app(app: UserApp) -> tuple[str | None, str | None]:
    """(why the app would defeat a test, or None; a warning, or None)."""
    try:
        return _INSPECT[app.engine](app)
    except Exception as exc:
        return f"app {app.app or app.task!r} cannot be loaded: {type(exc).__name__}: {exc}", None


def main() -> int:
    app = user_app()
    if app is None:
        print(f"{USER_APP_ENV} is not set")
        return 2
    refused, warning = inspect_app(app)
    if refused is not None:
        print(refused.replace("\n", " ")[:400])
        return 2
    if warning is not None:
        print(f"warning: {warning}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

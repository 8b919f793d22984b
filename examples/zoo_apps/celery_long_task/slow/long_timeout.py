"""The app with a visibility timeout longer than its longest task (10 s for tasks of a
few seconds): a running task is not handed out again."""

from slow.config import make_app

app = make_app(visibility_timeout_s=10.0)

import slow.tasks  # noqa: E402,F401  (registers the task on this app)

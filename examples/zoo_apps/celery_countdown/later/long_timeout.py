"""The app with a visibility timeout longer than the countdown (10 s for a 3 s one)."""

from later.config import make_app

app = make_app(visibility_timeout_s=10.0)

import later.tasks  # noqa: E402,F401  (registers the task on this app)

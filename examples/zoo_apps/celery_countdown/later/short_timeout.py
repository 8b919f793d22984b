"""The app with a 1-second visibility timeout, shorter than the countdown: the message
waiting for its ETA in a worker is handed out again meanwhile."""

from later.config import make_app

app = make_app(visibility_timeout_s=1.0)

import later.tasks  # noqa: E402,F401  (registers the task on this app)

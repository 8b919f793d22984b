"""The app as first deployed: a 1-second visibility timeout, so that a task whose worker
died comes back fast. A task running longer than that is handed out again meanwhile."""

from slow.config import make_app

app = make_app(visibility_timeout_s=1.0)

import slow.tasks  # noqa: E402,F401  (registers the task on this app)

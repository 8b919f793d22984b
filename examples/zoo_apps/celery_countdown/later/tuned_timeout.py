"""The app with a visibility timeout just above the countdown (4 s for a 3 s one): a
waiting message is not handed out again, and one whose worker died comes back soon."""

from later.config import make_app

app = make_app(visibility_timeout_s=4.0)

import later.tasks  # noqa: E402,F401  (registers the task on this app)

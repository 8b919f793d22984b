"""The master's side of pipelined submission: submitter sessions, their windows and the
results routed back to them. Pure bookkeeping: no sockets, no threads, no clock; the
board service calls it under its lock.

A session bounds its jobs in flight (submitted, not yet terminal) to ``window``: the
master takes no more from it until some finish, so a producer far ahead of the workers
waits instead of growing the master's memory. A session that collects results keeps each
terminal result of its jobs until the submitter fetches it.
"""

from __future__ import annotations

import math
import re
import secrets
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from distq.jobs import BUILTIN_TASKS, Result

__all__ = [
    "DEFAULT_WINDOW",
    "Refusal",
    "Session",
    "Sessions",
    "WireOutcome",
    "WireSubmission",
    "refusal_reason",
]

#: Jobs a session may have in flight (submitted, not terminal) unless the master says less.
DEFAULT_WINDOW = 10_000

#: A job on the wire, submitter -> master: ``(job_id, task, args, time_limit_s)``, the id
#: from a block the submitter reserved.
WireSubmission = tuple[int, str, Any, float | None]

#: A refused job on the wire, master -> submitter: ``(job_id, reason)``.
Refusal = tuple[int, str]

#: A terminal result on the wire, master -> submitter: the fields of ``Result`` in order,
#: so ``Result(*wire)`` rebuilds it.
WireOutcome = tuple[int, bool, Any, str | None, str, int]

_REFERENCE = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*\Z")


def refusal_reason(task: Any, args: Any, time_limit_s: Any) -> str | None:
    """Why the master refuses this job, or None. Checks the form only: the master does
    not import user modules (the workers do)."""
    if not isinstance(task, str) or not (task in BUILTIN_TASKS or _REFERENCE.match(task)):
        return (
            f"task {task!r} is neither a built-in ({', '.join(BUILTIN_TASKS)}) "
            "nor a 'module:function' reference"
        )
    if not isinstance(args, list | tuple):
        return f"args must be a list or a tuple, got {type(args).__name__}"
    if time_limit_s is not None and (
        isinstance(time_limit_s, bool)
        or not isinstance(time_limit_s, int | float)
        or not 0 < time_limit_s < math.inf
    ):
        return f"time_limit_s must be a number > 0, got {time_limit_s!r}"
    return None


@dataclass(slots=True)
class Session:
    """One submitter's state on the master."""

    name: str
    window: int
    collect: bool
    in_flight: int = 0  # submitted, not yet terminal
    ended: bool = False
    results: deque[Result] = field(default_factory=deque)  # terminal, not fetched yet
    connections: set[int] = field(default_factory=set)  # ids of the connections it called on
    # connection id -> the results last fetched on it: a call interrupted mid-reply
    # leaves them unread there, and the submitter fetches next on another connection.
    unread: dict[int, list[Result]] = field(default_factory=dict)


class Sessions:
    """Every open submitter session, and which session owns each job in flight."""

    def __init__(self, max_window: int = DEFAULT_WINDOW) -> None:
        if max_window < 1:
            raise ValueError(f"max_window must be >= 1, got {max_window}")
        self.max_window = max_window
        self._sessions: dict[str, Session] = {}
        self._owner: dict[int, Session] = {}  # job id -> its session, until terminal
        self._of_connection: dict[int, set[str]] = {}  # connection id -> sessions used on it

    def open(self, collect: bool, window: int | None = None) -> Session:
        size = self.max_window if window is None else max(1, min(window, self.max_window))
        session = Session(secrets.token_hex(8), size, collect)
        self._sessions[session.name] = session
        return session

    def get(self, name: str) -> Session:
        session = self._sessions.get(name)
        if session is None:
            raise ValueError(f"no submitter session {name!r} on this master (ended, or a restart)")
        return session

    def end(self, name: str) -> None:
        """Forget a session and the results it did not fetch; its jobs still run."""
        session = self._sessions.pop(name, None)
        if session is not None:
            session.ended = True
            session.results.clear()
            session.unread.clear()
            for connection in session.connections:
                self._of_connection.get(connection, set()).discard(name)

    def seen_on(self, session: Session, connection: int) -> None:
        """``session`` made a call on ``connection`` (an id, unique while it is open)."""
        if connection not in session.connections:
            session.connections.add(connection)
            self._of_connection.setdefault(connection, set()).add(session.name)

    def connection_closed(self, connection: int) -> None:
        """End every session whose last connection this was: a submitter that died (or
        forgot to close) leaves no results behind for nobody to fetch."""
        for name in self._of_connection.pop(connection, ()):
            session = self._sessions.get(name)
            if session is not None:
                session.connections.discard(connection)
                # Its id may come back on a new connection: not a sign they were read.
                session.results.extendleft(reversed(session.unread.pop(connection, [])))
                if not session.connections:
                    self.end(name)

    def room(self, session: Session) -> int:
        return max(0, session.window - session.in_flight)

    def owns(self, session: Session, job_ids: list[int]) -> None:
        """``job_ids`` are on the board now, submitted by ``session``."""
        self._owner.update(dict.fromkeys(job_ids, session))
        session.in_flight += len(job_ids)

    def route(self, results: Iterable[Result]) -> bool:
        """Hand terminal results to the sessions that submitted their jobs. Returns True
        when some session's window or results changed (its waiters should wake)."""
        owner = self._owner
        if not owner:
            return False
        routed = False
        for result in results:
            session = owner.pop(result.job_id, None)
            if session is None:
                continue
            routed = True
            session.in_flight -= 1
            if session.collect and not session.ended:
                session.results.append(result)
        return routed

    def fetching_on(self, session: Session, connection: int) -> None:
        """A fetch came on ``connection``: the submitter read the results that went out
        on it before (one call at a time per connection). Those that went out on another
        connection may be unread (a call interrupted mid-reply, Ctrl-C): they are handed
        out again, and the submitter drops what it already has."""
        unread = session.unread
        unread.pop(connection, None)
        for results in reversed(unread.values()):
            session.results.extendleft(reversed(results))
        unread.clear()

    def take_results(self, session: Session, max_n: int, connection: int) -> list[WireOutcome]:
        """Up to ``max_n`` results of ``session``, going out on ``connection``."""
        results = session.results
        taken: list[WireOutcome] = []
        sent: list[Result] = []
        while results and len(taken) < max_n:
            r = results.popleft()
            sent.append(r)
            taken.append((r.job_id, r.ok, r.value, r.error, r.worker, r.attempt))
        if sent:
            session.unread[connection] = sent
        return taken

    def undelivered(self) -> int:
        """Results kept for sessions and not fetched yet."""
        return sum(len(session.results) for session in self._sessions.values())

"""Submitting jobs to a running master started with ``--open``.

with Submitter.connect("127.0.0.1:5000", authkey) as submitter:
    job_id = submitter.submit("square", [7])
    submitter.close_submissions()  # the master stops once every job is terminal
"""

from __future__ import annotations

from multiprocessing.context import AuthenticationError
from types import TracebackType
from typing import Any

from distq.errors import AuthRejected, MasterLost, MasterUnreachable, UsageError
from distq.protocol import BoardProxy, DistqManager, format_address, parse_address

__all__ = ["Submitter"]


class Submitter:
    """A client that adds jobs to an open master. Each call is one round trip."""

    def __init__(self, board: BoardProxy, where: str) -> None:
        self._board = board
        self.where = where

    @classmethod
    def connect(cls, address: str | tuple[str, int], authkey: bytes) -> Submitter:
        target = parse_address(address) if isinstance(address, str) else address
        where = format_address(target)
        manager = DistqManager(target, authkey)
        try:
            manager.connect()
            return cls(manager.board(), where)
        except AuthenticationError:
            raise AuthRejected(f"the master at {where} rejected our authkey") from None
        except (OSError, EOFError) as exc:
            raise MasterUnreachable(f"no master at {where} ({exc})") from None

    def submit(
        self, task: str, args: list[Any] | tuple[Any, ...] = (), time_limit_s: float | None = None
    ) -> int:
        [job_id] = self.submit_many([(task, list(args), time_limit_s)])
        return job_id

    def submit_many(self, specs: list[tuple[str, list[Any], float | None]]) -> list[int]:
        return self._call("submit", specs)  # type: ignore[no-any-return]

    def close_submissions(self) -> None:
        self._call("close_submissions")

    def _call(self, method: str, *args: Any) -> Any:
        try:
            return getattr(self._board, method)(*args)
        except ValueError as exc:  # the master refused: not open, duplicate id, ...
            raise UsageError(str(exc)) from None
        except (OSError, EOFError) as exc:
            raise MasterLost(f"lost the master at {self.where} ({type(exc).__name__})") from None

    def close(self) -> None:
        self._board._close()  # type: ignore[attr-defined]

    def __enter__(self) -> Submitter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

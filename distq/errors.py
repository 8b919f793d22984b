"""Errors a person can act on, each with its documented exit code.

The CLI prints one line for these and exits with ``exit_code``; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

__all__ = [
    "EXIT_AUTH_REJECTED",
    "EXIT_HANDSHAKE_TIMEOUT",
    "EXIT_INTERRUPTED",
    "EXIT_MASTER_BUSY",
    "EXIT_MASTER_LOST",
    "EXIT_NO_MASTER",
    "EXIT_OK",
    "EXIT_OUTPUT_FAILED",
    "EXIT_USAGE",
    "MIN_AUTHKEY_BYTES",
    "AuthRejected",
    "DistqError",
    "HandshakeTimeout",
    "MasterBusy",
    "MasterLost",
    "MasterUnreachable",
    "OutputFailed",
    "SubmissionRefused",
    "UsageError",
    "weak_key_message",
]

EXIT_OK = 0
EXIT_USAGE = 2  # bad option, unreadable or malformed file, missing key
EXIT_AUTH_REJECTED = 3  # the master refused our authkey
EXIT_NO_MASTER = 4  # nothing accepted a connection at the address
EXIT_MASTER_LOST = 5  # the master went away (or stopped answering) mid-run
EXIT_HANDSHAKE_TIMEOUT = 6  # something accepted the connection but never answered the handshake
EXIT_MASTER_BUSY = 7  # the master kept turning us away: too many handshakes pending
EXIT_OUTPUT_FAILED = 8  # could not write the results, the event log or the journal (disk full, ...)
EXIT_INTERRUPTED = 130  # Ctrl-C / SIGINT

#: A shorter key falls to guessing (pickle from anyone holding it runs code): refused
#: on every address, loopback too.
MIN_AUTHKEY_BYTES = 16


def weak_key_message(length: int) -> str:
    return (
        f"the authkey is {length} bytes; it must be at least {MIN_AUTHKEY_BYTES} (make one "
        "with: python -c 'import secrets; print(secrets.token_hex(16))' > key; chmod 600 key; "
        "then --authkey-file key)"
    )


class DistqError(Exception):
    """An error with a one-line message for a person and an exit code."""

    exit_code = 1


class UsageError(DistqError):
    exit_code = EXIT_USAGE


class AuthRejected(DistqError):
    exit_code = EXIT_AUTH_REJECTED


class MasterUnreachable(DistqError):
    exit_code = EXIT_NO_MASTER


class MasterLost(DistqError):
    exit_code = EXIT_MASTER_LOST


class HandshakeTimeout(DistqError):
    exit_code = EXIT_HANDSHAKE_TIMEOUT


class SubmissionRefused(DistqError):
    """The master refused submitted jobs (a malformed job, submissions closed)."""

    exit_code = EXIT_USAGE

    def __init__(self, refusals: list[tuple[int, str]]) -> None:
        self.refusals = list(refusals)  # (job id, the master's reason), in submission order
        first_id, first_reason = self.refusals[0]
        message = f"the master refused job {first_id}: {first_reason}"
        if len(self.refusals) > 1:
            others = ", ".join(str(job_id) for job_id, _ in self.refusals[1:6])
            more = "..." if len(self.refusals) > 6 else ""
            message += f" (and {len(self.refusals) - 1} more: jobs {others}{more})"
        super().__init__(message)

    @property
    def job_ids(self) -> list[int]:
        return [job_id for job_id, _ in self.refusals]


class MasterBusy(DistqError):
    exit_code = EXIT_MASTER_BUSY


class OutputFailed(DistqError):
    exit_code = EXIT_OUTPUT_FAILED

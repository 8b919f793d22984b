"""Errors a person can act on, each with its documented exit code.

The CLI prints one line for these and exits with ``exit_code``; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

__all__ = [
    "EXIT_AUTH_REJECTED",
    "EXIT_HANDSHAKE_TIMEOUT",
    "EXIT_INTERRUPTED",
    "EXIT_MASTER_LOST",
    "EXIT_NO_MASTER",
    "EXIT_OK",
    "EXIT_USAGE",
    "AuthRejected",
    "DistqError",
    "HandshakeTimeout",
    "MasterLost",
    "MasterUnreachable",
    "UsageError",
]

EXIT_OK = 0
EXIT_USAGE = 2  # bad option, unreadable or malformed file, missing key
EXIT_AUTH_REJECTED = 3  # the master refused our authkey
EXIT_NO_MASTER = 4  # nothing accepted a connection at the address
EXIT_MASTER_LOST = 5  # the master went away (or stopped answering) mid-run
EXIT_HANDSHAKE_TIMEOUT = 6  # something accepted the connection but never answered the handshake
EXIT_INTERRUPTED = 130  # Ctrl-C / SIGINT


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

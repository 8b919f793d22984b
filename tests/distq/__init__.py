"""Tests of the queue: the board, the journal, the door, the worker and master shells, the CLI."""

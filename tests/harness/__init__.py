"""Tests of the harness: its core (contract, history) and its front ends (CLI, pytest plugin)."""

"""Tests of the checks: each family, the causes, known-bug pins."""

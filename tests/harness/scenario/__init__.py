"""Tests of the scenario format: loading, limits, the schema, upgrades."""

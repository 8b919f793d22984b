"""The malformed scenario corpus is data for tests/harness/scenario/test_scenario_format.py, not tests.

Every file here declares ``scenario =``, so the scenario plugin would collect each one
(and report a collection error) under ``pytest tests``; this keeps it out.
"""

collect_ignore_glob = ["*.toml"]

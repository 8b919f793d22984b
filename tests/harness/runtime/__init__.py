"""Tests of a run: cluster, reaper, triggers, fault effects."""

"""Tests of the fault proxy and its toxics."""

"""Tests of watching a BaseManager app on the wire."""

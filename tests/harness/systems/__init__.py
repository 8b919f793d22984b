"""Tests of the systems under test: distq, BaseManager apps, engines, a toy system."""

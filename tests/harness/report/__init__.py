"""Tests of the report: the timeline, the SVG, the trace, the page."""

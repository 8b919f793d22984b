"""A run for a person: its timeline, drawn as SVG and a Chrome trace, in one HTML page.

Layering, from the core outwards:
  timeline  a run as lanes, attempts, faults and batches, from its history and verdict
  trace     the timeline as Chrome trace events (trace.json)
  chart     the timeline as SVG
  page      report.html of a run: summary, chart, model and history in one file
Each imports only from the layers above it, and from the core and checks.
``report.css`` and ``report.js`` are the page's static files. Past ``SUMMARY_OVER`` leases
the timeline is a summary: plain accepted attempts drawn as histograms, counted in the
trace, and kept in a side file (``DETAIL_NAME``) the page loads when zoomed in.
"""

from __future__ import annotations

from harness.report.page import (
    AGGREGATE_OVER,
    DETAIL_NAME,
    REPORT_NAME,
    VERDICT_NAME,
    Outcome,
    ReportError,
    rebuild_report,
    render_html,
    write_report,
    write_verdict,
)

__all__ = [
    "AGGREGATE_OVER",
    "DETAIL_NAME",
    "REPORT_NAME",
    "VERDICT_NAME",
    "Outcome",
    "ReportError",
    "rebuild_report",
    "render_html",
    "write_report",
    "write_verdict",
]

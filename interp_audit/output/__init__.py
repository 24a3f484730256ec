"""Output: a generic report renderer (a finished view in, one self-contained HTML page out) and
JUnit XML. The audit layer builds the view (:mod:`interp_audit.audit.report_view`)."""

from interp_audit.output.html import render
from interp_audit.output.junit import render_junit
from interp_audit.output.view import ReportView

__all__ = ["ReportView", "render", "render_junit"]

"""Report renderers: a self-contained HTML page and JUnit XML, both from the report's JSON dict."""

from interp_audit.output.html import render_html
from interp_audit.output.junit import render_junit

__all__ = ["render_html", "render_junit"]

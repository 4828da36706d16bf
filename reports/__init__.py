"""HTML reports: results documents -> pandas frames -> matplotlib SVG -> one self-contained HTML file.

    from reports import load_results, render_report
    render_report(load_results(["results.json"]), Path("out/"))   # -> out/report.html (+ CSV/Parquet exports)
"""

from .render import load_results, render_report
from .sweep import render_sweep_report

__all__ = ["render_report", "load_results", "render_sweep_report"]

"""HTML reports: results documents -> pandas frames -> matplotlib SVG -> one self-contained HTML file.

    from reports import load_results, render_report
    render_report(load_results(["results.json"]), Path("out/"))   # -> out/report.html (+ CSV/Parquet exports)

``load_results`` gives the typed model (:class:`deliverybench.core.model.Run`), which is all the report reads;
``render_report`` also takes plain results dicts and validates each once.
"""

from .render import load_results, render_report
from .sweep import render_sweep_report

__all__ = ["render_report", "load_results", "render_sweep_report"]

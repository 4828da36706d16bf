"""report.html for a plain ``locust -f`` test: rendered beside its results when the test ends.

Under ``run_bench.py`` the parent renders the report (once, with every mode);
a plain ``locust -f`` has no parent, so the controller starts a
:class:`ReportRenderer` when it has written the results. The report is
rendered by a child Python (``reports.render``), for three reasons: the
harness may not import ``reports`` (``tests/test_layers.py``), matplotlib and
pandas stay out of the Locust process's memory (a memory test samples it),
and the master's event loop keeps serving the web UI and its workers while
the child works. The child writes into a staged folder renamed into place,
so a failure (a full disk above all) leaves no half-written report; a report
that cannot be rendered is logged and never costs the results, which are
written before it starts.

The web UI serves the last report at :data:`ROUTE` and lists it among
Locust's "Download Data" links (``template_args["extended_csv_files"]``,
Locust's own extension point, see its ``examples/extend_web_ui.py``).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gevent
from locust.env import Environment

from ..adapters import results_file

__all__ = ["REPORT_NAME", "ROUTE", "RENDER_TIMEOUT_S", "ReportError", "ReportRenderer", "render_beside",
           "serve_in_web_ui", "web_link"]

log = logging.getLogger("deliverybench")
REPORT_NAME = "report.html"
#: where the web UI serves the last test's report (under Locust's ``--web-base-path``)
ROUTE = "/deliverybench/report"
#: longest a report may take to render (a 3-mode run takes ~3 s on a shared core)
RENDER_TIMEOUT_S = 180.0
#: the child's program: the report's own command line, run without ``-m`` (which warns about re-imports)
_RENDER = "import sys; from reports.render import main; raise SystemExit(main(sys.argv[1:]))"
#: the folder that holds ``deliverybench`` (and ``reports`` in a checkout): put on the child's path
_SOURCE_ROOT = Path(__file__).resolve().parents[2]


class ReportError(Exception):
    """The report could not be rendered; the message is one line."""


def render_beside(results: Path, *, timeout_s: float = RENDER_TIMEOUT_S) -> Path:
    """Render ``report.html`` (and its exports) into the folder of ``results``; return its path.

    Raises:
        ReportError: the renderer failed or took longer than ``timeout_s``.
        ResultsWriteError: the report could not be written (a full disk: the message says so).
    """
    html = results.parent / REPORT_NAME
    child_env = dict(os.environ)
    child_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_SOURCE_ROOT), os.environ.get("PYTHONPATH")]))
    with results_file.staged(html, prefix=".report-") as staged_path:
        try:
            done = subprocess.run([sys.executable, "-c", _RENDER, str(results.resolve()), "-o", str(staged_path)],
                                  env=child_env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise ReportError(f"rendering took longer than {timeout_s:g} s") from None
        except OSError as exc:
            raise ReportError(f"cannot start the renderer: {exc.strerror or exc}") from None
        if done.returncode != 0:
            lines = [line for line in done.stderr.splitlines() if line.strip()]
            raise ReportError(lines[-1].strip() if lines else f"the renderer exited with {done.returncode}")
    return html


def web_link(environment: Environment) -> str | None:
    """The URL of :data:`ROUTE` on this Locust's web UI, or None without a web UI."""
    web_ui = environment.web_ui
    if web_ui is None:
        return None
    options = environment.parsed_options
    host = str(getattr(web_ui, "host", "") or "")
    if host in ("", "*", "0.0.0.0", "::"):
        host = "127.0.0.1"
    port = getattr(getattr(web_ui, "server", None), "server_port", None) or getattr(web_ui, "port", 8089)
    scheme = "https" if getattr(web_ui, "tls_cert", None) else "http"
    base = str(getattr(options, "web_base_path", "") or "").rstrip("/")
    return f"{scheme}://{host}:{port}{base}{ROUTE}"


def serve_in_web_ui(web_ui: Any, environment: Environment, last: Callable[[], Path | None]) -> None:
    """Serve the report ``last()`` names at :data:`ROUTE` and link it from the UI's "Download Data" tab."""
    from flask import Response, make_response, send_file

    def report() -> Response:
        path = last()
        if path is None or not path.is_file():
            return make_response("No deliverybench report yet: one is written when a test ends.\n", 404)
        return send_file(path.resolve(), mimetype="text/html", max_age=0)

    base = str(getattr(environment.parsed_options, "web_base_path", "") or "").rstrip("/")
    web_ui.app.add_url_rule(f"{base}{ROUTE}", "deliverybench_report", web_ui.auth_required_if_enabled(report))
    links = list(web_ui.template_args.get("extended_csv_files") or [])
    links.append({"href": f".{ROUTE}", "title": "deliverybench report of the last test (report.html)"})
    web_ui.template_args["extended_csv_files"] = links


class ReportRenderer:
    """Renders each test's report in a greenlet (the child works; the event loop keeps serving)."""

    def __init__(self, environment: Environment) -> None:
        self.environment = environment
        #: the last report rendered, for the web UI
        self.last: Path | None = None
        self._greenlet: gevent.Greenlet[..., Any] | None = None

    def start(self, results: Path) -> None:
        """Render the report of ``results`` (written whole just now) beside it."""
        self.wait()  # the last test's report first: two children would share one core
        self._greenlet = gevent.spawn(self._render, results)

    def wait(self, timeout: float = RENDER_TIMEOUT_S + 5.0) -> None:
        """Until the report being rendered (if any) is written or given up."""
        if self._greenlet is not None:
            self._greenlet.join(timeout=timeout)

    def _render(self, results: Path) -> None:
        try:
            html = render_beside(results)
        except (ReportError, results_file.ResultsWriteError) as exc:
            log.warning("report not rendered (results are in %s): %s", results, exc)
            return
        self.last = html
        link = web_link(self.environment)
        log.info("report: %s (results: %s)%s", html, results, f"; in the web UI: {link}" if link else "")

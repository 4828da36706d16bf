"""Render results documents into one self-contained HTML report plus CSV/Parquet exports.

    from reports import load_results, render_report
    render_report(load_results(["out/run1/results.json"]), Path("out/run1"))

writes ``out/run1/report.html`` and beside it ``percentiles.csv``,
``percentiles.parquet``, ``series.csv`` and ``series.parquet``. Several
documents are compared side by side (one row/series per run and mode).

The HTML has no external references: figures are inline SVG, CSS is inline,
there is no JavaScript. The template autoescapes everything; only the SVG
from :mod:`reports.figures` is marked safe.
"""

from __future__ import annotations

import argparse
import datetime as _dt
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import jinja2
from markupsafe import Markup

from deliverybench.core.results import loads, validate

from .sections import ReportData, build_sections

__all__ = ["render_report", "load_results", "render_html", "write_exports", "REPORT_NAME", "EXPORT_NAMES"]

REPORT_NAME = "report.html"
EXPORT_NAMES = ("percentiles.csv", "percentiles.parquet", "series.csv", "series.parquet")
_TEMPLATES = Path(__file__).with_name("templates")


def load_results(paths: str | Path | Iterable[str | Path]) -> list[dict[str, Any]]:
    """Read results documents; a directory means its ``results.json``."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    docs = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            path = path / "results.json"
        docs.append(loads(path.read_text(encoding="utf-8")))
    return docs


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(_TEMPLATES)),
        autoescape=True,  # everything, whatever the template's extension
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env


def _normalise(docs: Sequence[Mapping[str, Any]] | Mapping[str, Any]) -> list[Mapping[str, Any]]:
    if isinstance(docs, Mapping):
        docs = [docs]
    docs = list(docs)
    if not docs:
        raise ValueError("render_report needs at least one results document")
    for doc in docs:
        validate(doc)
    return docs


def render_html(docs: Sequence[Mapping[str, Any]] | Mapping[str, Any], data: ReportData | None = None) -> str:
    """The report as an HTML string."""
    data = data or ReportData(_normalise(docs))
    sections = build_sections(data)
    for sec in sections.values():
        for fig in sec.get("figures", []):
            fig["svg"] = Markup(fig["svg"])  # produced by matplotlib from numbers; labels are paths, not text
    runs = [str((d.get("run") or {}).get("id") or "?") for d in data.docs]
    modes = list(dict.fromkeys(ref.mode for ref in data.refs))
    title = f"deliverybench: {', '.join(modes)} — {', '.join(runs)}"
    template = _environment().get_template("report.html")
    return template.render(
        title=title,
        runs=runs,
        modes=modes,
        multi=data.multi,
        s=sections,
        toc=[(sec["id"], sec["title"]) for sec in sections.values() if sec["visible"] and sec["id"] != "warnings"],
        generated=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    )


def write_exports(data: ReportData, directory: Path) -> list[Path]:
    """percentiles.{csv,parquet} and series.{csv,parquet} in ``directory``."""
    percentiles = data.percentiles[["run", "mode", "metric", "percentile", "value_ms", "count"]]
    series = data.series.drop(columns=["label"], errors="ignore")
    written = []
    for name, frame in (("percentiles", percentiles), ("series", series)):
        csv = directory / f"{name}.csv"
        frame.to_csv(csv, index=False)
        parquet = directory / f"{name}.parquet"
        frame.to_parquet(parquet, index=False)
        written += [csv, parquet]
    return written


def render_report(docs: Sequence[Mapping[str, Any]] | Mapping[str, Any], out_path: str | Path, *,
                  baseline: Mapping[str, Any] | None = None, comparison: Mapping[str, Any] | None = None) -> Path:
    """Write the HTML report and the exports; return the report's path.

    ``out_path`` is either the HTML file to write (``….html``) or a
    directory, which gets ``report.html``. The exports go beside the HTML.
    With ``baseline`` and ``comparison`` (the gate's ``comparison.json``) the
    report shows the baseline section.
    """
    data = ReportData(_normalise(docs), baseline=baseline, comparison=comparison)
    out = Path(out_path)
    html_path = out if out.suffix.lower() in (".html", ".htm") else out / REPORT_NAME
    html_path.parent.mkdir(parents=True, exist_ok=True)
    html = render_html(data.docs, data)
    html_path.write_text(html, encoding="utf-8")
    write_exports(data, html_path.parent)
    return html_path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reports.render", description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", help="results.json files (or run folders holding one)")
    parser.add_argument("-o", "--out", required=True, help="report .html path or output directory")
    args = parser.parse_args(argv)
    path = render_report(load_results(args.results), Path(args.out))
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

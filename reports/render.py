"""Render results documents into one self-contained HTML report plus CSV/Parquet exports.

    from reports import load_results, render_report
    render_report(load_results(["out/run1/results.json"]), Path("out/run1"))

writes ``out/run1/report.html`` and beside it ``percentiles.csv``,
``percentiles.parquet``, ``series.csv`` and ``series.parquet``. Several
documents are compared side by side (one row/series per run and mode).

Everything below the entry points reads the typed model
(:class:`deliverybench.core.model.Run`). The entry points also take plain
results dicts, as the CLI still passes them, and validate each once here.

The HTML has no external references: figures are inline SVG, CSS is inline,
there is no JavaScript. The template autoescapes everything; only the SVG
from :mod:`reports.figures` is marked safe.
"""

from __future__ import annotations

import argparse
import datetime as _dt
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from deliverybench.core.model import Run
from deliverybench.core.results import load_run

from .sections import ReportData, build_sections

__all__ = ["render_report", "load_results", "render_html", "write_exports", "REPORT_NAME", "EXPORT_NAMES"]

REPORT_NAME = "report.html"
EXPORT_NAMES = ("percentiles.csv", "percentiles.parquet", "series.csv", "series.parquet")
_TEMPLATES = Path(__file__).with_name("templates")

#: what the entry points accept for one document: the model, or a results dict validated on the way in
Document = Run | Mapping[str, Any]


def load_results(paths: str | Path | Iterable[str | Path]) -> list[Run]:
    """Read and validate results documents; a directory means its ``results.json``."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    docs = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            path = path / "results.json"
        docs.append(load_run(path.read_text(encoding="utf-8")))
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


def as_run(doc: Document) -> Run:
    """The model of one document: a :class:`Run` as it is, a dict validated once (``ResultsFormatError``)."""
    return doc if isinstance(doc, Run) else Run.from_dict(doc)


def _normalise(docs: Sequence[Document] | Document) -> list[Run]:
    many = [docs] if isinstance(docs, (Run, Mapping)) else list(docs)
    if not many:
        raise ValueError("render_report needs at least one results document")
    return [as_run(doc) for doc in many]


def render_html(docs: Sequence[Document] | Document, data: ReportData | None = None) -> str:
    """The report as an HTML string."""
    data = data or ReportData(_normalise(docs))
    sections = build_sections(data)
    for sec in sections.values():
        for fig in sec.get("figures", []):
            fig["svg"] = Markup(fig["svg"])  # produced by matplotlib from numbers; labels are paths, not text
    runs = [d.run.id or "?" for d in data.docs]
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
        generated=_dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
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


def render_report(docs: Sequence[Document] | Document, out_path: str | Path, *,
                  baseline: Document | None = None, comparison: Mapping[str, Any] | None = None) -> Path:
    """Write the HTML report and the exports; return the report's path.

    ``out_path`` is either the HTML file to write (``….html``) or a
    directory, which gets ``report.html``. The exports go beside the HTML.
    With ``baseline`` and ``comparison`` (the gate's ``comparison.json``) the
    report shows the baseline section. Documents are :class:`Run` values or
    results dicts (validated here, once).
    """
    data = ReportData(_normalise(docs), baseline=None if baseline is None else as_run(baseline),
                      comparison=comparison)
    out = Path(out_path)
    html_path = out if out.suffix.lower() in (".html", ".htm") else out / REPORT_NAME
    html_path.parent.mkdir(parents=True, exist_ok=True)
    html = render_html(data.docs, data)
    html_path.write_text(html, encoding="utf-8")
    write_exports(data, html_path.parent)
    return html_path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reports.render", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("results", nargs="+", help="results.json files (or run folders holding one)")
    parser.add_argument("-o", "--out", required=True, help="report .html path or output directory")
    args = parser.parse_args(argv)
    path = render_report(load_results(args.results), Path(args.out))
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

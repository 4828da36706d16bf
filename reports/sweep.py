"""Render a capacity sweep's ``sweep.json`` index into one self-contained HTML page plus point exports.

    from reports import render_sweep_report
    index = json.loads(Path("out/sweep/sweep.json").read_text())
    render_sweep_report(index, Path("out/sweep"))

writes ``out/sweep/sweep.html`` and beside it ``points.csv`` and
``points.parquet`` (one row per finished run). The index is the one
:mod:`deliverybench.core.sweep` builds (``new_index``, ``add_point``,
``with_answers``); this module only reads it.

A sweep is most often looked at while it is still running or after it was
cut short, so nothing here insists on a finished index: a mode without
points gets a note instead of figures, missing figures are left out of the
charts, and without ``answers`` the header says the sweep is not finished.

Like :mod:`reports.render`, the HTML has no external references (inline
SVG, inline CSS shared with the run report through ``_style.css``, no
JavaScript) and the template autoescapes every string from the index; only
the SVG drawn by matplotlib is marked safe. The figures are drawn in
:mod:`reports.sweep_figures`, with the run report's style and serialisation.

The index is not a results document (it is the sweep's own bookkeeping, and
may be partial or written by another version), so it is read here as JSON,
defensively, rather than through :class:`deliverybench.core.model.Run`.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

import pandas as pd
from markupsafe import Markup

from deliverybench.core.slo import SloClause, format_number, latency_bound
from deliverybench.core.sweep import CapacityAnswer, SweepSpec, analyse, capacity_sentences, spec_of
from deliverybench.core.sweep.search import ABOVE_RANGE, BELOW_RANGE, FOUND, HARNESS_LIMITED, PENDING

from .frames import flatten
from .render import _environment
from .sections import Column, fmt, kv_table, table
from .sweep_figures import (
    delivered_vs_offered_svg,
    heatmap_svg,
    latency_vs_subscribers_svg,
    p99_vs_offered_svg,
    rate_label,
)

__all__ = [
    "render_sweep_report",
    "render_sweep_html",
    "answer_words",
    "analysis_note",
    "points_frame",
    "write_point_exports",
    "SWEEP_REPORT_NAME",
    "POINT_EXPORT_NAMES",
    "POINT_COLUMNS",
]

SWEEP_REPORT_NAME = "sweep.html"
POINT_EXPORT_NAMES = ("points.csv", "points.parquet")
#: the key figures of a point, as :func:`deliverybench.core.sweep.point_figures` names them
FIGURE_KEYS = ("p50", "p99", "p99_9", "lost", "refused", "deliveries_per_s", "expected")
POINT_COLUMNS = ("key", "mode", "rate", "subscribers", "repeat", "seq", "status", "headline", *FIGURE_KEYS,
                 "offered_per_s", "reasons", "advice", "results")

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_ANALYSIS_TAIL = "Information only; the capacity is the SLO bracket."


# --------------------------------------------------------------------------- reading the index


def _number(value: Any) -> float | None:
    """A finite number or ``None``: figures of an interrupted point may be missing, null or junk."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _whole(value: Any) -> int | None:
    number = _number(value)
    return None if number is None else int(round(number))


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _texts(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else []


def _point_records(index: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One plain record per point, in run order (``seq``); reasons and advice kept as lists for the table."""
    records = []
    for key, entry in _mapping(index.get("points")).items():
        if not isinstance(entry, Mapping):
            continue
        verdict, figs = _mapping(entry.get("verdict")), _mapping(entry.get("figures"))
        n, rate = _number(entry.get("subscribers")), _number(entry.get("rate"))
        records.append({
            "key": str(key),
            "mode": str(entry.get("mode") or "?"),
            "rate": rate,
            "subscribers": _whole(n),
            "repeat": _whole(entry.get("repeat")),
            "seq": _whole(entry.get("seq")),
            "status": str(verdict.get("status") or "").upper() or "UNKNOWN",
            "headline": str(verdict.get("headline") or ""),
            **{k: _number(figs.get(k)) for k in FIGURE_KEYS},
            "offered_per_s": n * rate if n is not None and rate is not None else None,
            "reasons": _texts(verdict.get("reasons")),
            "advice": _texts(verdict.get("advice")),
            "results": str(entry.get("results") or ""),
        })
    records.sort(key=lambda r: (r["seq"] is None, r["seq"] or 0, r["key"]))
    return records


def points_frame(index: Mapping[str, Any]) -> pd.DataFrame:
    """The points as a frame (columns :data:`POINT_COLUMNS`), run order; the CSV/Parquet export and the figures' input.

    Counts are nullable integers and figures floats (NaN when missing), so
    the Parquet file has one type per column however partial the index.
    """
    rows = [{**r, "reasons": "; ".join(r["reasons"]), "advice": "; ".join(r["advice"])}
            for r in _point_records(index)]
    frame = pd.DataFrame(rows, columns=list(POINT_COLUMNS))
    for col in ("subscribers", "repeat", "seq"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("Float64").round().astype("Int64")
    for col in ("rate", *FIGURE_KEYS, "offered_per_s"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
    for col in ("key", "mode", "status", "headline", "reasons", "advice", "results"):
        frame[col] = frame[col].astype(str)
    return frame


def _spec(index: Mapping[str, Any]) -> tuple[SweepSpec | None, str]:
    """The spec, or ``None`` and why: the points are still worth showing under an unreadable spec."""
    try:
        return spec_of(index), ""
    except ValueError as exc:  # SweepIndexError
        return None, str(exc)


def _clauses(spec: SweepSpec | None) -> tuple[SloClause, ...]:
    try:
        return spec.clauses if spec is not None else ()
    except ValueError:  # SloError: an index written by another version's SLO grammar
        return ()


def _answers(index: Mapping[str, Any]) -> list[CapacityAnswer]:
    """The stored answers back as :class:`CapacityAnswer` (without their points), malformed ones skipped."""
    raw_answers = index.get("answers")
    out: list[CapacityAnswer] = []
    for raw in raw_answers if isinstance(raw_answers, list) else []:
        if not isinstance(raw, Mapping) or _number(raw.get("rate")) is None:
            continue
        given = raw.get("bracket")
        bracket = [*(list(given)[:2] if isinstance(given, (list, tuple)) else []), None, None]
        out.append(CapacityAnswer(
            mode=str(raw.get("mode") or "?"), rate=float(raw["rate"]), capacity=_whole(raw.get("capacity")),
            bracket=(_whole(bracket[0]), _whole(bracket[1])), status=str(raw.get("status") or "pending"),
            harness_limit=_whole(raw.get("harness_limit")), fail_reason=str(raw.get("fail_reason") or ""),
            limit_reason=str(raw.get("limit_reason") or ""), notes=tuple(_texts(raw.get("notes"))),
            largest_pass=_whole(raw.get("largest_pass")), drift_judged=raw.get("drift_judged") is not False))
    return out


def _sentences(index: Mapping[str, Any], answers: Sequence[CapacityAnswer], clauses: Sequence[SloClause]) -> list[str]:
    """The index's capacity sentences; recomputed from its answers when an older writer left them out."""
    given = _texts(index.get("sentences"))
    if given:
        return given
    return capacity_sentences(answers, clauses) if answers else []


def _ordered(first: Sequence[Any], seen: Sequence[Any]) -> list[Any]:
    """``first`` (the spec's order), then anything the points have that the spec does not."""
    out = list(dict.fromkeys(first))
    return out + [x for x in dict.fromkeys(seen) if x not in out]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "mode"


# --------------------------------------------------------------------------- notes and tables


def analysis_note(result: Mapping[str, Any], mode: str, rate: float, *, largest: float | None = None) -> str:
    """The knee and USL fit of one (mode, rate) in words, labelled as information (they do not decide capacity).

    A USL peak further than 10× beyond ``largest`` (the largest N measured)
    is an extrapolation of a nearly linear fit, so it is not quoted as a number.
    """
    where = f"{mode} at {rate_label(rate)}"
    knee, usl = result.get("knee"), result.get("usl")
    parts = []
    if knee:
        parts.append(f"knee at about N = {format_number(round(knee['subscribers']))} "
                     f"(p99 {format_number(knee['latency_ms'])} ms, score {format_number(knee['score'])})")
    if usl and largest is not None and _linear(usl, largest):
        parts.append(f"throughput grew in proportion to N up to {format_number(largest)} "
                     f"({format_number(usl['lambda'])} deliveries/s per subscriber): the USL fit finds no "
                     f"contention or crosstalk within the range measured")
    elif usl:
        fit = (f"USL fit λ = {format_number(usl['lambda'])} deliveries/s per subscriber, "
               f"σ = {format_number(usl['sigma'])}, κ = {format_number(usl['kappa'])}, "
               f"R² = {usl['r2']:.3f} over {usl['points']} N")
        peak_n, peak_x = usl.get("peak_subscribers"), usl.get("peak_throughput")
        if peak_n is not None and peak_x is not None and (largest is None or peak_n <= 10 * largest):
            fit += (f"; throughput would peak near N = {format_number(round(peak_n))} "
                    f"({format_number(peak_x)} deliveries/s)")
        elif largest is not None:
            fit += f"; no throughput peak within 10× the largest N measured ({format_number(largest)})"
        parts.append(fit)
    if not parts:
        return f"{where}: too few valid points for a knee or a USL fit (4 distinct N needed). {_ANALYSIS_TAIL}"
    if not knee:
        parts.insert(0, "no knee: latency does not turn upward within the points measured")
    return f"{where}: {'; '.join(parts)}. {_ANALYSIS_TAIL}"


#: a USL fit whose σ and κ cost less than this share of throughput at the largest N says "linear"
_LINEAR_SHARE = 0.05


def _linear(usl: Mapping[str, Any], largest: float) -> bool:
    """Whether the fit's contention and crosstalk terms are negligible up to ``largest`` (σ = 5e-13 is "none")."""
    drag = usl["sigma"] * (largest - 1.0) + usl["kappa"] * largest * (largest - 1.0)
    return bool(drag < _LINEAR_SHARE)


def _analysis(index: Mapping[str, Any], mode: str, rate: float, largest: float | None) -> str:
    try:
        return analysis_note(analyse(index, mode=mode, rate=rate), mode, rate, largest=largest)
    except (ValueError, TypeError, KeyError, ArithmeticError) as exc:  # odd points: skip the extra, keep the page
        return f"{mode} at {rate_label(rate)}: no knee or USL fit ({exc}). {_ANALYSIS_TAIL}"


def answer_words(answer: CapacityAnswer) -> str:
    """The answer's status in plain words with its numbers (the index's ``above-range`` is bookkeeping)."""
    cap, fail, limit = answer.capacity, answer.bracket[1], answer.harness_limit
    n = format_number
    if answer.status == FOUND and cap is not None and fail is not None:
        return f"passed up to {n(cap)}; {n(fail)} failed"
    if answer.status == ABOVE_RANGE and cap is not None:
        return f"passed every point up to {n(cap)} (the top of the range)"
    if answer.status == BELOW_RANGE and fail is not None:
        return f"failed even at {n(fail)} (the bottom of the range)"
    if answer.status == HARNESS_LIMITED and limit is not None:
        held = f"at least {n(cap)}" if cap is not None else "no capacity measured"
        return f"{held}: the harness could not measure {n(limit)}"
    if answer.status == PENDING:
        so_far = f": so far {n(answer.largest_pass)} passed" if answer.largest_pass is not None else ""
        return f"interrupted before it finished{so_far}"
    return answer.status


def _answers_table(answers: Sequence[CapacityAnswer], slug: str) -> dict[str, Any] | None:
    if not answers:
        return None
    frame = pd.DataFrame([{"rate": rate_label(a.rate), "status": a.status, "answer": answer_words(a),
                           "capacity": a.capacity,
                           "fail": a.bracket[1], "limit": a.harness_limit,
                           "why": a.fail_reason or a.limit_reason or "", "notes": "; ".join(a.notes)}
                          for a in answers])
    cols = [Column("rate", "rate"), Column("answer", "answer"), Column("capacity", "capacity (N)", "int"),
            Column("fail", "first fail (N)", "int"), Column("limit", "harness limit (N)", "int"),
            Column("why", "why it fails / is limited"), Column("notes", "notes")]
    return table(frame, cols, table_id=f"answers-{slug}",
                 row_class=lambda r: "warn" if r["status"] in ("harness-limited", "pending") else "")


def _spec_table(spec: SweepSpec | None, index: Mapping[str, Any]) -> dict[str, Any]:
    items: dict[str, Any] = {}
    if spec is not None:
        subs = (f"{', '.join(format_number(n) for n in spec.grid)} (grid)" if spec.grid is not None
                else f"{format_number(spec.lo or 0)}:{format_number(spec.hi or 0)} (searched)")
        items = {"modes": ", ".join(spec.modes), "rates (events/s)": ", ".join(format_number(r) for r in spec.rates),
                 "subscribers": subs, "SLO": spec.slo, "precision": f"{spec.precision:g}",
                 "confirm": f"{spec.confirm} run{'s' if spec.confirm != 1 else ''}"}
    items.update({f"extra.{k}": v for k, v in flatten(_mapping(index.get("extra"))).items()})
    return kv_table(items, "Sweep")


def _point_link(results: str, sweep_dir: Path) -> tuple[str | None, str]:
    """(href, text): the point's rendered report beside its results if it exists, else the results file.

    Only relative paths become links: the index says they are relative to
    the sweep folder, and a scheme (``javascript:``, ``http:``) is never followed.
    """
    if not results or _SCHEME.match(results) or results.startswith(("/", "\\", "//")):
        return None, results or "—"
    rel = PurePosixPath(results.replace("\\", "/"))
    report = rel.parent / "report.html"
    if (sweep_dir / report).is_file():
        return quote(str(report)), "report"
    return quote(str(rel)), "results"


def _point_rows(records: Sequence[Mapping[str, Any]], answers: Sequence[CapacityAnswer],
                sweep_dir: Path) -> list[dict[str, Any]]:
    """Preformatted rows of the points table (numbers as :func:`reports.sections.fmt` shows them)."""
    capacity = {(a.mode, a.rate, a.capacity) for a in answers if a.capacity is not None}
    rows = []
    for r in records:
        href, text = _point_link(r["results"], sweep_dir)
        status = r["status"]
        rows.append({
            "key": r["key"], "seq": fmt(r["seq"], "int"), "mode": r["mode"],
            "rate": "—" if r["rate"] is None else format_number(r["rate"]),
            "subscribers": fmt(r["subscribers"], "int"), "repeat": fmt(r["repeat"], "int"),
            "status": status, "cls": f"verdict-{status.lower()}", "headline": r["headline"],
            "p50": fmt(r["p50"], "ms"), "p99": fmt(r["p99"], "ms"), "p99_9": fmt(r["p99_9"], "ms"),
            "lost": fmt(r["lost"], "int"), "refused": fmt(r["refused"], "int"),
            "deliveries_per_s": fmt(r["deliveries_per_s"], "f1"),
            "reasons": r["reasons"], "advice": r["advice"], "href": href, "link": text,
            "capacity": (r["mode"], r["rate"], r["subscribers"]) in capacity,
        })
    return rows


# --------------------------------------------------------------------------- sections


def _safe_svg(draw: Callable[..., str | None], notes: list[str], what: str, **kwargs: Any) -> str | None:
    """One figure that cannot be drawn becomes a note, not a lost page: the report of an odd sweep matters most."""
    try:
        return draw(**kwargs)
    except Exception as exc:  # noqa: BLE001  (matplotlib's errors are many; the page must still render)
        notes.append(f"The {what} figure could not be drawn: {type(exc).__name__}: {exc}")
        return None


def _mode_section(index: Mapping[str, Any], frame: pd.DataFrame, mode: str, spec: SweepSpec | None,
                  clauses: Sequence[SloClause], answers: Sequence[CapacityAnswer]) -> dict[str, Any]:
    """Answers, figures, heat map and knee/USL notes of one mode."""
    slug = _slug(mode)
    group = frame[frame["mode"] == mode]
    mine = [a for a in answers if a.mode == mode]
    rates = _ordered(spec.rates if spec else [], [float(r) for r in group["rate"].dropna()])
    bound = latency_bound(clauses, mode) if clauses else None
    sec: dict[str, Any] = {"id": f"mode-{slug}", "title": mode, "mode": mode, "figures": [], "notes": [],
                           "analysis": [], "answers": _answers_table(mine, slug), "points": len(group)}
    if group.empty:
        sec["notes"].append(f"No points for {mode} yet: the sweep has not reached it.")
        return sec
    kinds: list[tuple[str, Callable[..., str | None], dict[str, Any], str]] = [
        ("latency", latency_vs_subscribers_svg, {"mode": mode, "answers": mine, "bound": bound},
         "p50 (dotted), p99 (solid) and p99.9 (dashed) latency against subscribers, one colour per rate. "
         "One marker per run (repeats of an N one above the other): filled: PASS; red ✕: FAIL; hollow ◇: INVALID (the "
         "harness, not the target, could not keep up; not joined). The lines join the worst run of each N, the "
         "one the answer rests on. Dash-dot line: the SLO bound; wide pale vertical line: the capacity, shaded "
         "up to the first fail."),
        ("offered", p99_vs_offered_svg, {"mode": mode, "bound": bound},
         "p99 against offered deliveries/s (subscribers × rate): every rate on one load axis; the line joins "
         "the worst run of each load."),
        ("throughput", delivered_vs_offered_svg, {"mode": mode},
         "Delivered against offered deliveries/s, one marker per run, the line through the lowest of each load; "
         "dotted: delivered = offered. Points below it did not keep up."),
    ]
    grid = list(spec.grid) if spec is not None and spec.grid is not None else []
    if len(grid) >= 2 and len(rates) >= 2:
        kinds.append(("heatmap", heatmap_svg, {"grid": grid, "bound": bound},
                      "p99 / SLO bound per subscribers × rate (worst valid run of the cell); green below 1 fits, "
                      "red above misses. Hatched: INVALID only; “FAIL”: a run there failed (on any objective)."))
        if bound is None:
            sec["notes"].append("The SLO bounds no latency, so there is no p99 / bound heat map.")
    for kind, draw, extra, caption in kinds:
        svg = _safe_svg(draw, sec["notes"], kind, group=group, rates=rates, salt=f"{slug}-{kind}", **extra)
        if svg is not None:
            sec["figures"].append({"svg": Markup(svg), "caption": caption, "id": f"fig-{slug}-{kind}"})
    if not sec["figures"]:
        sec["notes"].append(f"The {len(group)} point(s) of {mode} have no figures to draw yet.")
    for rate in rates:
        ns = group.loc[group["rate"] == rate, "subscribers"].dropna()
        if len(ns):
            sec["analysis"].append(_analysis(index, mode, rate, float(ns.max())))
    return sec


def render_sweep_html(index: Mapping[str, Any], sweep_dir: Path) -> str:
    """The sweep report as an HTML string (``sweep_dir`` is where point links are resolved)."""
    index = index if isinstance(index, Mapping) else {}
    spec, spec_error = _spec(index)
    clauses = _clauses(spec)
    records = _point_records(index)
    frame = points_frame(index)
    answers = _answers(index)
    sentences = _sentences(index, answers, clauses)
    modes = _ordered(spec.modes if spec else [], list(frame["mode"]))
    notes = [f"The sweep's spec cannot be read ({spec_error}); points are shown without SLO lines."
             ] if spec_error else []
    pending = [a for a in answers if a.status == "pending"]
    if answers and pending:
        notes.append("Sweep not finished: " + ", ".join(f"{a.mode} at {rate_label(a.rate)}" for a in pending)
                     + " still pending.")
    sections = [_mode_section(index, frame, mode, spec, clauses, answers) for mode in modes]
    template = _environment().get_template(SWEEP_REPORT_NAME)
    return template.render(
        title=f"deliverybench sweep: {', '.join(modes) or 'no modes'}",
        modes=modes,
        sentences=sentences,
        point_count=len(records),
        header_notes=notes,
        spec_table=_spec_table(spec, index),
        sections=sections,
        rows=_point_rows(records, answers, Path(sweep_dir)),
        generated=_dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    )


def write_point_exports(frame: pd.DataFrame, directory: Path) -> list[Path]:
    """``points.csv`` and ``points.parquet`` in ``directory``: the table, for pandas rather than eyes."""
    csv, parquet = (Path(directory) / name for name in POINT_EXPORT_NAMES)
    frame.to_csv(csv, index=False)
    frame.to_parquet(parquet, index=False)
    return [csv, parquet]


def render_sweep_report(index: Mapping[str, Any], sweep_dir: Path) -> list[Path]:
    """Write ``sweep.html``, ``points.csv`` and ``points.parquet`` into ``sweep_dir``; return them, HTML first.

    Any index :func:`deliverybench.core.sweep.new_index` / ``add_point`` can
    produce renders, finished or not (no answers yet, modes without points,
    points without figures).
    """
    directory = Path(sweep_dir)
    directory.mkdir(parents=True, exist_ok=True)
    html_path = directory / SWEEP_REPORT_NAME
    html_path.write_text(render_sweep_html(index, directory), encoding="utf-8")
    safe = index if isinstance(index, Mapping) else {}
    return [html_path, *write_point_exports(points_frame(safe), directory)]

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
the SVG drawn by matplotlib is marked safe.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterator, Mapping, Sequence
from urllib.parse import quote

import numpy as np
import pandas as pd
from markupsafe import Markup
from matplotlib import colormaps
from matplotlib.colors import Normalize
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.ticker import FixedLocator, FuncFormatter, LogFormatter, NullFormatter, NullLocator

from deliverybench.core.slo import SloClause, format_number, latency_bound
from deliverybench.core.sweep import CapacityAnswer, Status, SweepSpec, analyse, capacity_sentences, spec_of

from . import figures as _figures
from .figures import MODE_COLORS, _figure, _ms_tick, _plain, _themed, to_svg
from .frames import flatten
from .render import _environment
from .sections import Column, fmt, kv_table, table

__all__ = [
    "render_sweep_report",
    "render_sweep_html",
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

_FAIL_COLOR = "#c0392b"
_SLO_COLOR = "#b42318"
_LATENCIES = (("p50", "p50", ":"), ("p99", "p99", "-"), ("p99_9", "p99.9", "--"))
_STATUSES = (Status.PASS.value, Status.FAIL.value, Status.INVALID.value)
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
            limit_reason=str(raw.get("limit_reason") or ""), notes=tuple(_texts(raw.get("notes")))))
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


def _arr(series: pd.Series) -> np.ndarray:
    return series.to_numpy(dtype=float, na_value=np.nan)


# --------------------------------------------------------------------------- figures


class _PlainLog(LogFormatter):
    """LogFormatter's choice of which log ticks to label, but written ``20`` / ``1 s`` rather than 2×10¹."""

    def __init__(self, text: Callable[[float, int], str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._text = text

    def __call__(self, x: float, pos: int | None = None) -> str:
        return self._text(x, pos or 0) if super().__call__(x, pos) else ""


def _count_tick(value: float, _pos: int) -> str:
    return format_number(value)


def _rate_colors(mode: str, rates: Sequence[float]) -> dict[float, str]:
    """The mode's colour for its first rate, then others (never the FAIL red), so one rate looks like the run report."""
    first = MODE_COLORS.get(mode, _figures._EXTRA_COLORS[0])
    rest = [c for c in (*MODE_COLORS.values(), *_figures._EXTRA_COLORS) if c not in (first, MODE_COLORS["burst"])]
    palette = [first, *rest]
    return {rate: palette[i % len(palette)] for i, rate in enumerate(rates)}


def _rate_label(rate: float) -> str:
    return f"{format_number(rate)} event/s" if rate == 1 else f"{format_number(rate)} events/s"


def _log_axis(axis: Any, text: Callable[[float, int], str]) -> None:
    axis.set_major_formatter(_PlainLog(text))
    axis.set_minor_formatter(_PlainLog(text, labelOnlyBase=False))


def _scale_x(ax: Any, values: np.ndarray, *, ratio: float = 10.0) -> bool:
    """Log x when the points span more than a decade (doubling searches space them geometrically).

    With few distinct values the ticks are the values themselves, so each
    point can be read off the axis. Returns whether the axis is logarithmic.
    """
    v = values[np.isfinite(values) & (values > 0)]
    wide = bool(len(v)) and float(v.max()) / float(v.min()) > ratio
    if wide:
        ax.set_xscale("log")
    distinct = np.unique(v)
    if 0 < len(distinct) <= 8:
        ax.xaxis.set_major_locator(FixedLocator(distinct.tolist()))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.xaxis.set_major_formatter(FuncFormatter(_count_tick))
    elif wide:
        _log_axis(ax.xaxis, _count_tick)
    else:
        ax.xaxis.set_major_formatter(FuncFormatter(_count_tick))
        ax.xaxis.set_minor_formatter(NullFormatter())
    return wide


def _trend(ax: Any, x: np.ndarray, y: np.ndarray, status: np.ndarray, color: str, ls: str, *,
           positive: bool) -> None:
    """The line through the median of each N's valid runs; INVALID runs describe the harness, so are not joined."""
    keep = np.isfinite(x) & np.isfinite(y) & (status != Status.INVALID.value) & ((y > 0) if positive else True)
    if not keep.any():
        return
    line = pd.Series(y[keep]).groupby(x[keep]).median().sort_index()
    ax.plot(line.index.to_numpy(dtype=float), line.to_numpy(dtype=float), color=color, ls=ls, lw=1.3, alpha=0.9)


def _markers(ax: Any, x: np.ndarray, y: np.ndarray, status: np.ndarray, color: str, size: float, *,
             positive: bool) -> None:
    """Each run's verdict at a glance: PASS filled, FAIL a red cross, INVALID hollow."""
    ok = np.isfinite(x) & np.isfinite(y) & ((y > 0) if positive else True)
    styles = {Status.PASS.value: {"marker": "o", "color": color},
              Status.FAIL.value: {"marker": "X", "color": _FAIL_COLOR},
              Status.INVALID.value: {"marker": "D", "facecolors": "none", "edgecolors": color}}
    for name, style in styles.items():
        mask = ok & (status == name)
        if mask.any():
            ax.scatter(x[mask], y[mask], s=size, linewidths=1.1, zorder=3, **style)
    other = ok & ~np.isin(status, _STATUSES)
    if other.any():
        ax.scatter(x[other], y[other], s=size * 0.6, color="#999999", zorder=3)


def _mark_capacity(ax: Any, answer: CapacityAnswer, color: str, scale: float = 1.0) -> bool:
    """Vertical line at the capacity and the bracket up to the first fail (or harness limit) shaded."""
    upper = min((v for v in (answer.bracket[1], answer.harness_limit) if v is not None), default=None)
    if answer.capacity is None:
        return False
    ax.axvline(answer.capacity * scale, color=color, ls="--", lw=1.2, zorder=2)
    if upper is not None and upper > answer.capacity:
        ax.axvspan(answer.capacity * scale, upper * scale, color=color, alpha=0.12, lw=0, zorder=1)
    return True


def _legend(ax: Any, *, rates: Sequence[float], colors: Mapping[float, str], statuses: set[str],
            styles: Sequence[tuple[str, str]] = (), slo: float | None = None, capacity: bool = False,
            extra: Sequence[Line2D] = ()) -> None:
    """Proxy handles: colour = rate, line style = percentile, marker = verdict (a legend of every line would repeat)."""
    handles: list[Line2D] = []
    if len(rates) > 1:
        handles += [Line2D([], [], color=colors[r], lw=2, label=_plain(_rate_label(r))) for r in rates]
    handles += [Line2D([], [], color="#333333", ls=ls, lw=1.3, label=name) for name, ls in styles]
    if Status.PASS.value in statuses:
        handles.append(Line2D([], [], ls="none", marker="o", color="#555555", label="PASS"))
    if Status.FAIL.value in statuses:
        handles.append(Line2D([], [], ls="none", marker="X", color=_FAIL_COLOR, label="FAIL"))
    if Status.INVALID.value in statuses:
        handles.append(Line2D([], [], ls="none", marker="D", markerfacecolor="none", color="#555555",
                              label="INVALID (harness)"))
    if slo is not None:
        handles.append(Line2D([], [], color=_SLO_COLOR, ls="-.", lw=1, label=f"SLO {format_number(slo)} ms"))
    if capacity:
        handles.append(Line2D([], [], color="#555555", ls="--", lw=1.2, label="capacity (bracket shaded)"))
    handles += list(extra)
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)


def _drawable(group: pd.DataFrame, x: str, ys: Sequence[str]) -> pd.DataFrame:
    """Rows with an x and at least one positive y: what a log chart can show."""
    mask = group[x].notna() & (group[x] > 0) & (group[list(ys)].fillna(0) > 0).any(axis=1)
    return group[mask]


def _curve(ax: Any, g: pd.DataFrame, x: str, y: str, color: str, ls: str, size: float, *, positive: bool) -> None:
    """One rate's points of one figure: the trend through PASS/FAIL and a marker per verdict."""
    xs, ys, status = _arr(g[x]), _arr(g[y]), g["status"].to_numpy(dtype=str)
    _trend(ax, xs, ys, status, color, ls, positive=positive)
    _markers(ax, xs, ys, status, color, size, positive=positive)


def _by_rate(data: pd.DataFrame, rates: Sequence[float]) -> Iterator[tuple[float, pd.DataFrame]]:
    """The points of each rate that has any, in the order the rates were given."""
    for rate in rates:
        g = data[data["rate"] == rate]
        if not g.empty:
            yield rate, g


@_themed
def latency_vs_subscribers_svg(group: pd.DataFrame, *, mode: str, rates: Sequence[float], bound: float | None,
                               answers: Sequence[CapacityAnswer], salt: str) -> str | None:
    """p50/p99/p99.9 against N per rate, with the SLO bound and the capacity bracket: the sweep's main picture."""
    data = _drawable(group, "subscribers", [k for k, _, _ in _LATENCIES])
    if data.empty:
        return None
    colors = _rate_colors(mode, rates)
    fig, (ax,) = _figure(3.6)
    marked = False
    for rate, g in _by_rate(data, rates):
        for key, _name, ls in _LATENCIES:
            _curve(ax, g, "subscribers", key, colors[rate], ls, 30 if key == "p99" else 14, positive=True)
        for answer in answers:
            if answer.mode == mode and answer.rate == rate:
                marked = _mark_capacity(ax, answer, colors[rate]) or marked
    _latency_axes(ax, bound, _arr(data["subscribers"]), "subscribers (N)", "latency (ms)")
    present = [r for r in rates if (data["rate"] == r).any()]
    _legend(ax, rates=present, colors=colors, statuses=set(data["status"]),
            styles=[(name, ls) for _, name, ls in _LATENCIES], slo=bound, capacity=marked)
    return to_svg(fig, salt)


def _latency_axes(ax: Any, bound: float | None, x: np.ndarray, xlabel: str, ylabel: str) -> None:
    """A latency axis the same way in every sweep figure: log ms, the objective as a line."""
    if bound is not None:
        ax.axhline(bound, color=_SLO_COLOR, ls="-.", lw=1)
    ax.set_yscale("log")
    _log_axis(ax.yaxis, _ms_tick)
    _scale_x(ax, x)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)


@_themed
def p99_vs_offered_svg(group: pd.DataFrame, *, mode: str, rates: Sequence[float], bound: float | None,
                       salt: str) -> str | None:
    """p99 against offered deliveries/s (N × rate): puts every rate on one load axis."""
    data = _drawable(group, "offered_per_s", ["p99"])
    if data.empty:
        return None
    colors = _rate_colors(mode, rates)
    fig, (ax,) = _figure(3.2)
    for rate, g in _by_rate(data, rates):
        _curve(ax, g, "offered_per_s", "p99", colors[rate], "-", 30, positive=True)
    _latency_axes(ax, bound, _arr(data["offered_per_s"]), "offered deliveries/s (subscribers × rate)", "p99 (ms)")
    present = [r for r in rates if (data["rate"] == r).any()]
    _legend(ax, rates=present, colors=colors, statuses=set(data["status"]), slo=bound)
    return to_svg(fig, salt)


@_themed
def delivered_vs_offered_svg(group: pd.DataFrame, *, mode: str, rates: Sequence[float], salt: str) -> str | None:
    """Delivered against offered deliveries/s with y = x: where the target stops keeping up, the points fall below."""
    data = group[group["offered_per_s"].notna() & (group["offered_per_s"] > 0) & group["deliveries_per_s"].notna()]
    if data.empty:
        return None
    colors = _rate_colors(mode, rates)
    fig, (ax,) = _figure(3.2)
    offered = _arr(data["offered_per_s"])
    wide = _scale_x(ax, offered)
    positive = wide
    if wide:
        ax.set_yscale("log")
        _log_axis(ax.yaxis, _count_tick)
    else:
        ax.yaxis.set_major_formatter(FuncFormatter(_count_tick))
    for rate, g in _by_rate(data, rates):
        _curve(ax, g, "offered_per_s", "deliveries_per_s", colors[rate], "-", 30, positive=positive)
    lo, hi = float(np.nanmin(offered)), float(np.nanmax(offered))
    ax.plot([lo, hi], [lo, hi], color="#999999", ls=":", lw=1.2)
    if not wide:
        ax.set_ylim(bottom=0)
    ax.set_xlabel("offered deliveries/s (subscribers × rate)")
    ax.set_ylabel("delivered deliveries/s")
    present = [r for r in rates if (data["rate"] == r).any()]
    _legend(ax, rates=present, colors=colors, statuses=set(data["status"]),
            extra=[Line2D([], [], color="#999999", ls=":", lw=1.2, label="delivered = offered")])
    return to_svg(fig, salt)


def _heat_cell(cell: pd.DataFrame, bound: float) -> tuple[float | None, str]:
    """(p99 / bound, label) of one grid cell: the worst valid run, or why there is no number."""
    if cell.empty:
        return None, "not run"
    valid = cell[cell["status"] != Status.INVALID.value]
    if valid.empty:
        return None, "INVALID"
    p99 = valid["p99"].dropna()
    if p99.empty:
        return None, "no p99"
    ratio = float(p99.max()) / bound
    failed = (valid["status"] == Status.FAIL.value).any()
    return ratio, format_number(ratio) + ("\nFAIL" if failed else "")


@_themed
def heatmap_svg(group: pd.DataFrame, *, grid: Sequence[int], rates: Sequence[float], bound: float | None,
                salt: str) -> str | None:
    """p99 / SLO bound over N × rate, diverging at 1 (log scale): the grid's shape of "fits" at a glance.

    Cells whose runs were all INVALID are hatched (the harness limited
    them, so they have no colour); cells not run yet say so.
    """
    if bound is None or bound <= 0 or len(grid) < 2 or len(rates) < 2 or group.empty:
        return None
    values = np.full((len(grid), len(rates)), np.nan)
    labels: list[list[str]] = [["" for _ in rates] for _ in grid]
    for i, n in enumerate(grid):
        for j, rate in enumerate(rates):
            ratio, labels[i][j] = _heat_cell(group[(group["subscribers"] == n) & (group["rate"] == rate)], bound)
            if ratio is not None and ratio > 0:
                values[i, j] = math.log10(ratio)
    finite = values[np.isfinite(values)]
    limit = min(2.0, max(0.3, float(np.abs(finite).max()) if len(finite) else 0.3))
    cmap = colormaps["RdYlGn_r"].with_extremes(bad="#f3f3f3")
    fig, (ax,) = _figure(min(6.0, max(2.4, 0.45 * len(grid) + 1.3)))
    image = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, norm=Normalize(-limit, limit), origin="lower",
                      aspect="auto")
    for i in range(len(grid)):
        for j in range(len(rates)):
            text = labels[i][j]
            if text == "INVALID":
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///", edgecolor="#777777",
                                       lw=0))
            dark = np.isfinite(values[i, j]) and abs(values[i, j]) > 0.6 * limit
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if dark else "#1b1f24")
    ax.set_xticks(range(len(rates)), [_rate_label(r) for r in rates])
    ax.set_yticks(range(len(grid)), [format_number(n) for n in grid])
    ax.grid(False)
    ax.set_xlabel("rate")
    ax.set_ylabel("subscribers (N)")
    bar = fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02)
    ticks = [t for t in (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 10, 20, 100) if abs(math.log10(t)) <= limit + 1e-9]
    bar.set_ticks([math.log10(t) for t in ticks], labels=[format_number(t) for t in ticks])
    bar.set_label(f"p99 / SLO bound ({format_number(bound)} ms)")
    return to_svg(fig, salt)


# --------------------------------------------------------------------------- notes and tables


def analysis_note(result: Mapping[str, Any], mode: str, rate: float, *, largest: float | None = None) -> str:
    """The knee and USL fit of one (mode, rate) in words, labelled as information (they do not decide capacity).

    A USL peak further than 10× beyond ``largest`` (the largest N measured)
    is an extrapolation of a nearly linear fit, so it is not quoted as a number.
    """
    where = f"{mode} at {_rate_label(rate)}"
    knee, usl = result.get("knee"), result.get("usl")
    parts = []
    if knee:
        parts.append(f"knee at about N = {format_number(round(knee['subscribers']))} "
                     f"(p99 {format_number(knee['latency_ms'])} ms, score {format_number(knee['score'])})")
    if usl:
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
    return f"{where}: {'; '.join(parts)}. {_ANALYSIS_TAIL}"


def _analysis(index: Mapping[str, Any], mode: str, rate: float, largest: float | None) -> str:
    try:
        return analysis_note(analyse(index, mode=mode, rate=rate), mode, rate, largest=largest)
    except (ValueError, TypeError, KeyError, ArithmeticError) as exc:  # odd points: skip the extra, keep the page
        return f"{mode} at {_rate_label(rate)}: no knee or USL fit ({exc}). {_ANALYSIS_TAIL}"


def _answers_table(answers: Sequence[CapacityAnswer], slug: str) -> dict[str, Any] | None:
    if not answers:
        return None
    frame = pd.DataFrame([{"rate": _rate_label(a.rate), "status": a.status, "capacity": a.capacity,
                           "fail": a.bracket[1], "limit": a.harness_limit,
                           "why": a.fail_reason or a.limit_reason or "", "notes": "; ".join(a.notes)}
                          for a in answers])
    cols = [Column("rate", "rate"), Column("status", "answer"), Column("capacity", "capacity (N)", "int"),
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
         "Filled: PASS; red ✕: FAIL; hollow ◇: INVALID (the harness, not the target, could not keep up; not "
         "joined). Dash-dot line: the SLO bound; dashed vertical: the capacity, shaded up to the first fail."),
        ("offered", p99_vs_offered_svg, {"mode": mode, "bound": bound},
         "p99 against offered deliveries/s (subscribers × rate): every rate on one load axis."),
        ("throughput", delivered_vs_offered_svg, {"mode": mode},
         "Delivered against offered deliveries/s; dotted: delivered = offered. Points below it did not keep up."),
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
        notes.append("Sweep not finished: " + ", ".join(f"{a.mode} at {_rate_label(a.rate)}" for a in pending)
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
        generated=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
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

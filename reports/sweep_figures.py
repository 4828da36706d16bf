"""The sweep page's figures: latency and throughput against load, and the p99 / SLO heat map.

Each function takes the points of one mode as a frame (:func:`reports.sweep.points_frame`) and returns inline
SVG, or ``None`` when there is nothing to draw. They are drawn the way every report figure is: with the style,
figure size and serialisation of :mod:`reports.figures` (:func:`~reports.figures.themed`,
:func:`~reports.figures.new_figure`, :func:`~reports.figures.to_svg`), so the run report and the sweep page
look alike and embed figures alike. Colour means rate, line style the percentile, marker the verdict.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.axis import Axis
from matplotlib.colors import Normalize
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.ticker import FixedLocator, FuncFormatter, LogFormatter, NullFormatter, NullLocator

from deliverybench.core.slo import format_number
from deliverybench.core.sweep import CapacityAnswer, Status

from .figures import EXTRA_COLORS, MODE_COLORS, ms_tick, new_figure, plain, themed, to_svg

__all__ = [
    "latency_vs_subscribers_svg",
    "p99_vs_offered_svg",
    "delivered_vs_offered_svg",
    "heatmap_svg",
    "rate_label",
    "trend_points",
    "legend_handles",
]

_Floats = npt.NDArray[np.float64]
_Texts = npt.NDArray[np.str_]

_FAIL_COLOR = "#c0392b"
_SLO_COLOR = "#b42318"
_LATENCIES = (("p50", "p50", ":"), ("p99", "p99", "-"), ("p99_9", "p99.9", "--"))
_STATUSES = (Status.PASS.value, Status.FAIL.value, Status.INVALID.value)
#: the capacity: a wide translucent solid vertical line, unlike every percentile's thin horizontal-ish one
_CAPACITY_LINE: dict[str, Any] = {"ls": "-", "lw": 5.0, "alpha": 0.3, "zorder": 2}


def _arr(series: pd.Series) -> _Floats:
    return series.to_numpy(dtype=float, na_value=np.nan)


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
    first = MODE_COLORS.get(mode, EXTRA_COLORS[0])
    rest = [c for c in (*MODE_COLORS.values(), *EXTRA_COLORS) if c not in (first, MODE_COLORS["burst"])]
    palette = [first, *rest]
    return {rate: palette[i % len(palette)] for i, rate in enumerate(rates)}


def rate_label(rate: float) -> str:
    return f"{format_number(rate)} event/s" if rate == 1 else f"{format_number(rate)} events/s"


def _log_axis(axis: Axis, text: Callable[[float, int], str]) -> None:
    axis.set_major_formatter(_PlainLog(text))
    axis.set_minor_formatter(_PlainLog(text, labelOnlyBase=False))


def _scale_x(ax: Axes, values: _Floats, *, ratio: float = 10.0) -> bool:
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


def _trend(ax: Axes, x: _Floats, y: _Floats, status: _Texts, color: str, ls: str, *,
           positive: bool, higher_is_better: bool = False) -> None:
    """The line through the worst of each N's valid runs; INVALID runs describe the harness, so are not joined.

    The worst run (highest latency, lowest throughput), not the median: an N
    holds only if every one of its runs passed, so the line passes through
    the run the capacity answer rests on -- and through a measured point,
    where a median of two repeats would pass between them.
    """
    xs, ys = trend_points(x, y, status, positive=positive, higher_is_better=higher_is_better)
    if len(xs):
        ax.plot(xs, ys, color=color, ls=ls, lw=1.3, alpha=0.9)


def trend_points(x: _Floats, y: _Floats, status: _Texts, *, positive: bool,
                 higher_is_better: bool = False) -> tuple[_Floats, _Floats]:
    """The vertices of :func:`_trend`'s line: each N once, at the worst of its valid runs."""
    keep = np.isfinite(x) & np.isfinite(y) & (status != Status.INVALID.value) & ((y > 0) if positive else True)
    if not keep.any():
        return np.array([], dtype=float), np.array([], dtype=float)
    grouped = pd.Series(y[keep]).groupby(x[keep])
    line = (grouped.min() if higher_is_better else grouped.max()).sort_index()
    return line.index.to_numpy(dtype=float), line.to_numpy(dtype=float)


def _markers(ax: Axes, x: _Floats, y: _Floats, status: _Texts, color: str, size: float, *,
             positive: bool) -> None:
    """Each run's verdict at a glance: PASS filled, FAIL a red cross, INVALID hollow."""
    ok = np.isfinite(x) & np.isfinite(y) & ((y > 0) if positive else True)
    styles: dict[str, dict[str, Any]] = {
        Status.PASS.value: {"marker": "o", "color": color},
        Status.FAIL.value: {"marker": "X", "color": _FAIL_COLOR},
        Status.INVALID.value: {"marker": "D", "facecolors": "none", "edgecolors": color},
    }
    for name, style in styles.items():
        mask = ok & (status == name)
        if mask.any():
            ax.scatter(x[mask], y[mask], s=size, linewidths=1.1, zorder=3, **style)
    other = ok & ~np.isin(status, _STATUSES)
    if other.any():
        ax.scatter(x[other], y[other], s=size * 0.6, color="#999999", zorder=3)


def _mark_capacity(ax: Axes, answer: CapacityAnswer, color: str, scale: float = 1.0) -> bool:
    """Vertical line at the capacity and the bracket up to the first fail (or harness limit) shaded."""
    upper = min((v for v in (answer.bracket[1], answer.harness_limit) if v is not None), default=None)
    if answer.capacity is None:
        return False
    ax.axvline(answer.capacity * scale, **_CAPACITY_LINE, color=color)
    if upper is not None and upper > answer.capacity:
        ax.axvspan(answer.capacity * scale, upper * scale, color=color, alpha=0.12, lw=0, zorder=1)
    return True


def _legend(ax: Axes, **kwargs: Any) -> None:
    """The figure's legend, right of the axes (see :func:`legend_handles`)."""
    handles = legend_handles(**kwargs)
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)


def legend_handles(*, rates: Sequence[float], colors: Mapping[float, str], statuses: set[str],
                   styles: Sequence[tuple[str, str]] = (), slo: float | None = None, capacity: bool = False,
                   extra: Sequence[Line2D] = ()) -> list[Line2D]:
    """Proxy handles: colour = rate, line style = percentile, marker = verdict (a legend of every line would repeat)."""
    handles: list[Line2D] = []
    if len(rates) > 1:
        handles += [Line2D([], [], color=colors[r], lw=2, label=plain(rate_label(r))) for r in rates]
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
    if capacity:  # a vertical bar, as drawn: no percentile's line style can be mistaken for it
        handles.append(Line2D([], [], ls="none", marker="|", markersize=16, markeredgewidth=_CAPACITY_LINE["lw"],
                              color="#555555", alpha=_CAPACITY_LINE["alpha"], label="capacity (bracket shaded)"))
    return handles + list(extra)


def _drawable(group: pd.DataFrame, x: str, ys: Sequence[str]) -> pd.DataFrame:
    """Rows with an x and at least one positive y: what a log chart can show."""
    mask = group[x].notna() & (group[x] > 0) & (group[list(ys)].fillna(0) > 0).any(axis=1)
    return group[mask]


def _curve(ax: Axes, g: pd.DataFrame, x: str, y: str, color: str, ls: str, size: float, *, positive: bool,
           higher_is_better: bool = False) -> None:
    """One rate's points of one figure: the trend through PASS/FAIL and a marker per run and verdict."""
    xs, ys, status = _arr(g[x]), _arr(g[y]), g["status"].to_numpy(dtype=str)
    _trend(ax, xs, ys, status, color, ls, positive=positive, higher_is_better=higher_is_better)
    _markers(ax, xs, ys, status, color, size, positive=positive)


def _by_rate(data: pd.DataFrame, rates: Sequence[float]) -> Iterator[tuple[float, pd.DataFrame]]:
    """The points of each rate that has any, in the order the rates were given."""
    for rate in rates:
        g = data[data["rate"] == rate]
        if not g.empty:
            yield rate, g


@themed
def latency_vs_subscribers_svg(group: pd.DataFrame, *, mode: str, rates: Sequence[float], bound: float | None,
                               answers: Sequence[CapacityAnswer], salt: str) -> str | None:
    """p50/p99/p99.9 against N per rate, with the SLO bound and the capacity bracket: the sweep's main picture."""
    data = _drawable(group, "subscribers", [k for k, _, _ in _LATENCIES])
    if data.empty:
        return None
    colors = _rate_colors(mode, rates)
    fig, (ax,) = new_figure(3.6)
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


def _latency_axes(ax: Axes, bound: float | None, x: _Floats, xlabel: str, ylabel: str) -> None:
    """A latency axis the same way in every sweep figure: log ms, the objective as a line."""
    if bound is not None:
        ax.axhline(bound, color=_SLO_COLOR, ls="-.", lw=1)
    ax.set_yscale("log")
    _log_axis(ax.yaxis, ms_tick)
    _scale_x(ax, x)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)


@themed
def p99_vs_offered_svg(group: pd.DataFrame, *, mode: str, rates: Sequence[float], bound: float | None,
                       salt: str) -> str | None:
    """p99 against offered deliveries/s (N × rate): puts every rate on one load axis.

    ``None`` with fewer than two rates measured: one rate's offered load is
    N × a constant, so the figure would repeat the latency one.
    """
    data = _drawable(group, "offered_per_s", ["p99"])
    if data["rate"].nunique() < 2:
        return None
    colors = _rate_colors(mode, rates)
    fig, (ax,) = new_figure(3.2)
    for rate, g in _by_rate(data, rates):
        _curve(ax, g, "offered_per_s", "p99", colors[rate], "-", 30, positive=True)
    _latency_axes(ax, bound, _arr(data["offered_per_s"]), "offered deliveries/s (subscribers × rate)", "p99 (ms)")
    present = [r for r in rates if (data["rate"] == r).any()]
    _legend(ax, rates=present, colors=colors, statuses=set(data["status"]), slo=bound)
    return to_svg(fig, salt)


@themed
def delivered_vs_offered_svg(group: pd.DataFrame, *, mode: str, rates: Sequence[float], salt: str) -> str | None:
    """Delivered against offered deliveries/s with y = x: where the target stops keeping up, the points fall below."""
    data = group[group["offered_per_s"].notna() & (group["offered_per_s"] > 0) & group["deliveries_per_s"].notna()]
    if data.empty:
        return None
    colors = _rate_colors(mode, rates)
    fig, (ax,) = new_figure(3.2)
    offered = _arr(data["offered_per_s"])
    wide = _scale_x(ax, offered)
    positive = wide
    if wide:
        ax.set_yscale("log")
        _log_axis(ax.yaxis, _count_tick)
    else:
        ax.yaxis.set_major_formatter(FuncFormatter(_count_tick))
    for rate, g in _by_rate(data, rates):
        _curve(ax, g, "offered_per_s", "deliveries_per_s", colors[rate], "-", 30, positive=positive,
               higher_is_better=True)
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


@themed
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
    fig, (ax,) = new_figure(min(6.0, max(2.4, 0.45 * len(grid) + 1.3)))
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
    ax.set_xticks(range(len(rates)), [rate_label(r) for r in rates])
    ax.set_yticks(range(len(grid)), [format_number(n) for n in grid])
    ax.grid(False)
    ax.set_xlabel("rate")
    ax.set_ylabel("subscribers (N)")
    bar = fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02)
    ticks = [t for t in (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 10, 20, 100) if abs(math.log10(t)) <= limit + 1e-9]
    bar.set_ticks([math.log10(t) for t in ticks], labels=[format_number(t) for t in ticks])
    bar.set_label(f"p99 / SLO bound ({format_number(bound)} ms)")
    return to_svg(fig, salt)

"""Figures: one function per figure, each a function of a frame, returning inline SVG.

Every function takes a frame built by :mod:`reports.frames` and returns an
SVG string ready to be placed in HTML (no XML prolog, no DOCTYPE, no RDF
metadata, so no URLs), or ``None`` when the frame has nothing to draw.
Colours follow the mode (push, callback, poll, burst) and line styles the
run, so the same mode looks the same in every figure.

Matplotlib runs headless on the Agg backend and figures are created with
:class:`matplotlib.figure.Figure` directly (no pyplot global state). Text is
drawn as paths, so a figure looks the same without any font installed, and
labels taken from documents cannot inject markup.

The style (:func:`themed`, :func:`new_figure`), label cleaning (:func:`plain`)
and serialisation (:func:`to_svg`) are shared with the sweep page's figures
in :mod:`reports.sweep_figures`, so every figure is drawn and embedded one way.
"""

from __future__ import annotations

import functools
import io
import re
from collections.abc import Callable, Iterable
from typing import Any, ParamSpec, TypeVar, cast

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402  (after use("Agg"); kept for users who want plt.close etc.)
import numpy as np  # noqa: E402
import numpy.typing as npt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator  # noqa: E402
from matplotlib.typing import LegendLocType, RcKeyType  # noqa: E402

__all__ = [
    "to_svg",
    "themed",
    "new_figure",
    "plain",
    "ms_tick",
    "spectrum_svg",
    "latency_over_time_svg",
    "throughput_over_time_svg",
    "connections_svg",
    "errors_over_time_svg",
    "fanout_svg",
    "resources_svg",
    "MODE_COLORS",
    "EXTRA_COLORS",
]

_ = plt  # pyplot is imported only so the backend choice above is the one it sees

MODE_COLORS = {"push": "#1f77b4", "callback": "#ff7f0e", "poll": "#2ca02c", "burst": "#d62728"}
#: colours for modes (or rates) beyond the four named ones
EXTRA_COLORS = ["#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
_RUN_STYLES = ["-", "--", ":", "-."]
_WIDTH_IN = 9.0
_RC: dict[RcKeyType, Any] = {
    "svg.fonttype": "path",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "text.usetex": False,
}

_PROLOG = re.compile(r"\A.*?(?=<svg[\s>])", re.S)
_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.S)


def to_svg(fig: Figure, salt: str) -> str:
    """Serialise ``fig`` as inline SVG: no prolog, no metadata, ids salted per figure.

    Several SVGs share one HTML document, so element ids (clip paths,
    markers) are made unique per figure with ``svg.hashsalt``.
    """
    buf = io.StringIO()
    rc: dict[RcKeyType, Any] = {"svg.hashsalt": salt, **_RC}
    with matplotlib.rc_context(rc):
        fig.savefig(buf, format="svg", metadata={"Date": None})  # constrained layout already fits legends
    text = _METADATA.sub("", _PROLOG.sub("", buf.getvalue(), count=1), count=1)
    return text.strip()


_P = ParamSpec("_P")
_R = TypeVar("_R")


def new_figure(height: float, rows: int = 1, sharex: bool = True) -> tuple[Figure, list[Axes]]:
    """A report-width figure with ``rows`` stacked axes, in the report's style."""
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(_WIDTH_IN, height), layout="constrained")
        axes = cast(list[Axes], fig.subplots(rows, 1, sharex=sharex, squeeze=False)[:, 0].tolist())
    return fig, axes


def themed(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """Run a figure function with the report's matplotlib settings (not touching global rcParams)."""

    @functools.wraps(fn)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with matplotlib.rc_context(_RC):
            return fn(*args, **kwargs)

    return wrapper


def plain(text: object, limit: int = 60) -> str:
    """A label safe for matplotlib: no mathtext, bounded length."""
    s = str(text)
    if len(s) > limit:
        s = s[: limit - 1] + "…"
    return s.replace("$", r"\$")


def _styles(frame: pd.DataFrame, distinct_colors: bool = False) -> dict[str, tuple[str, str]]:
    """label -> (colour by mode, line style by run), in order of appearance.

    With ``distinct_colors`` and several runs, every label gets its own
    colour instead (for figures that already use the line style for meaning).
    """
    if distinct_colors and frame["run"].nunique() > 1:
        palette = [*MODE_COLORS.values(), *EXTRA_COLORS]
        labels = list(dict.fromkeys(frame["label"]))
        return {label: (palette[i % len(palette)], "-") for i, label in enumerate(labels)}
    runs: list[str] = []
    extra: dict[str, str] = {}
    out: dict[str, tuple[str, str]] = {}
    for label, mode, run in frame[["label", "mode", "run"]].drop_duplicates().itertuples(index=False):
        if run not in runs:
            runs.append(run)
        color = MODE_COLORS.get(mode)
        if color is None:
            color = extra.setdefault(mode, EXTRA_COLORS[len(extra) % len(EXTRA_COLORS)])
        out[label] = (color, _RUN_STYLES[runs.index(run) % len(_RUN_STYLES)])
    return out


def _labels(frame: pd.DataFrame) -> Iterable[tuple[str, pd.DataFrame]]:
    order = list(dict.fromkeys(frame["label"]))
    groups = dict(tuple(frame.groupby("label", sort=False)))
    for label in order:
        yield label, groups[label]


def _widths(n: int, base: float = 1.0, widest: float = 4.0) -> list[float]:
    """Line widths, widest first, so identical series drawn on top of each other all stay visible."""
    step = min(1.0, (widest - base) / max(n - 1, 1))
    return [base + step * (n - 1 - i) for i in range(n)]


def _legend(ax: Axes, inside: LegendLocType = "upper left", ncols: int = 1, **kw: Any) -> None:
    """Legend inside the axes when it is small, to the right of it when it would cover data."""
    handles, labels = ax.get_legend_handles_labels()
    if not handles:
        return
    if len(labels) <= 6 and max(len(x) for x in labels) <= 24:
        ax.legend(loc=inside, ncols=min(ncols, len(labels)), frameon=False, **kw)
    else:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, **kw)


def _log_if_wide(ax: Axes, values: npt.NDArray[np.float64], ratio: float = 30.0) -> None:
    values = values[np.isfinite(values) & (values > 0)]
    if len(values) and values.max() / max(values.min(), 1e-9) > ratio:
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(ms_tick))


def ms_tick(value: float, _pos: int | None) -> str:
    """A latency tick in ms, seconds from 1,000 ms on."""
    if value >= 1000:
        return f"{value / 1000:g} s"
    return f"{value:g}"


# --------------------------------------------------------------------------- spectrum

_SPECTRUM_TICKS = [(1.0, "0%"), (10.0, "90%"), (100.0, "99%"), (1e3, "99.9%"), (1e4, "99.99%"),
                   (1e5, "99.999%"), (1e6, "99.9999%"), (1e7, "99.99999%")]


@themed
def spectrum_svg(spectrum: pd.DataFrame) -> str | None:
    """Latency by percentile (x: 1/(1-p) on a log axis, labelled 0 % … 99.999 %), all modes on one chart."""
    if spectrum.empty:
        return None
    styles = _styles(spectrum)
    fig, (ax,) = new_figure(3.6)
    top = 10.0
    for label, group in _labels(spectrum):
        color, ls = styles[label]
        metric = group["metric"].iloc[0]
        name = plain(label if metric == "delivery" else f"{label} ({metric})")
        ax.step(group["inverse_tail"], group["value_ms"], where="post", color=color, linestyle=ls, lw=1.4, label=name)
        top = max(top, float(group["inverse_tail"].max()))
    ax.set_xscale("log")
    limit = 10 ** np.ceil(np.log10(top))
    ticks = [(x, t) for x, t in _SPECTRUM_TICKS if x <= limit]
    ax.xaxis.set_major_locator(FixedLocator([x for x, _ in ticks]))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: dict(ticks).get(v, "")))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlim(1.0, limit)
    _log_if_wide(ax, spectrum["value_ms"].to_numpy(dtype=float), ratio=50.0)
    ax.set_xlabel("percentile")
    ax.set_ylabel("latency (ms)")
    _legend(ax, "lower right")
    return to_svg(fig, "spectrum")


# --------------------------------------------------------------------------- over time


@themed
def latency_over_time_svg(series: pd.DataFrame) -> str | None:
    """p50 (solid) and p99 (dashed) latency per second, with the p50–p99 band shaded."""
    data = series.dropna(subset=["p50_ms"]) if "p50_ms" in series else series.iloc[0:0]
    if data.empty:
        return None
    styles = _styles(data, distinct_colors=True)
    fig, (ax,) = new_figure(3.2)
    for label, group in _labels(data):
        color, _ls = styles[label]
        t = group["t_s"].to_numpy(dtype=float)
        p50 = group["p50_ms"].to_numpy(dtype=float)
        p99 = group["p99_ms"].to_numpy(dtype=float)
        ax.fill_between(t, p50, p99, color=color, alpha=0.15, lw=0, step="mid")
        ax.plot(t, p50, color=color, lw=1.2, drawstyle="steps-mid", label=f"{plain(label)} p50")
        ax.plot(t, p99, color=color, lw=1.0, ls="--", drawstyle="steps-mid", label=f"{plain(label)} p99")
    _log_if_wide(ax, np.concatenate([data["p50_ms"].to_numpy(dtype=float), data["p99_ms"].to_numpy(dtype=float)]))
    ax.set_xlabel("seconds since stream start")
    ax.set_ylabel("latency (ms)")
    _legend(ax, "upper left", ncols=3)
    return to_svg(fig, "latency-time")


@themed
def throughput_over_time_svg(series: pd.DataFrame) -> str | None:
    """Deliveries per second (top) and events published per second (bottom)."""
    if series.empty:
        return None
    styles = _styles(series)
    fig, (top, bottom) = new_figure(4.2, rows=2)
    widths = _widths(len(styles))
    for (label, group), lw in zip(_labels(series), widths):
        color, ls = styles[label]
        t = group["t_s"].to_numpy(dtype=float)
        top.plot(t, group["deliveries"].to_numpy(dtype=float), color=color, ls=ls, lw=lw, alpha=0.85,
                 drawstyle="steps-mid", label=plain(label))
        bottom.plot(t, group["published"].to_numpy(dtype=float), color=color, ls=ls, lw=lw, alpha=0.85,
                    drawstyle="steps-mid", label=plain(label))
    top.set_ylabel("deliveries/s")
    bottom.set_ylabel("published/s")
    bottom.set_xlabel("seconds since stream start")
    _legend(top, "lower center", ncols=4)
    return to_svg(fig, "throughput-time")


@themed
def connections_svg(series: pd.DataFrame) -> str | None:
    """Subscriber sessions / registrations open per second."""
    if "connected" not in series:
        return None
    data = series.dropna(subset=["connected"])
    if data.empty:
        return None
    styles = _styles(data)
    fig, (ax,) = new_figure(2.6)
    for (label, group), lw in zip(_labels(data), _widths(len(styles))):
        color, ls = styles[label]
        ax.plot(group["t_s"].to_numpy(dtype=float), group["connected"].to_numpy(dtype=float), color=color, ls=ls,
                lw=lw, alpha=0.85, drawstyle="steps-mid", label=plain(label))
    ax.set_ylim(bottom=0)
    ax.set_xlabel("seconds since stream start")
    ax.set_ylabel("connected")
    _legend(ax, "lower center", ncols=4)
    return to_svg(fig, "connections-time")


@themed
def errors_over_time_svg(errors_series: pd.DataFrame) -> str | None:
    """Errors per second, one marker series per (mode, kind)."""
    if errors_series.empty:
        return None
    styles = _styles(errors_series)
    markers = ["o", "s", "^", "D", "v", "P", "X", "*"]
    fig, (ax,) = new_figure(2.6)
    kinds = list(dict.fromkeys(errors_series["kind"]))
    for (label, kind), group in errors_series.groupby(["label", "kind"], sort=False):
        color, _ls = styles[str(label)]
        marker = markers[kinds.index(kind) % len(markers)]
        ax.plot(group["t_s"].to_numpy(dtype=float), group["count"].to_numpy(dtype=float), ls="none",
                marker=marker, ms=4, color=color, alpha=0.85, label=plain(f"{label}: {kind}", 50))
    ax.set_ylim(bottom=0)
    ax.set_xlabel("seconds since stream start")
    ax.set_ylabel("errors/s")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    return to_svg(fig, "errors-time")


# --------------------------------------------------------------------------- fan-out


@themed
def fanout_svg(fanout: pd.DataFrame) -> str | None:
    """Fan-out time per event against its due time.

    Incomplete events (fan-out null: some expected subscriber never got it)
    have no y value; they are drawn as ✕ in a strip above the chart, one
    lane per mode, so they neither vanish nor pose as slow events.
    """
    if fanout.empty:
        return None
    styles = _styles(fanout)
    labels = list(dict.fromkeys(fanout["label"]))
    missing_any = bool(fanout["incomplete"].any())
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(_WIDTH_IN, 3.8 if missing_any else 3.4), layout="constrained")
        if missing_any:
            strip, ax = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [1, 6]})
        else:
            strip, ax = None, fig.subplots(1, 1)
    for label, group in _labels(fanout):
        color, _ls = styles[label]
        done = group[~group["incomplete"]]
        big = len(done) > 3000
        ax.scatter(done["t_s"].to_numpy(dtype=float), done["fanout_ms"].to_numpy(dtype=float), s=4 if big else 7,
                   color=color, alpha=0.5 if big else 0.7, lw=0, label=plain(label), rasterized=big)
        missing = group[group["incomplete"]]
        if strip is not None and len(missing):
            lane = labels.index(label)
            strip.scatter(missing["t_s"].to_numpy(dtype=float), np.full(len(missing), lane), marker="x", s=14,
                          color=color, lw=0.9, rasterized=len(missing) > 3000,
                          label=plain(f"{label}: {len(missing):,} incomplete"))
    if strip is not None:
        strip.set_ylim(-0.7, len(labels) - 0.3)
        strip.invert_yaxis()
        strip.set_yticks([])
        strip.set_ylabel("incomplete", rotation=0, ha="right", va="center")
        strip.grid(False, axis="y")
        strip.spines["left"].set_visible(False)
        strip.tick_params(axis="x", labelbottom=False)
        strip.legend(loc="upper left", bbox_to_anchor=(1.0, 1.15), frameon=False, markerscale=1.5)
    _log_if_wide(ax, fanout["fanout_ms"].to_numpy(dtype=float))
    ax.set_xlabel("event due time, seconds since stream start")
    ax.set_ylabel("fan-out (ms)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, markerscale=2)
    return to_svg(fig, "fanout")


# --------------------------------------------------------------------------- resources


@themed
def resources_svg(by_role: pd.DataFrame) -> str | None:
    """CPU % (top) and RSS (bottom) per role over time; target solid, harness dashed."""
    if by_role.empty:
        return None
    styles = _styles(by_role)
    fig, (cpu, rss) = new_figure(4.2, rows=2)
    for (label, role), group in by_role.groupby(["label", "role"], sort=False):
        color, _ls = styles[str(label)]
        ls = "-" if role == "target" else "--"
        t = group["t_s"].to_numpy(dtype=float)
        cpu.plot(t, group["cpu_percent"].to_numpy(dtype=float), color=color, ls=ls, lw=1.1,
                 label=plain(f"{label} {role}"))
        rss.plot(t, group["rss_bytes"].to_numpy(dtype=float) / 1e6, color=color, ls=ls, lw=1.1)
    cpu.axhline(100.0, color="#999", lw=0.8, ls=":")
    cpu.set_ylabel("CPU % (100 = 1 core)")
    rss.set_ylabel("RSS (MB)")
    rss.set_xlabel("seconds since stream start")
    cpu.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    return to_svg(fig, "resources")

"""Figures: one function per figure, each a function of a frame, returning inline SVG.

Every function takes a frame built by :mod:`reports.frames` and returns an
SVG string ready to be placed in HTML (no XML prolog, no DOCTYPE, no RDF
metadata, so no URLs), or ``None`` when the frame has nothing to draw.
Colours follow the mode (push, sse, longpoll, callback, poll, burst) and line styles the
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

MODE_COLORS = {"push": "#1f77b4", "sse": "#9467bd", "longpoll": "#8c564b", "callback": "#ff7f0e", "poll": "#2ca02c",
               "burst": "#d62728"}
#: colours for modes (or rates) beyond the named ones
EXTRA_COLORS = ["#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#aec7e8", "#ffbb78"]
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


def _centres(group: pd.DataFrame) -> npt.NDArray[np.float64]:
    """The middle of each row's one-second bin (``t_s`` is where the bin begins)."""
    return group["t_s"].to_numpy(dtype=float) + 0.5


def _steps(group: pd.DataFrame, column: str) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """x and y for ``drawstyle="steps-post"``: each value held across its whole bin, edge to edge."""
    t = group["t_s"].to_numpy(dtype=float)
    y = group[column].to_numpy(dtype=float)
    if not len(t):
        return t, y
    return np.append(t, t[-1] + 1.0), np.append(y, y[-1])


def _stream_window(ax: Axes, stream_s: float | None, gid: str) -> None:
    """Shade the time before the first due time and after the schedule's end (the drain), and draw a line at 0.

    The line carries ``gid`` (``…-t0``) so a test can find where 0 is in the SVG.
    """
    ax.axvspan(-1e6, 0.0, color="#8a94a3", alpha=0.10, lw=0, zorder=0)
    if stream_s:
        ax.axvspan(stream_s, 1e6, color="#8a94a3", alpha=0.10, lw=0, zorder=0)
    line = ax.axvline(0.0, color="#8a94a3", lw=0.8, ls=":", zorder=1)
    line.set_gid(f"{gid}-t0")


def _per_second(ax: Axes, group: pd.DataFrame, column: str, color: str, ls: str, lw: float, label: str,
                gid: str) -> None:
    """One per-second series: a step across each bin, a filled dot per full second, a hollow one per partial
    second (a bin the stream starts or ends inside, so its count is not a full second's)."""
    x, y = _centres(group), group[column].to_numpy(dtype=float)
    partial = group["partial"].to_numpy(dtype=bool) if "partial" in group else np.zeros(len(y), dtype=bool)
    line, = ax.plot(*_steps(group, column), color=color, ls=ls, lw=lw, alpha=0.85, drawstyle="steps-post",
                    label=label)
    line.set_gid(gid)
    ax.plot(x[~partial], y[~partial], ls="none", marker="o", ms=3.2, color=color, alpha=0.9)
    if partial.any():
        hollow, = ax.plot(x[partial], y[partial], ls="none", marker="o", ms=5, mfc="white", mec=color, mew=1.2)
        hollow.set_gid(f"{gid}-partial")


def _partial_key(ax: Axes) -> None:
    """Legend entries for the markers and the shading (on the axes that carries the legend)."""
    ax.plot([], [], ls="none", marker="o", ms=5, mfc="white", mec="#555", mew=1.2, label="partial second")
    ax.fill_between([], [], color="#8a94a3", alpha=0.25, lw=0, label="before the stream / drain")


@themed
def latency_over_time_svg(series: pd.DataFrame, stream_s: float | None = None) -> str | None:
    """p50 (solid) and p99 (dashed) latency per second, with the p50–p99 band shaded."""
    data = series.dropna(subset=["p50_ms"]) if "p50_ms" in series else series.iloc[0:0]
    if data.empty:
        return None
    styles = _styles(data, distinct_colors=True)
    fig, (ax,) = new_figure(3.2)
    _stream_window(ax, stream_s, "latency")
    for label, group in _labels(data):
        color, _ls = styles[label]
        t, p50 = _steps(group, "p50_ms")
        _t, p99 = _steps(group, "p99_ms")
        ax.fill_between(t, p50, p99, color=color, alpha=0.15, lw=0, step="post")
        ax.plot(t, p50, color=color, lw=1.2, drawstyle="steps-post", label=f"{plain(label)} p50")
        ax.plot(t, p99, color=color, lw=1.0, ls="--", drawstyle="steps-post", label=f"{plain(label)} p99")
    _log_if_wide(ax, np.concatenate([data["p50_ms"].to_numpy(dtype=float), data["p99_ms"].to_numpy(dtype=float)]))
    ax.set_xlim(*_time_limits(series))
    ax.set_xlabel("seconds since the first due time")
    ax.set_ylabel("latency (ms)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    return to_svg(fig, "latency-time")


def _time_limits(*frames: pd.DataFrame) -> tuple[float, float]:
    """The x range of the bins of ``frames``, edge to edge."""
    lows = [float(f["t_s"].min()) for f in frames if len(f)]
    highs = [float(f["t_s"].max()) + 1.0 for f in frames if len(f)]
    return (min(lows, default=0.0), max(highs, default=1.0))


@themed
def throughput_over_time_svg(series: pd.DataFrame, published: pd.DataFrame | None = None,
                             stream_s: float | None = None) -> str | None:
    """Deliveries per wall-clock second (top) and events published per second of the schedule (bottom).

    ``published`` comes from :func:`reports.frames.published_frame` (bins
    from the first due time); without it the series' own wall-clock counts
    are drawn. Hollow dots are partial seconds; the shading is before the
    stream and the drain.
    """
    if series.empty:
        return None
    pub = published if published is not None and len(published) else series
    styles = _styles(series)
    fig, (top, bottom) = new_figure(4.4, rows=2)
    _stream_window(top, stream_s, "deliveries")
    _stream_window(bottom, stream_s, "published")
    widths = _widths(len(styles))
    pub_groups = dict(tuple(pub.groupby("label", sort=False)))
    for i, ((label, group), lw) in enumerate(zip(_labels(series), widths)):
        color, ls = styles[label]
        _per_second(top, group, "deliveries", color, ls, lw, plain(label), f"deliveries-{i}")
        mine = pub_groups.get(label)
        if mine is not None:
            _per_second(bottom, mine, "published", color, ls, lw, plain(label), f"published-{i}")
    top.set_ylabel("deliveries/s")
    bottom.set_ylabel("published/s")
    for ax in (top, bottom):
        ax.set_ylim(bottom=0)
    top.set_xlim(*_time_limits(series, pub))
    bottom.set_xlabel("seconds since the first due time")
    _partial_key(top)
    top.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
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
        ax.plot(*_steps(group, "connected"), color=color, ls=ls, lw=lw, alpha=0.85, drawstyle="steps-post",
                label=plain(label))
    ax.set_ylim(bottom=0)
    ax.set_xlabel("seconds since the first due time")
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
        ax.plot(_centres(group), group["count"].to_numpy(dtype=float), ls="none",
                marker=marker, ms=4, color=color, alpha=0.85, label=plain(f"{label}: {kind}", 50))
    ax.set_ylim(bottom=0)
    ax.set_xlabel("seconds since the first due time")
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
    ax.set_xlabel("event due time, seconds since the first due time")
    ax.set_ylabel("fan-out (ms)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, markerscale=2)
    return to_svg(fig, "fanout")


# --------------------------------------------------------------------------- resources


#: the roles of resource samples in the order their panels are drawn, with a title each
_ROLE_TITLES = {"target": "target (system under test)", "harness": "harness (load generator)",
                "machine": "machine (every process)", "steal": "steal (CPU the hypervisor took)"}


def _roles(by_role: pd.DataFrame) -> list[str]:
    present = list(dict.fromkeys(by_role["role"].astype(str)))
    return [r for r in _ROLE_TITLES if r in present] + [r for r in present if r not in _ROLE_TITLES]


@themed
def resources_svg(by_role: pd.DataFrame) -> str | None:
    """Small multiples: one row per role (target, harness, machine, steal), CPU % left and RSS right,
    one line per mode in the mode's colour, so no two lines in a panel look alike.

    Steal has no memory, so its row has only the CPU panel.
    """
    if by_role.empty:
        return None
    styles = _styles(by_role)
    labels = list(styles)
    roles = _roles(by_role)
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(_WIDTH_IN, 0.6 + 1.55 * len(roles)), layout="constrained")
        grid = fig.subplots(len(roles), 2, sharex=True, squeeze=False)
    for row, role in enumerate(roles):
        cpu, rss = grid[row]
        mine = by_role[by_role["role"].astype(str) == role]
        for label, group in _labels(mine):
            color, ls = styles[label]
            t = group["t_s"].to_numpy(dtype=float)
            line, = cpu.plot(t, group["cpu_percent"].to_numpy(dtype=float), color=color, ls=ls, lw=1.2,
                             label=plain(label) if row == 0 else None)
            line.set_gid(f"resources-{row}-cpu-{labels.index(label)}")
            line, = rss.plot(t, group["rss_bytes"].to_numpy(dtype=float) / 1e6, color=color, ls=ls, lw=1.2)
            line.set_gid(f"resources-{row}-rss-{labels.index(label)}")
        title = plain(_ROLE_TITLES.get(role, role))
        cpu.set_title(f"{title}: CPU %", loc="left")
        cpu.set_ylim(bottom=0)
        if role == "steal":
            rss.set_visible(False)
        else:
            rss.set_title(f"{title}: RSS (MB)", loc="left")
            rss.set_ylim(bottom=0)
    for ax in grid[-1]:
        ax.set_xlabel("seconds since the first due time")
    if roles and roles[-1] == "steal":  # the hidden RSS panel leaves its column without an x label
        grid[-2][1].set_xlabel("seconds since the first due time")
        grid[-2][1].tick_params(axis="x", labelbottom=True)
    legend = fig.legend(loc="outside upper center", ncols=min(6, len(styles)), frameon=False)
    legend.set_gid("resources-legend")
    for i, handle in enumerate(legend.legend_handles):
        if handle is not None:
            handle.set_gid(f"resources-legend-entry-{i}")
    return to_svg(fig, "resources")


# --------------------------------------------------------------------------- workers


@themed
def workers_svg(workers: pd.DataFrame) -> str | None:
    """Latency per worker: p50 (dot) to p99 (bar end), one row per worker of each mode -- which machine saw
    the slow deliveries; the band around each dot is that worker's clock uncertainty."""
    data = workers.dropna(subset=["p50"])
    if data.empty:
        return None
    styles = _styles(data)
    fig, (ax,) = new_figure(max(1.6, 0.32 * len(data) + 0.9))
    many = data["label"].nunique() > 1
    names = [plain(f"{label} · {worker}" if many else worker) for label, worker in zip(data["label"], data["worker"])]
    y = np.arange(len(data), dtype=np.float64)
    p50s = data["p50"].astype("float64").to_numpy()
    p99s = data["p99"].astype("float64").fillna(data["p50"].astype("float64")).to_numpy()
    spread = data["uncertainty_ms"].astype("float64").fillna(0.0).to_numpy()
    for i, label in enumerate(data["label"]):
        color, _ = styles[str(label)]
        ax.plot([p50s[i], p99s[i]], [y[i], y[i]], color=color, lw=3, alpha=0.45, solid_capstyle="butt")
        ax.plot([p50s[i]], [y[i]], "o", color=color, ms=5)
        if spread[i] > 0:
            ax.errorbar([p50s[i]], [y[i]], xerr=[[spread[i]]], color=color, capsize=3, lw=1)
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlim(left=0)
    ax.xaxis.set_major_formatter(FuncFormatter(ms_tick))
    ax.set_xlabel("latency ms (dot: p50, bar: to p99, whiskers: ± clock uncertainty)")
    return to_svg(fig, "workers-latency")

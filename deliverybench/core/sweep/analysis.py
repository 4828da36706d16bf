"""Knee and Universal Scalability Law fit of a sweep's points: information, never the answer.

The capacity answer is always the SLO bracket (:mod:`.search`); these say
where latency turns upward and how throughput scales, for the report.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import optimize

from ..slo import latency_bound
from ..stats import is_number, median
from .index import spec_of
from .judge import Status

__all__ = ["Knee", "knee", "UslFit", "usl_fit", "analyse", "KNEE_RISE_FACTOR", "KNEE_NOISE_FLOOR_MS"]


@dataclass(frozen=True)
class Knee:
    """Where latency turns upward: the Kneedle point of latency vs subscribers.

    Attributes:
        subscribers: N at the knee (one of the measured points).
        latency_ms: latency there.
        score: the normalised distance below the diagonal (0..1; larger = sharper).
        y_ref_ms: the latency the y axis was normalised by.
        n_ref: the N the x axis was normalised by.
    """

    subscribers: float
    latency_ms: float
    score: float
    y_ref_ms: float
    n_ref: float


def _groups(n: Sequence[float], y: Sequence[float]) -> dict[float, list[float]]:
    """The finite y of each positive N (its repeats)."""
    groups: dict[float, list[float]] = {}
    for a, b in zip(n, y):
        if is_number(a) and is_number(b) and a > 0:
            groups.setdefault(float(a), []).append(float(b))
    return groups


def _collapse(n: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct N with the median y of each (repeats), finite values only."""
    groups = _groups(n, y)
    xs = sorted(groups)
    return np.array(xs, dtype=float), np.array([median(groups[x]) for x in xs], dtype=float)


#: above a knee latency must at least double (or a point fail) ...
KNEE_RISE_FACTOR = 2.0
#: ... and by more than this many ms (timer noise) and than the spread of repeats of one N
KNEE_NOISE_FLOOR_MS = 1.0


def _turns_upward(at_n: float, at_ms: float, groups: Mapping[float, Sequence[float]],
                  failed_at: Sequence[float]) -> bool:
    """Whether the data above ``at_n`` shows latency turning upward, which is what makes a knee a knee.

    Kneedle always returns *some* point: the one furthest below the
    diagonal. On a flat curve (5 ms against a 50 ms objective) every point
    lies far below it and the furthest is just the largest N measured, so a
    "knee" there says nothing. A knee is only reported when something above
    it shows the turn: a point that FAILed at a larger N, or a larger N whose
    latency is at least :data:`KNEE_RISE_FACTOR` × the knee's and higher by
    more than the noise (:data:`KNEE_NOISE_FLOOR_MS`, and the largest spread
    between repeats of one N). Doubling is the signature of queueing: waiting
    time grows as ρ / (1 − ρ), which doubles between 50 % and 67 % utilisation,
    while run-to-run noise of one point stays within tens of percent.
    """
    if any(n > at_n for n in failed_at):
        return True
    spread = max((max(v) - min(v) for v in groups.values() if len(v) > 1), default=0.0)
    noise = max(KNEE_NOISE_FLOOR_MS, spread)
    for n, values in groups.items():
        level = median(list(values))
        if n > at_n and level >= KNEE_RISE_FACTOR * at_ms and level - at_ms > noise:
            return True
    return False


def knee(
    subscribers: Sequence[float],
    latency_ms: Sequence[float],
    *,
    y_ref_ms: float | None = None,
    min_points: int = 4,
    failed_at: Sequence[float] = (),
) -> Knee | None:
    """Kneedle (Satopää et al., 2011) on a fixed, normalised domain, kept only where the curve turns upward.

    Kneedle normalises both axes to [0, 1] and takes the point furthest below
    the diagonal. Normalising by the data's own min and max (as the ``kneed``
    package does) moves the knee whenever the range or the point count
    changes -- one more point far up the cliff rescales everything. Here the
    domain is fixed by the curve, not by the sampling:

    * y is ``latency / y_ref_ms``, clipped at 1; ``y_ref_ms`` is the SLO
      bound (default: 10 × the lowest latency measured);
    * x is ``N / n_ref`` from N = 0, where ``n_ref`` is the N at which the
      curve (linearly interpolated) first reaches ``y_ref_ms`` -- or the
      largest N if it never does; points beyond ``n_ref`` are dropped.

    Points added below the knee or above the crossing therefore do not move
    it. Returns ``None`` with fewer than ``min_points`` points, when no
    point lies below the diagonal, or when nothing above the point found
    shows latency turning upward (:func:`_turns_upward`; ``failed_at``: the N
    of points that FAILed): no knee.
    """
    groups = _groups(subscribers, latency_ms)
    x, y = _collapse(subscribers, latency_ms)
    if len(x) < min_points:
        return None
    ref = float(y_ref_ms) if y_ref_ms is not None and y_ref_ms > 0 else 10.0 * float(np.min(y))
    if ref <= 0:
        return None
    n_ref = float(x[-1])
    above = np.nonzero(y >= ref)[0]
    if len(above):
        j = int(above[0])
        if j == 0:
            return None  # already past the reference at the first point: no knee to find
        x0, x1, y0, y1 = float(x[j - 1]), float(x[j]), float(y[j - 1]), float(y[j])
        n_ref = x0 + (ref - y0) * (x1 - x0) / (y1 - y0) if y1 != y0 else x1
        keep = x <= n_ref
        x, y = x[keep], y[keep]
    if len(x) < min_points - 1:
        return None
    xn = x / n_ref
    yn = np.minimum(y / ref, 1.0)
    diff = xn - yn
    best = int(np.argmax(diff))
    if diff[best] <= 0 or not _turns_upward(float(x[best]), float(y[best]), groups, failed_at):
        return None
    return Knee(float(x[best]), float(y[best]), float(diff[best]), ref, n_ref)


@dataclass(frozen=True)
class UslFit:
    """Universal Scalability Law fit of throughput: X(N) = λN / (1 + σ(N−1) + κN(N−1)).

    Attributes:
        lam: λ, throughput of one subscriber (deliveries/s).
        sigma: σ, contention (serialisation) coefficient.
        kappa: κ, coherency (crosstalk) coefficient.
        r2: coefficient of determination of the fit on the throughput points.
        points: how many distinct N were fitted.
        peak_subscribers: N where X peaks, ``sqrt((1 − σ) / κ)``; ``None`` if κ = 0 or σ ≥ 1.
        peak_throughput: X at that N.
    """

    lam: float
    sigma: float
    kappa: float
    r2: float
    points: int
    peak_subscribers: float | None
    peak_throughput: float | None


def _usl(n: np.ndarray, lam: float, sigma: float, kappa: float) -> np.ndarray:
    return np.asarray(lam * n / (1.0 + sigma * (n - 1.0) + kappa * n * (n - 1.0)), dtype=float)


def usl_fit(subscribers: Sequence[float], throughput: Sequence[float], *, min_points: int = 4) -> UslFit | None:
    """Fit the Universal Scalability Law to delivered throughput vs subscribers.

    Uses :func:`scipy.optimize.curve_fit` with λ, σ, κ ≥ 0. N and X are
    rescaled before fitting (κ is often ~1e-8 at thousands of subscribers,
    which would otherwise stall the optimiser) and the parameters scaled
    back. Returns ``None`` with fewer than ``min_points`` distinct N (three
    parameters need at least one point of slack) or when the fit fails.
    """
    x, y = _collapse(subscribers, throughput)
    if len(x) < min_points or float(np.max(y)) <= 0:
        return None
    s, ys = float(x[-1]), float(np.max(y))
    u, v = x / s, y / ys

    def model(uu: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
        # X/ys with a = λ s / ys, b = σ s, c = κ s²; n = s u, so (n - 1)/s = u - 1/s
        return np.asarray(a * uu / (1.0 + b * (uu - 1.0 / s) + c * uu * (uu - 1.0 / s)), dtype=float)

    a0 = float(v[0] / u[0])
    best: tuple[float, np.ndarray] | None = None
    for b0, c0 in ((0.1, 0.1), (1.0, 0.01), (0.01, 1.0), (0.0, 0.0)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # covariance warnings: the fit quality is R², reported below
                params, _ = optimize.curve_fit(model, u, v, p0=[a0, b0, c0], bounds=([0.0, 0.0, 0.0], np.inf),
                                               maxfev=20000)
        except (RuntimeError, ValueError):
            continue
        residual = float(np.sum((model(u, *params) - v) ** 2))
        if best is None or residual < best[0]:
            best = (residual, np.asarray(params, dtype=float))
    if best is None:
        return None
    a, b, c = (float(p) for p in best[1])
    lam, sigma, kappa = a * ys / s, b / s, c / (s * s)
    fitted = _usl(x, lam, sigma, kappa)
    total = float(np.sum((y - np.mean(y)) ** 2))
    r2 = 1.0 - float(np.sum((y - fitted) ** 2)) / total if total > 0 else 0.0
    peak_n: float | None = None
    peak_x: float | None = None
    if kappa > 0 and sigma < 1:
        peak_n = math.sqrt((1.0 - sigma) / kappa)
        peak_x = float(_usl(np.array([peak_n]), lam, sigma, kappa)[0])
    return UslFit(lam, sigma, kappa, r2, len(x), peak_n, peak_x)


def analyse(
    index: Mapping[str, Any],
    *,
    mode: str,
    rate: float,
    latency: str = "p99",
) -> dict[str, Any]:
    """Knee and USL fit for one (mode, rate) of a ``sweep.json`` index (information only).

    INVALID points are left out (their figures describe the harness).

    Returns:
        ``{"knee": {...} | None, "usl": {...} | None}`` with the fields of
        :class:`Knee` and :class:`UslFit`.
    """
    spec = spec_of(index)
    bound = latency_bound(spec.clauses, mode)
    ns: list[float] = []
    lat: list[float] = []
    rate_pts: list[float] = []
    rate_ns: list[float] = []
    failed_at: list[float] = []
    for entry in (index.get("points") or {}).values():
        if entry.get("mode") != mode or float(entry.get("rate", -1)) != rate:
            continue
        status = entry.get("verdict", {}).get("status")
        if status == Status.INVALID:
            continue
        if status == Status.FAIL:
            failed_at.append(float(entry["subscribers"]))
        figures = entry.get("figures") or {}
        if is_number(figures.get(latency)):
            ns.append(float(entry["subscribers"]))
            lat.append(float(figures[latency]))
        if is_number(figures.get("deliveries_per_s")):
            rate_ns.append(float(entry["subscribers"]))
            rate_pts.append(float(figures["deliveries_per_s"]))
    found_knee = knee(ns, lat, y_ref_ms=bound, failed_at=failed_at)
    fit = usl_fit(rate_ns, rate_pts)
    return {
        "knee": None if found_knee is None else {
            "subscribers": found_knee.subscribers, "latency_ms": found_knee.latency_ms, "score": found_knee.score,
            "y_ref_ms": found_knee.y_ref_ms, "n_ref": found_knee.n_ref},
        "usl": None if fit is None else {
            "lambda": fit.lam, "sigma": fit.sigma, "kappa": fit.kappa, "r2": fit.r2, "points": fit.points,
            "peak_subscribers": fit.peak_subscribers, "peak_throughput": fit.peak_throughput},
    }

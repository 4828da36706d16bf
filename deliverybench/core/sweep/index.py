"""The ``sweep.json`` index: what a sweep has run, kept so that it can be resumed and reported.

Each finished run is added at once (:func:`add_point`); a sweep cut short is
resumed by replaying the index's runs into a fresh plan (:func:`resume_plan`).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from typing import Any

from .judge import PointVerdict
from .search import CapacityAnswer, Point, SweepPlan
from .sentences import capacity_sentences
from .spec import SweepIndexError, SweepSpec, SweepStateError

__all__ = [
    "SWEEP_VERSION",
    "SweepIndexError",
    "new_index",
    "point_key",
    "add_point",
    "finished_points",
    "spec_of",
    "resume_plan",
    "with_answers",
]

#: version of the ``sweep.json`` index written by :func:`new_index`
SWEEP_VERSION = 1



def new_index(spec: SweepSpec, *, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """An empty ``sweep.json`` index for ``spec``.

    Args:
        spec: the sweep.
        extra: anything the caller wants kept alongside (command line, target), copied in as ``"extra"``.
    """
    return {"sweep_version": SWEEP_VERSION, "spec": spec.to_dict(), "points": {},
            "extra": copy.deepcopy(dict(extra or {}))}


def _check_index(index: Mapping[str, Any]) -> None:
    if not isinstance(index, Mapping):
        raise SweepIndexError("sweep.json: not a sweep index")
    version = index.get("sweep_version")
    if version != SWEEP_VERSION:
        raise SweepIndexError(f"sweep.json: sweep_version {version!r} is not supported (this deliverybench reads "
                              f"version {SWEEP_VERSION}); start a new sweep")
    if not isinstance(index.get("spec"), Mapping) or not isinstance(index.get("points"), Mapping):
        raise SweepIndexError("sweep.json: lacks 'spec' or 'points'")


def point_key(workload_key: str, repeat: int) -> str:
    """A key unique per run: the workload key (fingerprint) for repeat 0, ``KEY#r<k>`` after."""
    return workload_key if repeat == 0 else f"{workload_key}#r{repeat}"


def add_point(
    index: Mapping[str, Any],
    key: str,
    *,
    point: Point,
    verdict: PointVerdict,
    figures: Mapping[str, float | None],
    results_path: str,
) -> dict[str, Any]:
    """A copy of ``index`` with one finished run added (the input is not changed).

    Args:
        index: the index so far.
        key: the run's key, unique per run (see :func:`point_key`).
        point: what ran.
        verdict: its verdict.
        figures: its key figures (:func:`point_figures`).
        results_path: its results file, relative to the sweep folder.

    Raises:
        SweepIndexError: the key is taken by another run, or the path is absolute.
    """
    _check_index(index)
    if results_path.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:[\\/]", results_path):
        raise SweepIndexError(f"sweep.json: results path {results_path!r} must be relative to the sweep folder")
    out = copy.deepcopy(dict(index))
    points: dict[str, Any] = out["points"]
    entry = {**point.to_dict(), "seq": len(points), "verdict": verdict.to_dict(),
             "figures": {k: figures.get(k) for k in sorted(figures)}, "results": results_path}
    if key in points:
        old = points[key]
        if Point.from_dict(old) != point:
            raise SweepIndexError(f"sweep.json: key {key!r} already holds {Point.from_dict(old)}, not {point}")
        entry["seq"] = old["seq"]
    points[key] = entry
    return out


def finished_points(index: Mapping[str, Any]) -> list[tuple[Point, PointVerdict]]:
    """The finished runs of an index, in the order they ran (for :meth:`SweepPlan.resume`)."""
    _check_index(index)
    entries = sorted(index["points"].values(), key=lambda e: int(e["seq"]))
    return [(Point.from_dict(e), PointVerdict.from_dict(e["verdict"])) for e in entries]


def spec_of(index: Mapping[str, Any]) -> SweepSpec:
    """The spec an index was written for."""
    _check_index(index)
    return SweepSpec.from_dict(index["spec"])


def resume_plan(index: Mapping[str, Any], spec: SweepSpec | None = None) -> SweepPlan:
    """The plan of an index with its finished runs replayed.

    Args:
        index: a ``sweep.json`` index.
        spec: the spec the user asked for now; if given it must equal the index's.

    Raises:
        SweepIndexError: the index is unusable, or was written for another spec
            (the message names the differing options).
    """
    stored = spec_of(index)
    if spec is not None and spec != stored:
        names = {"modes": "--modes", "rates": "--rate", "slo": "--slo", "grid": "--subscribers",
                 "lo": "--subscribers", "hi": "--subscribers", "precision": "--precision", "confirm": "--confirm"}
        differing = list(dict.fromkeys(names[f] for f in names if getattr(spec, f) != getattr(stored, f)))
        raise SweepIndexError(f"sweep.json was written for other options ({', '.join(differing)}); "
                              f"resume with the same options or start a new sweep")
    try:
        return SweepPlan.resume(stored, finished_points(index))
    except SweepStateError as exc:
        raise SweepIndexError(f"sweep.json: its points do not follow from its spec ({exc})") from None


def with_answers(index: Mapping[str, Any], answers: Sequence[CapacityAnswer]) -> dict[str, Any]:
    """A copy of ``index`` with the answers and the capacity sentences (computed from the points)."""
    _check_index(index)
    out = copy.deepcopy(dict(index))
    clauses = spec_of(index).clauses
    out["answers"] = [{k: v for k, v in a.to_dict().items() if k != "points"} for a in answers]
    out["sentences"] = capacity_sentences(answers, clauses)
    return out

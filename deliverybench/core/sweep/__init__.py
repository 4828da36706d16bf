"""Capacity sweeps: which points to run, what each one says, and the answer.

The planner's question is "how many subscribers can one node hold at
p99 ≤ 50 ms?", per delivery mode. A run measures one point; this module is
everything between the points -- a sans-I/O state machine in the spirit of
``websockets.protocol``: the runner asks :meth:`SweepPlan.next_point` what to
run, runs it as an ordinary benchmark run, judges it with
:func:`judge_point` and hands the verdict back with :meth:`SweepPlan.record`.
Nothing here reads a clock, a file or a socket, so a sweep cut short is
resumed by replaying its finished points (:func:`finished_points` of the
``sweep.json`` index) into a fresh plan, which then reaches exactly the
state, the remaining points and the answer it would have reached unbroken.

The rules, and why:

* **Search.** Per (mode, rate): start at the low end, double N until a point
  fails (or the high end is reached), then bisect between the last pass and
  the first fail until ``(fail - pass) / pass <= precision``. Bisection
  points are rounded to the roundest number near the middle (2,400 rather
  than 2,437) so reports read well; each step still shrinks the gap to at
  most 5/8 of itself.
* **Confirmation.** A fail is final after one run (one miss is enough to
  deny a capacity). A pass is tentative until it has passed ``confirm``
  runs; only the boundary candidate -- the largest pass below the first fail
  -- is confirmed, so far-below-capacity points are run once. If a
  confirming repeat fails, that N becomes the first fail and the search goes
  on below it. The capacity is the largest N that passed every repeat.
* **INVALID** points (the harness, not the target, could not keep up) are
  never a pass or a fail: nothing at or above them is explored, the largest
  pass below is confirmed and the answer is "at least N (harness limit)".
* **Grids** run every requested N once (the heat map needs them all) and
  then confirm the boundary candidate the same way.
* **Drift** (:func:`detect_drift`), **publisher lag**, **early stop**
  (:func:`clearly_failed`), the **knee** (:func:`knee`) and the **USL fit**
  (:func:`usl_fit`) are documented where they are defined. Knee and fit are
  information only: the capacity answer is always the SLO bracket.

The modules, by job: :mod:`.spec` (the options and errors), :mod:`.search`
(the plan and the answer), :mod:`.judge` (a point's verdict, drift, early
stop), :mod:`.analysis` (knee and USL fit), :mod:`.index` (``sweep.json``)
and :mod:`.sentences` (the answer in words, ``--require``). Every public
name is importable from this package.
"""

from .analysis import Knee, UslFit, analyse, knee, usl_fit
from .index import SWEEP_VERSION, add_point, finished_points, new_index, point_key, resume_plan, spec_of, with_answers
from .judge import (
    DriftOptions,
    DriftResult,
    JudgeOptions,
    PointVerdict,
    Status,
    clearly_failed,
    detect_drift,
    drift_min_duration_s,
    judge_point,
    point_figures,
    rows_from_series,
)
from .search import CapacityAnswer, CapacitySearch, Point, SearchRecord, SweepPlan
from .sentences import RequireResult, capacity_sentence, capacity_sentences, require_met
from .spec import (
    Requirement,
    Subscribers,
    SweepIndexError,
    SweepSpec,
    SweepSpecError,
    SweepStateError,
    parse_confirm,
    parse_modes,
    parse_precision,
    parse_rates,
    parse_require,
    parse_subscribers,
    parse_sweep_spec,
)

__all__ = [
    "SWEEP_VERSION",
    "SweepSpecError",
    "SweepStateError",
    "SweepIndexError",
    "Status",
    "SweepSpec",
    "Requirement",
    "Subscribers",
    "parse_subscribers",
    "parse_rates",
    "parse_modes",
    "parse_precision",
    "parse_confirm",
    "parse_require",
    "parse_sweep_spec",
    "Point",
    "SearchRecord",
    "CapacityAnswer",
    "CapacitySearch",
    "SweepPlan",
    "DriftOptions",
    "DriftResult",
    "detect_drift",
    "drift_min_duration_s",
    "JudgeOptions",
    "PointVerdict",
    "judge_point",
    "point_figures",
    "clearly_failed",
    "rows_from_series",
    "Knee",
    "knee",
    "UslFit",
    "usl_fit",
    "analyse",
    "capacity_sentence",
    "capacity_sentences",
    "new_index",
    "point_key",
    "add_point",
    "finished_points",
    "spec_of",
    "resume_plan",
    "with_answers",
    "RequireResult",
    "require_met",
]

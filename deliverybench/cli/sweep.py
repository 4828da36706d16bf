"""``run_bench.py sweep``: run the points a capacity sweep asks for, one ordinary run each.

The decisions live in :mod:`deliverybench.core.sweep` (which point next,
what a point says, the answer); this module is the I/O around them: parse
the sweep's options, make (or resume) the sweep folder, run each point as a
plain ``run_bench.py`` run in its own subfolder (results and report as
usual), judge it, add it to ``sweep.json`` at once -- so a sweep cut short by
SIGINT, a crash or CI's time limit continues with ``--resume DIR`` where it
stopped -- and finally write the answer, ``sweep.html`` and the points as
CSV and Parquet.

A point that has clearly failed (p99 far past the objective, or losing
events, for several seconds) is stopped early to keep sweeps short; a point
the harness could not measure is INVALID and ends its search with "at least
N (harness limit)". ``run_bench.py`` alone turns the outcome into an exit
code.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import json
import os
import shlex
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..adapters import results_file
from ..core.fingerprint import fingerprint_key, workload_fingerprint
from ..core.model import Run
from ..core.options import Option, by_dest, command_options
from ..core.slo import SloClause, format_number
from ..core.sweep import (
    PointVerdict,
    Status,
    SweepIndexError,
    SweepPlan,
    SweepSpec,
    SweepSpecError,
    add_point,
    clearly_failed,
    drift_min_duration_s,
    judge_point,
    new_index,
    parse_require,
    parse_sweep_spec,
    point_figures,
    point_key,
    require_met,
    resume_plan,
    spec_of,
    with_answers,
)
from .config import ConfigError, RunConfig, offered_modes, one_line_parser, resolve
from .interrupt import Interrupt
from .progress import Progress
from .run import run, unique_folder

__all__ = ["SweepOutcome", "run_sweep", "POINT_DEFAULTS", "INDEX_NAME"]

INDEX_NAME = "sweep.json"
#: the sweep options that make its spec (their defaults, in the option table, are the planner's question
#: for every mode), and the parse_sweep_spec argument each one is
_SPEC_ARGS = {"modes": "modes", "subscribers": "subscribers", "rate": "rates", "slo": "slo",
              "precision": "precision", "confirm": "confirm"}
#: a point is an ordinary run, shorter than the default one but long enough to judge drift (15 s of stream:
#: drift_min_duration_s)
POINT_DEFAULTS: dict[str, Any] = {"duration": drift_min_duration_s(), "drain": 2.0, "settle": 1.0}
#: run options that mean nothing per point (a sweep's repeats are --confirm; its gate is --slo)
_NOT_PER_POINT = ("repeats", "baseline", "save_baseline", "gate", "tolerance", "strict_machine", "run_id",
                  "profile")
#: an early-stopped point: this many consecutive bad seconds
EARLY_STOP_SECONDS = 3


@dataclass
class SweepOutcome:
    """What the sweep did, for ``run_bench.py`` to turn into an exit code.

    ``kind``: ``done`` (requirements met or none given), ``short`` (a
    ``--require`` not met), ``all_failed`` (not one point ran),
    ``interrupted``.
    """

    kind: str
    sweep_dir: Path
    sentences: list[str] = field(default_factory=list)
    signal: Any = None


def _parser(prog: str) -> argparse.ArgumentParser:
    p = one_line_parser(
        prog=f"{prog} sweep",
        usage=f"{prog} sweep [--modes M,..] [--subscribers N,N,..|LOW:HIGH] [--rate R,..] [--slo SLO] "
              "[--precision F] [--confirm K] [--require REQ] [--resume DIR] [run options]",
        description="Find how many subscribers each delivery mode holds within an objective: a grid of points "
                    "(--subscribers 100,500,1000) or a search (--subscribers 100:20000: double until a point "
                    "fails, then bisect). Every point is an ordinary run under the sweep folder.",
        epilog="Any run option (--duration, --processes, --target, --payload-bytes, ...) applies to every point; "
               f"a point runs {POINT_DEFAULTS['duration']:g} s of stream unless --duration says otherwise (the "
               "least on which a p99 still climbing at the end, drift, is judged).")
    for option in command_options("sweep"):
        if option.kind is bool:
            p.add_argument(option.flag, dest=option.dest, action="store_false" if option.negate else "store_true",
                           help=_help(option))
        else:
            p.add_argument(option.flag, dest=option.dest, metavar=option.metavar or option.name.upper(),
                           help=_help(option))
    return p


def _help(option: Option) -> str:
    """The table's sentence in argparse's style: lower case, no full stop, the default as it would be typed."""
    text = option.help[0].lower() + option.help[1:].removesuffix(".")
    if option.kind is bool or not option.default:
        return text
    return f"{text} (default {shlex.quote(str(option.default))})"


def _given(ns: argparse.Namespace, name: str) -> Any:
    """The value of the sweep option ``name`` on the command line (its dest is ``sweep_<name>``), or ``None``."""
    return getattr(ns, f"sweep_{name}", None)


def _atomic_json(path: Path, data: Mapping[str, Any]) -> None:
    results_file.write_atomically(results_file.strict_json(data, indent=1), path, prefix=".sweep-")


def _load_index(sweep_dir: Path) -> dict[str, Any]:
    path = sweep_dir / INDEX_NAME
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"--resume: {path} does not exist") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--resume: {path} cannot be read ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--resume: {path} is not a sweep index")
    return data


def _point_name(mode: str, subscribers: int, rate: float, repeat: int) -> str:
    name = f"{mode}-n{subscribers}-r{format_number(rate).replace(',', '')}"
    return name + (f"-k{repeat + 1}" if repeat else "")


def _early_stop(clauses: Sequence[SloClause]) -> Callable[[str, dict[str, Any]], str | None]:
    def stop_when(mode: str, live: dict[str, Any]) -> str | None:
        rows = live.get("rows") or []
        if clearly_failed(rows, clauses, mode=mode, seconds=EARLY_STOP_SECONDS):
            return (f"clearly failed: p99 above 5x the objective or more than 1 % of deliveries missing for "
                    f"{EARLY_STOP_SECONDS} s in a row")
        return None
    return stop_when


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def _spec_and_index(ns: argparse.Namespace, rest: list[str]) -> tuple[SweepSpec, dict[str, Any] | None, list[str]]:
    """The spec from the options (or from the index being resumed), the index, and the run options."""
    given = {name: _given(ns, name) for name in _SPEC_ARGS}
    index = _load_index(Path(ns.sweep_resume)) if _given(ns, "resume") else None
    if index is not None and not any(v is not None for v in given.values()):
        try:
            spec = spec_of(index)
        except SweepIndexError as exc:
            raise ConfigError(str(exc)) from None
    else:
        spec = parse_sweep_spec(**{arg: given[name] if given[name] is not None else by_dest(f"sweep_{name}").default
                                   for name, arg in _SPEC_ARGS.items()})
    if index is not None:  # the sweep's own run options first; what is given now comes later and wins
        rest = [str(a) for a in (index.get("extra") or {}).get("run_argv") or []] + rest
    return spec, index, rest


def _base_config(rest: list[str], rates: Sequence[float], prog: str) -> RunConfig:
    """The run options every point shares; each rate swept is checked with them (a stream too short for any
    event at one rate is refused before the first point, not found INVALID at it)."""
    # the sweep's own --rate is the points' rate: check the run options against it, not the run's default
    base = resolve(["--rate", repr(float(rates[0])), *rest], also_known=[o.flag for o in command_options("sweep")],
                   prog=prog)
    wrong = [f"--{by_dest(d).name}" for d in _NOT_PER_POINT if d in base.given]
    if wrong:
        raise ConfigError(f"{wrong[0]} does not apply to a sweep (its repeats are --confirm, its objective --slo)")
    defaults = {k: v for k, v in POINT_DEFAULTS.items() if k not in base.given}
    base = base.replace(**defaults) if defaults else base
    for rate in rates[1:]:
        base.replace(rate=rate)
    return base


def _modes_the_target_offers(spec: SweepSpec, target: str, *, modes_given: bool) -> SweepSpec:
    """A named target's sweep: without ``--modes``, the modes it offers; one asked for that it does not offer is
    refused before the first point (exit 2), not found failed at every point."""
    if target in ("builtin", "relay"):
        return spec
    if not modes_given:
        spec = dataclasses.replace(spec, modes=offered_modes(target, spec.modes))
    from targets import TargetError
    from targets.base import refuse_unoffered

    try:
        refuse_unoffered(target, spec.modes)
    except TargetError as exc:
        raise ConfigError(str(exc)) from None
    return spec


def _drift_warning(base: RunConfig) -> str | None:
    """One line when the points are too short to judge drift, so their PASS rests on the objectives alone."""
    needed = drift_min_duration_s()
    if base.duration >= needed:
        return None
    return (f"warning: points of {format_number(base.duration)} s are too short to judge drift (p99 still climbing "
            f"at the end, a backlog building up), which needs {format_number(needed)} s of stream: points are "
            f"judged on the objectives alone (use --duration {format_number(needed)} or more)")


def _sweep_dir(base: RunConfig, resume: str | None) -> Path:
    if resume:
        return Path(resume)
    out = Path(base.out)
    try:
        return unique_folder(out, "sweep-")
    except OSError as exc:
        raise ConfigError(f"cannot create the sweep folder under {out}: {exc.strerror or exc}") from None


def run_sweep(argv: Sequence[str], say: Callable[[str], None] | None = None, *,
              prog: str = "run_bench.py", command: Sequence[str] = ("python", "run_bench.py")) -> SweepOutcome:
    """Parse ``argv`` (after ``sweep``) and run the sweep to its end, an interruption or a failure.

    Raises:
        ConfigError: bad usage, one line naming the option (exit 2; nothing is run).
    """
    ns, rest = _parser(prog).parse_known_args(list(argv))
    try:
        spec, index, rest = _spec_and_index(ns, rest)
        require = parse_require(ns.sweep_require) if _given(ns, "require") else ()
    except SweepSpecError as exc:
        raise ConfigError(str(exc)) from None
    base = _base_config(rest, spec.rates, prog)
    spec = _modes_the_target_offers(spec, base.target, modes_given=index is not None or _given(ns, "modes") is not None)
    if index is not None:
        try:
            plan = resume_plan(index, spec)
        except SweepIndexError as exc:
            raise ConfigError(f"--resume: {exc}") from None
    else:
        plan = SweepPlan(spec)
    sweep_dir = _sweep_dir(base, _given(ns, "resume"))
    if index is None:
        index = new_index(spec, extra={"run_argv": rest, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        _atomic_json(sweep_dir / INDEX_NAME, index)
    progress = Progress()
    say = say or progress.say
    clauses = spec.clauses
    stop_when = _early_stop(clauses) if _given(ns, "early_stop") is not False else None
    done_before = len(plan.finished)
    say(f"deliverybench sweep: {', '.join(spec.modes)} at {', '.join(format_number(r) for r in spec.rates)} "
        f"events/s, subscribers {spec.subscribers_text}, within {spec.slo}; folder {sweep_dir}"
        + (f" (resuming after {done_before} points)" if done_before else ""))
    warning = _drift_warning(base)
    if warning:
        say(warning)
    started = time.monotonic()
    ran = failed_to_run = 0
    outcome_kind = "done"
    with Interrupt() as interrupt:
        while (point := plan.next_point()) is not None:
            k = len(plan.finished) + 1
            total = len(plan.finished) + plan.estimated_remaining()
            per_point = (time.monotonic() - started) / ran if ran else None
            eta = f", ~{_clock(per_point * plan.estimated_remaining())} left" if per_point else ""
            progress.context = (f"point {k} of ~{total}: {point.mode} N={point.subscribers:,} at "
                                f"{format_number(point.rate)}/s, {_clock(time.monotonic() - started)}{eta}")
            name = _point_name(point.mode, point.subscribers, point.rate, point.repeat)
            t0 = time.monotonic()
            try:
                config = base.replace(modes=(point.mode,), subscribers=point.subscribers, rate=point.rate,
                                      out=str(sweep_dir), run_id=name, overwrite=True)
                result_run = run(config, lambda _line: None, interrupt, progress=progress, stop_when=stop_when,
                                 quiet=True, command=command)
            except ConfigError as exc:  # e.g. more sessions than the open-files limit: the harness's limit
                verdict = PointVerdict(Status.INVALID, (f"not run: {exc}",),
                                       ("raise the open-files limit, add --source-addresses or --processes",),
                                       "not run (harness limit)")
                figures: dict[str, float | None] = {}
                key, rel = point_key(f"{name}-not-run", point.repeat), ""
                failed_to_run += 1
            else:
                if interrupt.signal is not None:
                    outcome_kind = "interrupted"  # this point is not recorded: --resume runs it again
                    break
                document = Run.from_dict(result_run.document)  # read once; everything below reads the model
                result = document.mode(point.mode)
                verdict = judge_point(result, clauses, stopped_early=result.stopped_early)
                figures = point_figures(result)
                key = point_key(fingerprint_key(workload_fingerprint(document, point.mode)), point.repeat)
                rel = os.path.relpath(result_run.results_path, sweep_dir)  # the point's run folder is inside
                failed_to_run += result.status == "failed"
            ran += 1
            index = add_point(index, key, point=point, verdict=verdict, figures=figures, results_path=rel)
            _atomic_json(sweep_dir / INDEX_NAME, index)
            plan.record(point, verdict)
            progress.clear()
            say(f"[{k}] {point.mode} N={point.subscribers:,} at {format_number(point.rate)}/s"
                f"{f' (repeat {point.repeat + 1})' if point.repeat else ''}: {verdict.status.value} -- "
                f"{verdict.headline or '; '.join(verdict.reasons)[:120]} ({_clock(time.monotonic() - t0)})")
            for advice in verdict.advice:
                say(f"      to measure it: {advice}")
    progress.clear()
    answers = plan.answers()
    index = with_answers(index, answers)
    _atomic_json(sweep_dir / INDEX_NAME, index)
    sentences = list(index.get("sentences") or [])
    _render(index, sweep_dir, say)
    say("")
    for sentence in sentences:
        say(sentence)
    say(f"sweep:   {sweep_dir / INDEX_NAME} ({len(plan.finished)} points, {_clock(time.monotonic() - started)})")
    if outcome_kind == "interrupted":
        say(f"interrupted: continue with  {' '.join(command)} sweep --resume {sweep_dir}")
        return SweepOutcome("interrupted", sweep_dir, sentences, interrupt.signal)
    if ran and failed_to_run == ran and done_before == 0:
        return SweepOutcome("all_failed", sweep_dir, sentences)
    if require:
        met = require_met(answers, require)
        for line in met.lines:
            say(f"require: {line}")
        if not met.ok:
            return SweepOutcome("short", sweep_dir, sentences)
    return SweepOutcome(outcome_kind, sweep_dir, sentences)


def _render(index: Mapping[str, Any], sweep_dir: Path, say: Callable[[str], None]) -> None:
    """sweep.html and the points as CSV/Parquet; a report bug never costs the sweep its index."""
    try:
        from reports import render_sweep_report

        paths = render_sweep_report(index, sweep_dir)
        if paths:
            say(f"report:  {paths[0]}")
    except Exception as exc:
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise results_file.write_error(exc, sweep_dir / "sweep.html") from None
        say(f"warning: sweep report not rendered: {exc}")


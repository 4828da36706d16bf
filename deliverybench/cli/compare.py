"""The CI gate on the ``run_bench.py`` side: compare, check objectives, write what CI shows.

The decision itself is pure (:func:`deliverybench.core.gate.compare`,
:func:`deliverybench.core.slo.check`); this module reads results files,
writes ``comparison.json`` (versioned), ``comparison.md`` (also appended to
``$GITHUB_STEP_SUMMARY`` when it is set) and ``junit.xml``, re-renders the
HTML report with its baseline section, and returns a :class:`GateResult`.
``run_bench.py`` alone turns the result into an exit code.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..adapters import results_file
from ..core.gate import GateOptions, Side, compare
from ..core.gate_report import to_junit_xml, to_markdown
from ..core.gate_words import identical_sides
from ..core.model import Run
from ..core.slo import SloOutcome, check, parse_slo

__all__ = ["GateResult", "gate_options", "evaluate", "OUTPUT_NAMES"]

OUTPUT_NAMES = ("comparison.json", "comparison.md", "junit.xml")


@dataclass
class GateResult:
    """What the gate decided; ``kind`` is what the exit code says.

    ``pass``; ``regression`` (a gated metric regressed or an objective is
    broken); ``not_comparable``; ``failed`` (the new run measured nothing).
    """

    kind: str
    outputs: list[Path] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)


def gate_options(values: Mapping[str, Any]) -> GateOptions:
    """The gate's options from option-table values (``gate``, ``tolerance``, ``strict_machine``)."""
    tolerances = {}
    for item in values.get("tolerance") or ():
        key, _, number = item.partition("=")
        tolerances[key.strip()] = float(number)
    return GateOptions(gate=tuple(values.get("gate") or ()) or GateOptions().gate, tolerances=tolerances,
                       strict_machine=bool(values.get("strict_machine")))


def evaluate(new_doc: Mapping[str, Any], out_dir: Path, *, values: Mapping[str, Any],
             baseline_doc: Mapping[str, Any] | None = None, reproduce: Sequence[str] = (),
             report: bool = True) -> GateResult:
    """Compare ``new_doc`` with ``baseline_doc`` (if any), check ``--slo`` (if any), write the outputs.

    The documents are read into the typed model here, once; the gate, the objectives and the report read that.
    """
    slo_text = str(values.get("slo") or "")
    if baseline_doc is None and not slo_text:
        return GateResult("pass")
    new = Run.from_dict(new_doc)
    baseline = Run.from_dict(baseline_doc) if baseline_doc is not None else None
    outcomes: list[SloOutcome] = check(parse_slo(slo_text), new) if slo_text else []
    comparison = compare(baseline, new, options=gate_options(values)) if baseline is not None else None
    if comparison is None and not outcomes:
        return GateResult("pass")
    out_dir.mkdir(parents=True, exist_ok=True)
    slo_dicts = [o.to_dict() for o in outcomes]
    command = " ".join(shlex.quote(a) for a in reproduce)
    markdown = to_markdown(comparison, slo_outcomes=slo_dicts, reproduce=command)
    data: dict[str, Any] = comparison.to_dict() if comparison is not None else {"comparison_version": 1,
                                                                                "outcome": "pass", "modes": {}}
    data["slo"] = slo_dicts
    outputs = []
    for name, text in (("comparison.json", results_file.strict_json(data, indent=1)), ("comparison.md", markdown),
                       ("junit.xml", to_junit_xml(comparison, slo_outcomes=slo_dicts))):
        outputs.append(results_file.write_atomically(text if text.endswith("\n") else text + "\n", out_dir / name))
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        try:
            with open(summary, "a", encoding="utf-8") as handle:
                handle.write(markdown + "\n")
        except OSError as exc:
            raise results_file.write_error(exc, summary) from None
    if report and baseline is not None:
        try:
            from reports import render_report

            with results_file.staged(out_dir / "report.html", prefix=".report-") as staged_path:
                render_report([new], staged_path, baseline=baseline, comparison=data)
            outputs.append(out_dir / "report.html")
        except Exception as exc:  # the verdict is written; a report bug must not hide it ...
            if isinstance(exc, results_file.ResultsWriteError) and exc.no_space:
                raise  # ... but a full disk fails the run, as it does for every other file
            outputs.append(out_dir / f"(report not rendered: {exc})")
    broken = [o for o in outcomes if not o.ok]
    lines = [f"slo: {o.mode} {o.clause}: {o.reason}" for o in broken]
    if comparison is not None:
        # why a mode cannot be compared, once per mode (its metrics all carry the same reason)
        lines += [f"not comparable: {mode.mode}: {'; '.join(mode.reasons)}" for mode in comparison.modes
                  if not mode.comparable]
        lines += [f"unchanged: {identical_sides(mode.mode)}" for mode in comparison.modes if mode.identical]
        lines += [f"regression: {m.label}: {m.words}" for m in comparison.regressions]
        lines += [f"inconclusive: {m.label}: {m.words}" for m in comparison.inconclusive]
        lines += [f"warning: {w}" for w in comparison.warnings]
    if comparison is not None and Side.NEW in comparison.failed_sides:
        kind = "failed"
    elif (comparison is not None and comparison.outcome == "regression") or broken:
        kind = "regression"
    elif comparison is not None and comparison.outcome == "not_comparable":
        kind = "not_comparable"
    else:
        kind = "pass"
    return GateResult(kind, outputs, lines)


def read(path: str) -> dict[str, Any]:
    """A results file, or :class:`~deliverybench.adapters.results_file.ResultsFileError` with one line."""
    return results_file.read(path)

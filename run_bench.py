#!/usr/bin/env python3
"""deliverybench: compare event delivery by WebSocket push, webhook callback and polling.

    python run_bench.py                       # built-in targets, defaults, a few minutes
    python run_bench.py -u 2000 --rate 10 --modes push,callback
    python run_bench.py --target relay --publish-url http://h:8080/pub --subscribe-url ws://h:8080/ws --modes push
    python run_bench.py --profile ci --baseline baseline.json --slo 'push.p99<=50ms,*.lost==0'
    python run_bench.py compare baseline.json bench-out/RUN/results.json -o gate/
    python run_bench.py sweep --modes push,callback --subscribers 100:20000 --rate 10 --slo 'p99<=50ms,lost==0'
    python run_bench.py report bench-out/*/results.json -o compare.html

Exit codes: 0 done (or no regression); 1 a regression, or an objective
(--slo) broken; 2 bad usage or configuration; 3 the run failed (a target did
not start or vanished, nothing was delivered); 4 not comparable with the
baseline; 130 / 143 interrupted by SIGINT / SIGTERM. A sweep exits 0 when
done, 1 when --require is not met, 2 on bad usage, 3 when not one point ran. Whatever was measured
is written either way. This file is the only place that turns outcomes into
exit codes.
"""

from __future__ import annotations

import sys
from pathlib import Path
from signal import Signals
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: `run_bench.py --help` stays quick
    from deliverybench.cli.compare import GateResult

EXIT_OK, EXIT_REGRESSION, EXIT_USAGE, EXIT_FAILED, EXIT_NOT_COMPARABLE = 0, 1, 2, 3, 4
#: what each gate outcome exits with
GATE_EXIT = {"pass": EXIT_OK, "regression": EXIT_REGRESSION, "not_comparable": EXIT_NOT_COMPARABLE,
             "failed": EXIT_FAILED}


def _say(line: str) -> None:
    print(line, flush=True)


def _report(argv: list[str]) -> int:
    import argparse

    from deliverybench.adapters.results_file import ResultsFileError, ResultsWriteError, read, staged

    parser = argparse.ArgumentParser(prog="run_bench.py report",
                                     description="Render an HTML report from results files.")
    parser.add_argument("results", nargs="+", help="results.json files; several are compared")
    parser.add_argument("-o", "--output", default="report.html", help="HTML file to write")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return EXIT_USAGE if exc.code else EXIT_OK
    try:
        documents = [read(p) for p in args.results]
    except ResultsFileError as exc:
        print(f"run_bench.py report: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    from reports import render_report

    output = Path(args.output)
    html = output if output.suffix.lower() in (".html", ".htm") else output / "report.html"
    try:
        with staged(html, prefix=".report-") as staged_path:  # a full disk leaves no half-written file
            render_report(documents, staged_path)
    except ResultsWriteError as exc:
        return _cannot_write("run_bench.py report", exc, html.parent)
    _say(f"report: {html}")
    return EXIT_OK


def _compare(argv: list[str]) -> int:
    from deliverybench.adapters.results_file import ResultsFileError, ResultsWriteError, read
    from deliverybench.cli.compare import evaluate
    from deliverybench.cli.config import ConfigError, add_table_options, one_line_parser, parse_table_args
    from deliverybench.core.options import by_dest

    options = [by_dest(d) for d in ("slo", "gate", "tolerance", "strict_machine")]
    parser = one_line_parser(prog="run_bench.py compare",
                             description="Compare two results files (each may hold several repeats): the CI gate.")
    parser.add_argument("baseline", help="the baseline results file")
    parser.add_argument("new", help="the new results file")
    parser.add_argument("-o", "--output", help="folder for comparison.json, comparison.md, junit.xml and "
                                               "report.html (default: the new file's folder)")
    add_table_options(parser, options)
    try:
        args, values = parse_table_args(parser, argv, options)
        baseline, new = read(args.baseline), read(args.new)
    except (ConfigError, ResultsFileError) as exc:
        print(f"run_bench.py compare: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    out = Path(getattr(args, "output", None) or Path(args.new).parent)
    try:
        result = evaluate(new, out, values=values, baseline_doc=baseline,
                          reproduce=["python", "run_bench.py", "compare", *argv])
    except (OSError, ResultsWriteError) as exc:
        return _cannot_write("run_bench.py compare", exc, out)
    return _say_gate(result)


def _cannot_write(prog: str, exc: Exception, where: Path) -> int:
    """A file that could not be written (a full disk above all): one line naming it; exit 3, as the run failed.

    ``exc`` is a :class:`~deliverybench.adapters.results_file.ResultsWriteError`, or the ``OSError`` of
    code that writes in place, charged to ``where`` when it names no file.
    """
    from deliverybench.adapters.results_file import write_error

    print(f"{prog}: error: {write_error(exc, where) if isinstance(exc, OSError) else exc}", file=sys.stderr)
    return EXIT_FAILED


def _say_gate(result: GateResult) -> int:
    kind = result.kind
    for line in result.lines:
        _say(line)
    for path in result.outputs:
        _say(f"gate:    {path}")
    _say(f"verdict: {kind.replace('_', ' ')}")
    return GATE_EXIT[kind]


def _sweep(argv: list[str]) -> int:
    from deliverybench.adapters.results_file import ResultsWriteError
    from deliverybench.cli.config import ConfigError
    from deliverybench.cli.interrupt import EXIT_CODES
    from deliverybench.cli.sweep import run_sweep

    try:
        outcome = run_sweep(argv)
    except ConfigError as exc:
        print(f"run_bench.py sweep: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (OSError, ResultsWriteError) as exc:  # a full disk: the point's run, the index or the report
        return _cannot_write("run_bench.py sweep", exc, Path("the sweep folder"))
    if outcome.kind == "interrupted":
        return EXIT_CODES[outcome.signal]
    return {"done": EXIT_OK, "short": EXIT_REGRESSION, "all_failed": EXIT_FAILED}[outcome.kind]


def main(argv: list[str]) -> int:
    if argv[:1] == ["report"]:
        return _report(argv[1:])
    if argv[:1] == ["sweep"]:
        return _sweep(argv[1:])
    if argv[:1] == ["compare"]:
        return _compare(argv[1:])
    from deliverybench.cli.config import ConfigError, resolve

    try:
        config = resolve(argv)
    except ConfigError as exc:
        print(f"run_bench.py: error: {exc}", file=sys.stderr)
        return EXIT_USAGE

    from deliverybench.adapters.results_file import ResultsFileError, ResultsWriteError, read, write
    from deliverybench.cli.compare import evaluate
    from deliverybench.cli.interrupt import EXIT_CODES, Interrupt
    from deliverybench.cli.run import run

    baseline = None
    if config.baseline:
        try:
            baseline = read(config.baseline)  # before the run: a bad baseline must not cost one
        except ResultsFileError as exc:
            print(f"run_bench.py: error: --baseline: {exc}", file=sys.stderr)
            return EXIT_USAGE
    with Interrupt() as interrupt:
        try:
            outcome = run(config, _say, interrupt)
        except ConfigError as exc:
            print(f"run_bench.py: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except ResultsWriteError as exc:
            return _cannot_write("run_bench.py", exc, Path(config.out))
    if outcome.interrupted_by is not None:
        signal = Signals(outcome.interrupted_by)
        print(f"run_bench.py: interrupted by {signal.name}; what was measured is in {outcome.results_path}",
              file=sys.stderr)
        return EXIT_CODES[signal]
    try:
        if config.save_baseline:
            _say(f"baseline: {write(outcome.document, config.save_baseline)}")
        if outcome.failed_modes:
            return EXIT_FAILED  # a mode that measured nothing: no verdict can rest on it
        if baseline is not None or config.slo:
            result = evaluate(outcome.document, outcome.run_dir, values=config.values, baseline_doc=baseline,
                              reproduce=["python", "run_bench.py", *argv], report=config.report)
            return _say_gate(result)
    except (OSError, ResultsWriteError) as exc:  # the gate's outputs beside the results
        return _cannot_write("run_bench.py", exc, outcome.run_dir)
    # Loss is a finding (a degraded mode exits 0).
    return EXIT_OK


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        print("run_bench.py: interrupted", file=sys.stderr)
        sys.exit(130)

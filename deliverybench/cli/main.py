"""The command line: ``run_bench.py`` in a checkout, ``deliverybench`` and ``python -m deliverybench`` installed.

    deliverybench                             # built-in targets, defaults, a few minutes (``run`` is implied)
    deliverybench run -u 2000 --rate 10 --modes push,callback
    deliverybench --target relay --publish-url http://h:8080/pub --subscribe-url ws://h:8080/ws --modes push
    deliverybench --profile ci --baseline baseline.json --slo 'push.p99<=50ms,*.lost==0'
    deliverybench compare baseline.json bench-out/RUN/results.json -o gate/
    deliverybench sweep --modes push,callback --subscribers 100:20000 --rate 10 --slo 'p99<=50ms,lost==0'
    deliverybench report bench-out/*/results.json -o compare.html
    locust -f "$(deliverybench locustfile push)" --headless -u 500 -r 250   # Locust's -f takes a path only

Exit codes: 0 done (or no regression); 1 a regression, or an objective
(--slo) broken; 2 bad usage or configuration; 3 the run failed (a target did
not start or vanished, nothing was delivered); 4 not comparable with the
baseline; 130 / 143 interrupted by SIGINT / SIGTERM. A sweep exits 0 when
done, 1 when --require is not met, 2 on bad usage, 3 when not one point ran.
Whatever was measured is written either way. This module is the only place
that turns outcomes into exit codes; every entry point calls :func:`launch`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from signal import Signals
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:  # imported where used: `deliverybench --help` stays quick
    from .compare import GateResult

__all__ = ["Program", "RUN_BENCH", "CONSOLE", "MODULE", "main", "launch", "console", "EXIT_OK", "EXIT_REGRESSION",
           "EXIT_USAGE", "EXIT_FAILED", "EXIT_NOT_COMPARABLE", "GATE_EXIT"]

EXIT_OK, EXIT_REGRESSION, EXIT_USAGE, EXIT_FAILED, EXIT_NOT_COMPARABLE = 0, 1, 2, 3, 4
#: what each gate outcome exits with
GATE_EXIT = {"pass": EXIT_OK, "regression": EXIT_REGRESSION, "not_comparable": EXIT_NOT_COMPARABLE,
             "failed": EXIT_FAILED}


@dataclass(frozen=True)
class Program:
    """How the user started us: the name our messages begin with, and the command a "reproduce" line repeats
    (what they typed, so they can paste it)."""

    name: str
    command: tuple[str, ...]


RUN_BENCH = Program("run_bench.py", ("python", "run_bench.py"))
CONSOLE = Program("deliverybench", ("deliverybench",))
MODULE = Program("deliverybench", ("python", "-m", "deliverybench"))


def _say(line: str) -> None:
    print(line, flush=True)


def _error(prog: str, message: str) -> None:
    print(f"{prog}: error: {message}", file=sys.stderr)


def _report(argv: list[str], program: Program) -> int:
    import argparse

    from ..adapters.results_file import ResultsFileError, ResultsWriteError, read, staged

    prog = f"{program.name} report"
    parser = argparse.ArgumentParser(prog=prog, description="Render an HTML report from results files.")
    parser.add_argument("results", nargs="+", help="results.json files; several are compared")
    parser.add_argument("-o", "--output", default="report.html", help="HTML file to write")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return EXIT_USAGE if exc.code else EXIT_OK
    try:
        documents = [read(p) for p in args.results]
    except ResultsFileError as exc:
        _error(prog, str(exc))
        return EXIT_USAGE
    from reports import render_report

    output = Path(args.output)
    html = output if output.suffix.lower() in (".html", ".htm") else output / "report.html"
    try:
        with staged(html, prefix=".report-") as staged_path:  # a full disk leaves no half-written file
            render_report(documents, staged_path)
    except ResultsWriteError as exc:
        return _cannot_write(prog, exc, html.parent)
    _say(f"report: {html}")
    return EXIT_OK


def _compare(argv: list[str], program: Program) -> int:
    from ..adapters.results_file import ResultsFileError, ResultsWriteError, read
    from ..core.options import by_dest
    from .compare import evaluate
    from .config import ConfigError, add_table_options, one_line_parser, parse_table_args

    prog = f"{program.name} compare"
    options = [by_dest(d) for d in ("slo", "gate", "tolerance", "strict_machine")]
    parser = one_line_parser(prog=prog,
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
        _error(prog, str(exc))
        return EXIT_USAGE
    out = Path(getattr(args, "output", None) or Path(args.new).parent)
    try:
        result = evaluate(new, out, values=values, baseline_doc=baseline,
                          reproduce=[*program.command, "compare", *argv])
    except (OSError, ResultsWriteError) as exc:
        return _cannot_write(prog, exc, out)
    return _say_gate(result)


def _cannot_write(prog: str, exc: Exception, where: Path) -> int:
    """A file that could not be written (a full disk above all): one line naming it; exit 3, as the run failed.

    ``exc`` is a :class:`~deliverybench.adapters.results_file.ResultsWriteError`, or the ``OSError`` of
    code that writes in place, charged to ``where`` when it names no file.
    """
    from ..adapters.results_file import write_error

    _error(prog, str(write_error(exc, where)) if isinstance(exc, OSError) else str(exc))
    return EXIT_FAILED


def _say_gate(result: GateResult) -> int:
    kind = result.kind
    for line in result.lines:
        _say(line)
    for path in result.outputs:
        _say(f"gate:    {path}")
    _say(f"verdict: {kind.replace('_', ' ')}")
    return GATE_EXIT[kind]


def _sweep(argv: list[str], program: Program) -> int:
    from ..adapters.results_file import ResultsWriteError
    from .config import ConfigError
    from .interrupt import EXIT_CODES
    from .sweep import run_sweep

    prog = f"{program.name} sweep"
    try:
        outcome = run_sweep(argv, prog=program.name, command=program.command)
    except ConfigError as exc:
        _error(prog, str(exc))
        return EXIT_USAGE
    except (OSError, ResultsWriteError) as exc:  # a full disk: the point's run, the index or the report
        return _cannot_write(prog, exc, Path("the sweep folder"))
    if outcome.kind == "interrupted":
        return EXIT_CODES[outcome.signal]
    return {"done": EXIT_OK, "short": EXIT_REGRESSION, "all_failed": EXIT_FAILED}[outcome.kind]


def _locustfile(argv: list[str], program: Program) -> int:
    """Print a mode's locustfile path: Locust's ``-f`` takes file paths only, and an installed copy's are in
    site-packages."""
    from scenarios import LOCUSTFILES, locustfile

    from .config import ConfigError, one_line_parser

    prog = f"{program.name} locustfile"
    parser = one_line_parser(prog=prog, description="Print the absolute path of a mode's locustfile, for "
                                                    f'locust -f "$({program.name} locustfile push)" ...')
    parser.add_argument("mode", choices=list(LOCUSTFILES), help="the delivery mode")
    try:
        args = parser.parse_args(argv)
    except ConfigError as exc:
        _error(prog, str(exc))
        return EXIT_USAGE
    _say(str(locustfile(args.mode)))
    return EXIT_OK


def _run(argv: list[str], program: Program) -> int:
    from .config import ConfigError, resolve

    try:
        config = resolve(argv, prog=program.name)
    except ConfigError as exc:
        _error(program.name, str(exc))
        return EXIT_USAGE

    from ..adapters.results_file import ResultsFileError, ResultsWriteError, read, write
    from .compare import evaluate
    from .interrupt import EXIT_CODES, Interrupt
    from .run import run

    baseline = None
    if config.baseline:
        try:
            baseline = read(config.baseline)  # before the run: a bad baseline must not cost one
        except ResultsFileError as exc:
            _error(program.name, f"--baseline: {exc}")
            return EXIT_USAGE
    with Interrupt() as interrupt:
        try:
            outcome = run(config, _say, interrupt, prog=program.name, command=program.command)
        except ConfigError as exc:
            _error(program.name, str(exc))
            return EXIT_USAGE
        except ResultsWriteError as exc:
            return _cannot_write(program.name, exc, Path(config.out))
    if outcome.interrupted_by is not None:
        signal = Signals(outcome.interrupted_by)
        print(f"{program.name}: interrupted by {signal.name}; what was measured is in {outcome.results_path}",
              file=sys.stderr)
        return EXIT_CODES[signal]
    try:
        if config.save_baseline:
            _say(f"baseline: {write(outcome.document, config.save_baseline)}")
        if outcome.failed_modes:
            return EXIT_FAILED  # a mode that measured nothing: no verdict can rest on it
        if baseline is not None or config.slo:
            result = evaluate(outcome.document, outcome.run_dir, values=config.values, baseline_doc=baseline,
                              reproduce=[*program.command, *argv], report=config.report)
            return _say_gate(result)
    except (OSError, ResultsWriteError) as exc:  # the gate's outputs beside the results
        return _cannot_write(program.name, exc, outcome.run_dir)
    # Loss is a finding (a degraded mode exits 0).
    return EXIT_OK


#: the subcommands, each given the arguments after its name; anything else is a run's options
_SUBCOMMANDS: dict[str, Callable[[list[str], Program], int]] = {
    "run": _run, "sweep": _sweep, "compare": _compare, "report": _report, "locustfile": _locustfile,
}


def main(argv: list[str], program: Program = RUN_BENCH) -> int:
    """Run the command ``argv`` (without the program name) asks for; its exit code.

    ``run`` is the default: ``deliverybench --modes push`` is ``deliverybench run --modes push``.
    """
    handler = _SUBCOMMANDS.get(argv[0]) if argv else None
    if handler is not None:
        return handler(argv[1:], program)
    return _run(argv, program)


def launch(program: Program) -> NoReturn:
    """Every entry point's body: :func:`main` on ``sys.argv``, a Ctrl-C before the run's own handler is in
    place as exit 130."""
    try:
        sys.exit(main(sys.argv[1:], program))
    except KeyboardInterrupt:
        print(f"{program.name}: interrupted", file=sys.stderr)
        sys.exit(130)


def console() -> NoReturn:
    """The ``deliverybench`` console script (pyproject's ``[project.scripts]``)."""
    launch(CONSOLE)

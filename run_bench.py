#!/usr/bin/env python3
"""deliverybench: compare event delivery by WebSocket push, webhook callback and polling.

    python run_bench.py                       # built-in targets, defaults, a few minutes
    python run_bench.py -u 2000 --rate 10 --modes push,callback
    python run_bench.py --target relay --publish-url http://h:8080/pub --subscribe-url ws://h:8080/ws --modes push
    python run_bench.py report bench-out/*/results.json -o compare.html

Exit codes: 0 done, 2 bad usage or configuration, 3 the run failed (a target
did not start or vanished, nothing was delivered); whatever was measured is
written either way. This file is the only place that turns outcomes into
exit codes.
"""

from __future__ import annotations

import sys
from pathlib import Path

EXIT_OK, EXIT_USAGE, EXIT_FAILED = 0, 2, 3


def _say(line: str) -> None:
    print(line, flush=True)


def _report(argv: list[str]) -> int:
    import argparse

    from deliverybench.adapters.results_file import ResultsFileError, read

    parser = argparse.ArgumentParser(prog="run_bench.py report", description="Render an HTML report from results files.")
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

    path = render_report(documents, Path(args.output))
    _say(f"report: {path}")
    return EXIT_OK


def main(argv: list[str]) -> int:
    if argv[:1] == ["report"]:
        return _report(argv[1:])
    from deliverybench.cli.config import ConfigError, resolve

    try:
        config = resolve(argv)
    except ConfigError as exc:
        print(f"run_bench.py: error: {exc}", file=sys.stderr)
        return EXIT_USAGE

    from deliverybench.cli.interrupt import EXIT_CODES, Interrupt
    from deliverybench.cli.run import run

    with Interrupt() as interrupt:
        try:
            outcome = run(config, _say, interrupt)
        except ConfigError as exc:
            print(f"run_bench.py: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
    if outcome.interrupted_by is not None:
        print(f"run_bench.py: interrupted by {interrupt.signal.name}; what was measured is in "
              f"{outcome.results_path}", file=sys.stderr)
        return EXIT_CODES[interrupt.signal]
    # Loss is a finding (a degraded mode exits 0); a mode that measured nothing is a failed run.
    return EXIT_FAILED if outcome.failed_modes else EXIT_OK


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        print("run_bench.py: interrupted", file=sys.stderr)
        sys.exit(130)

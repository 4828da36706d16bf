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
import time
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

    from deliverybench.adapters import results_file
    from deliverybench.cli.orchestrate import run_modes
    from deliverybench.cli.summary import summary_table

    run_id = config.run_id or time.strftime("%Y%m%d-%H%M%S")
    run_dir = Path(config.out) / run_id
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"run_bench.py: error: cannot create output folder {run_dir}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    _say(f"deliverybench: modes {', '.join(config.modes)}; results in {run_dir}")
    document = run_modes(config, run_dir, _say)
    path = results_file.write(document, run_dir / "results.json")
    _say("")
    _say(summary_table(document))
    _say("")
    _say(f"results: {path}")
    if config.report:
        try:
            from reports import render_report

            report = render_report([document], run_dir / "report.html")
            _say(f"report:  {report}")
        except Exception as exc:  # the measurement is written; a report bug must not hide it
            print(f"run_bench.py: warning: report not rendered: {exc}", file=sys.stderr)
    # Loss is a finding (a degraded mode exits 0); a mode that measured nothing is a failed run.
    failed = [name for name, mode in document["modes"].items() if mode.get("status") == "failed"]
    return EXIT_FAILED if failed else EXIT_OK


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        print("run_bench.py: interrupted", file=sys.stderr)
        sys.exit(130)

#!/usr/bin/env python3
"""deliverybench from a checkout: ``python run_bench.py`` is the installed ``deliverybench`` command.

    python run_bench.py                       # built-in targets, defaults, a few minutes
    python run_bench.py --modes push,callback -u 2000 --rate 10
    python run_bench.py compare baseline.json bench-out/RUN/results.json -o gate/

Subcommands, options and exit codes: :mod:`deliverybench.cli.main`, the
only place that turns outcomes into exit codes.
"""

from deliverybench.cli.main import RUN_BENCH, launch

if __name__ == "__main__":
    launch(RUN_BENCH)

"""How long does the HTML report take for a big run?

Builds (with ``tests/fixtures/make_fixture.make_document``) a results document
summarising 10 million deliveries over 10 minutes in three modes -- per-second
HdrHistograms recorded as (value, count) pairs, ~33k fan-out rows per mode,
resource samples every second -- writes it to a temporary directory, then
times ``load_results`` (read and validate into the typed model, once) and
``render_report`` (goal: render <= 10 s on a 2-core machine).

    PYTHONPATH=. python benchmarks/report_render.py [--deliveries N] [--seconds S] [--subscribers K] [--keep DIR]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from deliverybench.core.results import dumps  # noqa: E402
from reports import load_results, render_report  # noqa: E402

GOAL_S = 10.0


def _make_fixture_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deliverybench_bench_make_fixture",
                                                  ROOT / "tests" / "fixtures" / "make_fixture.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=10_000_000)
    parser.add_argument("--seconds", type=int, default=600)
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--modes", default="push,callback,poll")
    parser.add_argument("--keep", type=Path, help="write the document and report here instead of a temp dir")
    args = parser.parse_args(argv)

    make_document = _make_fixture_module().make_document
    t0 = time.perf_counter()
    doc = make_document(deliveries=args.deliveries, seconds=args.seconds, modes=tuple(args.modes.split(",")),
                        subscribers=args.subscribers, run_id="bench-10m", bin_ratio=1.02)
    build_s = time.perf_counter() - t0
    slices = sum(len(by_sec) for m in doc["modes"].values() for by_sec in m["histograms"]["slices"].values())
    fan_rows = sum(len(m["fanout"]["rows"]) for m in doc["modes"].values())
    deliveries = sum(m["throughput"]["deliveries"] for m in doc["modes"].values())

    with tempfile.TemporaryDirectory(prefix="report-bench-") as tmp:
        out = args.keep or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        path = out / "results.json"
        path.write_text(dumps(doc), encoding="utf-8")
        del doc
        t1 = time.perf_counter()
        docs = load_results([path])
        load_s = time.perf_counter() - t1
        t2 = time.perf_counter()
        report = render_report(docs, out)
        render_s = time.perf_counter() - t2
        size = path.stat().st_size
        html_size = report.stat().st_size

    print(f"document: {deliveries:,} deliveries, {args.seconds} s, modes {args.modes}, "
          f"{slices:,} histogram slices, {fan_rows:,} fan-out rows, {size / 1e6:.1f} MB (built in {build_s:.1f} s)")
    print(f"load_results: {load_s:.2f} s")
    print(f"render_report: {render_s:.2f} s  (goal <= {GOAL_S:.0f} s) -> report.html {html_size / 1e6:.2f} MB")
    return 0 if render_s <= GOAL_S else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""What receiving a delivery costs the harness: webhook receiver (current and previous design) against push.

The harness must never be what a run measures, so its cost per delivery must
stay far below the target's. This runs, one after the other and interleaved
``--repeat`` times, three real headless Locust processes against the built-in
targets they start themselves (127.0.0.1 only), with the same subscribers,
event rate, duration and payload:

* **callback (current)** -- ``scenarios/webhook_callback.py`` as shipped: one
  bare asyncio protocol per connection with httptools' C parser;
* **callback (previous)** -- the same scenario at git commit
  ``PREVIOUS.commit``, the aiohttp receiver it replaced, run from a throw-away
  worktree of that commit (``benchmarks/_previous.py``; needs a git checkout
  that has the commit);
* **push** -- ``scenarios/ws_push.py`` as shipped, the reference the receiver
  is held to.

For each run, from its results file: deliveries, lost, p50/p99, and the
harness's CPU over the *stream window* (the ``resources`` readings of the
harness process, interpolated at the stream start and at the end of the last
second with deliveries; registration, connection set-up and the drain are left
out), divided by the deliveries in that window: **harness CPU µs per
delivery**, and its inverse, **deliveries/s per harness core**. Standard
Webhooks signatures are verified on every callback delivery (the scenario's
default secret).

Goals (issue 25): callback current >= 3x the previous design's deliveries/s
per harness core, and callback current's CPU per delivery <= 4x push's, both
judged on medians of runs taken in the same invocation.

    python benchmarks/receiver_cost.py               # 200 x 30/s for 15 s, 3 repeats, ~4 min
    python benchmarks/receiver_cost.py --quick       # one repeat, 8 s streams
    python benchmarks/receiver_cost.py -S 500 -R 20  # another load
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from _previous import Design, checkout, python_env  # noqa: E402  (beside this file)
from webhook_capacity import _f, _interp_cpu, _table, _tail  # noqa: E402

NS = 1_000_000_000
#: the last commit whose callback receiver was aiohttp's server (a request object and a task per request)
PREVIOUS = Design("f4ec1d95442938f01b97623a1974321440b1ccb5", "aiohttp web server, a task per request")
GOAL_SPEEDUP = 3.0
GOAL_VS_PUSH = 4.0


@dataclass
class Measured:
    """One run's figures, read from its results file."""

    label: str
    rep: int
    status: str = "no results"
    note: str = ""
    deliveries: int = 0
    lost: int = 0
    p50_ms: float | None = None
    p99_ms: float | None = None
    window_deliveries: int = 0
    window_s: float = 0.0
    harness_cpu_s: float = 0.0
    saturated: bool = False

    @property
    def us_per_delivery(self) -> float:
        return self.harness_cpu_s / self.window_deliveries * 1e6 if self.window_deliveries else float("nan")

    @property
    def per_core(self) -> float:
        return self.window_deliveries / self.harness_cpu_s if self.harness_cpu_s > 0 else float("nan")


def read_results(path: Path, mode: str, label: str, rep: int) -> Measured:
    """The harness's CPU over the stream window, and what was delivered in it."""
    out = Measured(label, rep)
    doc = json.loads(path.read_text())
    m = doc["modes"][mode]
    out.status = m["status"]
    out.deliveries = int(m["throughput"]["deliveries"])
    out.lost = int(m["audit"]["lost"])
    delivery = (m.get("summary") or {}).get("delivery") or {}
    out.p50_ms, out.p99_ms = delivery.get("p50"), delivery.get("p99")
    out.saturated = bool(m["harness"]["saturated"])
    cols = m["series"]["columns"]
    busy = [dict(zip(cols, r)) for r in m["series"]["rows"]]
    busy = [r for r in busy if r["deliveries"]]
    if not busy:
        out.note = "no deliveries"
        return out
    start, end = m["stream_start_ns"] / NS, busy[-1]["second"] + 1.0
    out.window_s = end - start
    out.window_deliveries = sum(int(r["deliveries"]) for r in busy)
    rcols = m["resources"]["columns"]
    rows = [dict(zip(rcols, r)) for r in m["resources"]["rows"] if r[rcols.index("role")] == "harness"]
    for pid in {r["pid"] for r in rows}:
        readings = sorted((r["t_s"], r["cpu_s"]) for r in rows if r["pid"] == pid)
        out.harness_cpu_s += _interp_cpu(readings, end) - _interp_cpu(readings, start)
    return out


def run_one(args: argparse.Namespace, label: str, scenario: Path, mode: str, env: dict[str, str] | None,
            work: Path, rep: int) -> Measured:
    import subprocess

    results = work / f"{label.replace(' ', '_').strip('()')}-{rep}.json"
    log = results.with_suffix(".log")
    cmd = [sys.executable, "-m", "locust", "-f", str(scenario), "--headless", "-u", str(args.subscribers),
           "-r", str(min(args.subscribers, 200)), "--rate", repr(args.rate), "--duration", repr(args.duration),
           "--payload-bytes", str(args.payload_bytes), "--results", str(results), "--only-summary",
           "--no-report"]
    timeout = args.duration + 180
    with open(log, "wb") as sink:
        try:
            rc = subprocess.run(cmd, cwd=work, env=env, stdout=sink, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            return Measured(label, rep, note=f"exceeded {timeout:.0f} s")
    if not results.is_file():
        return Measured(label, rep, note=f"exit {rc}, no results; log tail:\n{_tail(log)}")
    return read_results(results, mode, label, rep)


def _median(values: list[float]) -> float:
    kept = [v for v in values if v == v]
    return statistics.median(kept) if kept else float("nan")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="one repeat of 8-s streams")
    p.add_argument("-S", "--subscribers", type=int, default=200)
    p.add_argument("-R", "--rate", type=float, default=30.0, help="events/s (default 30)")
    p.add_argument("-D", "--duration", type=float, default=None, help="seconds of stream (default 15; quick 8)")
    p.add_argument("--repeat", type=int, default=None, help="interleaved runs of each (default 3; quick 1)")
    p.add_argument("--payload-bytes", type=int, default=256)
    p.add_argument("--skip-previous", action="store_true", help="leave out the previous design")
    p.add_argument("--keep", type=Path, help="keep results and logs here")
    args = p.parse_args(argv)
    args.duration = args.duration or (8.0 if args.quick else 15.0)
    repeats = args.repeat or (1 if args.quick else 3)
    started = time.time()
    with ExitStack() as stack:
        work = args.keep or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="receiver_cost-")))
        work.mkdir(parents=True, exist_ok=True)
        plan: list[tuple[str, Path, str, dict[str, str] | None]] = [
            ("callback (current)", REPO / "scenarios" / "webhook_callback.py", "callback", python_env(REPO))]
        if not args.skip_previous:
            root = stack.enter_context(checkout(PREVIOUS))
            plan.append(("callback (previous)", root / "scenarios" / "webhook_callback.py", "callback",
                         python_env(root)))
        plan.append(("push", REPO / "scenarios" / "ws_push.py", "push", python_env(REPO)))
        runs: list[Measured] = []
        for rep in range(1, repeats + 1):
            for label, scenario, mode, env in plan:
                print(f"  {label} #{rep} ...", flush=True)
                runs.append(run_one(args, label, scenario, mode, env, work, rep))
    print()
    print(f"Harness cost per delivery: {args.subscribers} subscribers x {args.rate:g} events/s = "
          f"{args.subscribers * args.rate:,.0f} deliveries/s offered, {args.duration:g} s streams, "
          f"{args.payload_bytes} B events, one Locust process each, built-in targets; previous = git "
          f"{PREVIOUS.commit[:12]} ({PREVIOUS.what})")
    rows = [[f"{r.label} #{r.rep}", r.status, _f(r.deliveries), _f(r.lost), _f(r.p50_ms, ",.1f"),
             _f(r.p99_ms, ",.1f"), _f(r.window_deliveries), _f(r.harness_cpu_s, ".2f"),
             _f(r.us_per_delivery, ",.1f"), _f(r.per_core), "yes" if r.saturated else "no"] for r in runs]
    print(_table(["run", "status", "deliveries", "lost", "p50 ms", "p99 ms", "in window", "harness cpu s",
                  "µs/delivery", "deliveries/s per core", "saturated"], rows))
    for r in runs:
        if r.note:
            print(f"  {r.label} #{r.rep}: {r.note}")
    medians = {label: _median([r.us_per_delivery for r in runs if r.label == label]) for label, *_ in plan}
    print()
    for label, us in medians.items():
        print(f"  median {label}: {us:,.1f} µs per delivery = {1e6 / us:,.0f} deliveries/s per harness core")
    current, push = medians["callback (current)"], medians["push"]
    verdicts = []
    if "callback (previous)" in medians:
        speedup = medians["callback (previous)"] / current
        verdicts.append(speedup >= GOAL_SPEEDUP)
        print(f"  => current vs previous receiver: {speedup:.2f}x deliveries/s per harness core; goal >= "
              f"{GOAL_SPEEDUP:g}x: {'PASS' if verdicts[-1] else 'MISS'}")
    ratio = current / push
    verdicts.append(ratio <= GOAL_VS_PUSH)
    print(f"  => callback CPU per delivery = {ratio:.2f}x push's in the same run; goal <= {GOAL_VS_PUSH:g}x: "
          f"{'PASS' if verdicts[-1] else 'MISS'}")
    print(f"  ({time.time() - started:.0f} s)")
    return 0 if all(verdicts) else 1


if __name__ == "__main__":
    raise SystemExit(main())

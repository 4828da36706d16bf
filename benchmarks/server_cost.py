"""Which push server delivers cheapest on this machine: the same stream through each real server the harness starts.

For every target given (default: the built-in push target and every real
server that is installed -- ``nchan``, ``pushpin``, ``nats``, ``socketio``,
``mosquitto``),
one ``run_bench.py --target NAME --modes push`` with the same subscribers,
rate, duration and payload, one after the other (never two at once: two
cores). From each results file (read through the typed model,
:class:`deliverybench.core.model.Run`) it prints

* the target's CPU per delivery: CPU-seconds of the target's processes
  (sampled once a second by the harness) from the sample at or before the
  stream's start to the one at or after its last due time + drain, over the
  deliveries -- connection set-up is outside the window;
* the harness's CPU per delivery over the same window (reading each server's
  framing: NATS ``MSG``, Socket.IO packets, MQTT ``PUBLISH``, Pushpin's and
  nchan's verbatim events);
* deliveries, lost, p50 / p99;

and each server's target CPU per delivery against the built-in target's in
the same run (the baseline; its ~18 µs per delivery is known to be dear).

Usage::

    python benchmarks/server_cost.py                                  # 2,000 subscribers, 5 events/s for 20 s
    python benchmarks/server_cost.py --subscribers 5000 --rate 2 --targets builtin,nats,nchan

Only 127.0.0.1 is used; each run is bounded by run_bench.py's own time limits.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from deliverybench.core.model import ModeResult, Run  # noqa: E402

NS = 1_000_000_000
#: what each real server needs on this machine (the built-in target needs nothing)
NEEDS: dict[str, tuple[str, ...]] = {"builtin": (), "nchan": ("nginx",), "pushpin": ("pushpin",),
                                     "nats": ("nats-server",), "socketio": ("node",), "mosquitto": ("mosquitto",)}


@dataclass
class Figures:
    target: str
    exit_code: int
    deliveries: int = 0
    lost: int = 0
    p50_ms: float | None = None
    p99_ms: float | None = None
    target_cpu_us: float | None = None
    harness_cpu_us: float | None = None
    note: str = ""


def window_cpu_s(result: ModeResult, role: str, start_s: float, end_s: float) -> float | None:
    """CPU-seconds of ``role``'s processes between the samples bracketing [start_s, end_s]."""
    by_pid: dict[object, list[tuple[float, float]]] = {}
    for row in result.resources.samples.records():
        t_s, cpu_s = row.get("t_s"), row.get("cpu_s")
        if row.get("role") == role and isinstance(t_s, float | int) and isinstance(cpu_s, float | int):
            by_pid.setdefault(row.get("pid"), []).append((float(t_s), float(cpu_s)))
    total, seen = 0.0, False
    for samples in by_pid.values():
        samples.sort()
        before = [cpu for t, cpu in samples if t <= start_s]
        after = [cpu for t, cpu in samples if t >= end_s] or [samples[-1][1]]  # the run ended first: its last
        if before:
            total += after[0] - before[-1]
            seen = True
    return total if seen else None


def run_one(args: argparse.Namespace, target: str, out: Path) -> Figures:
    run_id = f"{target}-{time.strftime('%H%M%S')}"
    cmd = [sys.executable, str(REPO / "run_bench.py"), "--target", target, "--modes", "push",
           "--subscribers", str(args.subscribers), "--rate", str(args.rate), "--duration", str(args.duration),
           "--payload-bytes", str(args.payload_bytes), "--drain", str(args.drain), "--spawn-rate", "1000",
           "--no-report", "--out", str(out), "--run-id", run_id]
    with open(out / f"{run_id}.log", "wb") as log:
        code = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, check=False).returncode
    results = out / run_id / "results.json"
    if not results.exists():
        return Figures(target, code, note=f"no results (exit {code}); see {out / (run_id + '.log')}")
    result = Run.from_dict(json.loads(results.read_text())).mode("push")
    fig = Figures(target, code, deliveries=result.throughput.deliveries, lost=result.audit.count("lost"))
    fig.p50_ms, fig.p99_ms = result.headline.value("p50"), result.headline.value("p99")
    start_s = result.stream_start_ns / NS
    end_s = start_s + args.duration + args.drain
    if fig.deliveries:
        for role in ("target", "harness"):
            cpu = window_cpu_s(result, role, start_s, end_s)
            value = None if cpu is None else cpu / fig.deliveries * 1e6
            if role == "target":
                fig.target_cpu_us = value
            else:
                fig.harness_cpu_us = value
    if result.status != "ok":
        fig.note = f"status {result.status}: {result.failure or ', '.join(result.status_reasons)}"
    return fig


def fmt(value: float | int | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--targets", default=",".join(NEEDS), help=f"comma-separated, of {', '.join(NEEDS)}")
    p.add_argument("--subscribers", type=int, default=2000)
    p.add_argument("--rate", type=float, default=5.0)
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument("--payload-bytes", type=int, default=256)
    p.add_argument("--drain", type=float, default=3.0)
    p.add_argument("--out", default="", help="folder for results and logs (default /tmp/server_cost-<time>)")
    args = p.parse_args(argv)
    targets = [t for t in args.targets.split(",") if t]
    unknown = [t for t in targets if t not in NEEDS]
    if unknown:
        p.error(f"unknown target {unknown[0]!r}; known: {', '.join(NEEDS)}")
    out = Path(args.out or f"/tmp/server_cost-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    figs: list[Figures] = []
    for target in targets:
        missing = [b for b in NEEDS[target] if shutil.which(b) is None]
        if missing:
            print(f"[{target}] skipped: {', '.join(missing)} not installed", flush=True)
            continue
        if figs:
            time.sleep(2)
        print(f"[{target}] {args.subscribers:,} push subscribers, {args.rate:g} events/s for {args.duration:g} s ...",
              flush=True)
        fig = run_one(args, target, out)
        print(f"[{target}] exit {fig.exit_code}: {fig.deliveries:,} deliveries, target "
              f"{fmt(fig.target_cpu_us, '.1f')} us/delivery", flush=True)
        figs.append(fig)
    base = next((f for f in figs if f.target == "builtin"), None)
    print()
    print(f"server cost: {args.subscribers:,} push subscribers, {args.rate:g} events/s for {args.duration:g} s, "
          f"{args.payload_bytes} B; CPU over the stream window (start to last due + {args.drain:g} s); out: {out}")
    print(f"{'target':10}{'deliveries':>12}{'lost':>7}{'p50 ms':>9}{'p99 ms':>9}{'target us/dlv':>15}"
          f"{'vs builtin':>12}{'harness us/dlv':>16}")
    for f in figs:
        ratio = (None if base is None or not base.target_cpu_us or f.target_cpu_us is None
                 else f.target_cpu_us / base.target_cpu_us)
        print(f"{f.target:10}{f.deliveries:>12,}{f.lost:>7,}{fmt(f.p50_ms, '.2f'):>9}{fmt(f.p99_ms, '.2f'):>9}"
              f"{fmt(f.target_cpu_us, '.2f'):>15}{fmt(ratio, '.2f') + 'x':>12}{fmt(f.harness_cpu_us, '.2f'):>16}")
    for f in figs:
        if f.note:
            print(f"note ({f.target}): {f.note}")
    ranked = sorted((f for f in figs if f.target_cpu_us is not None and f.lost == 0),
                    key=lambda f: f.target_cpu_us or 0.0)
    if ranked:
        print(f"cheapest per delivery on this machine: {ranked[0].target} ({ranked[0].target_cpu_us:.2f} us)")
    return 0 if figs and all(f.exit_code == 0 for f in figs) else 1


if __name__ == "__main__":
    sys.exit(main())

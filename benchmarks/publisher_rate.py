"""How fast the open-model publisher publishes, how late, at what CPU cost -- and through a stall.

For each case a fresh minimal ingress (``benchmarks/_minimal_ingress.py``, a
bare uvloop protocol answering 202, in its own process on 127.0.0.1) is
started, and the publisher runs in a child process of its own so its CPU is
its own:

* **new**: :class:`deliverybench.adapters.publisher.Publisher` -- one event per
  request over up to ``--concurrency`` keep-alive connections (the default for
  external targets);
* **old** (the baseline, measured in the same run): the previous design
  -- one connection, one request at a time, NDJSON catch-up batches when
  late -- as git commit ``PREVIOUS.commit`` has it
  (``deliverybench/harness/publisher.py``), run from a throw-away git
  worktree of that commit with its own code on ``PYTHONPATH``
  (``benchmarks/_previous.py``); this needs a git checkout that has the commit.

Cases: a steady ingress at ``--rate`` events/s (goal: >= 20,000 events/s
with publisher lag p99 <= 5 ms), and an ingress that takes one event per
request and stalls ``--stall-for`` s of every ``--stall-every`` s, at
``--stall-rate`` events/s. Printed per case and design: events published
(sent) and accepted, the rate achieved over the schedule, lag (send - due)
p50/p99/max, CPU µs per event (user + system of the publisher process over
its run), ack − due p99 -- the best latency any delivery could report -- and,
for the stall, how many events were sent while the ingress was stalled.
Every run is bounded (schedule + request timeout + 30 s).

    python benchmarks/publisher_rate.py                 # 20,000/s for 10 s; stall case at 500/s
    python benchmarks/publisher_rate.py --rate 30000 --duration 5
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _previous import REPO, Design, checkout, import_from, python_env  # beside this file

NS = 1_000_000_000
GOAL_RATE = 20_000
GOAL_LAG_P99_MS = 5.0
#: the last commit before e2c51cf replaced this publisher with the open model's pool of keep-alive connections
PREVIOUS = Design("2fd853320dce60ee64146d075910b5f24e53d3f0",
                  "one connection, one request at a time, NDJSON catch-up batches when late")


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _percentiles_ms(values_us: list[int]) -> dict[str, float | None]:
    import numpy as np

    if not values_us:
        return {"p50": None, "p99": None, "max": None}
    arr = np.asarray(values_us, dtype=np.float64) / 1000.0
    return {"p50": float(np.percentile(arr, 50)), "p99": float(np.percentile(arr, 99)), "max": float(arr.max())}


def _in_stall(t_ns: int, t0: float, every: float, length: float) -> bool:
    if every <= 0:
        return False
    phase = (t_ns / NS - t0) % every
    return phase >= every - length


# -- children: one publisher run each -----------------------------------------------------

def child_new(args: argparse.Namespace) -> dict[str, Any]:
    import uvloop

    from deliverybench.adapters.publisher import Publisher, PublisherOptions
    from deliverybench.core.schedule import Schedule

    acks: list[tuple[int, int, int]] = []  # (lo, hi, done_ns)

    class Timed(Publisher):
        def _on_result(self, job: Any, outcome: Any, sent_ns: int, done_ns: int, retry_after: Any) -> None:
            if isinstance(outcome, int) and 200 <= outcome < 300:
                acks.append((job[0][0], job[0][1], done_ns))
            super()._on_result(job, outcome, sent_ns, done_ns, retry_after)

    schedule = Schedule(rate=args.rate, duration_s=args.duration)
    publisher = Timed(PublisherOptions(ingress_url=args.url, schedule=schedule, payload_bytes=256,
                                       concurrency=args.concurrency, batch=1))

    async def run() -> Any:
        return await publisher.run(time.time_ns() + 300_000_000)

    cpu0 = _cpu_s()
    out = uvloop.run(run())
    cpu = _cpu_s() - cpu0
    log = out.log
    lags = [v for values in out.lag_us.values() for v in values]
    ack_lat = [(done - log.due_ns[k]) // 1000 for lo, hi, done in acks for k in range(lo, hi)]
    return _figures(log.due_ns, log.sent_ns, log.ok, lags, ack_lat, cpu, out.requests, args)


def child_old(args: argparse.Namespace) -> dict[str, Any]:
    """The previous publisher, imported from the checkout on PYTHONPATH (never from this tree)."""
    import gevent

    root = Path(args.checkout)
    old = import_from(root, "deliverybench.harness.publisher")
    schedule = import_from(root, "deliverybench.core.schedule").Schedule(rate=args.rate, duration_s=args.duration)
    publisher = old.Publisher(old.PublisherOptions(ingress_url=args.url, schedule=schedule, payload_bytes=256))
    acks: dict[int, int] = {}
    post = publisher._post

    def timed_post(body: bytes) -> tuple[bool, str]:
        ok, kind = post(body)
        done = time.time_ns()
        first = len(publisher.outcome.log.due_ns)
        for k in range(first, first + body.count(b"\n") + 1):
            acks[k] = done if ok else 0
        return ok, kind

    publisher._post = timed_post
    cpu0 = _cpu_s()
    out = gevent.spawn(publisher.run, time.time_ns() + 300_000_000).get(timeout=args.duration + 60)
    cpu = _cpu_s() - cpu0
    log = out.log
    lags = [(sent - due) // 1000 for due, sent in zip(log.due_ns, log.sent_ns)]
    ack_lat = [(acks[k] - log.due_ns[k]) // 1000 for k in range(len(log.due_ns)) if acks.get(k)]
    return _figures(log.due_ns, log.sent_ns, log.ok, lags, ack_lat, cpu, out.requests, args)


def _figures(due: list[int], sent: list[int], ok: list[bool], lags: list[int], acks: list[int], cpu: float,
             requests: int, args: argparse.Namespace) -> dict[str, Any]:
    published = sum(1 for s in sent if s)
    span = (max(sent) - due[0]) / NS if published else 0.0
    return {
        "scheduled": len(due), "published": published, "accepted": sum(ok), "requests": requests,
        "rate": published / max(span, args.duration) if published else 0.0,
        "lag_ms": _percentiles_ms(lags), "ack_ms": _percentiles_ms(acks),
        "cpu_us_per_event": cpu / published * 1e6 if published else None,
        "sent_in_stall": sum(1 for s in sent if s and _in_stall(s, args.t0, args.stall_every, args.stall_for)),
    }


# -- the parent ------------------------------------------------------------------------------

def start_ingress(*flags: str) -> tuple[subprocess.Popen[str], int, float]:
    proc = subprocess.Popen([sys.executable, str(REPO / "benchmarks" / "_minimal_ingress.py"), *flags],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    ready = json.loads(proc.stdout.readline())
    return proc, int(ready["port"]), float(ready["t0"])


def run_case(design: str, root: Path, rate: float, duration: float, concurrency: int, ingress_flags: list[str],
             stall: tuple[float, float]) -> dict[str, Any]:
    """One publisher run in a child process with the code of ``root`` (this tree or the previous checkout)."""
    ingress, port, t0 = start_ingress(*ingress_flags)
    try:
        cmd = [sys.executable, __file__, "--child", design, "--url", f"http://127.0.0.1:{port}/publish",
               "--rate", str(rate), "--duration", str(duration), "--concurrency", str(concurrency),
               "--t0", repr(t0), "--stall-every", str(stall[0]), "--stall-for", str(stall[1]),
               "--checkout", str(root)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 90, env=python_env(root))
        if proc.returncode != 0:
            raise SystemExit(f"{design} publisher failed:\n{proc.stderr[-2000:]}")
        return dict(json.loads(proc.stdout.strip().splitlines()[-1]))
    finally:
        ingress.terminate()
        ingress.wait(10)


def fmt(value: Any, spec: str = ",.1f") -> str:
    return "-" if value is None else format(value, spec)


def table(title: str, results: dict[str, dict[str, Any]], stall: bool) -> None:
    new, old = results["new"], results["old"]
    print(f"\n{title}")
    print(f"{'':34}{'new (open model)':>18}{'old (1 connection)':>20}{'new / old':>12}")

    def row(name: str, a: Any, b: Any, spec: str = ",.1f", ratio: bool = True) -> None:
        r = f"{a / b:.2f}x" if ratio and isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else ""
        print(f"{name:34}{fmt(a, spec):>18}{fmt(b, spec):>20}{r:>12}")

    row("events scheduled", new["scheduled"], old["scheduled"], ",d", False)
    row("events published (sent)", new["published"], old["published"], ",d")
    row("events accepted (2xx)", new["accepted"], old["accepted"], ",d")
    row("requests", new["requests"], old["requests"], ",d")
    row("events/s achieved", new["rate"], old["rate"], ",.0f")
    row("lag (send - due) p50 ms", new["lag_ms"]["p50"], old["lag_ms"]["p50"], ",.2f")
    row("lag p99 ms", new["lag_ms"]["p99"], old["lag_ms"]["p99"], ",.2f")
    row("lag max ms", new["lag_ms"]["max"], old["lag_ms"]["max"], ",.2f")
    row("ack - due p99 ms", new["ack_ms"]["p99"], old["ack_ms"]["p99"], ",.2f")
    row("publisher CPU us / event", new["cpu_us_per_event"], old["cpu_us_per_event"], ",.1f")
    if stall:
        row("events sent during stalls", new["sent_in_stall"], old["sent_in_stall"], ",d")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=float, default=20_000.0, help="events/s of the steady case (default 20,000)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds of schedule (default 10)")
    p.add_argument("--concurrency", type=int, default=256, help="new publisher: requests in flight (default 256)")
    p.add_argument("--stall-rate", type=float, default=500.0, help="events/s of the stall case (default 500)")
    p.add_argument("--stall-every", type=float, default=3.0)
    p.add_argument("--stall-for", type=float, default=1.0)
    p.add_argument("--child", choices=("new", "old"), help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--t0", type=float, default=0.0, help=argparse.SUPPRESS)
    p.add_argument("--checkout", default=str(REPO), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        figures = child_new(args) if args.child == "new" else child_old(args)
        print(json.dumps(figures))
        return 0

    with checkout(PREVIOUS) as previous:  # before any run, so a clone without the commit fails at once
        print(f"publisher rate: {os.cpu_count()} cores; minimal ingress on 127.0.0.1 in its own process; "
              "each publisher in its own process")
        roots = {"new": REPO, "old": previous}
        steady = {d: run_case(d, roots[d], args.rate, args.duration, args.concurrency, [], (0.0, 0.0))
                  for d in ("new", "old")}
        table(f"steady ingress, {args.rate:,.0f} events/s for {args.duration:g} s, one event per request (new)",
              steady, stall=False)
        stall = (args.stall_every, args.stall_for)
        flags = ["--single", "--stall-every", str(args.stall_every), "--stall-for", str(args.stall_for)]
        stalled = {d: run_case(d, roots[d], args.stall_rate, args.duration, args.concurrency, flags, stall)
                   for d in ("new", "old")}
    table(f"ingress taking one event per request, stalled {args.stall_for:g} s of every {args.stall_every:g} s, "
          f"{args.stall_rate:,.0f} events/s for {args.duration:g} s", stalled, stall=True)
    new = steady["new"]
    ok_rate = new["rate"] >= GOAL_RATE * 0.99 and new["published"] == new["scheduled"]
    ok_lag = new["lag_ms"]["p99"] is not None and new["lag_ms"]["p99"] <= GOAL_LAG_P99_MS
    print("\ngoals (new publisher, steady ingress):")
    print(f"  {'PASS' if ok_rate else 'FAIL'}  >= {GOAL_RATE:,} events/s sustained       measured {new['rate']:,.0f}"
          f" ({new['published']:,} of {new['scheduled']:,} sent)")
    print(f"  {'PASS' if ok_lag else 'FAIL'}  lag p99 <= {GOAL_LAG_P99_MS:g} ms                  measured "
          f"{fmt(new['lag_ms']['p99'], ',.2f')} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Does the CI gate raise false alarms, and does it catch real slow-downs? Counted, on this machine.

Three pools of CI-profile push runs are measured (each run its own
``run_bench.py --profile ci --repeats 1``: fresh built-in target, fresh Locust,
warm-up discarded):

* **A** -- the target as it is (``--pool`` runs);
* **B** -- the target's test knob ``--target-delay-ms`` set to +30 % of A's
  median p99;
* **C** -- the same knob at +10 %.

The first ``--calibrate`` runs of A set the knob; every other run of the three
pools is then taken in one shuffled order, so a shared machine's drift over
the half hour (seen here: the same target 20 % faster twenty minutes later)
falls on all three pools alike instead of posing as a difference between them.

Then ``--comparisons`` gate decisions are drawn per scenario, each K runs
against K runs exactly as ``run_bench.py --profile ci --baseline`` decides
(:func:`deliverybench.core.gate.compare` on two documents of K repeats), for
each K of ``--per-side`` (default: 5, and the CI profile's own ``--repeats``, 10):

* A vs A (two disjoint halves of a random draw): every regression is a false alarm;
* A vs B: every regression is a detection (+30 % is beyond the 15 % p99 tolerance);
* A vs C: +10 % is inside the tolerance -- counted as detected, unchanged or
  inconclusive, to show where the gate stands.

The comparisons of one scenario share runs (they are drawn from one pool),
so they are not independent trials; the runs within a comparison are. Drawing
100 of them (the default) estimates how often the gate decides a comparison of
runs like these far better than 10 do: here (20-s runs) 10 draws gave 9 detections of +30 %
where 100 gave 60. Every run is bounded; only 127.0.0.1 is used. Takes ~16
minutes on 2 cores (61 runs of 15 s), then seconds per --per-side value;
``--reuse`` draws again from pools already measured.

To choose between ways of running the profile (shorter runs, more of them),
give each as ``--variant NAME=OPTIONS``: every variant gets its own three
pools, and all their runs are taken in one shuffled order, so none of them is
luckier with the machine than another; ``--delay-ms`` then sets the same
slow-down for all of them rather than one calibrated from each variant's own
first few runs (three runs that meet one slow stretch set the knob 40 % too
high here).

    python benchmarks/gate_noise.py
    python benchmarks/gate_noise.py --variant 'now=' --variant 'was=--duration 10 --spawn-rate 250' \
        --delay-ms 4.5 --pool 20 --per-side 5,10
    python benchmarks/gate_noise.py --reuse --out /tmp/gate_noise-... --per-side 5,6,7
"""

from __future__ import annotations

import argparse
import json
import random
import shlex
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from scipy import stats

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from deliverybench.core.gate import compare  # noqa: E402
from deliverybench.core.metrics import metric_value  # noqa: E402
from deliverybench.core.model import ModeResult, Run  # noqa: E402
from deliverybench.core.options import PROFILES  # noqa: E402
from deliverybench.core.repeats import merge_repeats  # noqa: E402

PER_SIDE = int(PROFILES["ci"]["repeats"])  # the CI profile's --repeats


def runs_of_pool(doc: Run) -> list[ModeResult]:
    """The pool's runs (the repeats of its push mode)."""
    return list(doc.mode("push").runs)


def median_p99(runs: Sequence[ModeResult]) -> float:
    """The median per-run p99 of ``runs`` (the upper one of an even count): what the knob is set from."""
    p99s = sorted(metric_value(r, "p99") or 0.0 for r in runs)
    return p99s[len(p99s) // 2]


def steal_shares(doc: Run) -> list[float | None]:
    """Each run's CPU steal (the hypervisor's share of all CPU time while it measured), from its results.

    Why it is printed: on a shared VM a run's p99 follows the steal during it.
    """
    return [run.harness.steal_fraction for run in runs_of_pool(doc)]


def one_run(out: Path, run_id: str, delay_ms: float, *, extra: Sequence[str] = (), reuse: bool = False) -> Run:
    """One CI-profile push run (``out/run_id``, ``extra`` run_bench.py options on top) as its results document,
    read into the model once.

    With ``reuse``, a run already measured in ``out`` is read instead of run again.
    """
    path = out / run_id / "results.json"
    if reuse and path.is_file():
        doc = Run.from_dict(json.loads(path.read_text()))
        print(f"[{run_id}] reused", flush=True)
        return doc
    cmd = [sys.executable, str(REPO / "run_bench.py"), "--profile", "ci", "--modes", "push", "--repeats", "1",
           "--out", str(out), "--run-id", run_id, "--no-report", "--overwrite", *extra]
    if delay_ms:
        cmd += ["--target-delay-ms", f"{delay_ms:.3f}"]
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"run {run_id} failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    doc = Run.from_dict(json.loads(path.read_text()))
    (run,) = runs_of_pool(doc)
    if metric_value(run, "p99") is None:
        raise SystemExit(f"run {run_id} measured nothing (see {out / run_id}); not counting around it")
    print(f"[{run_id}] {time.monotonic() - started:.0f} s: p99 {metric_value(run, 'p99'):.2f} ms, "
          f"CPU steal {_pct(run.harness.steal_fraction)}", flush=True)
    return doc


@dataclass
class Variant:
    """One way of running the CI profile (``extra`` run_bench.py options on top), and what it measured."""

    name: str  # prefixes its runs' folders ("" for the profile as it is)
    extra: list[str]
    runs: dict[str, list[Run]] = field(default_factory=dict)  # pool name -> results documents
    median: float = 0.0  # A's calibration median p99
    delays: dict[str, float] = field(default_factory=dict)  # pool name -> target delay (ms)

    def run_id(self, pool: str, k: int) -> str:
        return f"{self.name}{'-' if self.name else ''}{pool}{k:02d}"

    def docs(self) -> dict[str, Run]:
        """Each pool as one results document whose repeats are its runs."""
        return {name: document(docs[0], [runs_of_pool(d)[0] for d in docs]) for name, docs in self.runs.items()}


def pools(out: Path, variants: list[Variant], sizes: dict[str, int], calibrate: int, rng: random.Random, *,
          delay_ms: float | None = None, reuse: bool = False) -> None:
    """Measure every variant's three pools into ``variant.runs``.

    Each variant's first ``calibrate`` A runs set its knob for B (+30 % of their median p99) and C (+10 %),
    unless ``delay_ms`` fixes B's delay (C's is a third of it) for all, so that variants are tried against
    the same slow-down. Every other run of every pool of every variant is then taken in one shuffled order:
    a shared machine's drift falls on all of them alike instead of posing as a difference between them.
    """
    for v in variants:
        v.runs = {name: [] for name in sizes}
    for i in range(calibrate):
        for v in variants:
            v.runs["A"].append(one_run(out, v.run_id("A", i + 1), 0.0, extra=v.extra, reuse=reuse))
    for v in variants:
        v.median = median_p99([runs_of_pool(d)[0] for d in v.runs["A"]])
        slow = 0.30 * v.median if delay_ms is None else delay_ms
        v.delays = {"A": 0.0, "B": slow, "C": slow / 3}
        print(f"calibration{' of ' + v.name if v.name else ''}: A's median p99 {v.median:.2f} ms over {calibrate} "
              f"runs; B adds {v.delays['B']:.2f} ms and C {v.delays['C']:.2f} ms of target delay"
              f"{' (--delay-ms)' if delay_ms is not None else ''}", flush=True)
    order = [(v, name) for v in variants for name, k in sizes.items() for _ in range(k - len(v.runs[name]))]
    rng.shuffle(order)
    for v, name in order:
        v.runs[name].append(one_run(out, v.run_id(name, len(v.runs[name]) + 1), v.delays[name], extra=v.extra,
                                    reuse=reuse))


def parse_variant(text: str, common: list[str]) -> Variant:
    """``NAME=ARGS`` (``T=--duration 10``) as a :class:`Variant`, ``common`` options first."""
    name, sep, rest = text.partition("=")
    if not sep or not name.isidentifier():
        raise ValueError(f"--variant takes NAME=OPTIONS, NAME a word (T, short, d5), not {text!r}")
    return Variant(name, [*common, *shlex.split(rest)])


def _pct(share: float | None) -> str:
    return "?" if share is None else f"{share * 100:.1f} %"


def steal_report(docs: dict[str, Run]) -> None:
    """Each pool's median p99 and steal, and how p99 follows steal over every run (Spearman)."""
    xs: list[float] = []
    ys: list[float] = []
    print()
    for name, doc in docs.items():
        shares = steal_shares(doc)
        p99s = [metric_value(r, "p99") or 0.0 for r in runs_of_pool(doc)]
        known = [st for st in shares if st is not None]
        print(f"  pool {name}: median p99 {median_p99(runs_of_pool(doc)):.2f} ms over {len(p99s)} runs; "
              f"CPU steal per run {_pct(min(known)) if known else '?'}-{_pct(max(known)) if known else '?'}")
        for p99, st in zip(p99s, shares):
            if st is not None:
                xs.append(st)
                ys.append(p99)
    if len(xs) >= 5:
        rho, p = stats.spearmanr(xs, ys)
        print(f"  p99 against CPU steal over {len(xs)} runs: Spearman rho {rho:.2f} (p {p:.2g})")


def document(template: Run, runs: Sequence[ModeResult]) -> Run:
    """``template`` with ``runs`` as its push mode, combined as ``--repeats`` combines them."""
    if len(runs) == 1:
        return replace(template, modes={"push": runs[0]})
    merged = merge_repeats(runs)
    del merged["repeats"]  # the runs are models already: read only the combined view, then hold them as they are
    return replace(template, modes={"push": replace(ModeResult.from_dict(merged, "modes.push"), repeats=tuple(runs))})


def without_histograms(runs: Sequence[ModeResult]) -> list[ModeResult]:
    """``runs`` without their HDR histograms (for decisions of two or more runs a side).

    Why: with K >= 2 runs a side the gate reads only each run's own summary values (the histograms serve the
    one-run interval), while merging a draw's histograms into its mode result took most of a decision's time
    (114 ms a decision with them, 19 ms without). The comparison comes out the same either way: outcome,
    every metric's numbers and verdict, warnings (45 of 45 draws of 2, 5 and 10 runs a side from its pools).
    """
    return [replace(run, histograms={}) for run in runs]


def decide(base_doc: Run, base_runs: list[ModeResult], new_doc: Run, new_runs: list[ModeResult]) -> str:
    if len(base_runs) >= 2 and len(new_runs) >= 2:
        base_runs, new_runs = without_histograms(base_runs), without_histograms(new_runs)
    comparison = compare(document(base_doc, base_runs), document(new_doc, new_runs))
    verdicts = {m.metric: m.verdict for m in comparison.metrics if m.mode == "push"}
    if comparison.outcome == "regression":
        return "regression"
    return str(verdicts.get("p99", "inconclusive"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pool", type=int, default=21,
                   help="runs in pool A (default 21; B and C get twice the largest --per-side)")
    p.add_argument("--calibrate", type=int, default=3, help="A's first runs, which set B's and C's delay (default 3)")
    p.add_argument("--delay-ms", type=float, default=None,
                   help="B's target delay instead of 30 %% of A's calibration p99 (C gets a third of it); "
                        "the same for every variant")
    p.add_argument("--comparisons", type=int, default=100, help="gate decisions per scenario (default 100)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--per-side", default=f"5,{PER_SIDE}",
                   help="runs per side of each decision, comma-separated (default: 5, and the CI profile's repeats)")
    p.add_argument("--out", default="", help="folder for the pools' results (default /tmp/gate_noise-<time>)")
    p.add_argument("--run-args", default="",
                   help="more run_bench.py options for every run, to try another profile (e.g. '--duration 10')")
    p.add_argument("--variant", action="append", default=[], metavar="NAME=OPTIONS",
                   help="a way of running the profile to measure beside the others, runs interleaved "
                        "(repeatable; e.g. --variant 'd10=--duration 10' --variant 'd5=--duration 5')")
    p.add_argument("--reuse", action="store_true", help="read pools already measured in --out instead of running them")
    args = p.parse_args(argv)
    try:
        sides = sorted({int(k) for k in args.per_side.split(",")})
    except ValueError:
        p.error(f"--per-side takes whole numbers separated by commas, not {args.per_side!r}")
    most = max(sides)
    if min(sides) < 1 or args.pool < 2 * most:
        p.error(f"--per-side must be at least 1 and --pool at least {2 * most}")
    if not 1 <= args.calibrate <= args.pool:
        p.error("--calibrate must be between 1 and --pool")
    if args.delay_ms is not None and not args.delay_ms > 0:
        p.error("--delay-ms must be positive")
    common = shlex.split(args.run_args)
    try:
        variants = [parse_variant(text, common) for text in args.variant] or [Variant("", common)]
    except ValueError as exc:
        p.error(str(exc))
    if len({v.name for v in variants}) < len(variants):
        p.error("--variant names must differ")
    out = Path(args.out or f"/tmp/gate_noise-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)

    pools(out, variants, {"A": args.pool, "B": 2 * most, "C": 2 * most}, args.calibrate,
          random.Random(args.seed), delay_ms=args.delay_ms, reuse=args.reuse)
    for v in variants:
        docs = v.docs()
        if v.name:
            print(f"\n=== variant {v.name}: {shlex.join(v.extra) or 'the profile as it is'}")
        for k in sides:
            report(k, args.comparisons, rng, docs["A"], docs["B"], docs["C"], v.delays, out)
        steal_report(docs)
        median = median_p99(runs_of_pool(docs["A"]))
        for name in ("B", "C"):
            got = median_p99(runs_of_pool(docs[name]))
            meant = v.delays[name] / v.median * 100
            print(f"  pool {name}: {v.delays[name]:.2f} ms of target delay, meant +{meant:.0f} % "
                  f"of A's calibration p99; measured {(got / median - 1) * 100:+.0f} % "
                  f"(median {got:.2f} ms against {median:.2f} ms)")
    return 0


def report(per_side: int, comparisons: int, rng: random.Random, a_doc: Run, b_doc: Run, c_doc: Run,
           delays: dict[str, float], out: Path) -> None:
    """Draw ``comparisons`` decisions of ``per_side`` vs ``per_side`` runs per scenario; print the table."""
    a_runs = runs_of_pool(a_doc)
    scenarios = {"A vs A (identical)": (a_doc, b_doc, None), "A vs B (+30 % p99)": (a_doc, b_doc, "B"),
                 "A vs C (+10 % p99)": (a_doc, c_doc, "C")}
    rows = []
    for name, (base_doc, new_doc, which) in scenarios.items():
        counts: Counter[str] = Counter()
        new_runs_pool = runs_of_pool(new_doc)
        for _ in range(comparisons):
            if which is None:
                draw = rng.sample(a_runs, 2 * per_side)
                base, new = draw[:per_side], draw[per_side:]
                counts[decide(a_doc, base, a_doc, new)] += 1
            else:
                base = rng.sample(a_runs, per_side)
                new = rng.sample(new_runs_pool, per_side)
                counts[decide(base_doc, base, new_doc, new)] += 1
        rows.append((name, counts))

    print()
    run = a_doc.mode("push").params  # what the runs did, --run-args included
    print(f"gate noise: CI profile (push, {run.subscribers} subscribers, {run.rate or 0:g} events/s, "
          f"{run.duration_s or 0:g} s + {run.warmup_s or 0:g} s warm-up), pools run interleaved, "
          f"{per_side} vs {per_side} runs per decision, {comparisons} decisions per scenario; "
          f"B adds {delays['B']:.2f} ms of target delay (+30 %) and C {delays['C']:.2f} ms (+10 %); out: {out}")
    print()
    header = (f"{'scenario':24}{'decisions':>10}{'regression':>12}{'unchanged':>11}{'inconclusive':>14}"
              f"{'improvement':>13}")
    print(header)
    for name, counts in rows:
        print(f"{name:24}{sum(counts.values()):>10}{counts['regression']:>12}{counts['unchanged']:>11}"
              f"{counts['inconclusive']:>14}{counts['improvement']:>13}")
    print()
    false_alarms = rows[0][1]["regression"]
    detected = rows[1][1]["regression"]
    print("goals:")
    print(f"  {'PASS' if false_alarms == 0 else 'MISS'}  0 false regressions among identical runs        "
          f"measured {false_alarms} of {comparisons}")
    print(f"  {'PASS' if detected == comparisons else 'MISS'}  every +30 % p99 slow-down detected             "
          f"measured {detected} of {comparisons}")
    c = rows[2][1]
    print(f"  info  +10 % (inside the 15 % tolerance): {c['regression']} called regression, "
          f"{c['unchanged']} unchanged, {c['inconclusive']} inconclusive")


if __name__ == "__main__":
    sys.exit(main())

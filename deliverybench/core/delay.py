"""Acknowledgement delays a simulated receiver adds: fixed, exponential or uniform.

A callback receiver that answers instantly is not what real consumers do;
``--ack-delay`` makes the harness's receivers slower on purpose, in one of
three shapes, so a target's in-flight limits and timeouts get exercised.
The spec is parsed here (pure) and drawn by the receiver with its own RNG.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

__all__ = ["DelaySpec", "parse_delay"]


@dataclass(frozen=True, slots=True)
class DelaySpec:
    """An acknowledgement delay: ``5`` (ms), ``exp:5`` (mean ms) or ``uniform:2,10``."""

    kind: str = "fixed"
    a: float = 0.0
    b: float = 0.0

    def draw_s(self, rng: random.Random) -> float:
        if self.kind == "exp":
            return rng.expovariate(1.0 / self.a) / 1000.0 if self.a > 0 else 0.0
        if self.kind == "uniform":
            return rng.uniform(self.a, self.b) / 1000.0
        return self.a / 1000.0


def parse_delay(text: str) -> DelaySpec:
    """Parse ``--ack-delay``; raises ValueError with a one-line reason."""
    text = (text or "0").strip()
    try:
        if text.startswith("exp:"):
            spec = DelaySpec("exp", float(text[4:]))
        elif text.startswith("uniform:"):
            low, high = (float(x) for x in text[8:].split(","))
            spec = DelaySpec("uniform", low, high)
        else:
            spec = DelaySpec("fixed", float(text))
    except ValueError:
        raise ValueError(f"ack delay {text!r}: use MS, exp:MEAN_MS or uniform:LOW_MS,HIGH_MS") from None
    if not (math.isfinite(spec.a) and math.isfinite(spec.b)):
        raise ValueError(f"ack delay {text!r} must be a finite number of milliseconds")
    if spec.a < 0 or spec.b < 0 or (spec.kind == "uniform" and spec.b < spec.a):
        raise ValueError(f"ack delay {text!r} must be non-negative (and LOW <= HIGH)")
    return spec

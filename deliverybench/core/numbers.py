"""How deliverybench prints a number: one rule for the console, the CI markdown and the HTML report.

The same p99 once read ``992.767`` in the report and ``992.77`` on the
console; a reader comparing the two wondered which was right. Every table
cell that shows a figure goes through this module, so a figure is spelled
the same wherever it appears:

* latencies (:func:`ms`): 2 decimals below 1,000 ms, whole milliseconds with
  thousands separators from there on (an HDR histogram keeps 3 significant
  digits, so decimals of a second-long latency are noise);
* counts (:func:`count`): whole, with thousands separators;
* rates (:func:`rate`): events or deliveries per second, 1 decimal;
* percentages (:func:`percent`): a fraction shown as ``12.3 %``;
* CPU seconds (:func:`cpu_seconds`): 2 decimals;
* anything missing (``None``, NaN): :data:`MISSING`, never ``0``.

Sentences use :func:`ms_words` instead: about three significant digits
and the unit, as one would say them.
"""

from __future__ import annotations

import math
from typing import SupportsFloat

__all__ = ["MISSING", "missing", "ms", "signed_ms", "count", "rate", "percent", "cpu_seconds", "fixed", "ms_words"]

#: what a value that was not measured prints as (an external target's CPU, a mode without latencies)
MISSING = "—"


def missing(value: object) -> bool:
    """True for ``None`` and NaN: values that print as :data:`MISSING`."""
    if value is None:
        return True
    if not isinstance(value, SupportsFloat):
        return False
    try:
        return math.isnan(float(value))
    except (TypeError, ValueError):
        return False


def fixed(value: float | None, decimals: int) -> str:
    """``value`` with ``decimals`` decimals and thousands separators."""
    if value is None or missing(value):
        return MISSING
    return f"{float(value):,.{decimals}f}"


def ms(value: float | None) -> str:
    """A latency in milliseconds: ``992.77``, ``1,112``."""
    return fixed(value, 2 if value is None or abs(float(value)) < 1000 else 0)


def signed_ms(value: float | None) -> str:
    """A change of latency in milliseconds, with its sign: ``+1.25``, ``-1,020``."""
    text = ms(None if value is None else abs(float(value)))
    return text if text == MISSING or value is None else ("+" if value >= 0 else "-") + text


def count(value: float | None) -> str:
    """A count: ``1,895``."""
    return fixed(value, 0)


def rate(value: float | None) -> str:
    """Events or deliveries per second: ``474.8``."""
    return fixed(value, 1)


def percent(fraction: float | None) -> str:
    """A fraction as a percentage: ``0.123`` -> ``12.3 %``."""
    text = fixed(None if fraction is None else float(fraction) * 100, 1)
    return text if text == MISSING else f"{text} %"


def cpu_seconds(value: float | None) -> str:
    """CPU time in seconds: ``0.03``; :data:`MISSING` for a process that was not sampled."""
    return fixed(value, 2)


def ms_words(value: float) -> str:
    """A latency for a sentence: about three significant digits, with its unit (``5.09 ms``, ``1.11 s``)."""
    if value >= 1000:
        return f"{value / 1000:,.2f} s"
    if value >= 100:
        return f"{value:,.0f} ms"
    if value >= 10:
        return f"{value:.1f} ms"
    return f"{value:.2f} ms"

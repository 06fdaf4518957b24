"""Statistics of paired comparisons: differences, intervals, verdicts (report and benchmarks).

A *pair* is one difference between two fits that share everything but the compared factor.
Pairs are averaged within their *unit* (image × network seed × noise seed, and task when
tasks are pooled) so that several sparsities of one fit chain do not count as independent
evidence; the interval is a Student t interval over the units' mean differences. Units on
the same image share that image's difficulty: the interval *clustered by image* averages the
units of each image first and takes the t interval over images, which is what generalising
to other images can rest on (it is wide with few images, and absent with one).

Verdicts, against a threshold (0 for "better than", −δ for "not worse by more than δ"):
``holds`` (the whole interval above), ``contradicted`` (the whole interval below), ``not
shown`` (otherwise, or fewer than two units: ``not shown (n=1)``).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

CONFIDENCE = 0.95
DELTA = 0.1  # dB: the non-inferiority margin of "≥" claims


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE
               ) -> tuple[float | None, float | None, float | None]:
    """Mean and two-sided Student t confidence interval of ``values``; (mean, None, None)
    for one value, all None for none."""
    from scipy.stats import t

    n = len(values)
    if n == 0:
        return None, None, None
    mean = statistics.fmean(values)
    if n < 2:
        return mean, None, None
    half = t.ppf(0.5 + confidence / 2, n - 1) * statistics.stdev(values) / math.sqrt(n)
    return mean, mean - half, mean + half


def verdict(n: int, low: float | None, high: float | None, threshold: float = 0.0) -> str:
    """``holds`` if the interval is above ``threshold``, ``contradicted`` if below, else
    ``not shown`` (with ``(n=…)`` when fewer than two units leave no interval)."""
    if n < 2 or low is None or high is None:
        return f"not shown (n={n})"
    if low > threshold:
        return "holds"
    if high < threshold:
        return "contradicted"
    return "not shown"


@dataclass(frozen=True)
class Pair:
    """One paired difference ``first − second`` and where it comes from."""

    unit: tuple  # what pairs are averaged within (scope, image, seed, noise seed)
    image: str
    sparsity: float
    difference: float
    draw: str | None = None  # identity of the second side's random draw (its mask), if any


@dataclass(frozen=True)
class Estimate:
    """A mean paired difference with its intervals and what stands behind them."""

    n: int  # units
    images: int
    pairs: int
    draws: int | None  # independent random draws on the second side (distinct masks), if any
    mean: float | None
    low: float | None
    high: float | None
    image_low: float | None  # interval clustered by image
    image_high: float | None
    verdict: str
    threshold: float


def estimate(pairs: Sequence[Pair], threshold: float = 0.0,
             confidence: float = CONFIDENCE) -> Estimate:
    """Units' mean differences, their t interval and verdict, and the interval clustered
    by image."""
    units: dict[tuple, list[float]] = {}
    images: dict[str, dict[tuple, float]] = {}
    for p in pairs:
        units.setdefault(p.unit, []).append(p.difference)
    for p in pairs:
        images.setdefault(p.image, {})[p.unit] = statistics.fmean(units[p.unit])
    mean, low, high = t_interval([statistics.fmean(d) for d in units.values()], confidence)
    _, image_low, image_high = t_interval(
        [statistics.fmean(u.values()) for u in images.values()], confidence)
    draws = {p.draw for p in pairs}
    return Estimate(len(units), len(images), len(pairs),
                    None if None in draws or not pairs else len(draws), mean, low, high,
                    image_low, image_high, verdict(len(units), low, high, threshold), threshold)


def shown_up_to(by_level: Mapping[float, Estimate]) -> float | None:
    """The largest level S such that at every level up to S the claim holds (the whole
    interval on the claimed side); None if it does not hold at the lowest level. Wider
    intervals can only make S smaller, never larger."""
    shown = None
    for level in sorted(by_level):
        if by_level[level].verdict != "holds":
            break
        shown = level
    return shown

"""Bounds on the numbers a user can set, and their checks: one place for the CLI's config
objects and the experiment spec, so a value refused by one is refused by the other.

Each ``*_problem`` function returns what is wrong with a value (``"must be a whole number
from 1 to 10,000,000, got 1e12"``) or None; the ``check_*`` functions raise it as a one-line
``LipError`` prefixed with the setting's name. A float where a whole number belongs is
refused (``steps = 1e12`` is not a step count), booleans are never numbers, and every float
setting must be finite.

>>> check_int("steps", 1000, 1, MAX_STEPS)
1000
>>> int_problem(1e12, 1, MAX_STEPS)
'must be a whole number from 1 to 10,000,000, got 1e12'
"""

from __future__ import annotations

import math

from lottery_prior.errors import LipError

SEED_LIMIT = 2**63  # seeds are stored as int64 (Parquet): 0 <= seed < 2**63
MAX_STEPS = 10_000_000  # optimizer steps of one fit (the paper runs 3000)
MAX_ROUNDS = 100  # IMP rounds of one search (the paper runs 16 to 25)
MAX_GRID = 10_000  # images, seeds, noise seeds or sparsities in one experiment grid
MAX_UNITS = 1_000_000  # fits (searches, fits, transfers) in one experiment spec
MAX_SIGMA = 255.0  # noise std in 0-255 units: one full intensity range


def show(value: object) -> str:
    """A value as a message shows it: ``1e12``, ``inf``, ``'text'``, short."""
    if isinstance(value, float):
        return f"{value:.6g}".replace("e+", "e")
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def int_problem(value: object, minimum: int, maximum: int | None = None) -> str | None:
    """What is wrong with ``value`` as a whole number in [minimum, maximum], or None."""
    bounds = (f"from {minimum:,} to {maximum:,}" if maximum is not None
              else f">= {minimum:,}")
    if not _is_int(value) or value < minimum or (maximum is not None and value > maximum):
        return f"must be a whole number {bounds}, got {show(value)}"
    return None


def seed_problem(value: object) -> str | None:
    """What is wrong with ``value`` as a seed (0 <= seed < 2**63), or None."""
    if not _is_int(value) or not 0 <= value < SEED_LIMIT:
        return f"must be a whole number from 0 to 2**63 - 1, got {show(value)}"
    return None


def float_problem(value: object, low: float | None = None, high: float | None = None, *,
                  low_open: bool = False, high_open: bool = False) -> str | None:
    """What is wrong with ``value`` as a finite number in the interval, or None.

    ``low_open``/``high_open`` exclude the end points: ``(0, 1)`` is ``low=0, high=1,
    low_open=True, high_open=True``; None is no bound."""
    if low is None and high is None:
        need = "must be a finite number"
    elif high is None:
        need = f"must be finite and {'>' if low_open else '>='} {low:g}"
    elif low is None:
        need = f"must be finite and {'<' if high_open else '<='} {high:g}"
    else:
        need = (f"must be finite and in {'(' if low_open else '['}{low:g}, {high:g}"
                f"{')' if high_open else ']'}")
    if not _is_number(value):
        return f"{need}, got {show(value)}"
    try:
        v = float(value)
    except OverflowError:
        return f"{need}, got {show(value)}"
    ok = math.isfinite(v)
    if ok and low is not None:
        ok = v > low if low_open else v >= low
    if ok and high is not None:
        ok = v < high if high_open else v <= high
    return None if ok else f"{need}, got {show(value)}"


def check_int(name: str, value: object, minimum: int, maximum: int | None = None) -> int:
    """``value`` if it is a whole number in [minimum, maximum], else a LipError naming it."""
    problem = int_problem(value, minimum, maximum)
    if problem:
        raise LipError(f"{name} {problem}")
    return value  # type: ignore[return-value]


def check_seed(name: str, value: object) -> int:
    """``value`` if it is a seed (0 <= seed < 2**63), else a LipError naming it."""
    problem = seed_problem(value)
    if problem:
        raise LipError(f"{name} {problem}")
    return int(value)  # type: ignore[arg-type]


def check_float(name: str, value: object, low: float | None = None,
                high: float | None = None, *, low_open: bool = False,
                high_open: bool = False) -> float:
    """``value`` as a float if it is finite and in the interval, else a LipError naming it."""
    problem = float_problem(value, low, high, low_open=low_open, high_open=high_open)
    if problem:
        raise LipError(f"{name} {problem}")
    return float(value)  # type: ignore[arg-type]

"""The paper's claims (PROTOCOL §5), each checked on a results table with a paired confidence
interval and a verdict.

Every claim compares two kinds of fit on the same observation (image, task and its settings,
noise seed) with the same network seed and, where it applies, the same requested sparsity: a
*pair*. Pairs are averaged within their *unit* (image × network seed × noise seed, and task
when tasks are pooled), so several sparsities of one fit chain do not count as independent
evidence; the interval is a Student t interval over the units' mean differences.

Verdicts, against the claim's threshold (0 dB for "better than", −δ for "not worse than by
more than δ", a non-inferiority margin, δ = 0.1 dB by default):

- ``holds``: the whole interval lies on the claimed side of the threshold;
- ``contradicted``: the whole interval lies on the other side;
- ``not shown``: otherwise, or fewer than two units (``not shown (n=1)``).

All functions are pure: rows in (dicts, as ``rows.read_results`` gives them), claims out.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from lottery_prior.report.rows import (
    PROBLEM_COLUMNS,
    SCOPE_COLUMNS,
    method_name,
    scope_labeller,
    sparsity_key,
    value,
)
from lottery_prior.report.tables import HEADINGS

DELTA = 0.1  # dB: the non-inferiority margin of "≥" claims
CONFIDENCE = 0.95
# Scores with a claims table each: the primary one first, then the oracle, then the stop.
CLAIM_SCORES = ("psnr_averaged", "psnr_peak_averaged", "psnr_stopped")
ALL_TASKS = "all tasks"
# Baselines a ticket is compared with at each requested sparsity (detail table).
BASELINES = ("dense", "decoder", "random", "random-layerwise", "magnitude", "snip", "grasp",
             "synflow")
_MATCH = tuple(dict.fromkeys(PROBLEM_COLUMNS + SCOPE_COLUMNS + ("seed",)))


@dataclass(frozen=True)
class Claim:
    """One claim (or one sparsity of it) measured on one scope with one score."""

    claim: str  # in words, e.g. "ticket > random pruning (global)"
    scope: str  # a task (with the settings that distinguish it) or "all tasks"
    score: str  # the results column compared, e.g. "psnr_averaged"
    n: int  # units: image × seed × noise seed (× task when pooled)
    pairs: int  # matched pairs behind the units
    mean: float | None  # mean paired difference (dB), first side minus second
    low: float | None  # confidence interval of the mean
    high: float | None
    threshold: float  # 0 for ">", −δ for "≥ up to a margin"
    verdict: str
    sparsity: float | None = None  # S for "up to S"; the requested sparsity in detail rows
    note: str = ""


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


def claims(rows: Sequence[dict], score: str = "psnr_averaged", *, delta: float = DELTA,
           confidence: float = CONFIDENCE) -> list[Claim]:
    """The paper's claims on ``rows`` with ``score``: per task scope, then pooled over tasks
    where there are several. In order: ticket ≥ dense − δ up to sparsity S; ticket > Deep
    Decoder at equal size; ticket > random (global); ticket > random (layer-wise); transfer
    across images and across tasks ≥ the target's own ticket − δ."""
    label = scope_labeller(rows)
    scopes = list(dict.fromkeys(label(r) for r in rows))
    out: list[Claim] = []
    for scope in scopes:
        out.append(_dense_claim(rows, score, label, scope, delta, confidence))
    if len(scopes) > 1:
        out.append(_dense_claim(rows, score, label, None, delta, confidence))
    for method, text in (("decoder", "ticket > Deep Decoder at equal size"),
                         ("random", "ticket > random pruning (global)"),
                         ("random-layerwise", "ticket > random pruning (ticket's layer-wise "
                                              "ratios)")):
        for scope in scopes + ([None] if len(scopes) > 1 else []):
            pairs = _pairs(_fits(rows, "ticket"), _fits(rows, method), score, label, scope,
                           sparse=True)
            out.append(_claim(text, scope, score, pairs, 0.0, confidence,
                              note=_pooled_note(pairs)))
    for kind, text in (("images", "transfer across images"), ("tasks", "transfer across tasks")):
        transfers = [r for r in rows if _is_transfer(r, kind) and r.get("method") == "ticket"]
        if not transfers:
            out.append(Claim(f"{text} ≥ own ticket − {delta:g} dB", ALL_TASKS, score, 0, 0,
                             None, None, None, -delta, "not shown (n=0)",
                             note="no transfer rows in the results"))
            continue
        targets = scopes + ([None] if len(scopes) > 1 else [])
        for i, scope in enumerate(targets):
            pairs = _pairs(transfers, _fits(rows, "ticket"), score, label, scope, sparse=True)
            if not pairs and i < len(targets) - 1:
                continue  # a task without transfers to it; the last row is always given
            out.append(_claim(f"{text} ≥ own ticket − {delta:g} dB", scope, score, pairs,
                              -delta, confidence, note=_pooled_note(pairs, transfer=True)))
    return out


def claims_by_score(rows: Sequence[dict], *, delta: float = DELTA,
                    confidence: float = CONFIDENCE) -> dict[str, list[Claim]]:
    """``claims`` for each score of ``CLAIM_SCORES`` that some row has (the stopped score
    only when the sweep recorded automatic stops)."""
    return {s: claims(rows, s, delta=delta, confidence=confidence) for s in CLAIM_SCORES
            if any(value(r, s) is not None for r in rows)}


def by_sparsity(rows: Sequence[dict], score: str = "psnr_averaged", *, delta: float = DELTA,
                confidence: float = CONFIDENCE) -> list[Claim]:
    """Ticket against each baseline in ``BASELINES`` at each requested sparsity, per task
    scope: the detail behind the claims (−δ threshold against dense, 0 against the rest)."""
    label = scope_labeller(rows)
    out = []
    for scope in dict.fromkeys(label(r) for r in rows):
        for method in BASELINES:
            baseline = _fits(rows, method)
            if not baseline:
                continue
            pairs = _pairs(_fits(rows, "ticket"), baseline, score, label, scope,
                           sparse=method != "dense")
            threshold = -delta if method == "dense" else 0.0
            sign = "≥" if method == "dense" else ">"
            margin = f" − {delta:g} dB" if method == "dense" else ""
            for s in sorted({p[1] for p in pairs}):
                at = [p for p in pairs if p[1] == s]
                out.append(_claim(f"ticket {sign} {method_name(method)}{margin}", scope, score,
                                  at, threshold, confidence, sparsity=s))
    return out


# --- internals ------------------------------------------------------------------------------

# A pair: (unit, requested sparsity, difference); the unit is (scope, image, seed, noise seed).
Pair = tuple[tuple, float, float]


def _fits(rows: Sequence[dict], method: str) -> list[dict]:
    return [r for r in rows if r.get("method") == method and r.get("kind", "fit") != "transfer"]


def _is_transfer(row: dict, kind: str) -> bool:
    if row.get("kind") != "transfer":
        return False
    same_task = (row.get("source_task") or row.get("task")) == row.get("task")
    if kind == "tasks":
        return not same_task
    return same_task and (row.get("source_image") or row.get("image")) != row.get("image")


def _pairs(first: Sequence[dict], second: Sequence[dict], score: str,
           label: Callable[[dict], str], scope: str | None, *, sparse: bool) -> list[Pair]:
    """Differences ``first − second`` matched on the observation, the network seed and (if
    ``sparse``) the requested sparsity; rows of ``second`` with the same key are averaged.
    ``first`` keeps only rows with a sparsity above 0."""

    def key(r: dict, with_sparsity: bool) -> tuple:
        s = sparsity_key(r.get("requested_sparsity")) if with_sparsity else None
        return (label(r),) + tuple(r.get(c) for c in _MATCH) + (s,)

    other: dict[tuple, list[float]] = {}
    for r in second:
        v = value(r, score)
        if v is not None and (scope is None or label(r) == scope):
            other.setdefault(key(r, sparse), []).append(v)
    out = []
    for r in first:
        v = value(r, score)
        s = sparsity_key(r.get("requested_sparsity"))
        if v is None or not s or (scope is not None and label(r) != scope):
            continue
        match = other.get(key(r, sparse))
        if match:
            unit = (label(r), r.get("image"), r.get("seed"), r.get("noise_seed"))
            out.append((unit, s, v - statistics.fmean(match)))
    return out


def _claim(text: str, scope: str | None, score: str, pairs: Sequence[Pair], threshold: float,
           confidence: float, *, sparsity: float | None = None, note: str = "") -> Claim:
    units: dict[tuple, list[float]] = {}
    for unit, _, d in pairs:
        units.setdefault(unit, []).append(d)
    diffs = [statistics.fmean(ds) for ds in units.values()]
    mean, low, high = t_interval(diffs, confidence)
    return Claim(text, scope or ALL_TASKS, score, len(diffs), len(pairs), mean, low, high,
                 threshold, verdict(len(diffs), low, high, threshold), sparsity, note)


def _pooled_note(pairs: Sequence[Pair], transfer: bool = False) -> str:
    if not pairs:
        return "no matched pairs"
    levels = ", ".join(f"{100 * s:g}%" for s in sorted({p[1] for p in pairs}))
    what = "transfer fits vs the target's own ticket" if transfer else "pairs"
    return f"{what} at sparsity {levels}, averaged per unit"


def _dense_claim(rows: Sequence[dict], score: str, label: Callable[[dict], str],
                 scope: str | None, delta: float, confidence: float) -> Claim:
    """Ticket ≥ dense − δ up to S: S is the largest requested sparsity such that at every
    sparsity up to it the difference is not significantly below −δ (interval not entirely
    under −δ, with n ≥ 2); the row gives the difference at S (at the lowest sparsity when
    there is no S), and the note how far the interval lies entirely above −δ."""
    text = f"ticket ≥ dense − {delta:g} dB up to sparsity S"
    pairs = _pairs(_fits(rows, "ticket"), _fits(rows, "dense"), score, label, scope,
                   sparse=False)
    levels = sorted({p[1] for p in pairs})
    if not levels:
        return _claim(text, scope, score, [], -delta, confidence, note="no matched pairs")
    at = {s: _claim(text, scope, score, [p for p in pairs if p[1] == s], -delta, confidence,
                    sparsity=s) for s in levels}
    upto = shown = None
    for s in levels:
        c = at[s]
        if c.n < 2 or c.verdict == "contradicted":
            break
        upto = s
    for s in levels:
        if at[s].verdict != "holds":
            break
        shown = s
    if upto is None:
        first = at[levels[0]]
        why = (f"below −{delta:g} dB already at {_pct(levels[0])}" if first.n >= 2
               else "too few units to test")
        return _replace(first, sparsity=None, note=f"no S: {why}")
    shown_text = (f"interval above −{delta:g} dB at every sparsity up to {_pct(shown)}"
                  if shown is not None else f"interval above −{delta:g} dB at no sparsity "
                  "from the lowest up")
    return _replace(at[upto], note=f"S = {_pct(upto)}: not significantly below −{delta:g} dB "
                    f"at any sparsity ≤ S ({', '.join(_pct(s) for s in levels)} tested); "
                    f"{shown_text}")


def _replace(c: Claim, **changes) -> Claim:
    from dataclasses import replace

    return replace(c, **changes)


def _pct(s: float) -> str:
    return f"{100 * s:g}%"


# --- tables for people ----------------------------------------------------------------------

def claim_rows(items: Sequence[Claim], *, detail: bool = False) -> list[dict]:
    """Claims as table rows with headings for people (Markdown/HTML); ``detail`` for the
    per-sparsity table (a sparsity column, no notes)."""
    out = []
    for c in items:
        row = {"claim": c.claim, "task": c.scope}
        if detail or c.claim.startswith("ticket ≥ dense"):
            row["sparsity" if detail else "S"] = "—" if c.sparsity is None else _pct(c.sparsity)
        row["n (pairs)"] = f"{c.n} ({c.pairs})"
        row["difference (dB)"] = "—" if c.mean is None else f"{c.mean:+.2f}"
        row[f"{100 * CONFIDENCE:g}% CI"] = (
            "—" if c.low is None else f"[{c.low:+.2f}, {c.high:+.2f}]")
        row["threshold"] = f"{c.threshold:+g} dB" if c.threshold else "0 dB"
        row["verdict"] = c.verdict
        if not detail:
            row["note"] = c.note
        out.append(row)
    # The "S" column only where some row has it, in every row, so the table is rectangular.
    columns = list(dict.fromkeys(k for r in out for k in r))
    return [{k: r.get(k, "") for k in columns} for r in out]


def score_title(score: str) -> str:
    """A claims table's title: which output the PSNR is of (oracle scores say so)."""
    return HEADINGS.get(score, score)

"""The paper's claims (PROTOCOL §5), each checked on a results table with a paired confidence
interval and a verdict (:mod:`lottery_prior.stats`).

Pairs are matched on an explicit key, the *comparison* a fit belongs to: ``imp_run``, the
IMP search its mask was matched to (its name hashes the observation's content, the model and
its options, the fit, IMP and stopping settings and the network seed), and the requested
sparsity. Two fits of one comparison differ in the compared method alone, so a Deep Decoder
(fitted with its own settings) pairs with the ticket it was sized to, and a table that
concatenates sweeps of other networks never averages them together. A transfer is paired with
the own ticket of the comparison it was fitted in (``target_run``). A table with two fits of
one method in one comparison is ambiguous and refused.

A classical method (BM3D, biharmonic, bicubic, ...) has no search: its row pairs with the
fits of the observation it restored (the ``observation`` column, named by the observation's
content), each network seed's fit with the same classical output.

Claims: ticket ≥ dense − δ up to sparsity S (S: the largest requested sparsity up to which
every interval lies above −δ); ticket > Deep Decoder at equal size; ticket > random pruning
(global, and with the ticket's layer-wise ratios); transfer across images and tasks ≥ the
target's own ticket − δ; ticket > the best classical method and dense DIP > the best
classical method (per task: the classical method with the best mean score there). All
functions are pure: rows in (dicts, as ``rows.read_results`` gives them), claims out.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace

from lottery_prior.errors import LipError
from lottery_prior.finders import REGISTRY, method_rank, method_title
from lottery_prior.report.rows import (
    PROBLEM_COLUMNS,
    rows_at,
    scope_labeller,
    sparsity_key,
    value,
)
from lottery_prior.report.tables import HEADINGS
from lottery_prior.stats import CONFIDENCE, DELTA, Estimate, Pair, estimate, shown_up_to

# Scores with a claims table each: the primary one first, then the oracle, then the stop.
CLAIM_SCORES = ("psnr_averaged", "psnr_peak_averaged", "psnr_stopped")
ALL_TASKS = "all tasks"
# Baselines a ticket is compared with at each requested sparsity (detail table).
BASELINES = ("dense", "decoder", "random", "random-layerwise", "magnitude", "snip", "grasp",
             "synflow", "learned")
# What a legacy transfer row (no target_run) shares with the target's own ticket.
_TARGET_COLUMNS = (*PROBLEM_COLUMNS, "model", "model_options", "imp", "seed", "steps", "lr",
                   "input_noise", "fast")  # the columns of version 0.2's tables


@dataclass(frozen=True)
class Claim(Estimate):
    """One claim (or one sparsity of it) measured on one scope with one score: the estimate
    (units, images, draws, pairs, mean difference, intervals, verdict) and what it is of."""

    claim: str = ""  # in words, e.g. "ticket > random pruning (global)"
    scope: str = ALL_TASKS  # a task (with the settings that distinguish it) or "all tasks"
    score: str = "psnr_averaged"  # the results column compared
    sparsity: float | None = None  # S for "up to S"; the requested sparsity in detail rows
    note: str = ""


@dataclass(frozen=True)
class Paired:
    """Matched pairs, a note on what was left out, and how many fits of the claimed side
    diverged (a non-finite score: the claim cannot hold while they are left out)."""

    pairs: list[Pair]
    note: str
    diverged: int


class Comparisons:
    """The rows of a results table indexed by comparison: fits by (comparison, method,
    requested sparsity), transfers with the comparison they were fitted in."""

    def __init__(self, rows: Sequence[dict]) -> None:
        rows = _unique(rows)
        self.classical = [r for r in rows if r.get("kind") == "classical"]
        rows = [r for r in rows if r.get("kind") != "classical"]
        if rows and not all(r.get("imp_run") for r in rows):
            raise LipError("the results table lacks imp_run (the IMP search each fit was "
                           "matched to): its fits cannot be paired; make it with lip sweep")
        self.fits = [r for r in rows if r.get("kind", "fit") != "transfer"]
        self.transfers = [r for r in rows if r.get("kind") == "transfer"]
        self.restored: dict[tuple, dict] = {}  # (observation, method) -> classical row
        for r in self.classical:
            key = (r.get("observation"), r.get("method"))
            if key in self.restored:
                raise LipError(f"ambiguous pairs: two {r.get('method')} rows (units "
                               f"{self.restored[key].get('unit')}, {r.get('unit')}) of one "
                               "observation; report them separately")
            self.restored[key] = r
        self.index: dict[tuple, dict] = {}
        for r in self.fits:
            key = (r["imp_run"], r.get("method"), sparsity_key(r.get("requested_sparsity")))
            if key in self.index:
                raise LipError(
                    f"ambiguous pairs: two {r.get('method')} fits (units "
                    f"{self.index[key].get('unit')}, {r.get('unit')}) in comparison "
                    f"{key[0]} at sparsity {key[2]}; the table mixes runs that differ in "
                    "something it does not record: report them separately")
            self.index[key] = r
        self.searches = {r["imp_run"] for r in self.fits}
        self._target = {id(t): self._target_run(t) for t in self.transfers}
        label = scope_labeller(self.fits)
        representative = {self.key(r): r for r in self.fits}
        self.scope: Callable[[dict], str] = lambda r: label(representative.get(self.key(r), r))

    def key(self, row: dict) -> str:
        """The comparison a row belongs to (a transfer: the one it was fitted in)."""
        if row.get("kind") == "transfer":
            return self._target[id(row)]
        return row["imp_run"]

    def _target_run(self, row: dict) -> str | None:
        if row.get("target_run"):
            return row["target_run"] if row["target_run"] in self.searches else None
        same = {r["imp_run"] for r in self.fits if r.get("method") == "ticket"
                and all(r.get(c) == row.get(c) for c in _TARGET_COLUMNS)}
        if len(same) > 1:
            raise LipError(f"ambiguous pairs: transfer unit {row.get('unit')} matches "
                           f"{len(same)} comparisons; report its sweeps separately")
        return same.pop() if same else None

    def pairs(self, first: Sequence[dict], method: str, score: str, scope: str | None, *,
              sparse: bool = True) -> Paired:
        """Differences ``first − method`` in the same comparison (and requested sparsity if
        ``sparse``), and a note on the fits left unpaired (no partner, or a non-finite
        score)."""
        outside = sum(1 for r in first if self.key(r) is None
                      and sparsity_key(r.get("requested_sparsity")))
        rows = [r for r in first if self.key(r) is not None
                and sparsity_key(r.get("requested_sparsity"))
                and (scope is None or self.scope(r) == scope)]

        def partner(r: dict) -> dict | None:
            s = sparsity_key(r.get("requested_sparsity"))
            return self.index.get((self.key(r), method, s if sparse else 0.0))

        random = method in REGISTRY and REGISTRY[method].random  # its masks are draws
        return self._paired(rows, partner, method, score, score, random=random,
                            unpaired=outside)

    def scopes(self) -> list[str]:
        return list(dict.fromkeys(self.scope(r) for r in self.fits))

    def best_classical(self, score: str, scope: str | None) -> str | None:
        """The classical method with the best mean ``score`` over the observations of the
        fits in ``scope`` that it restored (None if no classical method restored one)."""
        observations = {r.get("observation") for r in self.fits
                        if scope is None or self.scope(r) == scope}
        means: dict[str, list[float]] = {}
        for (observation, method), r in self.restored.items():
            v = value(r, score)
            if observation in observations and v is not None:
                means.setdefault(method, []).append(v)
        if not means:
            return None
        return max(means, key=lambda m: (sum(means[m]) / len(means[m]), -method_rank(m)))

    def classical_pairs(self, first: Sequence[dict], method: str, score: str,
                        scope: str | None) -> Paired:
        """Differences ``first − method`` (a classical method) on the same observation; the
        classical side has one output, so its column is the averaged output's whatever the
        score (a network's oracle peak against a classical output is the paper's view)."""
        rows = [r for r in first if scope is None or self.scope(r) == scope]
        return self._paired(rows, lambda r: self.restored.get((r.get("observation"), method)),
                            method, score, "psnr_averaged")

    def _paired(self, rows: Sequence[dict], partner: Callable[[dict], dict | None],
                method: str, score: str, other_score: str, *, random: bool = False,
                unpaired: int = 0) -> Paired:
        """Each row minus its partner (``score`` minus the partner's ``other_score``), with a
        note on rows left out: no partner, a non-finite score, a diverged first side."""
        out, broken, diverged = [], 0, 0
        for r in rows:
            other = partner(r)
            if other is None:
                unpaired += 1
                continue
            a, b = value(r, score), value(other, other_score)
            if a is None or b is None:
                broken += 1
                diverged += a is None and isinstance(r.get(score), float)  # NaN or inf
                continue
            unit = (self.scope(r), r.get("image"), r.get("seed"), r.get("noise_seed"))
            draw = other.get("mask_sha256") if random else None
            s = sparsity_key(r.get("requested_sparsity")) or 0.0
            out.append(Pair(unit, str(r.get("image")), s, a - b, draw))
        notes = []
        if unpaired:
            notes.append(f"{unpaired} fit(s) without a {method_title(method)} partner")
        if broken:
            notes.append(f"{broken} pair(s) with a non-finite or missing score left out")
        if diverged:
            notes.append(f"{diverged} fit(s) of the first side diverged: the claim cannot "
                         "hold")
        return Paired(out, "; ".join(notes), diverged)


def _unique(rows: Sequence[dict]) -> list[dict]:
    """The rows with a row repeated under the same unit id (a table concatenated twice)
    counted once; the same unit with other numbers is refused."""
    seen: dict[str, dict] = {}
    out = []
    for r in rows:
        unit = r.get("unit")
        if unit is None or unit == "":
            out.append(r)
            continue
        if unit in seen:
            if seen[unit] != r:
                raise LipError(f"unit {unit} appears twice with different values: the table "
                               "mixes two runs of it; report them separately")
            continue
        seen[unit] = r
        out.append(r)
    return out


def claims(rows: Sequence[dict], score: str = "psnr_averaged", *, delta: float = DELTA,
           confidence: float = CONFIDENCE, at: int | None = None) -> list[Claim]:
    """The paper's claims on ``rows`` with ``score``: per task scope, then pooled over tasks
    where there are several; at milestone step ``at`` (default: each fit's last step)."""
    table = Comparisons(rows_at(rows, at))
    scopes = table.scopes()
    pooled = scopes + ([None] if len(scopes) > 1 else [])
    tickets = _method(table.fits, "ticket")
    out: list[Claim] = [_dense_claim(table, tickets, score, scope, delta, confidence)
                        for scope in pooled]
    for method, text in (("decoder", "ticket > Deep Decoder at equal size"),
                         ("random", "ticket > random pruning (global)"),
                         ("random-layerwise", "ticket > random pruning (ticket's layer-wise "
                                              "ratios)")):
        if not _method(table.fits, method):
            continue  # the table has no fit of that baseline: nothing to claim
        for scope in pooled:
            paired = table.pairs(tickets, method, score, scope)
            out.append(_claim(text, scope, score, paired, 0.0, confidence,
                              note=_pooled_note(paired.pairs)))
    if table.classical:
        for side, text in (("ticket", "ticket > best classical method"),
                           ("dense", "dense DIP > best classical method")):
            for scope in pooled:
                out.append(_classical_claim(table, side, text, score, scope, confidence))
    for kind, text in (("images", "transfer across images"), ("tasks", "transfer across tasks")):
        text = f"{text} ≥ own ticket − {delta:g} dB"
        transfers = [r for r in table.transfers if _is_transfer(r, kind)
                     and r.get("method") == "ticket"]
        if not transfers:
            continue  # the table has no transfer of that kind: nothing to claim
        for i, scope in enumerate(pooled):
            paired = table.pairs(transfers, "ticket", score, scope)
            if not paired.pairs and i < len(pooled) - 1:
                continue  # a task without transfers to it; the last row is always given
            out.append(_claim(text, scope, score, paired, -delta, confidence,
                              note=_pooled_note(paired.pairs, transfer=True)))
    return out


def claims_by_score(rows: Sequence[dict], *, delta: float = DELTA,
                    confidence: float = CONFIDENCE,
                    at: int | None = None) -> dict[str, list[Claim]]:
    """``claims`` for each score of ``CLAIM_SCORES`` that some row has (the stopped score
    only when the sweep recorded automatic stops)."""
    return {s: claims(rows, s, delta=delta, confidence=confidence, at=at) for s in CLAIM_SCORES
            if any(value(r, s) is not None for r in rows)}


def by_sparsity(rows: Sequence[dict], score: str = "psnr_averaged", *, delta: float = DELTA,
                confidence: float = CONFIDENCE, at: int | None = None) -> list[Claim]:
    """Ticket against each baseline in ``BASELINES`` at each requested sparsity, per task
    scope: the detail behind the claims (−δ threshold against dense, 0 against the rest);
    at milestone step ``at`` (default: each fit's last step)."""
    table = Comparisons(rows_at(rows, at))
    tickets = _method(table.fits, "ticket")
    out = []
    for scope in table.scopes():
        for method in BASELINES:
            if not _method(table.fits, method):
                continue
            paired = table.pairs(tickets, method, score, scope, sparse=method != "dense")
            threshold = -delta if method == "dense" else 0.0
            sign = "≥" if method == "dense" else ">"
            margin = f" − {delta:g} dB" if method == "dense" else ""
            for s in sorted({p.sparsity for p in paired.pairs}):
                out.append(_claim(f"ticket {sign} {method_title(method)}{margin}", scope, score,
                                  _at(paired, s), threshold, confidence, sparsity=s))
    return out


# --- internals ------------------------------------------------------------------------------

def _method(rows: Sequence[dict], method: str) -> list[dict]:
    return [r for r in rows if r.get("method") == method]


def _is_transfer(row: dict, kind: str) -> bool:
    same_task = (row.get("source_task") or row.get("task")) == row.get("task")
    if kind == "tasks":
        return not same_task
    return same_task and (row.get("source_image") or row.get("image")) != row.get("image")


def _claim(text: str, scope: str | None, score: str, paired: Paired, threshold: float,
           confidence: float, *, sparsity: float | None = None, note: str = "") -> Claim:
    found = asdict(estimate(paired.pairs, threshold, confidence))
    if paired.diverged and found["verdict"] == "holds":
        found["verdict"] = "not shown"
    return Claim(**found, claim=text, scope=scope or ALL_TASKS, score=score,
                 sparsity=sparsity, note=_join(note, paired.note))


def _at(paired: Paired, sparsity: float) -> Paired:
    """The pairs at one requested sparsity (the note and divergences stay the claim's)."""
    return Paired([p for p in paired.pairs if p.sparsity == sparsity], "", paired.diverged)


def _join(*notes: str) -> str:
    return "; ".join(n for n in notes if n)


def _pooled_note(pairs: Sequence[Pair], transfer: bool = False) -> str:
    if not pairs:
        return "no matched pairs"
    levels = ", ".join(_pct(s) for s in sorted({p.sparsity for p in pairs}))
    what = "transfer fits vs the target's own ticket" if transfer else "pairs"
    return f"{what} at sparsity {levels}, averaged per unit"


def _dense_claim(table: Comparisons, tickets: list[dict], score: str, scope: str | None,
                 delta: float, confidence: float) -> Claim:
    """Ticket ≥ dense − δ up to S: S is the largest requested sparsity such that at every
    sparsity up to it the whole interval lies above −δ (the claim is *shown* up to S; a
    wider interval never makes S larger). The row gives the difference at S, or at the
    lowest sparsity when there is no S."""
    text = f"ticket ≥ dense − {delta:g} dB up to sparsity S"
    paired = table.pairs(tickets, "dense", score, scope, sparse=False)
    levels = sorted({p.sparsity for p in paired.pairs})
    if not levels:
        return _claim(text, scope, score, paired, -delta, confidence, note="no matched pairs")
    at = {s: _claim(text, scope, score, _at(paired, s), -delta, confidence, sparsity=s)
          for s in levels}
    shown = shown_up_to(at)
    tested = ", ".join(f"{_pct(s)} {at[s].verdict}" for s in levels)
    if shown is None:
        return replace(at[levels[0]], sparsity=None, note=_join(
            f"no S: not shown above −{delta:g} dB at the lowest sparsity tested ({tested})",
            paired.note))
    return replace(at[shown], note=_join(
        f"S = {_pct(shown)}: the whole interval lies above −{delta:g} dB at every sparsity "
        f"up to S ({tested})", paired.note))


def _classical_claim(table: Comparisons, side: str, text: str, score: str,
                     scope: str | None, confidence: float) -> Claim:
    """``side`` (ticket or dense) against the scope's best classical method; pooled over
    tasks, each task against its own best."""
    scopes = [scope] if scope is not None else table.scopes()
    pairs, notes, diverged, best = [], [], 0, []
    for s in scopes:
        method = table.best_classical("psnr_averaged", s)
        if method is None:
            continue
        paired = table.classical_pairs(_method(table.fits, side), method, score, s)
        pairs += paired.pairs
        diverged += paired.diverged
        notes.append(paired.note)
        best.append(method_title(method) + (f" ({s})" if scope is None else ""))
    if not best:
        return _claim(text, scope, score, Paired([], "", 0), 0.0, confidence,
                      note="no classical method restored these observations")
    levels = sorted({p.sparsity for p in pairs if p.sparsity})
    at = f" at sparsity {', '.join(_pct(v) for v in levels)}" if levels else ""
    note = (f"best classical (mean of its one output): {', '.join(best)}; "
            f"{side}{at}, averaged per unit")
    return _claim(text, scope, score, Paired(pairs, _join(*notes), diverged), 0.0, confidence,
                  note=note)


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
            row["sparsity" if detail else "S (shown up to)"] = (
                "—" if c.sparsity is None else _pct(c.sparsity))
        draws = "—" if c.draws is None else str(c.draws)
        row["units · images · draws (pairs)"] = f"{c.n} · {c.images} · {draws} ({c.pairs})"
        row["difference (dB)"] = "—" if c.mean is None else f"{c.mean:+.2f}"
        row[f"{100 * CONFIDENCE:g}% CI"] = (
            "—" if c.low is None else f"[{c.low:+.2f}, {c.high:+.2f}]")
        row["CI clustered by image"] = (
            "—" if c.image_low is None else f"[{c.image_low:+.2f}, {c.image_high:+.2f}]")
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

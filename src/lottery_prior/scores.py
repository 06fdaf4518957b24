"""Labelled scores: which output a PSNR was measured on, and its column in result tables.

A fit (:func:`lottery_prior.fit.fit`) scores several outputs, each under a label: ``final``
(last iterate), ``averaged`` (moving average after the last step), ``peak`` and
``peak_averaged`` (best over the fit: oracles, they need the truth) and ``stopped`` (at the
automatic stop, no truth needed). Tables and reports spell the label out.
"""

from __future__ import annotations

# Score label in a fit's ``scores`` -> table column; every PSNR column says which output it is.
SCORE_COLUMNS = {
    "final": "psnr_final",
    "averaged": "psnr_averaged",
    "peak": "psnr_peak_iterate",
    "peak_averaged": "psnr_peak_averaged",
    "stopped": "psnr_stopped",
}
# Column -> words for people (Markdown headings, printed lines).
SCORE_HEADINGS = {
    "psnr_final": "PSNR, final iterate",
    "psnr_averaged": "PSNR, averaged output",
    "psnr_peak_iterate": "peak, iterate (oracle)",
    "psnr_peak_averaged": "peak, averaged (oracle)",
    "psnr_stopped": "PSNR at the automatic stop",
}


def score_label(label: str) -> str:
    """What a fit's score label measures, in words: ``peak`` -> ``peak, iterate (oracle)``."""
    return SCORE_HEADINGS[SCORE_COLUMNS[label]].removeprefix("PSNR, ").removeprefix("PSNR ")


def score_columns(scores: dict, digits: int = 3) -> dict[str, float]:
    """A fit's labelled PSNRs as table columns (``SCORE_COLUMNS``), in that order."""
    return {column: round(scores[label]["psnr"], digits) for label, column in SCORE_COLUMNS.items()
            if scores.get(label, {}).get("psnr") is not None}


def format_scores(scores: dict) -> str:
    """A compact one-line summary of labelled PSNRs."""
    parts = [f"{score_label(label)} {entry['psnr']:.2f} dB" for label, entry in scores.items()
             if entry.get("psnr") is not None]
    return ", ".join(parts) if parts else "no ground truth"

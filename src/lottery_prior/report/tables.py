"""Result tables written as CSV (for tools) and Markdown (for people)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

from lottery_prior.files import write_text

# Score label in a fit's ``scores`` -> table column; every PSNR column says which output it is.
SCORE_COLUMNS = {
    "final": "psnr_final",
    "averaged": "psnr_averaged",
    "peak": "psnr_peak_iterate",
    "peak_averaged": "psnr_peak_averaged",
    "stopped": "psnr_stopped",
}
# Column -> heading in Markdown tables (CSV keeps the short names).
HEADINGS = {
    "psnr_final": "PSNR, final iterate",
    "psnr_averaged": "PSNR, averaged output",
    "psnr_peak_iterate": "peak, iterate (oracle)",
    "psnr_peak_averaged": "peak, averaged (oracle)",
    "psnr_stopped": "PSNR at the automatic stop",
    "ssim_averaged": "SSIM, averaged output",
    "seconds": "fit seconds",
    "find_seconds": "finder seconds",
    "gflop_step": "GFLOP per step",
    "channel_sparsity": "channel sparsity",
    "ms_step": "ms per step (in the fit)",
}


def score_label(label: str) -> str:
    """What a fit's score label measures, in words: ``peak`` -> ``peak, iterate (oracle)``."""
    return HEADINGS[SCORE_COLUMNS[label]].removeprefix("PSNR, ").removeprefix("PSNR ")


def score_columns(scores: dict, digits: int = 3) -> dict[str, float]:
    """A fit's labelled PSNRs as table columns (``SCORE_COLUMNS``), in that order."""
    return {column: round(scores[label]["psnr"], digits) for label, column in SCORE_COLUMNS.items()
            if scores.get(label, {}).get("psnr") is not None}


def heading(column: str) -> str:
    """A column's Markdown heading: ``HEADINGS``, with ``_mean``/``_std`` suffixes spelled out."""
    for suffix, word in (("_mean", " (mean)"), ("_std", " (std)")):
        if column.endswith(suffix) and column.removesuffix(suffix) in HEADINGS:
            return HEADINGS[column.removesuffix(suffix)] + word
    return HEADINGS.get(column, column)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def write_table(rows: Sequence[dict], path: str | Path) -> tuple[Path, Path]:
    """Write ``rows`` (dicts with the same keys) to ``path.csv`` and ``path.md`` (each
    atomically)."""
    path = Path(path)
    columns = list(rows[0]) if rows else []
    csv_path, md_path = path.with_suffix(".csv"), path.with_suffix(".md")
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    write_text(csv_path, text.getvalue())
    write_text(md_path, markdown_table(rows) + "\n")
    return csv_path, md_path


def markdown_table(rows: Sequence[dict]) -> str:
    """A Markdown table of ``rows`` (also fine to print in a terminal)."""
    if not rows:
        return "(no rows)"
    columns = list(rows[0])
    lines = ["| " + " | ".join(map(heading, columns)) + " |",
             "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(_cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)

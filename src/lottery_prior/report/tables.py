"""Result tables written as CSV (for tools) and Markdown (for people)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

from lottery_prior.files import write_text
from lottery_prior.scores import SCORE_HEADINGS

# Column -> heading in Markdown tables (CSV keeps the short names).
HEADINGS = {
    **SCORE_HEADINGS,
    "ssim_averaged": "SSIM, averaged output",
    "seconds": "fit seconds",
    "find_seconds": "finder seconds",
    "gflop_step": "GFLOP per step",
    "channel_sparsity": "channel sparsity",
    "ms_step": "ms per step (in the fit)",
}


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


def _columns(rows: Sequence[dict]) -> list[str]:
    """Every key of the rows, in the order they first appear."""
    return list(dict.fromkeys(k for r in rows for k in r))


def write_table(rows: Sequence[dict], path: str | Path) -> tuple[Path, Path]:
    """Write ``rows`` (dicts; a key some rows lack is an empty cell there) to ``path.csv`` and
    ``path.md`` (each atomically)."""
    path = Path(path)
    columns = _columns(rows)
    csv_path, md_path = path.with_suffix(".csv"), path.with_suffix(".md")
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns, restval="")
    writer.writeheader()
    writer.writerows(rows)
    write_text(csv_path, text.getvalue())
    write_text(md_path, markdown_table(rows) + "\n")
    return csv_path, md_path


def markdown_table(rows: Sequence[dict]) -> str:
    """A Markdown table of ``rows`` (also fine to print in a terminal)."""
    if not rows:
        return "(no rows)"
    columns = _columns(rows)
    lines = ["| " + " | ".join(map(heading, columns)) + " |",
             "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(_cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)

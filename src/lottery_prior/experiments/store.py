"""The results store of a sweep: one folder, one row per fit, nothing finished ever lost.

``units/<id>.json`` holds each finished unit's rows (written atomically the moment it ends:
its presence is what marks the unit done); ``results.parquet`` and ``results.csv`` are the
rows of a plan's units gathered into one table (every setting a column, every labelled score),
rewritten atomically as units finish, for pandas, polars or a spreadsheet
(``lottery_prior.report.rows.read_results`` reads them back, typed).
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterable
from pathlib import Path

from lottery_prior.files import atomic_path, write_json

log = logging.getLogger("lottery_prior")

UNITS = "units"
RESULTS = "results"


class Store:
    """Finished units' rows below ``root`` (the results folder)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, unit_id: str) -> Path:
        return self.root / UNITS / f"{unit_id}.json"

    def done(self, unit_ids: Iterable[str]) -> set[str]:
        """The units among ``unit_ids`` whose rows are stored (a damaged file: not done)."""
        return {u for u in unit_ids if self.rows(u) is not None}

    def rows(self, unit_id: str) -> list[dict] | None:
        """A finished unit's rows, None if it has not finished (or its file is damaged)."""
        path = self.path(unit_id)
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
            return list(data["rows"])
        except (OSError, ValueError, KeyError, TypeError):
            log.warning("%s is damaged; its unit will run again", path)
            return None

    def add(self, unit_id: str, rows: list[dict]) -> None:
        """Record a finished unit's rows (atomically)."""
        write_json(self.path(unit_id), {"unit": unit_id, "rows": rows})

    def table(self, unit_ids: Iterable[str]) -> list[dict]:
        """The rows of the given units that have finished, in order."""
        return [r for u in unit_ids for r in (self.rows(u) or [])]

    def write_tables(self, unit_ids: Iterable[str]) -> tuple[Path, Path] | None:
        """``results.parquet`` and ``results.csv`` of the given units' rows (atomic)."""
        rows = self.table(unit_ids)
        if not rows:
            return None
        return write_parquet(rows, self.root / f"{RESULTS}.parquet"), write_csv(
            rows, self.root / f"{RESULTS}.csv")


def columns(rows: list[dict]) -> list[str]:
    """Every key of the rows, in first-seen order."""
    return list(dict.fromkeys(k for r in rows for k in r))


def write_parquet(rows: list[dict], path: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = columns(rows)
    table = pa.Table.from_pylist([{k: r.get(k) for k in names} for r in rows])
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return path


def write_csv(rows: list[dict], path: Path) -> Path:
    names = columns(rows)
    with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=names)
        writer.writeheader()
        writer.writerows(rows)
    return path

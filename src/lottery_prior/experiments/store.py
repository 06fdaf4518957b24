"""The results store of a sweep: one folder, one row per fit, nothing finished ever lost.

``units/<id>.json`` holds each finished fit's or transfer's rows (written atomically the
moment it ends: its presence, with the image it names, is what marks the unit done);
``results.parquet`` and ``results.csv`` are the rows of a plan's units gathered into one
table (every setting a column, every labelled score), for pandas, polars or a spreadsheet
(``lottery_prior.report.rows.read_results`` reads them back, typed). Rows are kept in memory
as units finish and the tables are rewritten at most every ``interval`` seconds (and at the
end), so a sweep of thousands of units does not reread and rewrite everything per unit.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import time
from collections.abc import Iterable
from pathlib import Path

from lottery_prior.files import atomic_path, write_json

log = logging.getLogger("lottery_prior")

UNITS = "units"
RESULTS = "results"


class Store:
    """Finished units' rows below ``root`` (the results folder)."""

    def __init__(self, root: str | Path, interval: float = 30.0) -> None:
        self.root = Path(root)
        self.interval = interval
        self._rows: dict[str, list[dict] | None] = {}
        self._written = 0.0  # when the tables were last written (perf_counter)

    def path(self, unit_id: str) -> Path:
        return self.root / UNITS / f"{unit_id}.json"

    def rows(self, unit_id: str) -> list[dict] | None:
        """A finished unit's rows, None if it has not finished (or its file is damaged)."""
        if unit_id not in self._rows:
            self._rows[unit_id] = self._read(unit_id)
        return self._rows[unit_id]

    def _read(self, unit_id: str) -> list[dict] | None:
        path = self.path(unit_id)
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
            rows = data["rows"]
            if data["unit"] != unit_id or not all(isinstance(r, dict) for r in rows):
                raise ValueError("not this unit's rows")
            return list(rows)
        except (OSError, ValueError, KeyError, TypeError):
            log.warning("%s is damaged; its unit will run again", path)
            return None

    def add(self, unit_id: str, rows: list[dict]) -> None:
        """Record a finished unit's rows (atomically)."""
        write_json(self.path(unit_id), {"unit": unit_id, "rows": rows})
        self._rows[unit_id] = list(rows)

    def table(self, unit_ids: Iterable[str]) -> list[dict]:
        """The rows of the given units that have finished, in order."""
        return [r for u in unit_ids for r in (self.rows(u) or [])]

    def write_tables(self, unit_ids: Iterable[str], *, force: bool = True
                     ) -> tuple[Path, Path] | None:
        """``results.parquet`` and ``results.csv`` of the given units' rows (atomic); unless
        ``force``, only if ``interval`` seconds have passed since the last write."""
        if not force and time.perf_counter() - self._written < self.interval:
            return None
        rows = self.table(unit_ids)
        if not rows:
            return None
        self._written = time.perf_counter()
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
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=columns(rows))
    writer.writeheader()
    writer.writerows(rows)
    with atomic_path(path) as tmp:
        tmp.write_text(buffer.getvalue(), newline="")
    return path

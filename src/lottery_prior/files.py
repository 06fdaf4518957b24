"""Small file helpers shared by the run folders and the reports."""

from __future__ import annotations

import json
from pathlib import Path


def write_json(path: str | Path, data: dict) -> Path:
    """Pretty JSON, written atomically (a reader, or a resumed run, never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=float) + "\n")
    tmp.replace(path)
    return path

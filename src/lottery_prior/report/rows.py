"""The results table of a sweep (``results.parquet`` / ``results.csv``, one row per fit) as
plain dicts, and the small helpers the claims, figures and report share: which columns say
what, how rows are grouped and labelled for people."""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from lottery_prior.errors import LipError
from lottery_prior.finders import method_title

# The columns the report cannot do without.
REQUIRED = ("kind", "image", "task", "method", "requested_sparsity", "sparsity", "parameters",
            "seed", "noise_seed", "psnr_averaged")
INT_COLUMNS = {"factor", "size", "noise_seed", "steps", "seed", "parameters", "step_stopped",
               "stop_step", "step"}
FLOAT_COLUMNS = {"sigma", "keep", "lr", "input_noise", "requested_sparsity", "sparsity",
                 "psnr_final", "psnr_averaged", "psnr_peak_iterate", "psnr_peak_averaged",
                 "psnr_stopped", "ssim_averaged", "seconds"}
BOOL_COLUMNS = {"fast", "stop_fired"}
# The settings of an observation (a problem): rows with equal values were degraded alike.
PROBLEM_COLUMNS = ("image", "task", "sigma", "mask", "keep", "factor", "size", "noise_seed")
# Settings that shape a whole comparison; the claims group by the ones that vary ("scope").
SCOPE_COLUMNS = ("task", "sigma", "mask", "keep", "factor", "size", "steps", "lr",
                 "input_noise", "precision", "fast", "search_target")  # fast: tables of version 0.2
# Shown in the report's settings table, in this order.
SETTING_COLUMNS = ("image", "task", "sigma", "mask", "keep", "factor", "size", "noise_seed",
                   "model", "model_options", "steps", "lr", "input_noise", "precision",
                   "fast", "imp", "search_target", "seed", "method", "requested_sparsity",
                   "metric", "device", "machine", "version")
KINDS = ("fit", "transfer", "classical")
# Required columns that may be empty (a count the table does not know is shown as "—");
# every other required column must hold a value of its type in every row.
NULLABLE = {"sparsity", "parameters"}
# ... and those a classical method's row leaves empty: it has no network, seed or sparsity.
NOT_NETWORK = {"seed", "requested_sparsity"}
# Scores: a NaN or infinite value is a fit that diverged, kept as such (never as missing).
SCORE_FIELDS = ("psnr_final", "psnr_averaged", "psnr_peak_iterate", "psnr_peak_averaged",
                 "psnr_stopped", "ssim_averaged")


def read_results(path: str | Path) -> list[dict]:
    """The rows of a results table: ``path`` is a results folder (``results.parquet``, else
    ``results.csv``) or one of those files. Raises ``LipError`` (one line) for a missing,
    empty or unreadable file, one without the columns in ``REQUIRED``, or a row whose value
    in one of them is missing or of the wrong type (naming the row and the column).

    Missing values are None; a NaN or infinite score stays NaN or infinite (a diverged fit,
    see :func:`diverged`), so that it is counted, never dropped in silence."""
    path = Path(path)
    if path.is_dir():
        for name in ("results.parquet", "results.csv"):
            if (path / name).is_file():
                path = path / name
                break
        else:
            raise LipError(f"no results.parquet or results.csv in {path}/ (run `lip sweep` first)")
    elif not path.is_file():
        raise LipError(f"results file not found: {path}")
    if path.suffix == ".parquet":
        rows = _read_parquet(path)
    elif path.suffix == ".csv":
        rows = _read_csv(path)
    else:
        raise LipError(f"{path}: expected a .parquet or .csv results table")
    if not rows:
        raise LipError(f"{path}: the results table has no rows")
    missing = [c for c in REQUIRED if c not in rows[0]]
    if missing:
        raise LipError(f"{path}: missing column(s) {', '.join(missing)}")
    for i, row in enumerate(rows, 1):
        for column, v in row.items():
            problem = _value_problem(column, v, row.get("kind"))
            if problem:
                raise LipError(f"{path}: row {i}: {column} {problem}; fix or remove that row")
    return rows


def _value_problem(column: str, v: object, kind: object = None) -> str | None:
    """What is wrong with a cell of a results table (of a row of ``kind``), or None."""
    if v is None:
        optional = NULLABLE | (NOT_NETWORK if kind == "classical" else set())
        return "is missing" if column in REQUIRED and column not in optional else None
    number = isinstance(v, int | float) and not isinstance(v, bool)
    if column == "kind":
        return None if v in KINDS else f"must be {' or '.join(KINDS)}, got {v!r}"
    if column in ("image", "task", "method"):
        return None if isinstance(v, str) and v else f"must be a non-empty text, got {v!r}"
    if column in INT_COLUMNS:
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            return f"must be a whole number >= 0, got {v!r}"
        return None
    if column in ("requested_sparsity", "sparsity"):
        if not number or not 0 <= v <= 1:
            return f"must be a number in [0, 1], got {v!r}"
        return None
    if column in FLOAT_COLUMNS and not number:
        return f"must be a number, got {v!r}"
    if column in BOOL_COLUMNS and not isinstance(v, bool):
        return f"must be true or false, got {v!r}"
    return None


def _read_parquet(path: Path) -> list[dict]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises several types for damaged files
        raise LipError(f"{path}: not a readable Parquet file ({_first_line(e)})") from None
    return [_clean(r) for r in table.to_pylist()]


def _read_csv(path: Path) -> list[dict]:
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            columns = reader.fieldnames
    except (UnicodeDecodeError, csv.Error, OSError) as e:
        raise LipError(f"{path}: not a readable CSV file ({_first_line(e)})") from None
    if columns is None:
        raise LipError(f"{path}: the results table is empty")
    out = []
    for i, r in enumerate(rows, 1):
        if None in r:
            raise LipError(f"{path}: row {i} has {len(columns) + len(r[None])} fields, the "
                           f"header {len(columns)}; fix or remove that row")
        absent = [k for k, v in r.items() if v is None]
        if absent:
            shown = ", ".join(absent[:10]) + (" …" if len(absent) > 10 else "")
            raise LipError(f"{path}: row {i} has {len(columns) - len(absent)} of the header's "
                           f"{len(columns)} fields (missing {shown}); fix or remove that row")
        try:
            out.append(_clean({k: _parse(k, v) for k, v in r.items()}))
        except ValueError as e:
            raise LipError(f"{path}: row {i}: {e}; fix or remove that row") from None
    return out


def _parse(column: str, text: str | None) -> object:
    if text is None or text == "":
        return None
    try:
        if column in INT_COLUMNS:
            number = float(text)
            if not number.is_integer():
                raise ValueError
            return int(number)
        if column in FLOAT_COLUMNS:
            return float(text)
    except (ValueError, OverflowError):
        kind = "a whole number" if column in INT_COLUMNS else "a number"
        raise ValueError(f"{column} must be {kind}, got {text!r}") from None
    if column in BOOL_COLUMNS:
        return text.strip().lower() in ("true", "1", "yes")
    return text


def _clean(row: dict) -> dict:
    """One spelling per value: a NaN outside the score columns (how pandas writes a missing
    value) is None; numbers of float columns are floats, whole floats of int columns ints.
    A NaN or infinite score stays as it is: a diverged fit, not a missing one."""
    out = {}
    for k, v in row.items():
        if isinstance(v, float) and math.isnan(v) and k not in FLOAT_COLUMNS:
            v = None
        elif k in FLOAT_COLUMNS and isinstance(v, int) and not isinstance(v, bool):
            v = float(v)
        elif k in INT_COLUMNS and isinstance(v, float) and v.is_integer():
            v = int(v)
        out[k] = v
    return out


def rows_at(rows: Sequence[dict], at: int | None = None) -> list[dict]:
    """The rows of one fit length: each fit's scores at milestone ``at`` (the ``step``
    column, ``[fit] score_at``), else after its last step. Rows without a step (tables of
    earlier versions, classical methods) are kept."""
    stepped = [r for r in rows if r.get("step") is not None]
    if at is None:
        last: dict[object, int] = {}
        for r in stepped:
            last[r.get("unit")] = max(last.get(r.get("unit"), 0), r["step"])
        return [r for r in rows if r.get("step") is None or r["step"] == last[r.get("unit")]]
    if not any(r["step"] == at for r in stepped):
        have = sorted({r["step"] for r in stepped})
        raise LipError(f"the results have no scores at step {at}; they have "
                       f"{', '.join(map(str, have)) or 'no step column'} (set [fit] score_at)")
    return [r for r in rows if r.get("step") is None or r["step"] == at]


def at_step(rows: Iterable[dict]) -> str:
    """", at step N" when every scored row is at one step (a report's label), else ""."""
    steps = {r.get("step") for r in rows if r.get("kind") != "classical"}
    return f", at step {steps.pop()}" if len(steps) == 1 and None not in steps else ""


def milestones(rows: Sequence[dict]) -> list[int]:
    """The steps at which some fit of the table was scored more than once on its way."""
    per_unit: dict[object, set[int]] = {}
    for r in rows:
        if r.get("step") is not None:
            per_unit.setdefault(r.get("unit"), set()).add(r["step"])
    return sorted({s for steps in per_unit.values() if len(steps) > 1 for s in steps})


def diverged(rows: Iterable[dict], column: str = "psnr_averaged") -> list[dict]:
    """The rows whose score in ``column`` is NaN or infinite: fits that diverged."""
    return [r for r in rows if isinstance(r.get(column), float)
            and not math.isfinite(r[column])]


def describe_fit(row: dict, *, scope: str | None = None, noise_seed: bool = False) -> str:
    """A fit for people: ``ticket (IMP) at 50% on baby (seed 0)``."""
    s = row.get("requested_sparsity")
    at = f" at {100 * s:g}%" if row.get("method") != "dense" and isinstance(s, float) else ""
    seeds = f"seed {row.get('seed')}" + (f", noise seed {row.get('noise_seed')}"
                                         if noise_seed else "")
    source = ""
    if row.get("kind") == "transfer":
        source = (f", transferred from {image_name(row.get('source_image'))} · "
                  f"{row.get('source_task')}")
    where = f" · {scope}" if scope else ""
    return f"{method_title(row.get('method'))}{at} on {image_name(row.get('image'))}{where} " \
           f"({seeds}{source})"


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def value(row: dict, column: str) -> float | None:
    """A finite number in ``row[column]``, else None."""
    v = row.get(column)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


def sparsity_key(s: float | None) -> float | None:
    """Requested sparsities rounded so that 0.8 and 0.8000000001 pair up."""
    return None if s is None else round(float(s), 6)


def varying(rows: Iterable[dict], columns: Sequence[str]) -> list[str]:
    """The columns of ``columns`` that take more than one value over ``rows``."""
    rows = list(rows)
    return [c for c in columns if len({_hashable(r.get(c)) for r in rows}) > 1]


def _hashable(v: object) -> object:
    return json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v


def comparison(row: dict) -> str | None:
    """The comparison a row belongs to: the IMP search its fit was matched to (``imp_run``),
    for a transfer the search of the image and task it was fitted on (``target_run``)."""
    if row.get("kind") == "transfer":
        return row.get("target_run") or None
    return row.get("imp_run") or None


def scope_labeller(rows: Sequence[dict]):
    """A function row -> scope label: the task, plus the settings that vary between the
    comparisons of that task (``denoise σ=25``, ``sr ×4``), so one label never mixes two
    settings; a setting that is each image's own (its mask file) is not one of them. A
    comparison's settings are those of its search (its ticket's row), so a Deep
    Decoder fitted with its own settings is scoped with the ticket it was sized to, and a
    classical method with the fits of the observation it restored."""
    searches: dict[str, dict] = {}
    fitted: dict[str, dict] = {}  # observation -> a fit on it
    for r in rows:
        key = comparison(r)
        if key is not None and r.get("kind", "fit") == "fit":
            if key not in searches or r.get("method") == "ticket":
                searches[key] = r
            fitted.setdefault(r.get("observation"), r)

    def search(row: dict) -> dict:
        if row.get("kind") == "classical":
            row = fitted.get(row.get("observation"), row)
        return searches.get(comparison(row), row)

    by_task: dict[str, list[dict]] = {}
    for r in rows:
        by_task.setdefault(search(r).get("task"), []).append(search(r))
    extra = {t: [c for c in varying(rs, SCOPE_COLUMNS[1:]) if not _per_image(rs, c)]
             for t, rs in by_task.items()}

    def label(row: dict) -> str:
        row = search(row)
        parts = [str(row.get("task"))]
        for c in extra[row.get("task")]:
            parts.append(_setting_text(c, row.get(c)))
        return " ".join(parts)

    return label


def _per_image(rows: Sequence[dict], column: str) -> bool:
    """Whether a setting is the image's own (one value per image, e.g. its inpainting mask
    file ``{image}_mask``): it varies with the image, not with the comparison."""
    values: dict[object, set] = {}
    for r in rows:
        values.setdefault(r.get("image"), set()).add(_hashable(r.get(column)))
    return all(len(v) == 1 for v in values.values()) and len(values) > 1


def _setting_text(column: str, v: object) -> str:
    if column == "sigma":
        return f"σ={v:g}" if isinstance(v, (int, float)) else f"σ={v}"
    if column == "factor":
        return f"×{v}"
    if column == "mask":
        return f"mask={Path(str(v)).name}" if v else "mask=—"
    return f"{column}={v}"


def image_name(image: str | None) -> str:
    """``data:set5/baby`` -> ``baby`` (short enough for a legend or an axis)."""
    text = str(image)
    return text.split(":", 1)[-1].rsplit("/", 1)[-1].rsplit(".", 1)[0] or text


def decoder_k(row: dict) -> object:
    """The Deep Decoder's channel count ``k``: from ``method_label`` (``decoder (k=91)``, as
    ``lip sweep`` writes it), else from ``model_options`` (JSON); None if neither says."""
    found = re.search(r"\bk=(\d+)", str(row.get("method_label") or ""))
    if found:
        return int(found.group(1))
    options = row.get("model_options")
    if isinstance(options, str):
        try:
            options = json.loads(options)
        except ValueError:
            return None
    return options.get("k") if isinstance(options, dict) else None


def metric_label(rows: Sequence[dict]) -> str:
    """The metric the scores are in (``PSNR`` or ``PSNR-Y (border 4)``), joined if mixed."""
    metrics = sorted({str(r["metric"]) for r in rows if r.get("metric")})
    return " / ".join(metrics) or "PSNR"

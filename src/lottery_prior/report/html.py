"""``lip report``: one self-contained HTML page (figures embedded as data URIs, no external
resource, opens offline) and its Markdown twin (figures as files beside it) from a sweep's
results table: settings, claims with verdicts, per-sparsity detail, a per-method summary,
PSNR-vs-sparsity curves, transfer heat maps and image grids."""

from __future__ import annotations

import base64
import math
import re
import statistics
from collections.abc import Sequence
from pathlib import Path

from lottery_prior import __version__
from lottery_prior.errors import LipError
from lottery_prior.files import atomic_path
from lottery_prior.finders import method_rank, method_title
from lottery_prior.report.claims import (
    CONFIDENCE,
    DELTA,
    by_sparsity,
    claim_rows,
    claims,
    claims_by_score,
)
from lottery_prior.report.figures import (
    Figure,
    image_grids,
    score_words,
    sparsity_curves,
    transfer_heatmaps,
)
from lottery_prior.report.rows import (
    SETTING_COLUMNS,
    at_step,
    describe_fit,
    diverged,
    image_name,
    metric_label,
    milestones,
    read_results,
    rows_at,
    scope_labeller,
    sparsity_key,
    value,
)

TEMPLATES = Path(__file__).with_name("templates")
SCORES = ("psnr_averaged", "psnr_peak_averaged", "psnr_stopped", "psnr_final",
          "psnr_peak_iterate", "ssim_averaged")
FIGURES = "figures"
MAX_VALUES = 40  # distinct values listed per setting before "… and N more"


def write_report(results: str | Path, out: str | Path | None = None, *,
                 delta: float = DELTA, at: int | None = None) -> dict[str, Path]:
    """Read the results table ``results`` (a results folder, ``results.parquet`` or
    ``results.csv``) and write ``report.html``, ``report.md`` and ``figures/*.png`` into
    ``out`` (default: ``report/`` in the results folder). Returns the paths: ``html``,
    ``markdown``, ``figures`` (the folder) and one ``figure:<name>`` per figure. ``at``: the
    milestone step whose scores are reported (default: each fit's last step).

    Raises ``LipError`` for a missing, empty or unreadable table or missing columns."""
    results = Path(results)
    rows = read_results(results)
    results_dir = results if results.is_dir() else results.parent
    out = Path(out) if out is not None else results_dir / "report"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise LipError(f"cannot create the report folder {out}: {e.strerror}") from None
    figure_dir = out / FIGURES
    context = build_context(rows, results_dir, figure_dir, delta=delta, at=at)
    for section in context["sections"]:
        for figure in section["figures"]:
            figure["relative"] = f"{FIGURES}/{Path(figure['path']).name}"
    env = _environment()
    paths: dict[str, Path] = {"html": out / "report.html", "markdown": out / "report.md",
                              "figures": figure_dir}
    with atomic_path(paths["html"]) as tmp:
        tmp.write_text(env.get_template("report.html.j2").render(**context), encoding="utf-8")
    with atomic_path(paths["markdown"]) as tmp:
        text = env.get_template("report.md.j2").render(**context)
        tmp.write_text(_squeeze_blank_lines(text), encoding="utf-8")
    for section in context["sections"]:
        for figure in section["figures"]:
            paths[f"figure:{Path(figure['path']).name}"] = Path(figure["path"])
    return paths


def build_context(rows: Sequence[dict], results_dir: Path, figure_dir: Path, *,
                  delta: float = DELTA, at: int | None = None) -> dict:
    """Everything the templates show: title, subtitle and sections (notes, tables, figures),
    of the fits scored at milestone ``at`` (default: their last step; the claims at every
    milestone side by side when there are several); writes the figures into ``figure_dir``."""
    steps = milestones(rows)
    by_step = _by_milestone(rows, steps, delta)
    rows = rows_at(rows, at)
    label = scope_labeller(rows)
    images = list(dict.fromkeys(r["image"] for r in rows))
    scopes = list(dict.fromkeys(label(r) for r in rows))
    seeds = sorted({r.get("seed") for r in rows if r.get("seed") is not None})
    metric = metric_label(rows)
    networks = [r for r in rows if r.get("kind") != "classical"]
    curves = _embed(sparsity_curves(networks, figure_dir))
    missing: list[str] = []
    grids = _embed(image_grids(networks, results_dir, figure_dir, missing=missing))
    by_score, unpaired = _paired(claims_by_score, rows, delta)
    at = at_step(rows)
    sections = [
        _glance_section(by_score, unpaired, curves[:1], at),
        {"id": "settings", "title": "Settings",
         "notes": [f"{len(rows)} fits ({sum(r.get('kind') == 'transfer' for r in rows)} "
                   f"transfers) on {len(images)} image(s), {len(scopes)} task setting(s), "
                   f"{len(seeds)} network seed(s). Every value each setting takes:"],
         "tables": [_table(settings_rows(rows))], "figures": []},
        _claims_section(by_score, unpaired, delta, at),
        *([by_step] if by_step else []),
        {"id": "by-sparsity", "title": "Ticket against each baseline, per sparsity",
         "notes": [f"Paired difference ticket − baseline ({score_words('psnr_averaged')}) at "
                   "each requested sparsity, over image × seed × noise seed; threshold "
                   f"−{delta:g} dB against dense (non-inferiority), 0 dB against the rest."],
         "tables": [_table(claim_rows(_paired(by_sparsity, rows, delta)[0], detail=True))],
         "figures": []},
        {"id": "summary", "title": "Per-method summary",
         "notes": [f"Fits (not transfers) per task, method and requested sparsity, pooled "
                   f"over images and seeds; {metric} in dB, mean ± std."] + (
                   ["A classical method has one output (in the averaged column) and no "
                    "network: its oracle peaks and automatic stop are n/a."]
                   if len(networks) < len(rows) else []),
         "tables": [_table(summary_rows(rows))], "figures": []},
        {"id": "curves", "title": "PSNR against sparsity",
         "notes": ["Mean ± std over network and noise seeds; dense as a dashed line with its "
                   "band; the Deep Decoder as stars at 1 − its parameters / the dense "
                   "network's, labelled with its width k."],
         "tables": [], "figures": curves[1:]},
        {"id": "transfer", "title": "Transfer", "tables": [],
         "notes": [] if any(r.get("kind") == "transfer" for r in rows)
         else ["No transfer fits in these results."],
         "figures": _embed(transfer_heatmaps(networks, figure_dir))},
        {"id": "images", "title": "Images (as in the paper's Fig. 2)", "tables": [],
         "notes": _image_notes(grids, missing), "figures": grids},
    ]
    if curves:
        curve_notes = next(s for s in sections if s["id"] == "curves")["notes"]
        curve_notes.append(f"The first figure ({curves[0]['title']}) is at the top, under "
                           "\"At a glance\"." if len(curves) > 1 else
                           "The figure is at the top, under \"At a glance\".")
    warnings = diverged_notes(rows, label)
    if warnings:
        summary = next(s for s in sections if s["id"] == "summary")
        summary["notes"].append("Diverged fits (a non-finite score) count in \"fits\" "
                                "and in \"diverged\", not in the means.")
    machines = sorted({str(r["machine"]) for r in rows if r.get("machine")})
    versions = sorted({str(r["version"]) for r in rows if r.get("version")})
    subtitle = (f"{len(rows)} fits · images: {', '.join(image_name(i) for i in images[:12])}"
                f"{' …' if len(images) > 12 else ''} · tasks: {', '.join(scopes)} · metric: "
                f"{metric} · fitted with lottery_prior {', '.join(versions) or '?'} on "
                f"{', '.join(machines) or '?'} · report by lottery_prior {__version__}")
    return {"title": "Lottery image priors: results and claims", "subtitle": subtitle,
            "warnings": warnings, "sections": sections}


MAX_LISTED = 20  # diverged fits named one by one before "… and N more"


def diverged_notes(rows: Sequence[dict], label=None) -> list[str]:
    """One line per score with non-finite values: how many fits diverged, and which."""
    label = label or scope_labeller(rows)
    several_scopes = len({label(r) for r in rows}) > 1
    several_noise = len({r.get("noise_seed") for r in rows}) > 1
    notes = []
    for score in SCORES:
        bad = diverged(rows, score)
        if not bad:
            continue
        what = "fits diverged" if score == "psnr_averaged" else f"fits have a non-finite " \
            f"{score_words(score)}"
        metric = "PSNR" if score.startswith("psnr") else "SSIM"
        named = "; ".join(describe_fit(r, scope=label(r) if several_scopes else None,
                                       noise_seed=several_noise) for r in bad[:MAX_LISTED])
        more = f"; … and {len(bad) - MAX_LISTED} more" if len(bad) > MAX_LISTED else ""
        notes.append(f"{len(bad)} of {len(rows)} {what} (non-finite {metric}"
                     f"{', ' + score_words(score) if score != 'psnr_averaged' else ''}): "
                     f"{named}{more}. They are counted, not averaged.")
    return notes


def _paired(claims_of, rows: Sequence[dict], delta: float) -> tuple[object, str]:
    """Claims, or none and why when the table has no comparison key to pair fits on (an
    ambiguous table is refused: one line)."""
    try:
        return claims_of(rows, delta=delta), ""
    except LipError as err:
        if "lacks imp_run" not in str(err):
            raise
        return [], str(err)


GLANCE_COLUMNS = ("claim", "task", "S (shown up to)", "difference (dB)",
                  f"{100 * CONFIDENCE:g}% CI", "verdict")


def _glance_section(by_score: dict | None, unpaired: str, figures: list[dict],
                    at: str = "") -> dict:
    """What a reader wants first: the claims' verdicts on the first score (the averaged
    output after the last step), one line each, and one figure; the details follow."""
    notes, tables = [], []
    if by_score:
        score, items = next(iter(by_score.items()))
        rows = [{k: r[k] for k in GLANCE_COLUMNS if k in r} for r in claim_rows(items)]
        tables.append(_table(rows, title=f"The paper's claims on the {score_words(score)}{at}"))
        notes.append("Verdicts on the interval over units (image × seed × noise seed): holds, "
                     "contradicted or not shown; how they are made, the counts behind each "
                     "interval and the claims on the other scores are under \"Claims of the "
                     "paper\".")
    else:
        notes.append(f"No claims: {unpaired}." if unpaired else "No scores to compare.")
    return {"id": "glance", "title": "At a glance", "notes": notes, "tables": tables,
            "figures": figures}


def _by_milestone(rows: Sequence[dict], steps: list[int], delta: float) -> dict | None:
    """The claims on the averaged output at each milestone, side by side (None without
    milestones): one fit scored at several lengths answers "at step 1000" and "at the end"."""
    if len(steps) < 2:
        return None
    columns: dict[tuple, dict] = {}
    for step in steps:
        for c in claims(rows, "psnr_averaged", delta=delta, at=step):
            row = columns.setdefault((c.claim, c.scope), {"claim": c.claim, "task": c.scope})
            cell = "—" if c.mean is None else f"{c.mean:+.2f}" + (
                "" if c.low is None else f" [{c.low:+.2f}, {c.high:+.2f}]")
            s = "" if c.sparsity is None or not c.claim.startswith("ticket ≥ dense") else (
                f" (S = {100 * c.sparsity:g}%)")
            row[f"step {step}"] = f"{cell} {c.verdict}{s}"
    return {"id": "milestones", "title": "Claims at each milestone",
            "notes": [f"The same fits scored at steps {', '.join(map(str, steps))} of their "
                      f"run ([fit] score_at): the paired difference on the "
                      f"{score_words('psnr_averaged')}, its {100 * CONFIDENCE:g}% interval over "
                      "units and the verdict at each. `lip report --at STEP` gives the whole "
                      "report at one of them."],
            "tables": [_table(list(columns.values()))], "figures": []}


def _image_notes(grids: list[dict], missing: list[str]) -> list[str]:
    if missing and not grids:
        return ["The fits' images are not beside these results (a report remade from a "
                "results table alone), so the image grids are left out."]
    notes = ["Each output is the averaged output after the last step; titles give its PSNR. "
             "Oracle scores (peaks) are in the tables, not in these images."]
    if missing:
        notes.append(f"Left out for want of their images: {'; '.join(missing)}.")
    return notes


def _claims_section(by_score: dict | None, missing: str, delta: float, at: str = "") -> dict:
    tables = []
    for score, items in (by_score or {}).items():
        oracle = " — an oracle: it needs the ground truth" if "oracle" in score_words(score) \
            else ""
        tables.append(_table(claim_rows(items),
                             title=f"Claims on the {score_words(score)}{at}{oracle}"))
    notes = [
        "Each claim compares fits of one comparison: the same observation (image, task, noise "
        "seed), network, fit, IMP and stopping settings and network seed (the IMP search the "
        "fit was matched to, imp_run), at the same requested sparsity; only the method "
        "differs (a Deep Decoder is fitted with its own settings). The differences are "
        "averaged per unit (image × seed × noise seed, × task when pooled). The counts say "
        "how many units, images and independent random draws (distinct masks of a random "
        "baseline, where rows record them; — where the second side draws none) stand behind "
        "each interval, with the matched pairs in "
        f"brackets. CI: {100 * CONFIDENCE:g}% Student t interval of the mean difference over "
        "the units; clustered by image: over the images' mean differences, the interval to "
        "trust when generalising to other images (wide with few images, none with one).",
        "Verdict (on the units' interval): holds = the whole interval lies on the claimed side "
        "of the threshold; contradicted = the whole interval lies on the other side; not "
        "shown = otherwise, or fewer than 2 units (n given).",
        f"\"≥\" claims use a non-inferiority margin δ = {delta:g} dB (threshold −δ): ticket ≥ "
        "dense up to S, where S is the largest requested sparsity such that at every "
        "sparsity up to S the whole interval lies above −δ (the claim is shown up to S: a "
        "wider interval can only lower S; the row gives the difference at S, or at the lowest "
        "sparsity when there is no S). Transfers are compared with the ticket found on the "
        "target image and task itself (same sparsity and seed); a transfer to another task "
        "counts as across tasks, one to another image of the same task as across images.",
    ]
    if missing:
        notes.append(f"No claims: {missing}.")
    elif not tables:
        notes.append("No scores to compare.")
    return {"id": "claims", "title": "Claims of the paper", "notes": notes, "tables": tables,
            "figures": []}


def settings_rows(rows: Sequence[dict]) -> list[dict]:
    """One row per setting column present: the distinct values it takes, with counts."""
    out = []
    for column in SETTING_COLUMNS:
        if not any(column in r for r in rows):
            continue
        counts: dict[str, int] = {}
        for r in rows:
            text = _value_text(column, r.get(column))
            counts[text] = counts.get(text, 0) + 1
        items = sorted(counts.items(), key=lambda kv: _sort_key(column, kv[0]))
        shown = [f"{text} ({n})" if len(items) > 1 else text for text, n in items[:MAX_VALUES]]
        if len(items) > MAX_VALUES:
            shown.append(f"… and {len(items) - MAX_VALUES} more")
        out.append({"setting": column, "values": ", ".join(shown)})
    return out


def _value_text(column: str, v: object) -> str:
    if v is None or v == "":
        return "—"
    if column == "requested_sparsity" and isinstance(v, (int, float)):
        return f"{100 * v:g}%"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _sort_key(column: str, text: str) -> tuple:
    try:
        return (0, float(text.rstrip("%")), text)
    except ValueError:
        if column == "method":
            return (1, method_rank(text), text)
        return (1, 0, text)


def summary_rows(rows: Sequence[dict]) -> list[dict]:
    """Fits per task scope × method × requested sparsity: counts and mean scores."""
    label = scope_labeller(rows)
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r.get("kind") != "transfer":
            key = (label(r), r["method"], sparsity_key(r.get("requested_sparsity")) or 0.0)
            groups.setdefault(key, []).append(r)
    scores = [c for c in ("psnr_averaged", "psnr_peak_averaged", "psnr_stopped",
                          "ssim_averaged") if any(value(r, c) is not None for r in rows)]
    order = {s: i for i, s in enumerate(dict.fromkeys(label(r) for r in rows))}
    any_diverged = bool(diverged(r for rs in groups.values() for r in rs))
    stops = any(value(r, "psnr_stopped") is not None for r in rows)
    out = []
    for (scope, method, s), rs in sorted(groups.items(),
                                         key=lambda kv: (order[kv[0][0]],
                                                         method_rank(kv[0][1]), kv[0][2])):
        classical = all(r.get("kind") == "classical" for r in rs)
        row = {"task": scope, "method": method_title(method),
               "requested sparsity": "—" if method == "dense" or classical else f"{100 * s:g}%",
               "counted sparsity": _mean_text([value(r, "sparsity") for r in rs], pct=True),
               "parameters": _mean_text([value(r, "parameters") for r in rs], integer=True),
               "fits": str(len(rs)),
               "images": str(len({r["image"] for r in rs}))}
        if any_diverged:
            row["diverged"] = str(len(diverged(rs)))
        for c in scores:
            row[score_words(c)] = NOT_APPLICABLE if classical and c in ORACLE_OR_STOP else (
                _mean_text([value(r, c) for r in rs], std=c != "ssim_averaged"))
        if stops:
            row |= ({k: NOT_APPLICABLE for k in stop_cells([])} if classical
                    else stop_cells(rs))
        seconds = [v for v in (value(r, "seconds") for r in rs) if v is not None]
        row["seconds per fit"] = f"{statistics.fmean(seconds):,.1f}" if seconds else "—"
        out.append(row)
    return out


NOT_APPLICABLE = "n/a"  # a classical method's oracle peaks and stop
ORACLE_OR_STOP = ("psnr_peak_iterate", "psnr_peak_averaged", "psnr_stopped")


def stop_cells(rows: Sequence[dict]) -> dict[str, str]:
    """Where the automatic stop fired (median step, how many fired) and what it cost: the
    oracle peak of the averaged output minus the PSNR at the stop, median and worst."""
    steps = [v for v in (value(r, "stop_step") for r in rows) if v is not None]
    fired = [r for r in rows if r.get("stop_fired") is not None]
    losses = [p - s for p, s in ((value(r, "psnr_peak_averaged"), value(r, "psnr_stopped"))
                                 for r in rows) if p is not None and s is not None
              and math.isfinite(p - s)]
    count = sum(bool(r["stop_fired"]) for r in fired)
    return {"stop step, median (fired)": (f"{statistics.median(steps):,.0f}" if steps else "—")
            + (f" ({count} of {len(fired)})" if fired else ""),
            "loss at the stop vs peak, averaged (median / worst, dB)":
                f"{statistics.median(losses):.2f} / {max(losses):.2f}" if losses else "—"}


def _mean_text(values: Sequence[float | None], *, pct: bool = False, integer: bool = False,
               std: bool = False) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "—"
    m = statistics.fmean(values)
    if pct:
        return f"{100 * m:.1f}%"
    if integer:
        return f"{m:,.0f}"
    if std and len(values) > 1:
        return f"{m:.2f} ± {statistics.stdev(values):.2f}"
    return f"{m:.3f}" if not std else f"{m:.2f}"


def _table(rows: list[dict], *, title: str = "", note: str = "") -> dict:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    return {"title": title, "note": note, "columns": columns,
            "rows": [{c: r.get(c, "") for c in columns} for r in rows],
            "markdown": _markdown(columns, rows)}


def _markdown(columns: list[str], rows: list[dict]) -> str:
    if not rows:
        return "(nothing to show)"

    def cell(v: object) -> str:
        return str(v if v is not None else "").replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(map(cell, columns)) + " |", "|" + "|".join("---" for _ in columns)
             + "|"]
    lines += ["| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def _embed(figures: Sequence[Figure]) -> list[dict]:
    """Figures with their PNG as a data URI and their size in pixels."""
    from PIL import Image

    out = []
    for f in figures:
        data = f.path.read_bytes()
        with Image.open(f.path) as im:
            width, height = im.size
        out.append({"path": str(f.path), "title": f.title, "caption": f.caption,
                    "width": width, "height": height,
                    "data_uri": "data:image/png;base64," + base64.b64encode(data).decode()})
    return out


def _environment():
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                             autoescape=jinja2.select_autoescape(["html", "html.j2"]),
                             trim_blocks=True, lstrip_blocks=True,
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["cell_class"] = _cell_class
    return env


def _cell_class(cell: object, column: str) -> str:
    if column == "verdict":
        text = str(cell)
        return "verdict-" + ("holds" if text == "holds" else "contradicted"
                             if text == "contradicted" else "not")
    return "num" if _NUMBER.fullmatch(str(cell)) else ""


# Cells aligned right: numbers with a unit or a spread, intervals, counts with pairs.
_NUMBER = re.compile(r"[+\-−]?\d[\d,.]*(%| dB)?( ± [\d.]+)?( \(\d+\))?"
                     r"|\[[+\-−]?[\d.]+, [+\-−]?[\d.]+\]")


def _squeeze_blank_lines(text: str) -> str:
    out, blank = [], False
    for line in text.splitlines():
        if not line.strip():
            if not blank and out:
                out.append("")
            blank = True
        else:
            out.append(line.rstrip())
            blank = False
    return "\n".join(out).rstrip() + "\n"

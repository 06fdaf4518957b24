"""Files a fit leaves behind: images, a metrics JSON, a PSNR-over-steps plot."""

from __future__ import annotations

import statistics
from pathlib import Path

from lottery_prior import __version__
from lottery_prior.files import write_json
from lottery_prior.fit import FitResult
from lottery_prior.images import save_image
from lottery_prior.problem import Problem
from lottery_prior.report.plots import (
    plot_fit_history,
    plot_heatmap,
    plot_method_bars,
    plot_sparsity_curves,
)
from lottery_prior.report.tables import HEADINGS, markdown_table, write_table
from lottery_prior.scores import score_columns


def write_fit_outputs(
    out_dir: str | Path, problem: Problem, result: FitResult, settings: dict
) -> dict[str, Path]:
    """Write ``restored.png``, ``observation.png``, ``clean.png`` (if known), ``final.png``,
    ``metrics.json`` and ``psnr.png`` (or ``loss.png`` without a truth); returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "restored": out / "restored.png",
        "final": out / "final.png",
        "observation": out / "observation.png",
    }
    save_image(result.restored, paths["restored"])
    save_image(result.output, paths["final"])
    save_image(problem.observation, paths["observation"])
    if problem.clean is not None:
        paths["clean"] = out / "clean.png"
        save_image(problem.clean, paths["clean"])
    restored_is = "stopped" if result.stopped is not None else "averaged"
    metrics = {
        "version": __version__,
        "problem": problem.describe(),
        "metric": problem.metric_name if problem.clean is not None else None,
        "restored_image": f"{restored_is} output (restored.png); final iterate in final.png",
        **result.summary(),
        "settings": settings,
    }
    paths["metrics"] = write_json(out / "metrics.json", metrics)
    marks = {}
    if "peak_averaged" in result.scores:
        marks["peak"] = int(result.scores["peak_averaged"]["step"])
    if "stopped" in result.scores and result.scores["stopped"]["step"] is not None:
        marks["auto stop"] = int(result.scores["stopped"]["step"])
    plot_name = "psnr.png" if problem.clean is not None else "loss.png"
    paths["plot"] = plot_fit_history(
        result.history,
        out / plot_name,
        title=f"{problem.image} · {problem.task}",
        metric_name=problem.metric_name,
        marks=marks,
    )
    return paths


def write_imp_report(run) -> str:
    """``results.csv``/``.md`` and ``psnr_vs_sparsity.png`` of an IMP run; returns the table.

    Searching rounds cut short are in the table (marked ``search``) but not in the plot: it
    shows full-length fits only, and draws the dense line only if round 0 ran in full.
    """
    rows = [_round_row(r, run.fitted_in_full(r["round"])) for r in run.records]
    write_table(rows, run.folder / "results")
    full = [r for r in rows if r["fit"] == "full"]
    labels = [k for k in ("psnr_averaged", "psnr_peak_averaged", "psnr_stopped")
              if full and k in full[0]]
    pruned = [r for r in full if r["round"] > 0]
    if labels and pruned:
        dense = full[0][labels[0]] if full[0]["round"] == 0 else None
        series = {HEADINGS[k]: ([r["sparsity"] for r in pruned], [r[k] for r in pruned])
                  for k in labels[:2]}
        plot_sparsity_curves(series, run.folder / "psnr_vs_sparsity.png", dense=dense,
                             title=f"IMP · {run.problem.image} · {run.problem.task} "
                             f"(full {run.fit_config.steps}-step fits only)",
                             ylabel=f"{run.problem.metric_name} (dB)")
    return markdown_table(rows)


def write_channel_table(run) -> str:
    """``channels.csv``/``.md`` of a channel run: output channels kept per conv, per round."""
    records = [r for r in run.records if "channels" in r]
    rows = [{"conv": name, **{f"round {r['round']}": r["channels"][name] for r in records}}
            for name in records[0]["channels"]]
    write_table(rows, run.folder / "channels")
    return markdown_table(rows)


def _round_row(record: dict, full: bool) -> dict:
    channels = {}  # a channel run's rounds: what the compact network kept, and what it costs
    if "channel_sparsity" in record:
        channels = {"channel_sparsity": round(record["channel_sparsity"], 4),
                    "gflop_step": round(record["flops"] / 1e9, 3),
                    "ms_step": round(1000 * record["seconds"] / record["steps"], 1)}
    return {"round": record["round"], "sparsity": round(record["sparsity"], 4), **channels,
            "parameters": record["parameters"], "fit": "full" if full else "search",
            "steps": record["steps"], "seconds": record["seconds"],
            **score_columns(record["scores"])}


def write_comparison(rows: list[dict], out_dir: str | Path, title: str = "") -> str:
    """``comparison.csv``/``.md`` and ``comparison.png`` (PSNR of each method, with the
    spread over seeds); returns the table, with per-method means when there are seeds (and
    per milestone, column ``step``, when the fits were scored at several)."""
    out = Path(out_dir)
    write_table(rows, out / "comparison")
    key = next(k for k in ("psnr_averaged", "psnr_final", "ssim_averaged") if k in rows[0])
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["method"], r.get("step")), []).append(r)
    summary = []
    for (m, step), group in groups.items():
        values = [r[key] for r in group]
        first = group[0]
        entry = {"method": m, **({"step": step} if step is not None else {}),
                 "sparsity": first["sparsity"], "parameters": first["parameters"],
                 "seeds": len(values), f"{key}_mean": round(statistics.fmean(values), 3),
                 f"{key}_std": round(statistics.pstdev(values), 3)}
        if "gflop_step" in first:  # cost of a step: counted, and measured in the fits
            entry["gflop_step"] = first["gflop_step"]
            entry["ms_step_mean"] = round(statistics.fmean(r["ms_step"] for r in group), 1)
        for other in ("psnr_final", "psnr_stopped", "psnr_peak_iterate", "psnr_peak_averaged"):
            if other in first and other != key:
                entry[f"{other}_mean"] = round(statistics.fmean(r[other] for r in group), 3)
            elif "library" in first and any(other in r for r in rows):
                entry[f"{other}_mean"] = "n/a"  # a classical method: one output, no oracle
        if "library" in first:
            entry["library"] = first["library"]
        summary.append(entry)
    write_table(summary, out / "summary")
    plot_method_bars(summary, f"{key}_mean", f"{key}_std", out / "comparison.png", title=title,
                     ylabel=key.replace("_", " "))
    return markdown_table(summary)


def write_transfer(rows: list[dict], out_dir: str | Path) -> str:
    """``transfer.csv``/``.md`` and ``transfer.png`` (tickets x targets heat map)."""
    out = Path(out_dir)
    write_table(rows, out / "transfer")
    key = next(k for k in ("psnr_averaged", "psnr_final") if k in rows[0])
    tickets = list(dict.fromkeys(r["ticket"] for r in rows))
    targets = list(dict.fromkeys(r["target"] for r in rows))
    cell = {(r["ticket"], r["target"]): r[key] for r in rows}
    plot_heatmap([[cell.get((t, g), float("nan")) for g in targets] for t in tickets],
                 tickets, targets, out / "transfer.png", title="ticket transfer",
                 label=key.replace("_", " ") + " (dB)")
    return markdown_table(rows)

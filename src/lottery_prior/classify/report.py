"""Tables and plots of the classification experiment: accuracy per IMP round, mask overlap
against chance, and the cross-use fits (mean ± std over seeds)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path

from lottery_prior.files import save_figure
from lottery_prior.report.plots import plot_sparsity_curves, plt
from lottery_prior.report.tables import HEADINGS, markdown_table, write_table

SCORE_KEYS = ("psnr_averaged", "psnr_final", "psnr_peak_averaged", "psnr_peak_iterate")


def accuracy_rows(records: Sequence[dict]) -> list[dict]:
    """One row per IMP round: counted sparsity, parameters, accuracies (%), time."""
    return [{"round": r["round"], "sparsity": round(r["sparsity"], 4),
             "parameters": r["parameters"],
             "test_accuracy": round(100 * r["test_accuracy"], 2),
             "train_accuracy": round(100 * r["train_accuracy"], 2),
             "test_loss": round(r["test_loss"], 4), "steps": r["steps"],
             "train_seconds": r["seconds"]} for r in records]


def write_accuracy_report(records: Sequence[dict], folder: str | Path, title: str = "") -> str:
    """``accuracy.csv``/``.md`` and ``accuracy_vs_sparsity.png``; returns the table."""
    folder = Path(folder)
    rows = accuracy_rows(records)
    write_table(rows, folder / "accuracy")
    pruned = [r for r in rows if r["round"] > 0]
    if pruned:
        plot_sparsity_curves(
            {"test accuracy": ([r["sparsity"] for r in pruned],
                               [r["test_accuracy"] for r in pruned])},
            folder / "accuracy_vs_sparsity.png", dense=rows[0]["test_accuracy"],
            title=title or "classification IMP", ylabel="test accuracy (%)")
    return markdown_table(rows)


def write_overlap(rows: Sequence[dict], folder: str | Path, *, title: str = "",
                  name: str = "overlap") -> str:
    """``<name>.csv``/``.md`` and ``<name>.png`` (IoU against chance, per layer); returns the
    table."""
    folder = Path(folder)
    write_table(list(rows), folder / name)
    layers = [r for r in rows if r["layer"] != "global"]
    fig, ax = plt.subplots(figsize=(max(6.4, 0.45 * len(rows) + 2), 4.2), dpi=120)
    x = range(len(rows))
    ax.bar([i - 0.2 for i in x], [r["iou"] for r in rows], 0.4, label="IoU of the two tickets")
    ax.bar([i + 0.2 for i in x], [r["chance_iou"] for r in rows], 0.4,
           yerr=[r["chance_iou_std"] for r in rows], capsize=2, color="gray", alpha=0.7,
           label="chance: random masks, same per-layer counts (exact mean ± std)")
    labels = [_short(r["layer"]) for r in layers] + ["GLOBAL"]
    ax.set_xticks(list(x), labels, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("IoU of kept weights")
    ax.set_ylim(0, 1.3)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    save_figure(fig, folder / f"{name}.png")
    plt.close(fig)
    return markdown_table(rows)


def _short(layer: str) -> str:
    """``body.deeper.2.deeper.2.merge.1.0.weight`` -> ``d.d.merge.1`` (scale by depth)."""
    parts = layer.removeprefix("body.").removesuffix(".weight").split(".")
    out, i = [], 0
    while i < len(parts):
        if parts[i] == "deeper" and i + 1 < len(parts) and parts[i + 1] == "2":
            out.append("d")
            i += 2
        else:
            out.append(parts[i])
            i += 1
    return ".".join(out)


def summarize_cross_use(rows: Sequence[dict]) -> list[dict]:
    """Mean ± std over seeds of every labelled PSNR, per problem and method."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["problem"], r["method"]), []).append(r)
    summary = []
    for (problem, method), group in groups.items():
        entry = {"problem": problem, "method": method, "sparsity": group[0]["sparsity"],
                 "seeds": len(group)}
        for key in SCORE_KEYS:
            values = [g[key] for g in group if g.get(key) is not None]
            if values:
                entry[f"{key}_mean"] = round(statistics.fmean(values), 3)
                entry[f"{key}_std"] = round(statistics.stdev(values), 3) \
                    if len(values) > 1 else 0.0
        summary.append(entry)
    return summary


def write_cross_use(rows: Sequence[dict], folder: str | Path, *, title: str = "") -> str:
    """``cross_use.csv``/``.md`` (every fit), ``cross_use_summary.csv``/``.md`` and
    ``cross_use.png`` (averaged-output PSNR, mean ± std over seeds); returns the summary."""
    folder = Path(folder)
    write_table(list(rows), folder / "cross_use")
    summary = summarize_cross_use(rows)
    write_table(summary, folder / "cross_use_summary")
    problems = list(dict.fromkeys(r["problem"] for r in summary))
    methods = list(dict.fromkeys(r["method"] for r in summary))
    key = next(k for k in SCORE_KEYS if f"{k}_mean" in summary[0])
    cell = {(r["problem"], r["method"]): r for r in summary}
    fig, ax = plt.subplots(figsize=(2.5 + 2.2 * len(problems), 4.2), dpi=120)
    width = 0.8 / len(methods)
    for j, method in enumerate(methods):
        xs = [i + (j - (len(methods) - 1) / 2) * width for i in range(len(problems))]
        means = [cell[(p, method)][f"{key}_mean"] for p in problems]
        stds = [cell[(p, method)][f"{key}_std"] for p in problems]
        ax.bar(xs, means, width, yerr=stds, capsize=3, label=method)
        for x, m in zip(xs, means, strict=True):
            ax.annotate(f"{m:.2f}", (x, m), ha="center", va="bottom", fontsize=7,
                        xytext=(0, 3), textcoords="offset points")
    ax.set_xticks(range(len(problems)), problems, fontsize=8)
    values = [r[f"{key}_mean"] for r in summary]
    lo, hi = min(values), max(values)
    ax.set_ylim(lo - max(2.0, hi - lo), hi + 0.4 * max(1.0, hi - lo))
    ax.set_ylabel(f"{HEADINGS.get(key, key)} (dB), mean ± std over seeds")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, folder / "cross_use.png")
    plt.close(fig)
    return markdown_table(summary)


def write_eval(rows: Sequence[dict], curves: dict[str, list[float]], folder: str | Path,
               *, title: str = "") -> str:
    """``eval.csv``/``.md`` (one row per method and seed), ``eval_summary`` (mean ± std over
    seeds) and ``accuracy_per_epoch.png``; returns the summary table."""
    folder = Path(folder)
    write_table(list(rows), folder / "eval")
    summary = []
    for method in dict.fromkeys(r["method"] for r in rows):
        group = [r for r in rows if r["method"] == method]
        values = [r["test_accuracy"] for r in group]
        summary.append({"method": method, "sparsity": group[0]["sparsity"],
                        "parameters": group[0]["parameters"], "seeds": len(group),
                        "test_accuracy_mean": round(statistics.fmean(values), 2),
                        "test_accuracy_std": round(statistics.stdev(values), 2)
                        if len(values) > 1 else 0.0})
    write_table(summary, folder / "eval_summary")
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    for method, values in curves.items():
        ax.plot(range(1, len(values) + 1), [100 * v for v in values], marker="o", ms=3,
                label=method)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title + " (first seed)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, folder / "accuracy_per_epoch.png")
    plt.close(fig)
    return markdown_table(summary)

"""Plots written as PNG files (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from lottery_prior.files import save_figure  # noqa: E402


def plot_fit_history(
    history: dict[str, list[float]],
    path: str | Path,
    *,
    title: str = "",
    metric_name: str = "PSNR",
    marks: dict[str, int] | None = None,
) -> Path:
    """PSNR (final iterate and averaged) over steps when known, else the loss; one PNG.

    ``marks`` labels vertical lines, e.g. ``{"peak": 812, "auto stop": 900}``.
    """
    path = Path(path)
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    steps = history["step"]
    if "psnr" in history:
        ax.plot(steps, history["psnr"], lw=0.8, alpha=0.6, label="iterate")
        ax.plot(steps, history["psnr_averaged"], lw=1.4, label="averaged (EMA 0.99)")
        ax.set_ylabel(f"{metric_name} (dB)")
        lo = min(history["psnr_averaged"][len(steps) // 20 :] or history["psnr_averaged"])
        ax.set_ylim(bottom=max(lo - 3, min(history["psnr"])))
    else:
        ax.semilogy(steps, history["loss"], lw=1.0, label="loss (MSE to the observation)")
        ax.set_ylabel("loss")
    for label, step in (marks or {}).items():
        ax.axvline(step, ls="--", lw=0.8, color="gray")
        ax.annotate(label, (step, 0.02), xycoords=("data", "axes fraction"), fontsize=8)
    ax.set_xlabel("step")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return path


def plot_sparsity_curves(
    series: dict[str, tuple[list[float], list[float]]],
    path: str | Path,
    *,
    dense: float | None = None,
    title: str = "",
    ylabel: str = "PSNR (dB)",
) -> Path:
    """PSNR against sparsity (in %) for each labelled series, the dense prior as a line."""
    path = Path(path)
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    for label, (sparsity, values) in series.items():
        ax.plot([100 * s for s in sparsity], values, marker="o", ms=3.5, lw=1.2, label=label)
    if dense is not None:
        ax.axhline(dense, ls="--", lw=1.0, color="black", label="dense")
    ax.set_xlabel("sparsity (%) — counted from the weights")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return path


def plot_heatmap(
    values: list[list[float]],
    rows: list[str],
    cols: list[str],
    path: str | Path,
    *,
    title: str = "",
    label: str = "PSNR (dB)",
) -> Path:
    """A grid of numbers as an annotated heat map (e.g. tickets x target problems)."""
    import numpy as np

    path = Path(path)
    data = np.array(values, dtype=float)
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(cols), 1.2 + 0.6 * len(rows)), dpi=120)
    im = ax.imshow(data, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    mid = np.nanmean(data) if np.isfinite(data).any() else 0
    for i in range(data.shape[0]):
        for j in range(data.shape[1]):
            color = "black" if data[i, j] > mid else "white"
            ax.text(j, i, f"{data[i, j]:.2f}", ha="center", va="center", fontsize=8, color=color)
    fig.colorbar(im, ax=ax, label=label)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return path


def plot_method_bars(
    rows: list[dict], key: str, err_key: str | None, path: str | Path, *, title: str = "",
    ylabel: str = "PSNR (dB)",
) -> Path:
    """One bar per method (mean, with the spread over seeds as an error bar)."""
    path = Path(path)
    fig, ax = plt.subplots(figsize=(1.5 + 1.0 * len(rows), 4.0), dpi=120)
    values = [r[key] for r in rows]
    errors = [r[err_key] for r in rows] if err_key else None
    ax.bar(range(len(rows)), values, yerr=errors, capsize=3, color="tab:blue", alpha=0.8)
    for i, v in enumerate(values):
        ax.annotate(f"{v:.2f}", (i, v), ha="center", va="bottom", fontsize=8,
                    xytext=(0, 3), textcoords="offset points")
    ax.set_xticks(range(len(rows)),
                  [f"{r['method']}\n" + ("classical" if r["sparsity"] is None
                                          else f"{100 * r['sparsity']:.1f}%")
                   + (f"\nstep {r['step']}" if r.get("step") is not None else "")
                   for r in rows],
                  fontsize=8)
    lo, hi = min(values), max(values)
    ax.set_ylim(lo - max(1.0, 0.5 * (hi - lo)), hi + 0.3 * max(1.0, hi - lo))
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return path

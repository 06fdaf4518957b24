"""Plots written as PNG files (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


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
    path.parent.mkdir(parents=True, exist_ok=True)
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
    fig.savefig(path)
    plt.close(fig)
    return path

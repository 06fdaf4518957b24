"""Files a fit leaves behind: images, a metrics JSON, a PSNR-over-steps plot."""

from __future__ import annotations

import json
from pathlib import Path

from lottery_prior import __version__
from lottery_prior.fit import FitResult
from lottery_prior.images import save_image
from lottery_prior.problem import Problem
from lottery_prior.report.plots import plot_fit_history


def write_json(path: str | Path, data: dict) -> Path:
    """Pretty JSON, written atomically (a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=float) + "\n")
    tmp.replace(path)
    return path


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

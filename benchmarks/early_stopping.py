"""Automatic early stopping (ES-WMV) against the oracle peak: Set5 denoising at sigma = 25.

Each image is fitted for the full ``--steps``; the detector watches the outputs alone (it never
sees the clean image) and the step where it would have stopped is recorded, so one run gives
the oracle peak PSNR (of the iterate and of the moving average, which needs the truth), the
PSNR of the detector's output, and the final PSNR. The clean image is only used for scoring.

    python benchmarks/early_stopping.py                      # dense paper net, 2000 steps
    python benchmarks/early_stopping.py --images baby bird --width 64 --steps 1500 \\
        --window 50 --patience 300 --markdown es.md
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from torch import Tensor

from lottery_prior.fit import FitConfig, StepInfo, fit
from lottery_prior.lottery import ticket_input
from lottery_prior.problem import build_prior, make_problem
from lottery_prior.progress import ProgressBar
from lottery_prior.stopping import WindowedVariance
from lottery_prior.tickets import Ticket

SET5 = ("baby", "bird", "butterfly", "head", "woman")


@dataclass
class Row:
    """PSNRs (dB) of one fit; steps count from 1."""

    image: str
    peak: float
    peak_step: int
    peak_avg: float
    peak_avg_step: int
    stop: float  # the iterate at stop_step (the paper's output)
    stop_mean: float  # the mean of the window ending at stop_step (keep="mean")
    stop_step: int | None  # the step of minimum windowed variance
    fired_step: int | None  # when the rule said stop (None: not within the run)
    final: float
    final_avg: float
    seconds: float


def run_image(
    image: str,
    *,
    steps: int,
    window: int,
    patience: int,
    model_options: dict,
    sigma: float = 25.0,
    size: int = 128,
    fast: bool = True,
    device: str | None = None,
    seed: int = 0,
    ticket: Ticket | None = None,
    quiet: bool = False,
    curves: dict | None = None,
) -> Row:
    """Fit ``data:set5/IMAGE`` (dense, or a ticket retrained) and score the detector's stop."""
    problem = make_problem(f"data:set5/{image}", "denoise", sigma=sigma, size=size, seed=seed)
    if ticket is None:
        model, z = build_prior("dip", model_options, problem, seed=seed)
        mask = None
    else:
        model, z = ticket_input(ticket, problem, seed)
        mask = ticket.mask
    rule = WindowedVariance(window=window, patience=patience)
    fired: list[int] = []

    def watch(info: StepInfo) -> None:  # outputs only; frozen once it has fired
        if not fired and rule.update(info.step, info.output):
            fired.append(info.step)

    callbacks = [watch] if quiet else [watch, ProgressBar(image, every=50, leave=False)]
    result = fit(
        model, z, problem.operator, problem.observation, clean=problem.clean, mask=mask,
        config=FitConfig(steps=steps, fast=fast, device=device, seed=seed), callbacks=callbacks,
    )
    for cb in callbacks:
        if isinstance(cb, ProgressBar):
            cb.close()
    s = result.scores
    def score(image: Tensor | None) -> float:
        return math.nan if image is None else problem.metric(image.cpu(), problem.clean)

    if curves is not None:
        curves[image if ticket is None else f"{image} ticket"] = {
            "psnr": result.history["psnr"], "psnr_averaged": result.history["psnr_averaged"],
            "variance_steps": rule.variance_steps, "variances": rule.variances}
    return Row(image, s["peak"]["psnr"], s["peak"]["step"], s["peak_averaged"]["psnr"],
               s["peak_averaged"]["step"], score(rule.best_iterate), score(rule.best_mean),
               rule.best_step, fired[0] if fired else None,
               s["final"]["psnr"], s["averaged"]["psnr"], result.seconds)


def table(rows: list[Row]) -> list[str]:
    """Markdown table of the rows plus their mean."""
    def step(v: int | None) -> str:
        return "-" if v is None else str(v)

    lines = ["| image | peak (step) | peak avg (step) | ES-WMV (kept/fired) | ES - peak "
             "| ES window mean | final | final avg |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.image} | {r.peak:.2f} ({r.peak_step}) | {r.peak_avg:.2f} "
                     f"({r.peak_avg_step}) | {r.stop:.2f} ({step(r.stop_step)}/"
                     f"{step(r.fired_step)}) | {r.stop - r.peak:+.2f} | {r.stop_mean:.2f} "
                     f"| {r.final:.2f} | {r.final_avg:.2f} |")
    mean = {f: statistics.fmean(getattr(r, f) for r in rows)
            for f in ("peak", "peak_avg", "stop", "stop_mean", "final", "final_avg")}
    lines.append(f"| **mean** | {mean['peak']:.2f} | {mean['peak_avg']:.2f} | {mean['stop']:.2f} "
                 f"| {mean['stop'] - mean['peak']:+.2f} | {mean['stop_mean']:.2f} "
                 f"| {mean['final']:.2f} | {mean['final_avg']:.2f} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", nargs="+", default=list(SET5), choices=SET5)
    ap.add_argument("--steps", type=int, default=2000, help="Adam steps per image (2000)")
    ap.add_argument("--sigma", type=float, default=25.0)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--width", type=int, default=128, help="channels per scale (128: paper)")
    ap.add_argument("--window", type=int, default=100, help="ES-WMV window W (paper: 100)")
    ap.add_argument("--patience", type=int, default=1000, help="ES-WMV patience P (paper: 1000)")
    ap.add_argument("--no-fast", dest="fast", action="store_false", help="fp32 instead of bf16")
    ap.add_argument("--device")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    ap.add_argument("--csv", help="also write the rows as CSV")
    ap.add_argument("--markdown", help="also write the table as markdown")
    ap.add_argument("--curves", help="also write PSNR and variance curves as JSON")
    ap.add_argument("--ticket", type=Path,
                    help="also retrain this ticket (lip find) on every image, a row each")
    args = ap.parse_args()

    header = (f"Set5 {args.size}px, sigma {args.sigma:g}, dip width {args.width}, "
              f"{args.steps} steps, {'bf16' if args.fast else 'fp32'}, seed {args.seed}, "
              f"ES-WMV W={args.window} P={args.patience}")
    print(header)
    curves: dict | None = {} if args.curves else None
    rows = []
    start = time.perf_counter()
    ticket = Ticket.load(args.ticket) if args.ticket else None
    runs = [(image, None) for image in args.images]
    if ticket is not None:
        runs += [(image, ticket) for image in args.images]
    for image, prior in runs:
        row = run_image(image, steps=args.steps, window=args.window, patience=args.patience,
                        model_options={"width": args.width}, sigma=args.sigma, size=args.size,
                        fast=args.fast, device=args.device, seed=args.seed, quiet=args.quiet,
                        curves=curves, ticket=prior)
        if prior is not None:
            row = replace(row, image=f"{image} (ticket {prior.sparsity:.0%})")
        rows.append(row)
        print(f"{image}: peak {row.peak:.2f} @ {row.peak_step}, ES {row.stop:.2f} @ "
              f"{row.stop_step} (fired {row.fired_step}), ES window mean {row.stop_mean:.2f}, "
              f"final {row.final:.2f} "
              f"[{row.seconds:.0f} s]", flush=True)
    lines = table(rows)
    print("\n".join(lines))
    print(f"total {time.perf_counter() - start:.0f} s")
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(header + "\n\n" + "\n".join(lines) + "\n")
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=[fl.name for fl in fields(Row)])
            writer.writeheader()
            writer.writerows(asdict(r) for r in rows)
    if args.curves:
        with open(args.curves, "w") as f:
            json.dump({"settings": vars(args), "curves": curves}, f)


if __name__ == "__main__":
    main()

"""Automatic early stopping (ES-WMV) against the oracle peak: Set5 denoising at sigma = 25.

Each image is fitted once for the full ``--steps`` while several ES-WMV detectors, one per
``--patience``, watch the outputs alone (they never see the clean image); each records the step
where it would have stopped. One run per image so gives the oracle peak PSNR (of the iterate and
of the moving average, which need the truth), the PSNR of every detector's output (the iterate at
the minimum-variance step, the paper's choice, and the mean of that window) and the final PSNR.
The clean image is only used for scoring.

    python benchmarks/early_stopping.py                      # dense paper net, 2000 steps
    python benchmarks/early_stopping.py --images baby bird --width 64 --steps 3000 \\
        --patience 1000 300 --ticket runs/ticket.safetensors --markdown es.md
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from dataclasses import asdict, dataclass, field
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
class Detected:
    """What one detector (patience P) returned; steps count from 1."""

    patience: int
    iterate: float  # PSNR of the iterate at ``step`` (the paper's output)
    mean: float  # PSNR of the mean of the window ending at ``step`` (keep="mean")
    step: int | None  # the step of minimum windowed variance
    fired: int | None  # when the rule said stop (None: not within the run)


@dataclass
class Row:
    """PSNRs (dB) of one fit."""

    image: str
    peak: float
    peak_step: int
    peak_avg: float
    peak_avg_step: int
    final: float
    final_avg: float
    seconds: float
    detected: list[Detected] = field(default_factory=list)


def run_image(
    image: str,
    *,
    steps: int,
    window: int,
    patiences: list[int],
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
    """Fit IMAGE (a Set5 name or any image spec; dense, or a ticket retrained) and score each
    detector's stop."""
    spec = f"data:set5/{image}" if image in SET5 else image
    problem = make_problem(spec, "denoise", sigma=sigma, size=size, noise_seed=seed)
    if ticket is None:
        model, z = build_prior("dip", model_options, problem, seed=seed)
        mask = None
    else:
        model, mask, z, _ = ticket_input(ticket, problem, seed)
    rules = [WindowedVariance(window=window, patience=p) for p in patiences]
    fired: dict[int, int] = {}

    def watch(info: StepInfo) -> None:  # outputs only; each rule is frozen once it has fired
        for i, rule in enumerate(rules):
            if i not in fired and rule.update(info.step, info.output):
                fired[i] = info.step

    callbacks = [watch] if quiet else [watch, ProgressBar(image, every=50, leave=False)]
    result = fit(
        model, z, problem.operator, problem.observation, clean=problem.clean, mask=mask,
        config=FitConfig(steps=steps, precision="bf16" if fast else "fp32", device=device,
                         seed=seed), callbacks=callbacks,
    )
    for cb in callbacks:
        if isinstance(cb, ProgressBar):
            cb.close()
    s = result.scores

    def score(output: Tensor | None) -> float:
        return math.nan if output is None else problem.metric(output.cpu(), problem.clean)

    name = image if ticket is None else f"{image} ticket"
    if curves is not None:
        longest = max(rules, key=lambda r: len(r.variances))
        curves[name] = {
            "psnr": result.history["psnr"], "psnr_averaged": result.history["psnr_averaged"],
            "variance_steps": longest.variance_steps, "variances": longest.variances}
    detected = [Detected(p, score(r.best_iterate), score(r.best_mean), r.best_step, fired.get(i))
                for i, (p, r) in enumerate(zip(patiences, rules, strict=True))]
    return Row(name, s["peak"]["psnr"], s["peak"]["step"], s["peak_averaged"]["psnr"],
               s["peak_averaged"]["step"], s["final"]["psnr"], s["averaged"]["psnr"],
               result.seconds, detected)


def table(rows: list[Row]) -> list[str]:
    """Markdown table of the rows plus the mean of each group (dense, ticket), for the
    patiences every row has."""
    def step(v: int | None) -> str:
        return "-" if v is None else str(v)

    patiences = [d.patience for d in rows[0].detected
                 if all(any(e.patience == d.patience for e in r.detected) for r in rows)]

    def pick(r: Row, patience: int) -> Detected:
        return next(d for d in r.detected if d.patience == patience)

    head = "| image | peak (step) | peak avg | final | final avg |"
    rule = "|---|---|---|---|---|"
    for p in patiences:
        head += f" P={p}: iterate (kept/fired) | - peak | window mean | - peak avg |"
        rule += "---|---|---|---|"
    lines = [head, rule]
    for r in rows:
        line = (f"| {r.image} | {r.peak:.2f} ({r.peak_step}) | {r.peak_avg:.2f} | "
                f"{r.final:.2f} | {r.final_avg:.2f} |")
        for p in patiences:
            d = pick(r, p)
            line += (f" {d.iterate:.2f} ({step(d.step)}/{step(d.fired)}) | "
                     f"{d.iterate - r.peak:+.2f} | {d.mean:.2f} | {d.mean - r.peak_avg:+.2f} |")
        lines.append(line)
    groups = {"dense": [r for r in rows if not r.image.endswith("ticket")],
              "ticket": [r for r in rows if r.image.endswith("ticket")]}
    for group, members in groups.items():
        if not members:
            continue
        mean = statistics.fmean
        peak, peak_avg = mean(r.peak for r in members), mean(r.peak_avg for r in members)
        line = (f"| **mean, {group}** | {peak:.2f} | {peak_avg:.2f} | "
                f"{mean(r.final for r in members):.2f} | "
                f"{mean(r.final_avg for r in members):.2f} |")
        for p in patiences:
            it = mean(pick(r, p).iterate for r in members)
            wm = mean(pick(r, p).mean for r in members)
            line += f" {it:.2f} | {it - peak:+.2f} | {wm:.2f} | {wm - peak_avg:+.2f} |"
        lines.append(line)
    return lines


def load_rows(path: Path) -> list[Row]:
    """Rows written by ``--json`` (to merge runs made in parallel)."""
    rows = json.loads(path.read_text())["rows"]
    return [Row(**{**r, "detected": [Detected(**d) for d in r["detected"]]}) for r in rows]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", nargs="+", default=list(SET5),
                    help="Set5 names (default: all five) or any image specs "
                    "(e.g. data:denoising/F16 builtin:coffee)")
    ap.add_argument("--steps", type=int, default=2000, help="Adam steps per image (2000)")
    ap.add_argument("--sigma", type=float, default=25.0)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--width", type=int, default=128, help="channels per scale (128: paper)")
    ap.add_argument("--window", type=int, default=100, help="ES-WMV window W (paper: 100)")
    ap.add_argument("--patience", type=int, nargs="+", default=[1000],
                    help="ES-WMV patience P, one detector each (paper: 1000)")
    ap.add_argument("--no-fast", dest="fast", action="store_false", help="fp32 instead of bf16")
    ap.add_argument("--device")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    ap.add_argument("--no-dense", dest="dense", action="store_false",
                    help="skip the dense rows (with --ticket)")
    ap.add_argument("--ticket", type=Path,
                    help="also retrain this ticket (lip find) on every image, a row each")
    ap.add_argument("--json", type=Path, help="also write the rows as JSON")
    ap.add_argument("--markdown", type=Path, help="also write the table as markdown")
    ap.add_argument("--curves", type=Path, help="also write PSNR and variance curves as JSON")
    ap.add_argument("--merge", type=Path, nargs="+", metavar="JSON",
                    help="fit nothing: print one table of rows written by earlier --json runs")
    args = ap.parse_args()

    if args.merge:
        rows = [row for path in args.merge for row in load_rows(path)]
        print("\n".join(table(rows)))
        return
    ticket = Ticket.load(args.ticket) if args.ticket else None
    images = "Set5" if set(args.images) <= set(SET5) else "images"
    header = (f"{images} {args.size}px, sigma {args.sigma:g}, dip width {args.width}, "
              f"{args.steps} steps, {'bf16' if args.fast else 'fp32'}, seed {args.seed}, "
              f"ES-WMV W={args.window}")
    if ticket is not None:
        header += f", ticket {args.ticket} (counted sparsity {ticket.sparsity:.1%})"
    print(header)
    curves: dict | None = {} if args.curves else None
    rows = []
    start = time.perf_counter()
    runs = [(image, None) for image in args.images] if args.dense else []
    if ticket is not None:
        runs += [(image, ticket) for image in args.images]
    for image, prior in runs:
        row = run_image(image, steps=args.steps, window=args.window, patiences=args.patience,
                        model_options={"width": args.width}, sigma=args.sigma, size=args.size,
                        fast=args.fast, device=args.device, seed=args.seed, quiet=args.quiet,
                        curves=curves, ticket=prior)
        rows.append(row)
        stops = ", ".join(f"P={d.patience} {d.iterate:.2f} @ {d.step} (fired {d.fired})"
                          for d in row.detected)
        print(f"{row.image}: peak {row.peak:.2f} @ {row.peak_step}, final {row.final:.2f}, "
              f"ES-WMV {stops} [{row.seconds:.0f} s]", flush=True)
    lines = table(rows)
    print("\n".join(lines))
    print(f"total {time.perf_counter() - start:.0f} s")
    if args.markdown:
        args.markdown.write_text(header + "\n\n" + "\n".join(lines) + "\n")
    if args.json:
        args.json.write_text(json.dumps(
            {"settings": header, "rows": [asdict(r) for r in rows]}, indent=1))
    if args.curves:
        args.curves.write_text(json.dumps({"settings": header, "curves": curves}))


if __name__ == "__main__":
    main()

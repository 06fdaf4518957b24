"""Speed of N separate DIP fits vs one batched fit of N (torch.func.vmap), narrow network.

Prints, from one run: median ms per step per fit for N separate fits and for one batched fit
of N (N networks of different inits on one image), and the speed-up of batching, per size.
Separate and batched runs alternate ``--repeats`` times and the fastest of each is kept, which
damps the noise of a shared machine.

    python benchmarks/batched.py                       # 64 and 128 px, N = 1, 2, 4
    python benchmarks/batched.py --sizes 64 --width 8 --steps 5 --device cpu
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from lottery_prior.batched import fit_batched
from lottery_prior.fit import FitConfig, fit, select_device
from lottery_prior.problem import Problem, build_prior, make_problem


def _stamper(stamps: list[float]):
    return lambda info: stamps.append(time.perf_counter())


def _median_step(stamps: list[float], warmup: int) -> float:
    """Median seconds between steps, after ``warmup`` steps."""
    kept = stamps[warmup:]
    return statistics.median(b - a for a, b in zip(kept, kept[1:], strict=False))


def separate_ms(problem: Problem, options: dict, n: int, config: FitConfig, warmup: int) -> float:
    """ms per step of one fit, over N fits run one after the other."""
    steps = []
    for seed in range(n):
        model, z = build_prior("dip", options, problem, seed=seed)
        stamps: list[float] = []
        fit(model, z, problem.operator, problem.observation, config=config,
            callbacks=[_stamper(stamps)])
        steps.append(_median_step(stamps, warmup))
    return statistics.median(steps) * 1e3


def batched_ms(problem: Problem, options: dict, n: int, config: FitConfig, warmup: int) -> float:
    """ms per step per fit of one batched fit of N."""
    priors = [build_prior("dip", options, problem, seed=seed) for seed in range(n)]
    stamps: list[float] = []
    fit_batched([m for m, _ in priors], [z for _, z in priors], [problem.operator] * n,
                [problem.observation] * n, config=config,
                callbacks=[[_stamper(stamps)]] + [[] for _ in range(n - 1)])
    return _median_step(stamps, warmup) * 1e3 / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--ns", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--width", type=int, default=16, help="channels per scale (paper: 128)")
    ap.add_argument("--scales", type=int, default=5)
    ap.add_argument("--steps", type=int, default=20, help="timed steps per fit")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3, help="alternating runs; the fastest counts")
    ap.add_argument("--fast", action="store_true", help="bf16 autocast")
    ap.add_argument("--device")
    args = ap.parse_args()
    device = select_device(args.device)
    options = {"width": args.width, "scales": args.scales}
    config = FitConfig(steps=args.warmup + args.steps + 1,
                       precision="bf16" if args.fast else "fp32", device=str(device))
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"dip width {args.width} scales {args.scales}, fast={args.fast}, "
          f"median of {args.steps} steps after {args.warmup}, best of {args.repeats}")
    print(f"{'size':>5} {'N':>3} {'separate ms/step/fit':>21} {'batched ms/step/fit':>20} "
          f"{'speed-up':>9}")
    for size in args.sizes:
        problem = make_problem("builtin:astronaut", "denoise", size=size)
        for n in args.ns:
            sep = bat = float("inf")
            for _ in range(args.repeats):
                sep = min(sep, separate_ms(problem, options, n, config, args.warmup))
                bat = min(bat, batched_ms(problem, options, n, config, args.warmup))
            print(f"{size:>5} {n:>3} {sep:21.2f} {bat:20.2f} {sep / bat:8.2f}x")


if __name__ == "__main__":
    main()

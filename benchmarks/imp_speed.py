"""Less work per ticket: wall time to a ~79% sparse ticket, and that ticket's PSNR.

Runs IMP on one image and seed to 1 - 0.8^7 = 79% sparsity three ways (one run each):

* paper: every round fitted for the full ``--steps``;
* short rounds: rounds fitted for ``--steps / --shorten`` steps, the final ticket re-fitted in full;
* early bird: each round ends once the mask it would prune changes by less than ``--threshold``
  between checks (3 checks in a row), the final ticket re-fitted in full.

Reused across rounds in every variant: z, theta0 and the observation (saved once per run).
Prints wall time (search + final fit), the speed-up over the paper protocol, and the final
ticket's averaged-output PSNR after the last step (and its oracle peak).

    python benchmarks/imp_speed.py                  # 128 px, width 32, 600 steps: ~10 min
    python benchmarks/imp_speed.py --size 256 --width 128 --steps 3000   # the paper network
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from lottery_prior.fit import FitConfig
from lottery_prior.lottery import ImpConfig, ImpRun
from lottery_prior.problem import make_problem


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", default="builtin:astronaut")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--shorten", type=int, default=4, help="short rounds = steps / shorten")
    ap.add_argument("--threshold", type=float, default=0.05, help="early-bird threshold")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fp32", action="store_true")
    ap.add_argument("--out", type=Path, default=Path("lip-out/bench-imp-speed"))
    args = ap.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)  # time every variant from scratch

    problem = make_problem(args.image, "denoise", size=args.size, seed=args.seed)
    config = FitConfig(steps=args.steps, fast=not args.fp32, seed=args.seed)
    variants = {
        "paper (full rounds)": ImpConfig(rounds=args.rounds),
        f"short rounds (1/{args.shorten})": ImpConfig(
            rounds=args.rounds, search_steps=max(1, args.steps // args.shorten)),
        f"early bird ({args.threshold})": ImpConfig(rounds=args.rounds,
                                                     early_bird=args.threshold),
    }
    rows = []
    for name, imp in variants.items():
        run = ImpRun(problem, "dip", {"width": args.width}, config, imp, root=args.out)
        start = time.perf_counter()
        records = run.run()
        seconds = time.perf_counter() - start
        last = records[-1]
        final = last.get("evaluation", last)["scores"]
        rows.append((name, seconds, last["sparsity"], sum(r["steps"] for r in records),
                     final["averaged"]["psnr"], final["peak"]["psnr"]))
        print(f"{name}: {seconds:.0f} s, {last['sparsity']:.1%}, "
              f"{final['averaged']['psnr']:.2f} dB", flush=True)

    base_time, base_psnr = rows[0][1], rows[0][4]
    print(f"\n{args.image} {args.size}px sigma 25, width {args.width}, {args.steps} steps, "
          f"{args.rounds} rounds, {'fp32' if args.fp32 else 'bf16 fast mode'}, seed {args.seed}")
    print("| variant | wall s | speed-up | sparsity | search steps | ticket PSNR (averaged, "
          "final step) | vs paper | peak (oracle) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, seconds, sparsity, steps, p_avg, p_peak in rows:
        print(f"| {name} | {seconds:.0f} | {base_time / seconds:.2f}x | {sparsity:.1%} | "
              f"{steps} | {p_avg:.2f} | {p_avg - base_psnr:+.2f} | {p_peak:.2f} |")


if __name__ == "__main__":
    main()

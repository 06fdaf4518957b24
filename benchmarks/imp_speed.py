"""Less work per ticket: wall time to a ~79% sparse ticket, and that ticket's PSNR.

Runs IMP on one image to 1 - 0.8^7 = 79% sparsity in several ways, once per network seed
(one fixed observation, noise seed 0):

* paper: every round fitted for the full ``--steps``;
* short rounds: searching rounds fitted for ``--steps / --shorten`` steps;
* fixed 100-step rounds: searching rounds of 100 steps (what the early-bird rule did before
  its distance was normalised: it then always ended rounds at its earliest check);
* early bird: each searching round ends once the next mask changes by less than
  ``--threshold`` of the most it can change (twice the weights the round prunes) between
  checks, 3 checks in a row.

In every variant the last round fits the final ticket for the full ``--steps`` (in the paper
protocol that fit is the last round itself), and z, theta0 and the observation are drawn once
per run and reused by every round. Prints, per variant, the search time (wall time until the
final mask is known: every round but the last), the total (with the final ticket's full fit),
the speed-ups of both over the paper protocol, the steps each searching round ran, and the
final ticket's averaged-output PSNR after its last step (mean over seeds; the difference to
the paper is taken seed by seed).

    python benchmarks/imp_speed.py                  # 64 px, width 32, 1000 steps, 2 seeds
    python benchmarks/imp_speed.py --size 256 --width 128 --steps 3000 --seeds 0  # paper net
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from pathlib import Path

from lottery_prior.fit import FitConfig
from lottery_prior.lottery import ImpConfig, ImpRun
from lottery_prior.problem import make_problem


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", default="builtin:astronaut")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--shorten", type=int, default=4, help="short rounds = steps / shorten")
    ap.add_argument("--threshold", type=float, default=0.05, help="early-bird threshold")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--fp32", action="store_true")
    ap.add_argument("--out", type=Path, default=Path("lip-out/bench-imp-speed"))
    args = ap.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)  # time every variant from scratch

    short = max(1, args.steps // args.shorten)
    variants = {
        "paper (full rounds)": ImpConfig(rounds=args.rounds),
        f"short rounds (1/{args.shorten})": ImpConfig(rounds=args.rounds, search_steps=short),
        "fixed 100-step rounds": ImpConfig(rounds=args.rounds, search_steps=100),
        f"early bird ({args.threshold})": ImpConfig(rounds=args.rounds,
                                                     early_bird=args.threshold),
    }
    results: dict[str, list[tuple[float, float, int, float, float]]] = {n: [] for n in variants}
    for seed in args.seeds:
        problem = make_problem(args.image, "denoise", size=args.size, noise_seed=0)
        config = FitConfig(steps=args.steps, precision="fp32" if args.fp32 else "bf16", seed=seed)
        for name, imp in variants.items():
            run = ImpRun(problem, "dip", {"width": args.width}, config, imp, root=args.out)
            start = time.perf_counter()
            records = run.run()
            total = time.perf_counter() - start
            last = records[-1]
            search = total - last["seconds"]  # the final ticket's fit is the last round's
            psnr = last["scores"]["averaged"]["psnr"]
            results[name].append((search, total, sum(r["steps"] for r in records[:-1]), psnr,
                                  last["sparsity"]))
            print(f"seed {seed}, {name}: search {search:.0f} s, total {total:.0f} s, "
                  f"{last['sparsity']:.1%}, {psnr:.2f} dB, searching rounds' steps "
                  f"{[r['steps'] for r in records[:-1]]}", flush=True)

    paper = results["paper (full rounds)"]
    print(f"\n{args.image} {args.size}px sigma 25 (noise seed 0), width {args.width}, "
          f"{args.steps} steps, "
          f"{args.rounds} rounds, {'fp32' if args.fp32 else 'bf16 fast mode'}, "
          f"seeds {' '.join(map(str, args.seeds))}")
    print("| variant | search s | search speed-up | total s | total speed-up | sparsity | "
          "search steps | ticket PSNR (averaged, last step) | vs paper |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, rows in results.items():
        def mean(i: int, rows=rows) -> float:
            return statistics.fmean(r[i] for r in rows)
        diffs = [r[3] - p[3] for r, p in zip(rows, paper, strict=True)]
        spread = f" ± {statistics.stdev(diffs):.2f}" if len(diffs) > 1 else ""
        print(f"| {name} | {mean(0):.0f} | {mean(0, paper) / mean(0):.2f}x | {mean(1):.0f} | "
              f"{mean(1, paper) / mean(1):.2f}x | {mean(4):.1%} | {mean(2):.0f} | "
              f"{mean(3):.2f} | {statistics.fmean(diffs):+.2f}{spread} |")


if __name__ == "__main__":
    main()

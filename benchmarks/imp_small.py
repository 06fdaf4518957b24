"""Do tickets beat random pruning and the Deep Decoder at equal size? The comparison at a scale
a CPU can run: IMP on a few images and seeds, then every method at the ticket's sparsity.

Prints one row per method: mean and spread (over images x seeds) of the averaged-output PSNR
after the last step, and the means of the oracle peaks (iterate and averaged output); the
per-run rows go to a CSV. Differences of a few tenths of a dB are about the seed-to-seed
noise, so read the spread. One observation per image (noise seed 0); the seeds vary the
networks (init, z, perturbation). Searching rounds run 100 steps by default (as good as full
rounds within seed noise in ``benchmarks/imp_speed.py``; ``--early-bird T`` ends them by the
early-bird rule instead); the ticket and every baseline are fitted for the full ``--steps``;
``--full-rounds`` runs the paper's protocol.

    python benchmarks/imp_small.py                                  # ~1 h on 2 cores
    python benchmarks/imp_small.py --images builtin:astronaut --seeds 0 --rounds 4 --steps 300

The paper's protocol (a GPU job), for comparison:

    lip compare data:set5/baby --task denoise --rounds 16 --sparsity 0.79 --fast \\
        --methods ticket random random-layerwise snip grasp synflow decoder dense --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from lottery_prior.compare import compare_methods
from lottery_prior.fit import FitConfig
from lottery_prior.lottery import ImpConfig, ImpRun
from lottery_prior.problem import make_problem
from lottery_prior.report.tables import markdown_table, write_table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", nargs="+", default=["data:set5/baby", "builtin:astronaut"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=7, help="7 rounds = 79%% sparsity")
    ap.add_argument("--sigma", type=float, default=25)
    ap.add_argument("--methods", nargs="+",
                    default=["ticket", "random", "random-layerwise", "decoder", "dense"])
    ap.add_argument("--search-steps", type=int, default=100,
                    help="steps of each searching round (100)")
    ap.add_argument("--early-bird", type=float, metavar="THRESHOLD",
                    help="end searching rounds by the early-bird rule instead (e.g. 0.05)")
    ap.add_argument("--full-rounds", action="store_true",
                    help="the paper's protocol: every searching round runs all --steps")
    ap.add_argument("--fp32", action="store_true", help="no bf16 fast mode")
    ap.add_argument("--out", type=Path, default=Path("lip-out/bench-imp-small"))
    args = ap.parse_args()

    if args.full_rounds:
        search, how = {}, "full"
    elif args.early_bird is not None:
        search, how = {"early_bird": args.early_bird}, f"early bird {args.early_bird}"
    else:
        search, how = {"search_steps": args.search_steps}, f"{args.search_steps}-step"
    rows = []
    for image in args.images:
        problem = make_problem(image, "denoise", sigma=args.sigma, size=args.size)
        for seed in args.seeds:
            run = ImpRun(problem, "dip", {"width": args.width},
                         FitConfig(steps=args.steps, precision="fp32" if args.fp32 else "bf16",
                                   seed=seed),
                         ImpConfig(rounds=args.rounds, **search),
                         root=args.out / "runs")
            for fitted in compare_methods(run, 1 - 0.8**args.rounds, args.methods):
                row = fitted.row()
                rows.append({"image": image, "seed": seed, **row})
                print(f"{image} seed {seed}: {row['method']:<18} sparsity "
                      f"{row['sparsity']:.3f}  averaged {row['psnr_averaged']:.2f} dB  "
                      f"peak (oracle): iterate {row['psnr_peak_iterate']:.2f} dB, averaged "
                      f"{row['psnr_peak_averaged']:.2f} dB", flush=True)
    write_table(rows, args.out / "runs_table")

    summary = []
    for method in dict.fromkeys(r["method"].split(" ")[0] for r in rows):
        mine = [r for r in rows if r["method"].split(" ")[0] == method]
        avg = [r["psnr_averaged"] for r in mine]
        summary.append({
            "method": mine[0]["method"], "sparsity": mine[0]["sparsity"],
            "parameters": mine[0]["parameters"], "runs": len(mine),
            "psnr_averaged_mean": round(statistics.fmean(avg), 2),
            "psnr_averaged_std": round(statistics.pstdev(avg), 2),
            **{f"{k}_mean": round(statistics.fmean(r[k] for r in mine), 2)
               for k in ("psnr_peak_iterate", "psnr_peak_averaged")},
        })
    write_table(summary, args.out / "summary")
    print(f"\n{args.size}px, sigma {args.sigma}, width {args.width}, {args.steps} steps, "
          f"{args.rounds} rounds "
          f"({how} search rounds), "
          f"{'fp32' if args.fp32 else 'bf16 fast mode'}; "
          f"images {', '.join(args.images)}; seeds {args.seeds}\n")
    print(markdown_table(summary))


if __name__ == "__main__":
    main()

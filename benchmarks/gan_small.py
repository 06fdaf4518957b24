"""A small GAN prior end to end on CPU: train (or load) a 32x32 progressive GAN on the LFW faces
bundled with scikit-image, then recover the held-out faces from compressive measurements and
from inpainting observations, printing PSNR tables (mean +- std over the faces, dB).

Rows: CSGM at several m (n = 1024 pixels), with the least-norm estimate A^+ y as a
prior-free reference; robust CS (outlier measurements) plain vs median-of-means; inpainting;
and "projection" (every pixel observed), the best this generator can do: its representation
error on faces it never saw. Optionally (--prune-rounds) IMP on the generator, evaluated by CS.
The experiments are those of ``lip gan`` (lottery_prior.gan.experiments); this script only
prints them as one table.

    python benchmarks/gan_small.py                         # trains once, caches the checkpoint
    python benchmarks/gan_small.py --faces 20 --steps 1500 --restarts 5   # the paper's settings
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from lottery_prior.gan import Discriminator, Generator, load_checkpoint
from lottery_prior.gan.experiments import (
    CHECKPOINT_NAME,
    Solver,
    block_mask,
    cs_experiment,
    held_out_faces,
    inpaint_experiment,
    prune_experiment,
    train_and_save,
    trained_on_faces,
    training_faces,
)

HEADER = ("| task                                     | PSNR   | std   | min    | s/img  |\n"
          "|------------------------------------------|--------|-------|--------|--------|")


def get_generator(args: argparse.Namespace) -> tuple[Generator, Discriminator | None, dict]:
    path = args.checkpoint or args.run_dir / CHECKPOINT_NAME
    if args.checkpoint is None and (args.retrain or not path.is_file()):
        start = time.perf_counter()
        train_and_save(args.run_dir, steps_per_scale=args.train_steps, seed=args.seed,
                       progress=True)
        print(f"trained in {(time.perf_counter() - start) / 60:.1f} min, saved {path}")
    g, d, config = load_checkpoint(path)
    print(f"loaded {path}")
    return g, d, config


def row(name: str, summary: dict) -> None:
    print(f"| {name:<40} | {summary['psnr']:6.2f} | {summary['psnr_std']:5.2f} | "
          f"{summary['psnr_min']:6.2f} | {summary['seconds']:6.1f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, help="use this zoo-format checkpoint instead")
    p.add_argument("--run-dir", type=Path, default=Path("runs/gan_small"),
                   help="where the trained GAN is cached (gan.pth)")
    p.add_argument("--retrain", action="store_true")
    p.add_argument("--train-steps", type=int, default=800, help="iterations per scale")
    p.add_argument("--faces", type=int, default=10, help="held-out faces to recover (max 20)")
    p.add_argument("--ms", default="25,50,100,200,400", help="numbers of measurements")
    p.add_argument("--steps", type=int, default=500)
    p.add_argument("--restarts", type=int, default=3)
    p.add_argument("--noise", type=float, default=0.01)
    p.add_argument("--outliers", type=int, default=20)
    p.add_argument("--prune-rounds", type=int, default=0)
    p.add_argument("--prune-steps", type=int, default=100)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    g, d, config = get_generator(args)
    if args.prune_rounds and not trained_on_faces(config):
        p.error(f"--prune-rounds fine-tunes on the bundled faces, and {args.checkpoint} was not "
                "trained on them (use `lip gan prune --train-images DIR`)")
    faces = held_out_faces(g, args.faces)
    side = g.resolution
    n = g.out_channels * side**2
    solver = Solver(steps=args.steps, restarts=args.restarts)
    common = {"solver": solver, "seed": args.seed}
    ms = [int(m) for m in args.ms.split(",")]
    print(f"\n{len(faces)} held-out faces, n = {n}, Adam lr {solver.lr:g}, {args.steps} steps, "
          f"{args.restarts} restarts, noise std {args.noise}\n")
    print(HEADER)

    inpaint = inpaint_experiment(g, faces, keep=(0.5, 0.2), pixel_masks={
        "all": torch.ones(1, side, side), "block": block_mask(side)}, **common)
    by_mask = {r["mask"]: r for r in inpaint.summary}
    row("projection (all pixels observed)", by_mask["all"])
    for r in cs_experiment(g, faces, ms, noise=args.noise, least_norm=True, **common).summary:
        m = r["m"]
        row(f"CS m={m} ({m / n:.1%}), GAN prior" if r["method"] == "gan"
            else f"CS m={m}, least-norm A^+y", r)
    for robust in (False, True):
        (r,) = cs_experiment(g, faces, [max(ms)], noise=args.noise, outliers=args.outliers,
                             robust=robust, **common).summary
        label = "median of means" if robust else "plain l2"
        row(f"CS m={max(ms)} +{args.outliers} outliers, {label}", r)
    missing = 1 - block_mask(side).mean().item()
    row(f"inpaint, centre block ({missing:.0%}) missing", by_mask["block"])
    for keep in (0.5, 0.2):
        row(f"inpaint, {1 - keep:.0%} pixels missing", by_mask[f"keep{keep:g}"])

    if args.prune_rounds and d is not None:
        m = ms[len(ms) // 2]
        print(f"\nIMP on the generator ({args.prune_rounds} rounds x {args.prune_steps} "
              f"fine-tuning steps), CS m={m}:\n")
        print(HEADER)
        for r in prune_experiment(g, d, training_faces(g), faces, rounds=args.prune_rounds,
                                  finetune_steps=args.prune_steps, measurements=m,
                                  noise=args.noise, **common).summary:
            row(f"{r['method']}, sparsity {r['sparsity']:.1%}", r)


if __name__ == "__main__":
    main()

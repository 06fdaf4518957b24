"""A small GAN prior end to end on CPU: train (or load) a 32x32 progressive GAN on the LFW faces
bundled with scikit-image, then recover the held-out faces from compressive measurements and
from inpainting observations, printing PSNR tables (mean +- std over the faces, dB).

Rows: CSGM at several m (n = 1024 pixels), with the least-norm estimate A^+ y as a
prior-free reference; robust CS (outlier measurements) plain vs median-of-means; inpainting;
and "projection" (every pixel observed), the best this generator can do: its representation
error on faces it never saw. Optionally (--prune-rounds) IMP on the generator, evaluated by CS.

    python benchmarks/gan_small.py                         # trains once, caches the checkpoint
    python benchmarks/gan_small.py --faces 20 --steps 1500 --restarts 5   # the paper's settings
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from lottery_prior.gan import (
    GaussianMeasurement,
    Generator,
    load_checkpoint,
    load_faces,
    prune_gan,
    recover_cs,
    recover_inpaint,
    save_checkpoint,
    train_gan,
)
from lottery_prior.gan.recovery import Recovery
from lottery_prior.masks import Mask
from lottery_prior.metrics import psnr


def get_generator(args: argparse.Namespace) -> tuple[Generator, object]:
    path = Path(args.checkpoint)
    if path.is_file() and not args.retrain:
        g, d, _ = load_checkpoint(path)
        print(f"loaded {path}")
        return g, d
    start = time.perf_counter()
    models = train_gan(load_faces("train", 32), latent_dim=64, depths=(64, 64, 32, 16),
                       steps_per_scale=args.train_steps, fade_steps=args.train_steps // 2,
                       seed=args.seed)
    minutes = (time.perf_counter() - start) / 60
    save_checkpoint(path, models.generator, models.discriminator, models.average,
                    dataset="skimage lfw_subset faces 0-79", steps_per_scale=args.train_steps,
                    seed=args.seed, train_minutes=round(minutes, 2))
    print(f"trained in {minutes:.1f} min, saved {path}")
    return models.average, models.discriminator


def row(name: str, values: list[float], seconds: float) -> None:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    print(f"| {name:<40} | {statistics.mean(values):6.2f} | {spread:5.2f} | "
          f"{min(values):6.2f} | {seconds / len(values):6.1f} |")


def run(name: str, faces: Tensor, solve: Callable[[int, Tensor], float]) -> None:
    start = time.perf_counter()
    values = [solve(i, x) for i, x in enumerate(faces)]
    row(name, values, time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="runs/gan_small/gan_small.pt")
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

    g, d = get_generator(args)
    faces = load_faces("eval", 32)[: args.faces]
    n = faces[0].numel()
    opts = {"steps": args.steps, "restarts": args.restarts}
    print(f"\n{len(faces)} held-out faces, n = {n}, Adam lr 1e-2, {args.steps} steps, "
          f"{args.restarts} restarts, noise std {args.noise}\n")
    print("| task                                     | PSNR   | std   | min    | s/img  |")
    print("|------------------------------------------|--------|-------|--------|--------|")

    def measure(i: int, x: Tensor, m: int, outliers: int = 0) -> tuple[GaussianMeasurement,
                                                                        Tensor]:
        a = GaussianMeasurement(n, m, seed=1000 + i)
        gen = torch.Generator().manual_seed(i)
        return a, a.observe(x, args.noise, outliers=outliers, generator=gen)

    def cs(m: int, mask: Mask | None = None, net: Generator = g) -> Callable[[int, Tensor],
                                                                              float]:
        def solve(i: int, x: Tensor) -> float:
            a, y = measure(i, x, m)
            return recover_cs(net, y, a, truth=x, mask=mask, seed=i, **opts).psnr
        return solve

    def least_norm(m: int) -> Callable[[int, Tensor], float]:
        def solve(i: int, x: Tensor) -> float:
            a, y = measure(i, x, m)
            estimate = torch.linalg.lstsq(a.dense(), y[:, None]).solution
            return psnr(estimate.reshape(x.shape).clamp(0, 1), x)
        return solve

    def inpaint(keep: Callable[[int], Tensor]) -> Callable[[int, Tensor], float]:
        def solve(i: int, x: Tensor) -> float:
            mask = keep(i)
            result: Recovery = recover_inpaint(g, x * mask, mask, truth=x, seed=i, **opts)
            return result.psnr
        return solve

    run("projection (all pixels observed)", faces, inpaint(lambda i: torch.ones(1, 32, 32)))
    ms = [int(m) for m in args.ms.split(",")]
    for m in ms:
        run(f"CS m={m} ({m / n:.1%}), GAN prior", faces, cs(m))
        run(f"CS m={m}, least-norm A^+y", faces, least_norm(m))
    m = max(ms)
    for robust in (False, True):
        def solve(i: int, x: Tensor, robust: bool = robust) -> float:
            a, y = measure(i, x, m, args.outliers)
            return recover_cs(g, y, a, truth=x, robust=robust, seed=i, **opts).psnr
        label = "median of means" if robust else "plain l2"
        run(f"CS m={m} +{args.outliers} outliers, {label}", faces, solve)
    block = torch.ones(1, 32, 32)
    block[:, 10:22, 8:24] = 0
    run("inpaint, 12x16 block missing", faces, inpaint(lambda i: block))
    for missing in (0.5, 0.8):
        def random_pixels(i: int, missing: float = missing) -> Tensor:
            gen = torch.Generator().manual_seed(i)
            return (torch.rand(1, 32, 32, generator=gen) >= missing).float()
        run(f"inpaint, {missing:.0%} pixels missing", faces, inpaint(random_pixels))

    if args.prune_rounds and d is not None:
        print(f"\nIMP on the generator ({args.prune_rounds} rounds x {args.prune_steps} "
              f"fine-tuning steps), CS m={ms[len(ms) // 2]}:\n")
        print("| task                                     | PSNR   | std   | min    | s/img  |")
        print("|------------------------------------------|--------|-------|--------|--------|")
        train = load_faces("train", 32)
        for method in ("magnitude", "random"):
            for t in prune_gan(g, d, train, rounds=args.prune_rounds, steps=args.prune_steps,
                               method=method, seed=args.seed):
                if method == "random" and t.round == 0:
                    continue  # the same dense fine-tuning as magnitude's round 0
                run(f"{method}, sparsity {t.sparsity:.1%}", faces,
                    cs(ms[len(ms) // 2], t.generator_mask, t.models.average))


if __name__ == "__main__":
    main()

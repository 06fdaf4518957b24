"""Speed of one DIP step (forward, backward, Adam) for the paper network, fp32 vs fast mode.

Prints, from one run: median ms per step at each size and mode, the FLOPs of one step, the
throughput achieved as a fraction of a large matmul in the same dtype (the machine's practical
peak), the fast/fp32 speed-up, and the PSNR of fp32 and fast mode after the same short fit.

    python benchmarks/speed.py                 # 128 and 256 px, paper network
    python benchmarks/speed.py --sizes 128 --steps 20 --quality-steps 300
    python benchmarks/speed.py --sizes --quality-steps 1500       # quality only, at convergence
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from lottery_prior.fit import FitConfig, fit, select_device
from lottery_prior.problem import build_prior, make_problem


def step_times(size: int, fast: bool, steps: int, warmup: int, device: str | None) -> list[float]:
    """Seconds per step of the real fit engine, after ``warmup`` steps."""
    problem = make_problem("builtin:astronaut", "denoise", size=size)
    model, z = build_prior("dip", {}, problem)
    stamps: list[float] = []
    fit(model, z, problem.operator, problem.observation,
        config=FitConfig(steps=warmup + steps, fast=fast, device=device),
        callbacks=[lambda info: stamps.append(time.perf_counter())])
    return [b - a for a, b in zip(stamps[warmup:], stamps[warmup + 1:], strict=False)]


def step_flops(size: int) -> int:
    """FLOPs of one forward + backward pass at ``size`` (counted by torch)."""
    problem = make_problem("builtin:astronaut", "denoise", size=size)
    model, z = build_prior("dip", {}, problem)
    with FlopCounterMode(display=False) as counter:
        ((model(z) - problem.observation) ** 2).mean().backward()
    return counter.get_total_flops()


def matmul_peak(dtype: torch.dtype, device: torch.device, n: int = 4096, reps: int = 5) -> float:
    """Achieved FLOP/s of an n x n matmul in ``dtype``: the practical ceiling."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    times = []
    for _ in range(reps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return 2 * n**3 / min(times)


def quality(size: int, steps: int, fast: bool, device: str | None, seed: int) -> float:
    """PSNR of the averaged output after a short denoising fit (same seed in both modes)."""
    problem = make_problem("builtin:astronaut", "denoise", size=size, noise_seed=seed)
    model, z = build_prior("dip", {}, problem, seed=seed)
    res = fit(model, z, problem.operator, problem.observation, clean=problem.clean,
              config=FitConfig(steps=steps, fast=fast, device=device, seed=seed))
    return float(res.scores["averaged"]["psnr"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[128, 256],
                    help="sizes to time (none: only the quality check)")
    ap.add_argument("--steps", type=int, default=10, help="timed steps per setting")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--quality-size", type=int, default=128)
    ap.add_argument("--quality-steps", type=int, default=400)
    ap.add_argument("--quality-seeds", type=int, default=3,
                    help="seeds of the quality check: DIP trajectories are chaotic, so one "
                    "seed's fp32/fast difference is mostly trajectory noise")
    ap.add_argument("--device")
    args = ap.parse_args()
    device = select_device(args.device)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    peaks = {"fp32": matmul_peak(torch.float32, device),
             "fast": matmul_peak(torch.bfloat16, device)}
    print(f"matmul ceiling: fp32 {peaks['fp32'] / 1e9:.0f} GFLOP/s, "
          f"bf16 {peaks['fast'] / 1e9:.0f} GFLOP/s")
    if args.sizes:
        print(f"{'size':>5} {'mode':>5} {'ms/step':>9} {'GFLOP':>7} {'GFLOP/s':>8} "
              f"{'of peak':>8} {'floor ms':>9} {'x floor':>8}")
    for size in args.sizes:
        flops = step_flops(size)
        ms = {}
        for mode in ("fp32", "fast"):
            t = statistics.median(step_times(size, mode == "fast", args.steps, args.warmup,
                                             args.device))
            ms[mode] = t * 1e3
            floor = flops / peaks[mode]
            print(f"{size:>5} {mode:>5} {t * 1e3:9.1f} {flops / 1e9:7.1f} {flops / t / 1e9:8.0f} "
                  f"{flops / t / peaks[mode]:8.1%} {floor * 1e3:9.1f} {t / floor:8.2f}")
        print(f"{size:>5} fast/fp32 speed-up: {ms['fp32'] / ms['fast']:.2f}x")
    if not args.quality_seeds:
        return
    p32, pfast = [], []
    for seed in range(args.quality_seeds):
        p32.append(quality(args.quality_size, args.quality_steps, False, args.device, seed))
        pfast.append(quality(args.quality_size, args.quality_steps, True, args.device, seed))
        print(f"quality seed {seed} ({args.quality_size}px, {args.quality_steps} steps, "
              f"averaged-output PSNR after the last step): fp32 {p32[-1]:.2f} dB, "
              f"fast {pfast[-1]:.2f} dB, difference {pfast[-1] - p32[-1]:+.2f} dB", flush=True)
    diffs = [b - a for a, b in zip(p32, pfast, strict=True)]
    spread = statistics.pstdev(p32) if len(p32) > 1 else float("nan")
    print(f"quality over {len(diffs)} seeds: mean fp32 {statistics.fmean(p32):.2f} dB, mean "
          f"fast {statistics.fmean(pfast):.2f} dB, mean difference "
          f"{statistics.fmean(diffs):+.2f} dB (fp32 seed-to-seed std {spread:.2f} dB)")


if __name__ == "__main__":
    main()

"""Speed of one DIP step in every precision this device runs, and the choice of ``auto``.

Prints, from one run, on the CPU or GPU named at the top: median ms per Adam step (forward,
backward, Adam) of the skip hourglass in each candidate precision (fp32, fp32 channels_last,
bf16 autocast + channels_last, and fp16 with loss scaling on CUDA) at each size and width;
the precision ``auto`` takes from those timings (the rule of ``lottery_prior.precision``),
and the ratios auto/best and auto/fp32; the FLOPs of a step against the machine's matmul
ceiling; then the PSNR of fp32 against the reduced precisions after the same short fit, over
seeds (a reduced precision is only worth its speed if the PSNR stays within noise).

    python benchmarks/speed.py                                # 64/128/256 px, widths 32/128
    python benchmarks/speed.py --sizes 128 --widths 32 --quality-seeds 0
    python benchmarks/speed.py --sizes --quality-steps 1200   # quality only, near the peak
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from lottery_prior.cost import step_flops
from lottery_prior.fit import FitConfig, fit, select_device
from lottery_prior.precision import candidates, capabilities, choose, device_name, step_ms
from lottery_prior.problem import build_prior, make_problem


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


def quality(size: int, steps: int, precision: str, device: str | None, seed: int) -> float:
    """PSNR of the averaged output after a short denoising fit (same seeds in every precision)."""
    problem = make_problem("builtin:astronaut", "denoise", size=size, noise_seed=seed)
    model, z = build_prior("dip", {}, problem, seed=seed)
    res = fit(model, z, problem.operator, problem.observation, clean=problem.clean,
              config=FitConfig(steps=steps, precision=precision, device=device, seed=seed))
    return float(res.scores["averaged"]["psnr"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[64, 128, 256],
                    help="sizes to time (none: only the quality check)")
    ap.add_argument("--widths", type=int, nargs="+", default=[32, 128])
    ap.add_argument("--steps", type=int, default=10, help="timed steps per setting")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--quality-size", type=int, default=128)
    ap.add_argument("--quality-steps", type=int, default=400)
    ap.add_argument("--quality-seeds", type=int, default=3,
                    help="seeds of the quality check: DIP trajectories are chaotic, so one "
                    "seed's difference is mostly trajectory noise")
    ap.add_argument("--device")
    args = ap.parse_args()
    device = select_device(args.device)
    names = candidates(device)
    print(f"{device_name(device)} ({capabilities(device)}); torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    peaks = {"fp32": matmul_peak(torch.float32, device),
             "bf16": matmul_peak(torch.bfloat16, device)}
    print(f"matmul ceiling: fp32 {peaks['fp32'] / 1e9:.0f} GFLOP/s, "
          f"bf16 {peaks['bf16'] / 1e9:.0f} GFLOP/s")
    if args.sizes:
        print(f"{'size':>5} {'width':>5} {'GFLOP':>6} " + " ".join(f"{n:>8}" for n in names)
              + f" {'auto':>8} {'auto/best':>9} {'auto/fp32':>9} {'fp32 of peak':>12}")
    for size in args.sizes:
        problem = make_problem("builtin:astronaut", "denoise", size=size)
        for width in args.widths:
            model, z = build_prior("dip", {"width": width}, problem)
            model, z = model.to(device), z.to(device)
            ms = {n: step_ms(model, z, n, steps=args.steps, warmup=args.warmup) for n in names}
            auto = choose(ms)
            flops = step_flops(model, z)
            print(f"{size:>5} {width:>5} {flops / 1e9:6.1f} "
                  + " ".join(f"{ms[n]:8.1f}" for n in names)
                  + f" {auto:>8} {ms[auto] / min(ms.values()):9.2f} {ms[auto] / ms['fp32']:9.2f}"
                  + f" {flops / (ms['fp32'] / 1e3) / peaks['fp32']:12.1%}", flush=True)
    reduced = [n for n in names if n in ("bf16", "fp16")]
    if not args.quality_seeds or not reduced:
        return
    scores: dict[str, list[float]] = {n: [] for n in ("fp32", *reduced)}
    for seed in range(args.quality_seeds):
        for name in scores:
            scores[name].append(quality(args.quality_size, args.quality_steps, name,
                                        args.device, seed))
        print(f"quality seed {seed} ({args.quality_size}px, paper network, "
              f"{args.quality_steps} steps, averaged-output PSNR after the last step): "
              + ", ".join(f"{n} {v[-1]:.2f} dB" for n, v in scores.items()), flush=True)
    spread = statistics.pstdev(scores["fp32"]) if args.quality_seeds > 1 else float("nan")
    for name in reduced:
        diffs = [b - a for a, b in zip(scores["fp32"], scores[name], strict=True)]
        print(f"quality over {len(diffs)} seeds: {name} - fp32 mean "
              f"{statistics.fmean(diffs):+.2f} dB (per seed "
              f"{', '.join(f'{d:+.2f}' for d in diffs)}; fp32 seed-to-seed std {spread:.2f} dB)")


if __name__ == "__main__":
    main()

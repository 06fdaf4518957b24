"""Two ticket finders head to head: IMP with rewinding versus masks learned at initialisation
(Optimal Eye Surgeon-style), with random pruning at IMP's per-layer ratios as the control.

For each image x network seed: one IMP search (100-step searching rounds, 20% a round, to
98%), a learned mask at the counted sparsity of IMP's rounds nearest 90%, 95% and 98% (its
default budget: the steps of that IMP search), and the layer-wise random mask; each is fitted
on its own image and transferred to the next image (cyclically), every fit ``--steps`` long.
It runs as a sweep (resumable: rerun to continue; ``--workers`` one-thread processes), then
prints and writes the tables: PSNR of the averaged output after the last step (and the oracle
peak of the averaged output), mean ± std over images x seeds, own image and transferred, with
each finder's wall seconds in the sweep; paired differences with 95% confidence intervals;
and each finder's CPU cost, from the ms per step of a searching IMP step and of a
mask-learning step measured alternately in this process on one thread (sweep timings share
the CPU with the other workers).

    python benchmarks/finders.py                        # ~1 h on 2 cores (3 Set5 images)
    python benchmarks/finders.py --images builtin:astronaut builtin:coffee --seeds 0 \\
        --size 64 --steps 200 --sparsities 0.5 --out lip-out/finders-smoke
"""

from __future__ import annotations

import argparse
import math
import statistics
from collections import defaultdict
from pathlib import Path

import torch

from lottery_prior.experiments.executor import run_local
from lottery_prior.experiments.spec import parse_spec
from lottery_prior.experiments.store import Store
from lottery_prior.experiments.units import expand
from lottery_prior.fit import FitConfig, fit
from lottery_prior.learned import LearnConfig, learn_mask
from lottery_prior.masks import Mask
from lottery_prior.problem import build_prior, make_problem
from lottery_prior.report.rows import read_results
from lottery_prior.report.tables import markdown_table, write_table
from lottery_prior.stats import t_interval

METHODS = ("ticket", "learned", "random-layerwise")
NAMES = {"ticket": "IMP ticket", "learned": "learned mask", "random-layerwise":
         "random (IMP's layer-wise ratios)"}
# Mean steps of an early-bird (0.05) searching round in benchmarks/results/imp_speed.md
# (4112 steps over 7 rounds, astronaut 64 px, width 32): the early-bird search's cost model.
EARLY_BIRD_ROUND_STEPS = 4112 / 7


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", nargs="+",
                    default=["data:set5/baby", "data:set5/bird", "data:set5/woman"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--sigma", type=float, default=25)
    ap.add_argument("--sparsities", type=float, nargs="+", default=[0.9, 0.95, 0.98])
    ap.add_argument("--learn-steps", type=int,
                    help="mask-learning steps (default: those of the IMP search)")
    ap.add_argument("--learn-lr", type=float, help="mask learning rate (default: the library's)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--summarise-only", action="store_true",
                    help="no fits: tabulate the units already finished in --out")
    ap.add_argument("--out", type=Path, default=Path("lip-out/bench-finders"))
    ap.add_argument("--results", type=Path, default=Path("benchmarks/results/finders"),
                    help="where the table, its CSV and the plot go")
    args = ap.parse_args()
    if len(args.images) < 2:
        ap.error("give at least two images (masks are transferred to the next one)")

    learned = {k: v for k, v in (("lr", args.learn_lr), ("steps", args.learn_steps)) if v}
    spec = parse_spec({
        "name": "finders",
        "grid": {"images": args.images, "size": args.size, "seeds": args.seeds,
                 "sparsities": args.sparsities, "methods": list(METHODS)},
        "task": [{"name": "denoise", "sigma": args.sigma}],
        "model": {"options": {"width": args.width}},
        "fit": {"steps": args.steps, "precision": "bf16"},
        "imp": {"search_steps": 100},
        "learned": learned,
        "transfer": {"sparsities": args.sparsities, "across_images": True,
                     "methods": list(METHODS)},
    })
    plan = expand(spec, args.out)
    following = {a: args.images[(i + 1) % len(args.images)] for i, a in enumerate(args.images)}
    plan.units = [u for u in plan.units if u.kind != "transfer"
                  or u.payload["target"]["image"] == following[u.payload["problem"]["image"]]]
    # searches first, then sparsity by sparsity (the middle one, Optimal Eye Surgeon's 95%,
    # first), so an interrupted run has whole comparisons; plan order is run order
    middle = sorted(args.sparsities)[len(args.sparsities) // 2]
    kinds = ("search", "learn", "fit", "transfer")
    plan.units.sort(key=lambda u: (u.kind != "search", u.payload.get("sparsity") != middle,
                                   -u.payload.get("sparsity", 0), kinds.index(u.kind)))
    if not args.summarise_only:
        run_local(plan, Store(args.out), workers=args.workers)

    rows = [r for r in read_results(args.out) if r["method"] in METHODS]
    table = summarise(rows)
    args.results.mkdir(parents=True, exist_ok=True)
    write_table(table, args.results / "finders")
    write_table(rows, args.results / "results")
    differences = paired_differences(rows)
    write_table(differences, args.results / "differences")
    plot(table, args.results / "finders.png")
    ms = step_ms(args.images[0], args.size, args.width, args.sigma)
    cost = finder_cost(rows, ms, args.learn_steps)
    write_table(cost, args.results / "cost")
    for t in (table, differences, cost):
        print(markdown_table(t))
        print()
    print(f"ms per step, one thread, {args.images[0]} at {args.size} px: searching IMP step "
          f"{ms['imp']:.1f}, mask-learning step {ms['learned']:.1f} "
          f"({ms['learned'] / ms['imp']:.2f}x)")
    print(f"\ntables and plot in {args.results}/; fits in {args.out}/")


def summarise(rows: list[dict]) -> list[dict]:
    """One row per sparsity x method: own-image and transferred PSNR (averaged output, last
    step), mean ± std over images x seeds, and the finder's CPU seconds."""
    groups = defaultdict(list)
    for r in rows:
        groups[(r["requested_sparsity"], r["method"], r["kind"])].append(r)
    table = []
    for s in sorted({r["requested_sparsity"] for r in rows}):
        for method in METHODS:
            own, moved = groups[(s, method, "fit")], groups[(s, method, "transfer")]
            if not own:
                continue
            found = [r["find_seconds"] for r in own if r.get("find_seconds") is not None]
            table.append({
                "sparsity": s, "method": NAMES[method],
                "counted sparsity": round(statistics.mean(r["sparsity"] for r in own), 4),
                "own image, averaged output (dB)": _mean_std([r["psnr_averaged"] for r in own]),
                "transferred, averaged output (dB)": _mean_std(
                    [r["psnr_averaged"] for r in moved]),
                "own image, peak averaged (oracle)": _mean_std(
                    [r["psnr_peak_averaged"] for r in own]),
                "finder wall seconds (sweep)": round(statistics.mean(found), 1) if found
                else "(IMP's)",
                "fits": f"{len(own)} + {len(moved)}",
            })
    return table


def step_ms(image: str, size: int, width: int, sigma: float, steps: int = 50,
            repeats: int = 3) -> dict[str, float]:
    """ms per step (median of ``repeats``) of a masked fit step, what IMP's searching rounds
    run, and of a mask-learning step, measured alternately in this process on one thread."""
    torch.set_num_threads(1)
    problem = make_problem(image, "denoise", sigma=sigma, size=size)
    config = FitConfig(steps=steps, precision="bf16")
    times: dict[str, list[float]] = {"imp": [], "learned": []}
    for _ in range(repeats):
        model, z = build_prior("dip", {"width": width}, problem)
        result = fit(model, z, problem.operator, problem.observation, clean=problem.clean,
                     config=config, mask=Mask.ones(model))
        times["imp"].append(result.seconds / steps)
        model, z = build_prior("dip", {"width": width}, problem)
        _, summary = learn_mask(model, z, problem.operator, problem.observation,
                                LearnConfig(sparsity=0.9, steps=steps), config,
                                clean=problem.clean)
        times["learned"].append(summary["seconds"] / steps)
    return {k: 1000 * statistics.median(v) for k, v in times.items()}


def finder_cost(rows: list[dict], ms: dict[str, float], learn_steps: int | None) -> list[dict]:
    """Each finder's CPU seconds to a mask at each sparsity: IMP's 100-step-round search
    (rounds before the ticket's x 100 steps), the early-bird search by its measured mean round
    length, and the mask learning (its steps), at the measured ms per step."""
    out = []
    for s in sorted({r["requested_sparsity"] for r in rows}):
        counted = statistics.mean(r["sparsity"] for r in rows
                                  if r["requested_sparsity"] == s and r["method"] == "ticket"
                                  and r["kind"] == "fit")
        rounds = round(math.log(1 - counted) / math.log(0.8))  # the ticket's round
        learned = LearnConfig(sparsity=counted, steps=learn_steps).n_steps
        imp = rounds * 100 * ms["imp"] / 1000
        out.append({
            "sparsity": s, "IMP rounds": rounds,
            "IMP, 100-step rounds (s)": round(imp, 1),
            "IMP, early bird 0.05 (s, estimate)": round(
                rounds * EARLY_BIRD_ROUND_STEPS * ms["imp"] / 1000, 1),
            "learned mask steps": learned,
            "learned mask (s)": round(learned * ms["learned"] / 1000, 1),
            "learned / IMP 100-step": round(learned * ms["learned"] / 1000 / imp, 2),
        })
    return out


def paired_differences(rows: list[dict]) -> list[dict]:
    """learned - ticket, learned - random, ticket - random, on the same image (and target),
    seed and sparsity: mean and 95% t interval of the PSNR difference."""
    by_key = {}
    for r in rows:
        key = (r["kind"], r["requested_sparsity"], r["source_image"], r["image"], r["seed"])
        by_key[(*key, r["method"])] = r["psnr_averaged"]
    out = []
    for a, b in (("learned", "ticket"), ("learned", "random-layerwise"),
                 ("ticket", "random-layerwise")):
        for kind in ("fit", "transfer"):
            for s in sorted({r["requested_sparsity"] for r in rows}):
                diffs = [v - by_key[(*k[:-1], b)] for k, v in by_key.items()
                         if k[-1] == a and k[0] == kind and k[1] == s and (*k[:-1], b) in by_key]
                if len(diffs) < 2:
                    continue
                mean, low, high = t_interval(diffs)
                out.append({"difference": f"{NAMES[a]} − {NAMES[b]}",
                            "fitted": "own image" if kind == "fit" else "transferred",
                            "sparsity": s, "mean (dB)": round(mean, 2),
                            "95% CI": f"[{low:+.2f}, {high:+.2f}]",
                            "pairs": len(diffs)})
    return out


def plot(table: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=100)
    for method, color in zip(METHODS, ("tab:red", "tab:orange", "tab:cyan"), strict=True):
        rows = [r for r in table if r["method"] == NAMES[method]]
        for column, style, where in (("own image, averaged output (dB)", "-", "own image"),
                                     ("transferred, averaged output (dB)", "--", "transferred")):
            points = [(100 * r["sparsity"], *_parse(r[column])) for r in rows if r[column]]
            if points:
                x, y, e = zip(*points, strict=True)
                ax.errorbar(x, y, yerr=e, ls=style, marker="o", color=color, capsize=3,
                            label=f"{NAMES[method]}, {where}")
    ax.set_xlabel("sparsity (%)")
    ax.set_ylabel("PSNR, averaged output after the last step (dB)")
    ax.set_title("ticket finders: denoising σ 25 (mean ± std over images × seeds)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _mean_std(values: list[float]) -> str:
    if not values:
        return ""
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {std:.2f}"


def _parse(cell: str) -> tuple[float, float]:
    mean, std = cell.split(" ± ")
    return float(mean), float(std)


if __name__ == "__main__":
    main()

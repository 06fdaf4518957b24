"""Classification tickets versus image-prior tickets (PROTOCOL §7), small enough for a CPU.

1. IMP (20% of the conv weights a round, rewinding to theta0) on the hourglass classifier,
   digits upsampled to 32 px: test accuracy against counted sparsity, with random masks at
   the ticket's per-layer ratios (from the same theta0) as the control at a few rounds.
2. IMP on the image prior of the same shape (width, scales, skip): denoising Set5 images at
   64 px; the overlap of kept weights (IoU, per layer and global) between the classification
   ticket and the image-prior ticket at each shared round (same rate, so nearly the same
   sparsity) against the exact chance IoU of independent random masks with the same
   per-layer counts; as a reference, the overlap of the image-prior tickets of two images.
3. Cross-use at the last round: the classification mask on the image prior (theta0 and z of
   the image-prior ticket), fitted beside the image-prior ticket and a layer-wise random mask
   at the classification mask's per-layer ratios, on denoising and inpainting; mean ± std
   over seeds of the PSNR of the averaged output after the last step (peaks: oracle).

Everything runs on one thread, resumable (the IMP runs live in content-addressed folders):

    OMP_NUM_THREADS=1 python benchmarks/classification.py     # ~20 CPU-minutes
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import torch

from lottery_prior.classify.crossuse import cross_use
from lottery_prior.classify.data import load_dataset
from lottery_prior.classify.evaluate import retrain
from lottery_prior.classify.imp import ClassifierImpRun
from lottery_prior.classify.overlap import overlap_rows
from lottery_prior.classify.report import accuracy_rows, summarize_cross_use, write_overlap
from lottery_prior.classify.train import TrainConfig
from lottery_prior.fit import FitConfig
from lottery_prior.lottery import ImpConfig, ImpRun
from lottery_prior.operators import TASK_DEFAULTS
from lottery_prior.problem import make_problem
from lottery_prior.progress import ProgressBar
from lottery_prior.report.plots import plt
from lottery_prior.report.tables import markdown_table, write_table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/classification"))
    ap.add_argument("--work", type=Path, default=Path("lip-out/bench-classification"),
                    help="IMP run folders (resumable)")
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--scales", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--classifier-seeds", type=int, nargs="+", default=[0, 1],
                    help="classification IMP runs; the first (0, whose inner convs start from "
                    "the same theta0 as the image prior of seed 0) is cross-used and gets the "
                    "controls, the others are independent inits for the overlap")
    ap.add_argument("--controls", type=int, nargs="+", default=[3, 5, 7],
                    help="rounds whose layer-wise random control is trained")
    ap.add_argument("--images", nargs="+", default=["data:set5/baby", "data:set5/bird"],
                    help="image-prior tickets: the first is compared and cross-used, the "
                    "others are the prior-vs-prior reference")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=1000, help="steps of every final fit")
    ap.add_argument("--search-steps", type=int, default=200)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    logging.basicConfig(format="%(asctime)s %(message)s", level=logging.INFO)
    args.out.mkdir(parents=True, exist_ok=True)
    progress = None if args.quiet else (lambda desc: [ProgressBar(desc=desc, leave=False)])
    options = {"width": args.width, "scales": args.scales, "skip": 4}
    seconds: dict[str, float] = {}

    # 1. classification IMP on digits
    start = time.perf_counter()
    data = load_dataset(size=32)
    cls_runs = []
    for seed in args.classifier_seeds:
        config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, seed=seed)
        run = ClassifierImpRun(data, options, config, ImpConfig(rounds=args.rounds),
                               root=args.work / "classify")
        run.run(progress)
        cls_runs.append(run)
    cls_run = cls_runs[0]
    config = cls_run.train_config
    records = cls_run.records
    rows = accuracy_rows(records)
    for run in cls_runs[1:]:
        for r, other in zip(rows, run.records, strict=True):
            r[f"test_accuracy_seed{run.train_config.seed}"] = round(100 * other["test_accuracy"],
                                                                     2)
    controls = {}
    cache = args.out / "controls.json"
    cached = json.loads(cache.read_text()) if cache.is_file() else {}
    for k in args.controls:
        key = f"{cls_run.folder.name}/round-{k:02d}"
        if key not in cached:
            _, row = retrain(cls_run.ticket(k), data, config, "random-layerwise",
                             callbacks=progress(f"random-layerwise round {k}") if progress
                             else ())
            cached[key] = row
            cache.write_text(json.dumps(cached, indent=2) + "\n")
        controls[k] = cached[key]
    for r in rows:
        c = controls.get(r["round"])
        r["random_layerwise_test_accuracy"] = c["test_accuracy"] if c else None
    write_table(rows, args.out / "accuracy")
    plot_accuracy(rows, args.out / "accuracy_vs_sparsity.png", data.name, args)
    seconds["classification IMP and controls"] = time.perf_counter() - start

    # 2. image-prior IMP on Set5 images, same network shape
    start = time.perf_counter()
    prior_runs = []
    for image in args.images:
        problem = make_problem(image, "denoise", sigma=25, size=args.size)
        fit_config = FitConfig(steps=args.steps, input_noise=TASK_DEFAULTS["denoise"][
            "input_noise"], precision="bf16", seed=0)
        run = ImpRun(problem, "dip", options, fit_config,
                     ImpConfig(rounds=args.rounds, search_steps=args.search_steps),
                     root=args.work / "prior")
        run.run(progress)
        prior_runs.append(run)
    seconds["image-prior IMP"] = time.perf_counter() - start

    # overlap, per round: classification vs prior, prior vs prior
    prior, other = prior_runs[0], prior_runs[1:]
    curve = []
    for k in range(1, args.rounds + 1):
        prior_mask = prior.ticket(k).mask
        entry = {"round": k, "sparsity_prior": round(prior_mask.sparsity, 4)}
        for run in cls_runs:
            s = run.train_config.seed
            cls_mask = run.ticket(k).mask
            g = overlap_rows(cls_mask, prior_mask)[-1]
            g_shared = overlap_rows(cls_mask, prior_mask, "shared")[-1]
            entry |= {f"cls{s}_sparsity": round(cls_mask.sparsity, 4),
                      f"cls{s}_iou": g["iou"], f"cls{s}_chance": g["chance_iou"],
                      f"cls{s}_chance_std": g["chance_iou_std"],
                      f"cls{s}_iou_input_convs_shared": g_shared["iou"],
                      f"cls{s}_chance_input_convs_shared": g_shared["chance_iou"]}
        for run in cls_runs[1:]:
            s = run.train_config.seed
            gc = overlap_rows(cls_run.ticket(k).mask, run.ticket(k).mask)[-1]
            entry |= {f"cls0_vs_cls{s}_iou": gc["iou"], f"cls0_vs_cls{s}_chance": gc["chance_iou"],
                      f"cls0_vs_cls{s}_chance_std": gc["chance_iou_std"]}
        for run in other:
            name = run.problem.image.split("/")[-1]
            gp = overlap_rows(prior_mask, run.ticket(k).mask)[-1]
            entry[f"prior_vs_{name}_iou"] = gp["iou"]
            entry[f"prior_vs_{name}_chance"] = gp["chance_iou"]
            entry[f"prior_vs_{name}_chance_std"] = gp["chance_iou_std"]
        curve.append(entry)
    write_table(curve, args.out / "overlap_by_round")
    plot_overlap(curve, args.out / "overlap_vs_sparsity.png", prior, other, cls_runs)
    last = args.rounds
    layer_rows = overlap_rows(cls_run.ticket(last).mask, prior.ticket(last).mask)
    write_overlap(layer_rows, args.out, name="overlap_layers", title=(
        f"classification (digits) vs image-prior ({prior.problem.image}) ticket, round {last}"))

    # 3. cross-use at the last round
    start = time.perf_counter()
    cross_file = args.out / "cross_use.csv"
    image = args.images[0]
    problems = [(f"{image.split('/')[-1]}:denoise",
                 make_problem(image, "denoise", sigma=25, size=args.size)),
                (f"{image.split('/')[-1]}:inpaint",
                 make_problem(image, "inpaint", keep=0.5, size=args.size))]
    cross_rows = []
    cache = args.out / "cross_use_cache.json"
    cached = json.loads(cache.read_text()) if cache.is_file() else {}
    for name, problem in problems:
        task = problem.task
        fit_config = FitConfig(steps=args.steps, input_noise=TASK_DEFAULTS[task]["input_noise"],
                               precision="bf16")
        for seed in args.seeds:
            key = f"{cls_run.folder.name}|{prior.folder.name}|{name}|{args.steps}|{seed}"
            if key not in cached:
                cached[key] = cross_use(cls_run.ticket(last).mask, prior.ticket(last),
                                        [(name, problem)], fit_config, [seed],
                                        progress=progress)
                cache.write_text(json.dumps(cached, indent=1) + "\n")
            cross_rows += cached[key]
    write_table(cross_rows, cross_file.with_suffix(""))
    summary = summarize_cross_use(cross_rows)
    write_table(summary, args.out / "cross_use_summary")
    plot_cross_use(summary, args.out / "cross_use.png", args)
    seconds["cross-use fits"] = time.perf_counter() - start

    text = report(rows, curve, layer_rows, summary, args, data.name, prior, seconds)
    (args.out / "results.md").write_text(text)
    print(text)


def plot_accuracy(rows: list[dict], path: Path, data_name: str, args) -> None:
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    pruned = [r for r in rows if r["round"] > 0]
    ax.plot([100 * r["sparsity"] for r in pruned], [r["test_accuracy"] for r in pruned],
            marker="o", label="IMP ticket (rewound to theta0)")
    ctl = [r for r in pruned if r["random_layerwise_test_accuracy"] is not None]
    ax.plot([100 * r["sparsity"] for r in ctl], [r["random_layerwise_test_accuracy"]
                                                 for r in ctl],
            marker="s", ls="--", label="random, the ticket's per-layer ratios (same theta0)")
    for key in [k for k in rows[0] if k.startswith("test_accuracy_seed")]:
        ax.plot([100 * r["sparsity"] for r in pruned], [r[key] for r in pruned], marker=".",
                lw=0.8, alpha=0.7, label=f"IMP ticket, classifier {key.split('_')[-1]} "
                "(another θ₀)")
    ax.axhline(rows[0]["test_accuracy"], color="black", ls=":", label="dense")
    ax.set_xlabel("sparsity of the conv weights (%), counted")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"hourglass classifier, {data_name}, width {args.width}, "
                 f"{args.epochs} epochs a round", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_overlap(curve: list[dict], path: Path, prior: ImpRun, other: list[ImpRun],
                 cls_runs: list[ClassifierImpRun]) -> None:
    """IoU over its exact chance value against sparsity (1 = chance), ± 2 chance std."""
    fig, ax = plt.subplots(figsize=(7.0, 4.6), dpi=120)
    x = [100 * c["sparsity_prior"] for c in curve]
    name = prior.problem.image.split("/")[-1]
    series = []
    for run in cls_runs:
        s = run.train_config.seed
        init = "same θ₀ in the inner convs" if s == prior.fit_config.seed else "independent θ₀"
        series.append((f"cls{s}", f"classification (seed {s}, {init}) vs image prior ({name})",
                       "o"))
    for run in cls_runs[1:]:
        s = run.train_config.seed
        series.append((f"cls0_vs_cls{s}", f"classification seed 0 vs seed {s} "
                       "(independent θ₀)", "^"))
    for run in other:
        o = run.problem.image.split("/")[-1]
        series.append((f"prior_vs_{o}", f"image prior {name} vs {o} (same θ₀)", "s"))
    for key, label, marker in series:
        ratio = [c[f"{key}_iou"] / c[f"{key}_chance"] for c in curve]
        band = [2 * c[f"{key}_chance_std"] / c[f"{key}_chance"] for c in curve]
        line, = ax.plot(x, ratio, marker=marker, label=label)
        ax.fill_between(x, [1 - b for b in band], [1 + b for b in band],
                        color=line.get_color(), alpha=0.12)
    ax.axhline(1.0, color="black", lw=0.8, ls="--", label="chance (exact); bands: ± 2 std")
    ax.set_xlabel("sparsity (%) of the image-prior ticket, counted")
    ax.set_ylabel("IoU of kept conv weights ÷ chance IoU (global)")
    ax.set_title("overlap of tickets relative to chance (convs reading the input left out)",
                 fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_cross_use(summary: list[dict], path: Path, args) -> None:
    problems = list(dict.fromkeys(r["problem"] for r in summary))
    methods = list(dict.fromkeys(r["method"] for r in summary))
    cell = {(r["problem"], r["method"]): r for r in summary}
    fig, ax = plt.subplots(figsize=(7.0, 4.2), dpi=120)
    width = 0.8 / len(methods)
    for j, method in enumerate(methods):
        xs = [i + (j - (len(methods) - 1) / 2) * width for i in range(len(problems))]
        means = [cell[(p, method)]["psnr_averaged_mean"] for p in problems]
        stds = [cell[(p, method)]["psnr_averaged_std"] for p in problems]
        ax.bar(xs, means, width, yerr=stds, capsize=3, label=method)
        for x, m in zip(xs, means, strict=True):
            ax.annotate(f"{m:.2f}", (x, m), ha="center", va="bottom", fontsize=7,
                        xytext=(0, 3), textcoords="offset points")
    ax.set_xticks(range(len(problems)), problems)
    values = [r["psnr_averaged_mean"] for r in summary]
    ax.set_ylim(min(values) - 3, max(values) + 1.5)
    ax.set_ylabel("PSNR of the averaged output after the last step (dB)")
    ax.set_title(f"classification ticket as an image prior ({args.size} px, {args.steps} "
                 f"steps; mean ± std over {len(args.seeds)} seeds)", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def report(rows, curve, layer_rows, summary, args, data_name, prior, seconds) -> str:
    keep = ("problem", "method", "sparsity", "seeds", "psnr_averaged_mean", "psnr_averaged_std",
            "psnr_final_mean", "psnr_final_std", "psnr_peak_averaged_mean",
            "psnr_peak_averaged_std")
    short = [{k: r[k] for k in keep if k in r} for r in summary]
    cost = ", ".join(f"{k} {v / 60:.1f} min" for k, v in seconds.items())
    return "\n".join([
        "# Classification tickets versus image-prior tickets", "",
        f"Network: the hourglass, width {args.width}, {args.scales} scales, skip 4 (the same "
        f"shape for both tasks). Classifier: {data_name}, SGD lr 0.01, momentum 0.9, wd 2e-4, "
        f"{args.epochs} epochs a round, batch {args.batch_size}, seed 0. Image prior: "
        f"{prior.problem.image} at {args.size} px, denoising sigma 25, fast mode, "
        f"{args.search_steps}-step searching rounds, {args.steps}-step final fits. IMP: 20% "
        "of the conv weights a round, rewinding to theta0. This run's wall time (one thread, "
        f"the CPU shared with another job): {cost}.", "",
        "## Test accuracy against sparsity", "", markdown_table(rows), "",
        "## Overlap with the image-prior ticket (global IoU, input convs left out)", "",
        markdown_table(curve), "",
        f"### Per layer at round {args.rounds}", "", markdown_table(layer_rows), "",
        "## The classification ticket as an image prior", "", markdown_table(short), "",
    ])


if __name__ == "__main__":
    main()

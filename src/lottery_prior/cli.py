"""The ``lip`` command: parses arguments, calls the library, prints where results went.

Bad input (a ``LipError``) is reported on one line with exit status 2; Ctrl-C exits 130.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from lottery_prior import __version__
from lottery_prior.errors import LipError

log = logging.getLogger("lottery_prior")


def parse_option(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` with VALUE read as JSON when it parses (numbers, true/false), else text."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def add_problem_args(p: argparse.ArgumentParser) -> None:
    """The image and task options shared by every command that restores an image."""
    p.add_argument("image", help="image file, builtin:NAME (e.g. builtin:astronaut) or data:REL")
    p.add_argument("--task", default="denoise", help="denoise | inpaint | sr (default: denoise)")
    p.add_argument("--sigma", type=float, default=25.0, help="noise level, 0-255 units (25)")
    p.add_argument("--mask", help="inpainting mask file (white = known) or 'text'")
    p.add_argument("--keep", type=float, help="inpainting: Bernoulli keep ratio per pixel (0.5)")
    p.add_argument("--factor", type=int, default=4, help="super-resolution factor: 2, 4, 8")
    p.add_argument("--size", type=int, help="centre-crop and resize to SIZE x SIZE first")
    p.add_argument(
        "--observed", action="store_true",
        help="IMAGE is the degraded observation itself (no ground truth; nothing is scored)",
    )


def add_fit_args(p: argparse.ArgumentParser) -> None:
    """Model and optimisation options shared by every command that fits a prior."""
    p.add_argument("--model", default="dip", help="dip (skip hourglass) | decoder (Deep Decoder)")
    p.add_argument(
        "--model-opt", metavar="KEY=VALUE", type=parse_option, action="append", default=[],
        help="model option, repeatable: width=64, scales=4, k=128, upsample=nearest ...",
    )
    p.add_argument("--steps", type=int, help="Adam steps (paper: 3000; 2000 for sr)")
    p.add_argument("--lr", type=float, default=0.01, help="Adam learning rate (0.01)")
    p.add_argument("--input-noise", type=float, help="std of the input perturbation (per task)")
    p.add_argument("--fast", action="store_true", help="bf16 autocast + channels_last")
    p.add_argument("--device", help="cpu, cuda, cuda:N (default: CUDA if available)")
    p.add_argument("--seed", type=int, default=0, help="seed of init, z, noise (0)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lip", description="Lottery image priors: sparse deep image priors."
    )
    parser.add_argument("--version", action="version", version=f"lip {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("fit", help="fit a deep image prior to one image", description=(
        "Simulate the task's observation from IMAGE (or read it with --observed), fit the "
        "prior, and write restored.png, observation.png, metrics.json and a PSNR plot."))
    add_problem_args(p)
    add_fit_args(p)
    p.add_argument("--out", type=Path, help="output folder (default: lip-out/<image>-<task>)")
    p.set_defaults(handler=cmd_fit)

    p = sub.add_parser("demo", help="a small denoising run on a built-in image", description=(
        "Denoise a 128x128 crop of scikit-image's astronaut with a narrow skip network in "
        "fast mode: about a minute on a 2-core CPU."))
    p.add_argument("--out", type=Path, default=Path("lip-out/demo"), help="output folder")
    p.add_argument("--steps", type=int, default=800, help="Adam steps (800)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=cmd_demo)
    return parser


def image_stem(spec: str) -> str:
    """A file-name-safe short name for an image spec."""
    name = Path(spec.split(":", 1)[-1]).stem or "image"
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def run_fit(args: argparse.Namespace, out: Path) -> dict:
    """Build the problem and the prior, fit, write outputs; returns the metrics summary."""
    from lottery_prior.fit import FitConfig, fit
    from lottery_prior.operators import TASK_DEFAULTS
    from lottery_prior.problem import build_prior, make_problem
    from lottery_prior.progress import ProgressBar
    from lottery_prior.report.outputs import write_fit_outputs

    if args.task not in TASK_DEFAULTS:
        raise LipError(f"unknown task {args.task!r}; choose one of {', '.join(TASK_DEFAULTS)}")
    problem = make_problem(
        args.image, args.task, sigma=args.sigma, mask=args.mask, keep=args.keep,
        factor=args.factor, size=args.size, observed=args.observed, seed=args.seed,
    )
    defaults = TASK_DEFAULTS[args.task]
    config = FitConfig(
        steps=args.steps or defaults["steps"],
        lr=args.lr,
        input_noise=defaults["input_noise"] if args.input_noise is None else args.input_noise,
        fast=args.fast,
        device=args.device,
        seed=args.seed,
    )
    model, z = build_prior(args.model, dict(args.model_opt), problem, seed=args.seed)
    n_params = sum(p.numel() for p in model.parameters())
    log.info(
        "%s %s, %s: %s with %s parameters, %d steps%s",
        problem.image, "x".join(map(str, problem.shape[1:])), problem.task, args.model,
        f"{n_params:,}", config.steps, " (fast mode)" if config.fast else "",
    )
    bar = [] if args.quiet else [ProgressBar(desc=problem.task)]
    try:
        result = fit(
            model, z, problem.operator, problem.observation, clean=problem.clean,
            config=config, callbacks=bar, metric=problem.metric,
        )
    finally:
        for b in bar:
            b.close()
    settings = {"model": model.spec, "parameters": n_params, "fit": vars(config)}
    paths = write_fit_outputs(out, problem, result, settings)
    print_scores(result.scores, problem.metric_name)
    print(f"outputs in {out}/: " + ", ".join(p.name for p in paths.values()))
    return result.summary()


def print_scores(scores: dict, metric_name: str) -> None:
    """One line per labelled score."""
    for label, entry in scores.items():
        if entry.get("psnr") is None:
            continue
        extra = f", SSIM {entry['ssim']:.4f}" if entry.get("ssim") is not None else ""
        print(f"{metric_name} {label:>13}: {entry['psnr']:6.2f} dB at step {entry['step']}{extra}")


def cmd_fit(args: argparse.Namespace) -> None:
    out = args.out or Path("lip-out") / f"{image_stem(args.image)}-{args.task}"
    run_fit(args, out)


def cmd_demo(args: argparse.Namespace) -> None:
    demo_args = build_parser().parse_args([
        "fit", "builtin:astronaut", "--task", "denoise", "--size", "128",
        "--model-opt", "width=64", "--steps", str(args.steps), "--fast",
        *(["--quiet"] if args.quiet else []),
    ])
    print("demo: denoising a 128x128 astronaut (sigma 25) with a 64-wide skip network")
    run_fit(demo_args, args.out)


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(format="lip: %(message)s", level=logging.INFO, stream=sys.stderr)
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except LipError as err:
        print(f"lip: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lip: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The argument builders and converters that the ``lip`` commands share.

Builders (``add_*_args``) add a group of options to a sub-command's parser; converters
(``*_from_args``) turn the parsed options into the library's objects. Every command module
imports them from here, and nothing here imports a command module.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from lottery_prior.errors import LipError
from lottery_prior.precision import PRECISIONS
from lottery_prior.stopping import (
    FACTOR,
    KEEP,
    KEEP_DEFAULT,
    PATIENCE,
    RULES,
    SEARCH_RULES,
    WINDOW,
    resolve_rule,
)

DEVICE_HELP = "cpu, cuda, cuda:N (default: CUDA if available)"


def parse_option(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` with VALUE read as JSON when it parses (numbers, true/false), else text."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def add_problem_args(p: argparse.ArgumentParser, many: bool = False) -> None:
    """The image and task options shared by every command that restores an image."""
    if many:
        p.add_argument("image", help="image file, builtin:NAME (e.g. builtin:astronaut) or "
                       "data:REL")
        p.add_argument("others", nargs="*", metavar="IMAGE",
                       help="more images to search one shared ticket on (same size)")
    else:
        p.add_argument("image",
                       help="image file, builtin:NAME (e.g. builtin:astronaut) or data:REL")
    p.add_argument("--task", default="denoise", help="denoise | inpaint | sr (default: denoise)")
    add_task_args(p)
    p.add_argument(
        "--observed", action="store_true",
        help="IMAGE is the degraded observation itself (no ground truth; nothing is scored)",
    )


def add_task_args(p: argparse.ArgumentParser) -> None:
    """How the observation is simulated from a clean image."""
    p.add_argument("--sigma", type=float, default=25.0, help="noise level, 0-255 units (25)")
    p.add_argument("--mask", help="inpainting mask file (white = known) or 'text'")
    p.add_argument("--keep", type=float, help="inpainting: Bernoulli keep ratio per pixel (0.5)")
    p.add_argument("--factor", type=int, default=4, help="super-resolution factor: 2, 4, 8")
    p.add_argument("--size", type=int, help="centre-crop and resize to SIZE x SIZE first")
    p.add_argument("--noise-seed", type=int, default=0,
                   help="seed of the observation (noise, Bernoulli mask), separate from --seed "
                   "so that network seeds vary on one fixed observation (0)")


def add_fit_args(p: argparse.ArgumentParser) -> None:
    """Model and optimisation options shared by every command that fits a new prior."""
    p.add_argument("--model", default="dip", help="dip (skip hourglass) | decoder (Deep Decoder)")
    p.add_argument(
        "--model-opt", metavar="KEY=VALUE", type=parse_option, action="append", default=[],
        help="model option, repeatable: width=64, scales=4, k=128, upsample=nearest ...",
    )
    add_optim_args(p)


def add_optim_args(p: argparse.ArgumentParser) -> None:
    """Optimisation options of every fit."""
    p.add_argument("--steps", type=int, help="Adam steps (paper: 3000; 2000 for sr)")
    p.add_argument("--lr", type=float, default=0.01, help="Adam learning rate (0.01)")
    p.add_argument("--input-noise", type=float, help="std of the input perturbation (per task)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="auto (default): the fastest precision on this machine, measured once "
                   "per machine, network and size; fp32; fp32-cl (channels_last); bf16 "
                   "(autocast: native on AMX, AVX-512 BF16 and Ampere+ GPUs, emulated and ~5x "
                   "slower on AVX2-only CPUs); fp16 (CUDA, loss scaling)")
    p.add_argument("--fast", dest="precision", action="store_const", const="auto",
                   help="an alias of --precision auto (it meant bf16 before 0.3)")
    p.add_argument("--device", help=DEVICE_HELP)
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the network: init, z, input perturbation (0)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def add_stop_args(p: argparse.ArgumentParser) -> None:
    """Automatic stopping, which needs no ground truth."""
    p.add_argument(
        "--stop", choices=RULES, default="auto",
        help="stopping rule: auto (default) = discrepancy (stops once the loss falls below "
        "what the noise explains; without noise, as in inpainting and super-resolution, it "
        "runs every step), wmv (ES-WMV, the windowed variance of the outputs), fixed "
        "(--stop-step), none",
    )
    p.add_argument("--stop-window", type=int, help=f"window W of the rule ({WINDOW})")
    p.add_argument("--stop-patience", type=int,
                   help=f"wmv: checks without a new minimum before it stops ({PATIENCE}; the "
                   "paper's 1000 often missed the peak)")
    p.add_argument("--stop-factor", type=float,
                   help=f"discrepancy: the share of the noise variance the loss must fall "
                   f"below ({FACTOR})")
    p.add_argument("--stop-step", type=int, help="step of the fixed rule")
    p.add_argument("--stop-keep", choices=KEEP,
                   help=f"output kept: the mean of the window ({KEEP_DEFAULT}, default; ~1.8 dB "
                   "better in our runs) or the iterate at that step (the paper's)")


def add_imp_args(p: argparse.ArgumentParser) -> None:
    """Iterative magnitude pruning options."""
    p.add_argument("--rounds", type=int, default=16, help="pruning rounds (paper: 16; 25 for sr)")
    p.add_argument("--rate", type=float, default=0.2, help="fraction pruned per round (0.2)")
    p.add_argument("--target-sparsity", type=float, help="stop once this sparsity is reached")
    p.add_argument("--layerwise", action="store_true", help="prune each layer by the rate")
    p.add_argument("--rewind-step", type=int, default=0,
                   help="rewind to the dense fit's weights at this step (0: the init theta0)")
    p.add_argument("--keep-dense", action="append", default=[], metavar="GLOB",
                   help="parameter names never pruned, repeatable (e.g. 'model.0.*')")
    p.add_argument(
        "--target", choices=("observation", "clean"), default="observation",
        help="fit the observation (default) or, as the reference code did, the clean image "
        "(oracle: leaks the ground truth into the ticket)",
    )
    p.add_argument("--search-steps", type=int,
                   help="steps per round while searching (the last round, the final ticket, "
                   "runs --steps); default: --steps")
    p.add_argument("--early-bird", type=float, metavar="THRESHOLD",
                   help="end a round once under THRESHOLD of the next mask changes between "
                   "checks, 3 checks in a row (e.g. 0.05); the last round runs in full")
    p.add_argument("--structured", choices=("weights", "channels"), default="weights",
                   help="prune single weights (default) or whole output channels: a channel "
                   "ticket is fitted as a narrower dense network (really faster); --rate is "
                   "then the fraction of channels pruned per round")
    p.add_argument("--channel-score", choices=("l1", "l2", "bn"), default="l1",
                   help="rank channels by their filter's L1 (default) or L2 norm, or by the "
                   "|gamma| of their BatchNorm (--structured channels)")


def add_learn_args(p: argparse.ArgumentParser) -> None:
    """Learned-mask options (``lip find --finder learned``, the ``learned`` method)."""
    g = p.add_argument_group("learned masks (--finder learned, or the method 'learned')")
    g.add_argument("--penalty", type=float, metavar="LAMBDA",
                   help="learn with this weight on the expected density instead of a target "
                   "sparsity (keeps the weights with positive logits)")
    g.add_argument("--learn-steps", type=int,
                   help="mask-learning steps (default: those of an IMP search with 100-step "
                   "rounds to the same sparsity: 1100 for 90%%, 1800 for 98%%; 1000 with "
                   "--penalty)")
    g.add_argument("--learn-lr", type=float, default=0.1,
                   help="Adam learning rate of the mask logits (0.1; Optimal Eye Surgeon: "
                   "0.01 over 60000 steps)")
    g.add_argument("--temperature", type=float, default=1.0,
                   help="temperature of the binary concrete relaxation (1.0; Optimal Eye "
                   "Surgeon: 0.2)")
    g.add_argument("--allocation", choices=("global", "erk"), default="global",
                   help="rank the logits over all layers (global, Optimal Eye Surgeon's) or "
                   "within each layer with Erdős–Rényi-kernel budgets (erk)")
    g.add_argument("--per-filter", type=int, default=1,
                   help="weights every output filter keeps first, by logit (1; 0: plain "
                   "global ranking, which can prune whole layers)")
    g.add_argument("--kl", type=float, default=1e-9,
                   help="weight of the KL to Bernoulli(target density), summed over weights "
                   "(1e-9, as Optimal Eye Surgeon)")


def add_run_args(p: argparse.ArgumentParser, seed_help: str) -> None:
    """Seed, device, CPU threads and progress options of the gan and classify commands."""
    p.add_argument("--seed", type=int, default=0, help=seed_help)
    p.add_argument("--device", help=DEVICE_HELP)
    p.add_argument("--threads", type=int,
                   help="torch CPU threads (default: torch's; 1 is often fastest for small nets)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def output_folder(args: argparse.Namespace, name: str, files: Sequence[str] = ()):
    """Claim ``--out`` (default ``lip-out/<command>/<name>-<settings hash>``) before any work:
    runs with other settings never share (and overwrite) a folder. ``files`` names the
    arguments whose files' contents count as settings (a ticket, a checkpoint)."""
    from lottery_prior.output_folder import output_folder

    return output_folder(args, Path("lip-out") / args.command, name, files)


def image_task_folder(args: argparse.Namespace, files: Sequence[str] = ()):
    """:func:`output_folder` of a command on one image and task, named after both."""
    return output_folder(args, f"{image_stem(args.image)}-{args.task}", files)


def image_stem(spec: str) -> str:
    """A file-name-safe short name for an image spec."""
    name = Path(spec.split(":", 1)[-1]).stem or "image"
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def setup_device(args: argparse.Namespace):
    """Apply ``--threads`` and check ``--device``; returns the torch device."""
    import torch

    from lottery_prior.fit import select_device

    if args.threads is not None:
        if args.threads < 1:
            raise LipError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    return select_device(args.device)


def problem_from_args(args: argparse.Namespace, image: str | None = None,
                      task: str | None = None):
    from lottery_prior.problem import make_problem

    return make_problem(
        image or args.image, task or args.task, sigma=args.sigma, mask=args.mask,
        keep=args.keep, factor=args.factor, size=args.size,
        observed=getattr(args, "observed", False), noise_seed=args.noise_seed,
    )


def named_problems_from_args(args: argparse.Namespace, images: Sequence[str]) -> list:
    """``(name, problem)`` for every image x ``--tasks``, named ``<image stem>:<task>``."""
    return [(f"{image_stem(image)}:{task}", problem_from_args(args, image, task))
            for image in images for task in args.tasks]


def fit_config_from_args(args: argparse.Namespace, task: str, model: str = "dip"):
    """The fit settings: the task's defaults, then the model's own (the Deep Decoder has no
    input perturbation), then what the user set."""
    from lottery_prior.fit import FitConfig, select_device
    from lottery_prior.precision import mode

    config = FitConfig.for_task(task, model, steps=args.steps, lr=args.lr,
                                input_noise=getattr(args, "input_noise", None),
                                precision=args.precision, device=args.device, seed=args.seed,
                                score_at=getattr(args, "score_at", None))
    if config.precision != "auto":  # one this device cannot run is refused before any work
        mode(config.precision, select_device(config.device))
    return config


def stop_from_args(args: argparse.Namespace, problem):
    """The stopping rule asked for, on ``problem`` (``auto``: the discrepancy rule)."""
    from lottery_prior.stopping import make_stopping_rule

    if args.stop == "fixed":
        if args.stop_step is None:
            raise LipError("--stop fixed needs --stop-step N")
        return make_stopping_rule("fixed", step=args.stop_step)
    options = {"window": args.stop_window, "patience": args.stop_patience,
               "factor": args.stop_factor, "keep": args.stop_keep}
    given = {k: v for k, v in options.items() if v is not None}
    rule = resolve_rule(args.stop)
    if rule is not None:
        wrong = {"wmv": "factor", "discrepancy": "patience"}[rule]
        if wrong in given:
            raise LipError(f"--stop-{wrong} is not a setting of the {rule} rule")
    return make_stopping_rule(rule, noise_variance=problem.noise_variance, **given)


SEARCH_STOPS = ("auto", *SEARCH_RULES, "none")


def search_stop_from_args(args: argparse.Namespace) -> dict:
    """The ``stop`` of a search run (IMP or learned mask): with ``--stop auto`` (or a rule's
    name) every fit is also scored at that rule's automatic stop (the run resolves auto for
    its task)."""
    stop = getattr(args, "stop", "none")
    return {"stop": None if stop == "none" else stop}


def progress_from_args(args: argparse.Namespace):
    """A factory of progress-bar callbacks, or None with --quiet."""
    from lottery_prior.progress import ProgressBar

    if args.quiet:
        return None
    return lambda desc: [ProgressBar(desc=desc, leave=False)]


def imp_config_from_args(args: argparse.Namespace, **extra):
    """The IMP settings that every IMP command has (rounds, rate, target sparsity, layer-wise,
    rewinding, kept-dense layers), plus ``extra`` ones."""
    from lottery_prior.lottery import ImpConfig

    return ImpConfig(rounds=args.rounds, rate=args.rate, target_sparsity=args.target_sparsity,
                     layerwise=args.layerwise, rewind_step=args.rewind_step,
                     keep_dense=tuple(args.keep_dense), **extra)


def imp_run_from_args(args: argparse.Namespace, problem, seed: int, root: Path, others=()):
    """The IMP run (resumable, in a sub-folder of ``root``) that the options describe."""
    from dataclasses import replace

    from lottery_prior.lottery import ImpRun

    imp = imp_config_from_args(
        args, target=args.target, search_steps=args.search_steps, early_bird=args.early_bird,
        structure=args.structured, channel_score=args.channel_score)
    return ImpRun(
        problem, args.model, dict(args.model_opt),
        replace(fit_config_from_args(args, problem.task), seed=seed), imp,
        root=root, others=tuple(others), **search_stop_from_args(args))


def learn_config_from_args(args: argparse.Namespace, sparsity: float | None):
    from lottery_prior.learned import LearnConfig

    return LearnConfig(
        sparsity=sparsity, penalty=args.penalty,
        steps=args.learn_steps, lr=args.learn_lr, temperature=args.temperature, kl=args.kl,
        allocation=args.allocation, per_filter=args.per_filter,
        keep_dense=tuple(args.keep_dense), target=args.target)


def add_score_at(p: argparse.ArgumentParser) -> None:
    """``--score-at STEP...``: milestones of every fit (``FitConfig.score_at``)."""
    p.add_argument("--score-at", type=int, nargs="+", default=(), metavar="STEP",
                   help="also record every score at these steps of the fit (milestones: "
                   "one 3000-step fit answers 'at step 1000' too)")

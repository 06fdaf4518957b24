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
from lottery_prior.cli_classify import add_classify_commands
from lottery_prior.cli_gan import add_gan_commands
from lottery_prior.errors import LipError
from lottery_prior.stopping import KEEP, KEEP_DEFAULT, PATIENCE, WINDOW

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
    p.add_argument("--fast", action="store_true", help="bf16 autocast + channels_last")
    p.add_argument("--device", help="cpu, cuda, cuda:N (default: CUDA if available)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the network: init, z, input perturbation (0)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def add_stop_args(p: argparse.ArgumentParser) -> None:
    """Automatic stopping (ES-WMV), which needs no ground truth."""
    p.add_argument(
        "--stop", choices=("auto", "wmv", "fixed", "none"), default="auto",
        help="stopping rule: wmv (windowed variance, ES-WMV), fixed (--stop-step), none; "
        "auto = wmv (default)",
    )
    p.add_argument("--stop-window", type=int, default=WINDOW,
                   help=f"ES-WMV window W ({WINDOW}, as in the paper)")
    p.add_argument("--stop-patience", type=int, default=PATIENCE,
                   help=f"ES-WMV patience P ({PATIENCE}; the paper's 1000 often missed the "
                   "peak in runs of a few thousand steps)")
    p.add_argument("--stop-step", type=int, help="step of the fixed rule")
    p.add_argument("--stop-keep", choices=KEEP, default=KEEP_DEFAULT,
                   help="ES-WMV output: the mean of the minimum-variance window (default; "
                   "~1.8 dB better in our runs) or the iterate at that step (the paper's)")


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


def learn_config_from_args(args: argparse.Namespace, sparsity: float | None):
    from lottery_prior.learned import LearnConfig

    return LearnConfig(
        sparsity=sparsity, penalty=args.penalty,
        steps=args.learn_steps, lr=args.learn_lr, temperature=args.temperature, kl=args.kl,
        allocation=args.allocation, per_filter=args.per_filter,
        keep_dense=tuple(args.keep_dense), target=args.target)


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
    add_stop_args(p)
    p.add_argument("--out", type=Path,
                   help="output folder (default: lip-out/fit/<image>-<task>-<settings hash>)")
    p.set_defaults(handler=cmd_fit)

    p = sub.add_parser("find", help="find lottery image priors by IMP with rewinding (or a "
                       "learned mask)", description=(
        "Iterative magnitude pruning with rewinding on one image: writes a ticket per round, "
        "a table of PSNR against sparsity and its plot. Resumable: rerun the same command "
        "after an interruption and it continues from the last finished round. With several "
        "images, one ticket is searched on all of them at once (a network per image, one "
        "shared mask, the summed loss; pruning ranks the mean |w| over the networks). With "
        "--finder learned, a mask is learned at theta0 instead (frozen weights, relaxed "
        "binary mask, --target-sparsity or --penalty), then fitted like a ticket."))
    add_problem_args(p, many=True)
    add_fit_args(p)
    p.add_argument("--finder", choices=("imp", "learned"), default="imp",
                   help="IMP with rewinding (default) or a mask learned at initialisation")
    add_imp_args(p)
    add_learn_args(p)
    p.add_argument("--stop", choices=("wmv", "none"), default="none",
                   help="report each round at the ES-WMV stop (no oracle) (default: none)")
    p.add_argument("--out", type=Path, default=Path("lip-out/runs"),
                   help="runs folder; the run gets a sub-folder named by its settings' hash")
    p.set_defaults(handler=cmd_find)

    p = sub.add_parser("eval", help="retrain a ticket on any image and task", description=(
        "Retrain TICKET (mask, rewind weights, z) on IMAGE for a task; writes what `lip fit` "
        "writes."))
    p.add_argument("ticket", type=Path, help="ticket file (ticket.safetensors)")
    add_problem_args(p)
    add_optim_args(p)
    add_stop_args(p)
    p.add_argument("--out", type=Path, help="output folder (default: "
                   "lip-out/eval/<image>-<task>-<settings hash>)")
    p.set_defaults(handler=cmd_eval)

    p = sub.add_parser("compare", help="ticket vs random, pruning at init, Deep Decoder, dense",
                       description=(
        "Find a ticket (IMP, resumable) at the requested sparsity and fit the baselines at the "
        "same counted sparsity on the same image; one table and one plot."))
    add_problem_args(p)
    add_fit_args(p)
    add_imp_args(p)
    add_learn_args(p)
    p.add_argument("--sparsity", type=float, required=True, help="sparsity to compare at")
    p.add_argument("--stop", choices=("wmv", "none"), default="none",
                   help="also report every method at the ES-WMV stop (no oracle)")
    p.add_argument("--methods", nargs="+", default=None, metavar="METHOD",
                   help="ticket learned random random-layerwise magnitude snip grasp synflow "
                   "decoder dense, and with --structured channels random-channels narrow "
                   "unstructured (default: ticket random random-layerwise decoder dense; "
                   "channels: ticket random-channels narrow unstructured dense)")
    p.add_argument("--seeds", type=int, nargs="+", help="repeat with these seeds (default: --seed)")
    p.add_argument("--out", type=Path, help="output folder; IMP runs go in its runs/ "
                   "(default: lip-out/compare/<image>-<task>-<settings hash>)")
    p.set_defaults(handler=cmd_compare)

    p = sub.add_parser("transfer", help="tickets retrained on other images and tasks",
                       description=(
        "Retrain each ticket on each image x task; a table and a heat map of PSNR."))
    p.add_argument("--tickets", type=Path, nargs="+", required=True, help="ticket files")
    p.add_argument("--images", nargs="+", required=True, help="images (files, builtin:, data:)")
    p.add_argument("--tasks", nargs="+", default=["denoise"], help="tasks (default: denoise)")
    add_task_args(p)
    add_optim_args(p)
    p.add_argument("--out", type=Path,
                   help="output folder (default: lip-out/transfer/<settings hash>)")
    p.set_defaults(handler=cmd_transfer)

    p = sub.add_parser("sweep", help="run an experiment spec: a grid of fits (resumable)",
                       description=(
        "Expand a TOML experiment spec into units (IMP searches, one fit per method x "
        "sparsity x image x task x seed, transfers), run every unit whose result is not "
        "stored yet, and write results.parquet and results.csv in the results folder. "
        "Rerunning after an interruption recomputes nothing that finished."))
    p.add_argument("spec", type=Path, help="experiment spec (TOML; see experiments/)")
    p.add_argument("--out", type=Path,
                   help="results folder (default: lip-out/sweeps/<spec name>)")
    p.add_argument("--workers", type=int,
                   help="local worker processes, one thread each (default: one per core)")
    p.add_argument("--ray", nargs="?", const="auto", metavar="ADDRESS",
                   help="run on Ray instead (ADDRESS of a cluster, default: auto)")
    p.add_argument("--gpu-per-fit", type=float, metavar="F",
                   help="with --ray on a cluster with GPUs: the GPUs each unit asks for "
                   "(default: 0.25 for images up to 256x256, else 1)")
    p.add_argument("--device", help="cpu, cuda, cuda:N for every fit (default: CUDA if "
                   "available)")
    p.add_argument("--dry-run", action="store_true",
                   help="print the units and an estimate of their cost; run nothing")
    p.add_argument("--yes", action="store_true",
                   help="run without asking even if the cost estimate is above --confirm-hours")
    p.add_argument("--confirm-hours", type=float, default=24.0, metavar="H",
                   help="ask before running a sweep estimated above H CPU-thread hours (24)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=cmd_sweep)

    p = sub.add_parser("report", help="an HTML and Markdown report of a sweep's results",
                       description=(
        "From a results folder (or its results.parquet / results.csv): one self-contained "
        "report.html (figures embedded, opens offline) and report.md with figures/: PSNR vs "
        "sparsity per image and task, transfer heat maps, image grids, and the paper's claims "
        "with paired confidence intervals over images x seeds and a verdict."))
    p.add_argument("results", type=Path, help="results folder of lip sweep, or its table")
    p.add_argument("--out", type=Path, help="report folder (default: RESULTS/report)")
    p.add_argument("--delta", type=float, default=0.1,
                   help="non-inferiority margin in dB for the 'at least as good' claims (0.1)")
    p.set_defaults(handler=cmd_report)

    p = sub.add_parser("demo", help="the whole method in miniature on a built-in image",
                       description=(
        "IMP on a 64x64 built-in image with a narrow network, then the ticket against random "
        "pruning, a Deep Decoder of equal size and the dense network: a table and a plot."))
    p.add_argument("--out", type=Path, default=Path("lip-out/demo"), help="output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=cmd_demo)
    add_gan_commands(sub)
    add_classify_commands(sub)
    return parser


def output_folder(args: argparse.Namespace, name: str, files: Sequence[str] = ()):
    """Claim ``--out`` (default ``lip-out/<command>/<name>-<settings hash>``) before any work:
    runs with other settings never share (and overwrite) a folder."""
    from lottery_prior.output_folder import output_folder

    return output_folder(args, Path("lip-out") / args.command, name, files)


def image_stem(spec: str) -> str:
    """A file-name-safe short name for an image spec."""
    name = Path(spec.split(":", 1)[-1]).stem or "image"
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def problem_from_args(args: argparse.Namespace, image: str | None = None,
                      task: str | None = None):
    from lottery_prior.problem import make_problem

    return make_problem(
        image or args.image, task or args.task, sigma=args.sigma, mask=args.mask,
        keep=args.keep, factor=args.factor, size=args.size,
        observed=getattr(args, "observed", False), noise_seed=args.noise_seed,
    )


def fit_config_from_args(args: argparse.Namespace, task: str, model: str = "dip"):
    """The fit settings: the task's defaults, then the model's own (the Deep Decoder has no
    input perturbation), then what the user set."""
    from lottery_prior.fit import FitConfig
    from lottery_prior.models import model_fit_defaults
    from lottery_prior.operators import TASK_DEFAULTS

    if task not in TASK_DEFAULTS:
        raise LipError(f"unknown task {task!r}; choose one of {', '.join(TASK_DEFAULTS)}")
    defaults = TASK_DEFAULTS[task] | model_fit_defaults(model)
    noise = getattr(args, "input_noise", None)
    return FitConfig(
        steps=defaults["steps"] if args.steps is None else args.steps, lr=args.lr,
        input_noise=defaults["input_noise"] if noise is None else noise,
        fast=args.fast, device=args.device, seed=args.seed,
    )


def stop_from_args(args: argparse.Namespace):
    """The stopping rule asked for (``auto`` is ES-WMV)."""
    from lottery_prior.stopping import make_stopping_rule

    if args.stop == "fixed":
        if args.stop_step is None:
            raise LipError("--stop fixed needs --stop-step N")
        return make_stopping_rule("fixed", step=args.stop_step)
    if args.stop in ("wmv", "auto"):
        return make_stopping_rule("wmv", window=args.stop_window, patience=args.stop_patience,
                                  keep=args.stop_keep)
    return None


def progress_from_args(args: argparse.Namespace):
    """A factory of progress-bar callbacks, or None with --quiet."""
    from lottery_prior.progress import ProgressBar

    if args.quiet:
        return None
    return lambda desc: [ProgressBar(desc=desc, leave=False)]


def fit_and_report(args: argparse.Namespace, out: Path, problem, model, z, mask=None,
                   config=None, provenance: dict | None = None) -> dict:
    """Fit a prior (dense or masked) to a problem, print its scores, write its outputs."""
    from lottery_prior.fit import fit
    from lottery_prior.progress import ProgressBar
    from lottery_prior.report.outputs import write_fit_outputs
    from lottery_prior.tickets import parameter_count

    config = config or fit_config_from_args(args, problem.task)
    stop = stop_from_args(args)
    n_params = parameter_count(model, mask)
    log.info(
        "%s %s, %s: %s with %s parameters%s, %d steps%s", problem.image,
        "x".join(map(str, problem.shape[1:])), problem.task, model.spec["name"],
        f"{n_params:,}", f" (sparsity {mask.sparsity:.1%})" if mask is not None else "",
        config.steps, " (fast mode)" if config.fast else "",
    )
    bar = [] if args.quiet else [ProgressBar(desc=problem.task)]
    try:
        result = fit(
            model, z, problem.operator, problem.observation, clean=problem.clean,
            config=config, mask=mask, stop=stop, callbacks=bar, metric=problem.metric,
            run_past_stop=problem.clean is not None,
        )
    finally:
        for b in bar:
            b.close()
    settings = {"model": model.spec, "parameters": n_params, "fit": vars(config),
                "stop": args.stop, **(provenance or {})}
    paths = write_fit_outputs(out, problem, result, settings)
    if problem.clean is not None and problem.task != "sr":
        from lottery_prior.metrics import psnr

        print(f"{problem.metric_name}, {'observation:':<27} "
              f"{psnr(problem.observation, problem.clean):6.2f} dB")
    print_scores(result.scores, problem.metric_name)
    if "stopped" in result.scores:
        s = result.scores["stopped"]
        state = "fired" if s["fired"] else "did not fire; its best output so far is kept"
        gaps = ""
        if "peak" in result.scores:
            peaks = result.scores["peak"]["psnr"], result.scores["peak_averaged"]["psnr"]
            gaps = (f", {s['psnr']:.2f} dB: {s['psnr'] - peaks[0]:+.2f} dB from the iterate's "
                    f"peak, {s['psnr'] - peaks[1]:+.2f} from the averaged output's peak")
        print(f"automatic stop ({stop.__class__.__name__}, keeps the {s['kept']}; no ground "
              f"truth) {state}: step {s['step']}{gaps}")
    print(f"outputs in {out}/: " + ", ".join(p.name for p in paths.values()))
    return result.summary()


def print_scores(scores: dict, metric_name: str) -> None:
    """One line per labelled score, saying which output it measures (oracles marked)."""
    from lottery_prior.scores import score_label

    for label, entry in scores.items():
        if entry.get("psnr") is None:
            continue
        extra = f", SSIM {entry['ssim']:.4f}" if entry.get("ssim") is not None else ""
        print(f"{metric_name}, {score_label(label) + ':':<27} {entry['psnr']:6.2f} dB at step "
              f"{entry['step']}{extra}")


def cmd_fit(args: argparse.Namespace) -> None:
    from lottery_prior.problem import build_prior

    config = fit_config_from_args(args, args.task, args.model)  # checked before any work
    with output_folder(args, f"{image_stem(args.image)}-{args.task}") as out:
        problem = problem_from_args(args)
        model, z = build_prior(args.model, dict(args.model_opt), problem, seed=args.seed)
        fit_and_report(args, out, problem, model, z, config=config)


def cmd_eval(args: argparse.Namespace) -> None:
    from lottery_prior.lottery import ticket_input
    from lottery_prior.output_folder import file_sha256
    from lottery_prior.tickets import Ticket

    ticket = Ticket.load(args.ticket)
    config = fit_config_from_args(args, args.task, ticket.model_spec["name"])
    with output_folder(args, f"{image_stem(args.image)}-{args.task}", ["ticket"]) as out:
        problem = problem_from_args(args)
        model, mask, z, redrawn = ticket_input(ticket, problem, args.seed)
        provenance = {"ticket": {"path": str(args.ticket), "sha256": file_sha256(args.ticket),
                                 "run": ticket.meta.get("run"), "round": ticket.meta.get("round"),
                                 "z": f"redrawn for this size (seed {args.seed})" if redrawn
                                 else "the ticket's own"}}
        fit_and_report(args, out, problem, model, z, mask=mask, config=config,
                       provenance=provenance)


def imp_run_from_args(args: argparse.Namespace, problem, seed: int, others=()):
    from dataclasses import replace

    from lottery_prior.lottery import ImpConfig, ImpRun

    imp = ImpConfig(
        rounds=args.rounds, rate=args.rate, target_sparsity=args.target_sparsity,
        layerwise=args.layerwise, rewind_step=args.rewind_step,
        keep_dense=tuple(args.keep_dense), target=args.target,
        search_steps=args.search_steps, early_bird=args.early_bird,
        structure=args.structured, channel_score=args.channel_score,
    )
    stop = getattr(args, "stop", "none")
    return ImpRun(
        problem, args.model, dict(args.model_opt),
        replace(fit_config_from_args(args, problem.task), seed=seed), imp,
        root=args.out if args.handler is cmd_find else args.out / "runs",
        stop=None if stop == "none" else stop, others=tuple(others),
    )


def cmd_find(args: argparse.Namespace) -> None:
    from lottery_prior.output_folder import check_writable
    from lottery_prior.report.outputs import write_channel_table, write_imp_report

    check_writable(args.out)
    if args.finder == "learned":
        return find_learned(args)
    if args.penalty is not None:
        raise LipError("--penalty applies to a learned mask; add --finder learned")
    problem = problem_from_args(args)
    others = [problem_from_args(args, image) for image in args.others]
    run = imp_run_from_args(args, problem, args.seed, others)
    log.info("IMP run folder: %s (%d rounds)", run.folder, run.imp.n_rounds)
    run.run(progress_from_args(args))
    table = write_imp_report(run)
    print(table)
    print(f"tickets, records and report in {run.folder}/")
    if run.imp.channels:
        print("\noutput channels kept per conv:\n" + write_channel_table(run))
        print(f"each round's ticket as a compact network: "
              f"{run.folder}/round-NN/compact.safetensors")


def find_learned(args: argparse.Namespace) -> None:
    """``lip find --finder learned``: learn a mask at theta0, then fit the ticket."""
    from dataclasses import replace

    from lottery_prior.learned import LearnedRun
    from lottery_prior.report.tables import markdown_table, write_table
    from lottery_prior.scores import score_columns

    if args.others:
        raise LipError("a learned mask is found on one image; give one IMAGE")
    if args.structured != "weights":
        raise LipError("--finder learned learns weight masks; drop --structured channels")
    if args.target_sparsity is None and args.penalty is None:
        raise LipError("--finder learned needs --target-sparsity S (exact) or --penalty L")
    learn = learn_config_from_args(args, args.target_sparsity)
    problem = problem_from_args(args)
    run = LearnedRun(
        problem, args.model, dict(args.model_opt),
        replace(fit_config_from_args(args, problem.task), seed=args.seed), learn, root=args.out,
        stop=None if args.stop == "none" else args.stop)
    log.info("learned-mask run folder: %s (%d learning steps)", run.folder, learn.n_steps)
    record = run.run(progress_from_args(args))
    table = [{"method": "learned", "sparsity": round(record["sparsity"], 4),
              "parameters": record["parameters"], **score_columns(record["scores"]),
              "seconds": record["seconds"], "find_seconds": record["find_seconds"]}]
    write_table(table, run.folder / "results")
    print(markdown_table(table))
    print(f"ticket, record and table in {run.folder}/")


def cmd_compare(args: argparse.Namespace) -> None:
    from lottery_prior.compare import (
        DEFAULT_CHANNEL_METHODS,
        DEFAULT_METHODS,
        check_comparison,
        compare_methods,
    )
    from lottery_prior.finders import FinderOptions
    from lottery_prior.report.outputs import write_comparison, write_imp_report

    channels = args.structured == "channels"
    methods = args.methods or (DEFAULT_CHANNEL_METHODS if channels else DEFAULT_METHODS)
    if args.penalty is not None:
        raise LipError("--penalty does not apply to lip compare: the learned mask is learned "
                       "at the ticket's sparsity; drop --penalty")
    if args.target_sparsity is None:
        args.target_sparsity = args.sparsity
    problem = problem_from_args(args)
    check_comparison(problem, args.sparsity, methods, args.structured)
    with output_folder(args, f"{image_stem(args.image)}-{args.task}") as out:
        runs = [imp_run_from_args(args, problem, seed) for seed in args.seeds or [args.seed]]
        rows = []
        for run in runs:
            seed = run.fit_config.seed
            log.info("seed %d: IMP run folder %s", seed, run.folder)
            options = FinderOptions(learn=learn_config_from_args(args, args.sparsity))
            for fitted in compare_methods(run, args.sparsity, methods, options=options,
                                          progress=progress_from_args(args)):
                rows.append({"seed": seed, "noise_seed": args.noise_seed, **fitted.row()})
            write_imp_report(run)
        print(write_comparison(rows, out, title=f"{problem.image} · {problem.task}"))
    print(f"table and plot in {out}/")


def cmd_transfer(args: argparse.Namespace) -> None:
    from lottery_prior.compare import check_transfer, ticket_name, transfer_grid
    from lottery_prior.report.outputs import write_transfer
    from lottery_prior.tickets import Ticket

    tickets = [(ticket_name(path, ticket), ticket)
               for path, ticket in ((t, Ticket.load(t)) for t in args.tickets)]
    names = [name for name, _ in tickets]
    if len(set(names)) < len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise LipError(f"ticket {dup} is given twice; give each ticket once")
    problems = [(f"{image_stem(i)}:{task}", problem_from_args(args, i, task))
                for i in args.images for task in args.tasks]
    check_transfer(tickets, problems)  # every pair, before the first fit
    with output_folder(args, "transfer", ["tickets"]) as out:
        rows = []
        for name, problem in problems:
            for t_name, ticket in tickets:
                config = fit_config_from_args(args, problem.task, ticket.model_spec["name"])
                rows += transfer_grid([(t_name, ticket)], [(name, problem)], config,
                                      progress=progress_from_args(args))
        print(write_transfer(rows, out))
    print(f"table and heat map in {out}/")


def cmd_sweep(args: argparse.Namespace) -> None:
    from lottery_prior.experiments.sweep import Sweep

    sweep = Sweep.load(args.spec, args.out)
    if args.dry_run:
        done = sweep.done()
        for unit in sweep.plan.units:
            print(f"{'done' if unit.id in done else 'todo'}  {unit.id}  {unit.label}")
        print(sweep.describe())
        return
    log.info("%s; results in %s", sweep.describe(), sweep.out)
    confirm_cost(sweep.hours_left(), args)
    ran = sweep.run(workers=args.workers, ray=args.ray, device=args.device,
                    gpu_per_fit=args.gpu_per_fit, show=not args.quiet)
    print(f"{ran} units ran, {len(sweep.plan.units) - ran} were done earlier; results in "
          f"{sweep.out}/results.parquet and results.csv (lip report {sweep.out} makes the "
          "report)")


def confirm_cost(hours: float, args: argparse.Namespace) -> None:
    """Ask before a sweep estimated above ``--confirm-hours``; refuse when no one can answer."""
    if args.yes or hours <= args.confirm_hours:
        return
    question = (f"this sweep is estimated at {hours:,.0f} CPU-thread hours (more than "
                f"--confirm-hours {args.confirm_hours:g})")
    if not sys.stdin.isatty():
        raise LipError(f"{question}; add --yes to run it")
    answer = input(f"{question}. Run it? [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        raise LipError("not started; add --yes to run it without asking")


def cmd_report(args: argparse.Namespace) -> None:
    from lottery_prior.report.html import write_report

    paths = write_report(args.results, args.out, delta=args.delta)
    print(f"report: {paths['html']} (self-contained) and {paths['markdown']}")


DEMO = [
    "builtin:astronaut", "--task", "denoise", "--sigma", "25", "--size", "64",
    "--model-opt", "width=32", "--steps", "1000", "--search-steps", "100", "--fast",
    "--sparsity", "0.67",
    "--methods", "ticket", "random", "random-layerwise", "decoder", "dense",
]


DEMO_BANNER = """\
demo: lottery image priors in miniature (about 2 minutes on a 2-core CPU)
  denoise a 64x64 astronaut (sigma 25) with a 32-wide skip hourglass, 1000 steps per fit
  (about where the PSNR peaks) in fast mode (bf16); IMP with rewinding to 67% sparsity
  (5 rounds searched with 100-step fits, as good as full rounds within seed noise; the ticket
  and every baseline get all 1000 steps), then random pruning at the same sparsity (global
  and with the ticket's layer-wise ratios), a Deep Decoder of the same size, and the dense
  network. One seed: differences of a few tenths of a dB are within seed noise.
"""


def cmd_demo(args: argparse.Namespace) -> None:
    """The whole method in miniature: IMP on a built-in image, then ticket vs baselines."""
    demo = build_parser().parse_args(
        ["compare", *DEMO, "--out", str(args.out), *(["--quiet"] if args.quiet else [])])
    print(DEMO_BANNER + f"  equivalent command: lip compare {' '.join(DEMO)}")
    cmd_compare(demo)


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

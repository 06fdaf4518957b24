"""``lip gan``: a progressive GAN as the image prior (train, cs, inpaint, prune).

Thin wrappers around :mod:`lottery_prior.gan.experiments`: parse, check every input, run,
print the summary table and where the images, tables and plots went. Checkpoints are
pytorch_GAN_zoo files (``.pth`` from the zoo, or the ``gan.pth`` that ``lip gan train`` writes).

Output folders never mix runs: the default is ``lip-out/gan/<command>-<hash>``, the hash taken
over the settings (and the checkpoint's and weight mask's contents), so other settings get
another folder and the same settings reuse theirs, rewriting the same files. A folder (default
or ``--out``) holding the ``settings.json`` of a run with other settings is refused.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from lottery_prior.cli.args import add_run_args, image_stem, output_folder, setup_device
from lottery_prior.errors import LipError
from lottery_prior.gan.sparsity import CS_BASELINES

if TYPE_CHECKING:  # torch and the GAN code load when a command runs, not for --help
    import torch

    from lottery_prior.gan import Discriminator, Generator
    from lottery_prior.gan.experiments import NamedImages, Results, Solver
    from lottery_prior.masks import Mask

log = logging.getLogger("lottery_prior")

OUT = Path("lip-out/gan")


def _common(p: argparse.ArgumentParser, command: str) -> None:
    p.add_argument("--out", type=Path,
                   help=f"output folder (default: lip-out/gan/{command}-HASH, HASH a short hash "
                   "of the settings: other settings never share a folder, the same settings "
                   "rewrite theirs). A folder whose settings.json is of a run with other "
                   "settings is refused")
    add_run_args(p, "seed of everything random (0); each kind of draw has its own stream")


def _prior(p: argparse.ArgumentParser, *, weight_mask: bool = True) -> None:
    p.add_argument("-c", "--checkpoint", type=Path,
                   help="zoo-format checkpoint: a pytorch_GAN_zoo .pth or `lip gan train`'s "
                   f"(default: the one {OUT}/train-*/gan.pth, when there is exactly one)")
    p.add_argument("--generator", choices=("avgG", "netG"), default="avgG",
                   help="averaged (default) or last trained generator of the checkpoint")
    p.add_argument("--images", nargs="+", metavar="IMAGE",
                   help="images to recover (files, builtin:NAME, data:REL), centre-cropped and "
                   "resized to the generator's; default: the held-out faces")
    p.add_argument("--held-out", "--faces", dest="held_out", type=int, default=4,
                   help="how many held-out images of the checkpoint's training data to "
                   "recover: of the 20 faces, or of the 300 digits (4)")
    p.add_argument("--steps", type=int, default=500, help="Adam steps on z (500; paper 1500)")
    p.add_argument("--restarts", type=int, default=3, help="random restarts (3; paper 5)")
    p.add_argument("--lr", type=float, default=0.01, help="Adam learning rate on z (0.01)")
    if weight_mask:
        p.add_argument("--weight-mask", type=Path, metavar="MASK",
                       help="prune the generator with this mask (.safetensors from "
                       "`lip gan prune`)")


def add_gan(sub: argparse._SubParsersAction) -> None:
    """Add ``lip gan {train,cs,inpaint,prune}`` to the ``lip`` sub-command parsers."""
    gan = sub.add_parser("gan", help="GAN prior: train, compressive sensing, inpainting, pruning",
                         description=(
        "A progressive GAN as the image prior: train the small face GAN, recover held-out "
        "faces (or your images) from Gaussian measurements or missing pixels, and prune the "
        "generator by IMP. Each command writes images, tables and plots."))
    cmds = gan.add_subparsers(dest="gan_command", required=True, metavar="GAN_COMMAND")

    p = cmds.add_parser("train", help="train the small face GAN", description=(
        "Train a progressive GAN on the 80 training faces (LFW crops bundled with "
        "scikit-image; the 20 others stay held out); write gan.pth (zoo format), samples.png, "
        "a table of losses per scale and losses.png. Default: about 15 min on 2 CPU cores."))
    p.add_argument("--data", choices=("faces", "digits"), default="faces",
                   help="training data: the 80 faces, or scikit-learn's 1,497 training digits "
                   "(8x8, the MNIST-like setting; give --size 8)")
    p.add_argument("--size", type=int, default=32, help="image side: 8, 16, 32 or 64 (32)")
    p.add_argument("--steps-per-scale", type=int, default=800, help="iterations per scale (800)")
    p.add_argument("--fade-steps", type=int, help="fade-in iterations (half a scale)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (1e-3)")
    _common(p, "train")
    p.set_defaults(handler=cmd_train)

    p = cmds.add_parser("cs", help="compressive sensing with the generator prior", description=(
        "Recover images from m noisy Gaussian measurements y = Ax + e (CSGM), for each m; "
        "robust recovery (median of means) against outlier measurements with --robust. "
        "Writes the recovered images, results/summary tables and PSNR/MSE against m. "
        "Paper: --steps 1500 --restarts 5 --noise 0.01 (--outliers 20 --robust)."))
    _prior(p)
    p.add_argument("-m", "--measurements", type=int, nargs="+", default=[50, 100, 200],
                   metavar="M", help="numbers of measurements (50 100 200)")
    p.add_argument("--noise", type=float, default=0.01, help="noise std per measurement (0.01)")
    p.add_argument("--outliers", type=int, default=0,
                   help="corrupted measurement rows added to the m rows (0; paper 20 with "
                   "--robust)")
    p.add_argument("--robust", action="store_true", help="median-of-means objective")
    p.add_argument("--batches", type=int, default=50, help="median-of-means groups (50)")
    p.add_argument("--baselines", nargs="+", default=[], choices=CS_BASELINES,
                   metavar="BASELINE", help="also recover with these on the same A and y: "
                   "least-norm (A^+y, no prior), lasso-dct, lasso-wavelet (the CSGM paper's "
                   "sparsity priors: α by cross-validation, and -oracle rows with α chosen by "
                   "the truth); each needs A in memory")
    p.add_argument("--least-norm", action="store_true", help="same as --baselines least-norm")
    _common(p, "cs")
    p.set_defaults(handler=cmd_cs)

    p = cmds.add_parser("inpaint", help="inpainting with the generator prior", description=(
        "Recover images from a subset of their pixels: random pixels at each --keep ratio "
        "and/or a --mask. Writes observed and recovered images, tables and PSNR/MSE against "
        "the fraction observed."))
    _prior(p)
    p.add_argument("--keep", type=float, nargs="+", metavar="RATIO",
                   help="fractions of pixels kept at random (default 0.2 0.5 0.8 without --mask)")
    p.add_argument("--mask", nargs="+", default=[], metavar="MASK",
                   help="fixed pixel masks: 'block' (centre block missing), 'text', or a file "
                   "of the generator's size (white = observed)")
    _common(p, "inpaint")
    p.set_defaults(handler=cmd_inpaint)

    p = cmds.add_parser("prune", help="IMP on the GAN, magnitude vs random", description=(
        "Iterative magnitude pruning with rewinding on the generator and critic, fine-tuned "
        "with WGAN-GP on the training faces (a GAN from `lip gan train`) or on --train-images; "
        "each round's generator recovers the held-out images by CS (and inpainting). Writes "
        "each round's generator mask, tables and recovery PSNR/MSE against sparsity, magnitude "
        "vs random, dense as the reference. "
        "Paper: --rounds 6 --finetune-steps 200 --steps 1500 --restarts 5."))
    _prior(p, weight_mask=False)
    p.add_argument("--train-images", type=Path, metavar="DIR",
                   help="fine-tune on the images in this folder (all loaded into memory, "
                   "centre-cropped and resized to the generator's side); required unless the "
                   "checkpoint was trained by `lip gan train` on the bundled faces")
    p.add_argument("--rounds", type=int, default=3, help="pruning rounds (3; paper 6)")
    p.add_argument("--rate", type=float, default=0.2, help="fraction pruned per round (0.2)")
    p.add_argument("--methods", nargs="+", choices=("magnitude", "random"),
                   default=["magnitude", "random"], help="pruning methods (both)")
    p.add_argument("--finetune-steps", type=int, default=100,
                   help="WGAN-GP steps per round (100; paper 200)")
    p.add_argument("--finetune-lr", type=float, default=2e-4, help="Adam lr (2e-4, the paper's)")
    p.add_argument("--batch-size", type=int, default=16, help="fine-tuning batch (16)")
    p.add_argument("--eval", nargs="+", choices=("cs", "inpaint"), default=["cs"],
                   help="evaluation tasks (cs)")
    p.add_argument("-m", "--measurements", type=int, default=200,
                   help="measurements for the CS evaluation (200)")
    p.add_argument("--noise", type=float, default=0.01, help="noise std per measurement (0.01)")
    p.add_argument("--keep", type=float, default=0.5,
                   help="fraction of pixels kept for the inpainting evaluation (0.5)")
    p.add_argument("--save-checkpoints", action="store_true",
                   help="also save each round's fine-tuned networks (zoo format)")
    _common(p, "prune")
    p.set_defaults(handler=cmd_prune)


def _default_checkpoint() -> Path:
    """The one ``lip-out/gan/train-*/gan.pth``; a LipError when there is none or several."""
    from lottery_prior.gan.experiments import CHECKPOINT_NAME

    found = sorted(OUT.glob(f"train-*/{CHECKPOINT_NAME}"))
    if not found:
        raise LipError(f"no checkpoint in {OUT}/train-*/: run `lip gan train` first or give "
                       "a checkpoint file with -c")
    if len(found) > 1:
        raise LipError(f"{len(found)} trained GANs in {OUT} ({', '.join(map(str, found))}); "
                       "choose one with -c")
    return found[0]


def _load(args: argparse.Namespace,
          device: torch.device) -> tuple[Generator, Discriminator | None, dict]:
    """The checkpoint's generator and critic (or None), on ``device``, and its config."""
    from lottery_prior.gan import load_checkpoint

    if args.checkpoint is None:
        args.checkpoint = _default_checkpoint()
    g, d, config = load_checkpoint(args.checkpoint, generator=args.generator)
    log.info("%s: %s generator, %d px, %d channel(s), latent %d", args.checkpoint,
             args.generator, g.resolution, g.out_channels, g.latent_dim)
    return g.to(device), None if d is None else d.to(device), config


def _output_folder(args: argparse.Namespace):
    """``lip-out/gan/<command>-HASH``, the checkpoint's and weight mask's contents hashed too."""
    return output_folder(args, args.gan_command, files=("checkpoint", "weight_mask"))


def _images(args: argparse.Namespace, generator: Generator, config: dict) -> NamedImages:
    from lottery_prior.gan import experiments

    if args.images:
        names = [image_stem(s) for s in args.images]
        return experiments.load_images(args.images, generator, names)
    return experiments.held_out_images(generator, config, args.held_out)


def _solver(args: argparse.Namespace) -> Solver:
    from lottery_prior.gan.experiments import Solver

    return Solver(steps=args.steps, restarts=args.restarts, lr=args.lr)


def _recovery(args: argparse.Namespace) -> tuple[Generator, Solver, Mask | None, dict]:
    """The generator on ``--device``, the solver, the ``--weight-mask`` (None without one)
    checked against the generator, and the checkpoint's config."""
    from lottery_prior.masks import Mask

    device = setup_device(args)
    solver = _solver(args)
    mask = None if args.weight_mask is None else Mask.load(args.weight_mask)
    generator, _, config = _load(args, device)
    if mask is not None:
        mask.check(generator)
    return generator, solver, mask, config


def _report(args: argparse.Namespace, results: Results) -> None:
    """Print the summary table and the outputs (``settings.json`` is written first)."""
    from lottery_prior.report.tables import markdown_table

    print(markdown_table(results.summary))
    names = {"settings.json"}
    for path in results.files:
        parts = path.relative_to(args.out).parts
        names.add(parts[0] + ("/" if len(parts) > 1 or path.is_dir() else ""))
    print(f"outputs in {args.out}/: {', '.join(sorted(names))}")


def cmd_train(args: argparse.Namespace) -> None:
    from lottery_prior.gan.experiments import depths_for, train_and_save

    device = setup_device(args)
    depths_for(args.size)
    with _output_folder(args):
        results = train_and_save(args.out, size=args.size,
                                 steps_per_scale=args.steps_per_scale,
                                 fade_steps=args.fade_steps, batch_size=args.batch_size,
                                 lr=args.lr, seed=args.seed, device=device,
                                 progress=not args.quiet, data=args.data)
        _report(args, results)


def cmd_cs(args: argparse.Namespace) -> None:
    from lottery_prior.gan.experiments import cs_experiment

    generator, solver, mask, config = _recovery(args)
    images = _images(args, generator, config)
    with _output_folder(args):
        results = cs_experiment(generator, images, args.measurements, noise=args.noise,
                                outliers=args.outliers, robust=args.robust,
                                batches=args.batches,
                                baselines=[*args.baselines,
                                           *(["least-norm"] if args.least_norm else [])],
                                solver=solver, mask=mask, seed=args.seed, out=args.out,
                                progress=not args.quiet)
        _report(args, results)


def cmd_inpaint(args: argparse.Namespace) -> None:
    from lottery_prior.gan.experiments import inpaint_experiment, pixel_mask

    generator, solver, mask, config = _recovery(args)
    keep = args.keep if args.keep is not None else [] if args.mask else [0.2, 0.5, 0.8]
    side = generator.resolution
    masks = {spec if spec in ("block", "text") else image_stem(spec): pixel_mask(spec, side)
             for spec in args.mask}
    images = _images(args, generator, config)
    with _output_folder(args):
        results = inpaint_experiment(generator, images, keep=keep, pixel_masks=masks,
                                     solver=solver, mask=mask, seed=args.seed, out=args.out,
                                     progress=not args.quiet)
        _report(args, results)


def cmd_prune(args: argparse.Namespace) -> None:
    from lottery_prior.gan.experiments import (
        load_image_folder,
        prune_experiment,
        trained_on_faces,
        training_faces,
    )

    device = setup_device(args)
    solver = _solver(args)
    generator, discriminator, config = _load(args, device)
    if discriminator is None:
        raise LipError(f"{args.checkpoint} has no critic (netD), which fine-tuning needs")
    if args.train_images is not None:
        train_images = load_image_folder(args.train_images, generator)
    elif trained_on_faces(config):
        train_images = training_faces(generator)
    else:
        raise LipError(f"{args.checkpoint} does not record training on the bundled faces (a "
                       "`lip gan train` checkpoint does); give --train-images DIR, a folder of "
                       "images like those it was trained on, to fine-tune with")
    images = _images(args, generator, config)
    with _output_folder(args):
        results = prune_experiment(
            generator, discriminator, train_images, images,
            rounds=args.rounds, rate=args.rate, methods=args.methods,
            finetune_steps=args.finetune_steps, finetune_lr=args.finetune_lr,
            batch_size=args.batch_size,
            measurements=args.measurements if "cs" in args.eval else None, noise=args.noise,
            keep=args.keep if "inpaint" in args.eval else None, solver=solver, seed=args.seed,
            out=args.out, save_checkpoints=args.save_checkpoints, progress=not args.quiet)
        _report(args, results)

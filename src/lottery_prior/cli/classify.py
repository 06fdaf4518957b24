"""``lip classify``: classification tickets versus image-prior tickets (find, eval, compare).

Thin wrappers around :mod:`lottery_prior.classify`: parse, check every input, run, print the
table and where the tables and plots went. ``find`` runs IMP on the hourglass classifier in a
resumable run folder (``lip-out/classify/runs/cls-imp-HASH``); ``eval`` retrains a
classification ticket (and baselines); ``compare`` measures the overlap of a classification
ticket with an image-prior ticket from ``lip find`` against chance and, with ``--images``, fits
the classification mask as an image prior beside the image-prior ticket and random masks.
Output folders of eval and compare are named by a hash of their settings, as elsewhere.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from lottery_prior.cli.args import (
    add_optim_args,
    add_run_args,
    add_task_args,
    fit_config_from_args,
    imp_config_from_args,
    named_problems_from_args,
    output_folder,
    parse_option,
    progress_from_args,
    setup_device,
)
from lottery_prior.errors import LipError

log = logging.getLogger("lottery_prior")

OUT = Path("lip-out/classify")
DEFAULT_MODEL = {"scales": 4}  # the paper's width 128; 4 scales so that 32 px images fit


def _data_args(p: argparse.ArgumentParser, *, size_default: int | None = 32) -> None:
    g = p.add_argument_group("data (offline)")
    g.add_argument("--dataset", choices=("auto", "digits", "cifar10", "folder"), default="auto",
                   help="auto (default): scikit-learn's bundled digits without --data; with "
                   "--data, CIFAR-10 if DIR holds its python batches, else a folder of class "
                   "sub-folders")
    g.add_argument("--data", type=Path, metavar="DIR",
                   help="CIFAR-10 python batches (data_batch_1..5, test_batch) or an "
                   "ImageFolder tree (DIR/<class>/*.png, or DIR/train/<class>/ and "
                   "DIR/test/<class>/)")
    g.add_argument("--size", type=int, default=size_default,
                   help="image side in pixels (32" + ("" if size_default else
                                                      "; default: the ticket's") + ")")
    g.add_argument("--train-limit", type=int, metavar="N", help="use the first N training "
                   "images of the fixed split")
    g.add_argument("--test-limit", type=int, metavar="N", help="use the first N test images")


def _train_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("training (SGD on cross-entropy; the paper's optimiser)")
    g.add_argument("--epochs", type=int, default=10, help="epochs per round (10; paper 182)")
    g.add_argument("--batch-size", type=int, default=64, help="mini-batch size (64)")
    g.add_argument("--lr", type=float, default=0.01, help="SGD learning rate (0.01)")
    g.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (0.9)")
    g.add_argument("--weight-decay", type=float, default=2e-4, help="weight decay (2e-4)")


def _imp_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("IMP (the image prior's: global magnitude over the conv weights)")
    g.add_argument("--rounds", type=int, default=5, help="pruning rounds (5)")
    g.add_argument("--rate", type=float, default=0.2, help="fraction pruned per round (0.2)")
    g.add_argument("--target-sparsity", type=float, help="stop once this sparsity is reached")
    g.add_argument("--layerwise", action="store_true", help="prune each layer by the rate")
    g.add_argument("--rewind-step", type=int, default=0,
                   help="rewind to the dense run's weights after this many SGD steps "
                   "(0: the init theta0)")
    g.add_argument("--keep-dense", action="append", default=[], metavar="GLOB",
                   help="conv weights never pruned, repeatable (e.g. 'body.skip.*')")


def _common(p: argparse.ArgumentParser) -> None:
    add_run_args(p, "seed (0): init, data order, random masks each have their own stream")


def add_classify(sub: argparse._SubParsersAction) -> None:
    """Add ``lip classify {find,eval,compare}`` to the ``lip`` sub-command parsers."""
    top = sub.add_parser("classify", help="classification tickets vs image-prior tickets",
                         description=(
        "The paper's last DIP experiment: the hourglass as an image classifier (the image in "
        "place of z, its last feature map average-pooled into a linear layer), pruned by IMP "
        "with rewinding; its tickets compared with image-prior tickets (overlap of kept "
        "weights against chance) and used as image priors."))
    cmds = top.add_subparsers(dest="classify_command", required=True,
                              metavar="CLASSIFY_COMMAND")

    p = cmds.add_parser("find", help="IMP on the hourglass classifier", description=(
        "Iterative magnitude pruning with rewinding on the classifier (global magnitude over "
        "the conv weights, --rate a round); writes a ticket per round, a table of test "
        "accuracy against counted sparsity and its plot. Resumable: rerun the same command "
        "after an interruption and it continues from the last finished round. Default data: "
        "scikit-learn's digits upsampled to 32x32 (no download)."))
    _data_args(p)
    p.add_argument("--model-opt", metavar="KEY=VALUE", type=parse_option, action="append",
                   default=[], help="hourglass option, repeatable: width=32, scales=3, skip=4 "
                   "(default: width 128, 4 scales, skip 4; give the image prior the same)")
    _train_args(p)
    _imp_args(p)
    _common(p)
    p.add_argument("--out", type=Path, default=OUT / "runs",
                   help="runs folder; the run gets a sub-folder named by its settings' hash")
    p.set_defaults(handler=cmd_find)

    p = cmds.add_parser("eval", help="retrain a classification ticket (and baselines)",
                        description=(
        "Retrain a classification TICKET from its rewind weights on a data set (default: "
        "digits), beside random masks at its counted sparsity (global or with its per-layer "
        "ratios) and the dense network; test accuracy per method (mean ± std over seeds) "
        "and a plot per epoch."))
    p.add_argument("ticket", type=Path, help="classification ticket (round-NN/ticket.safetensors)")
    _data_args(p, size_default=None)
    _train_args(p)
    p.add_argument("--methods", nargs="+", default=["ticket", "random-layerwise"],
                   metavar="METHOD", help="ticket random-layerwise random dense "
                   "(default: ticket random-layerwise)")
    p.add_argument("--seeds", type=int, nargs="+", help="repeat with these seeds "
                   "(default: --seed)")
    _common(p)
    p.add_argument("--out", type=Path, help="output folder (default: "
                   "lip-out/classify/eval-HASH)")
    p.set_defaults(handler=cmd_eval)

    p = cmds.add_parser("compare", help="classification ticket vs image-prior ticket",
                        description=(
        "Overlap of kept weights (IoU per layer and global) between a classification ticket "
        "and an image-prior ticket (lip find) at the same sparsity, beside the exact IoU of "
        "independent random masks with the same per-layer counts. With --images, also "
        "cross-use: the classification mask on the image prior (the prior ticket's theta0 "
        "and z), fitted on each image x task next to the image-prior ticket and a layer-wise "
        "random mask, for each seed; labelled PSNRs (averaged output after the last step; "
        "peaks are oracles)."))
    p.add_argument("classifier", type=Path, help="classification ticket file, or a "
                   "classification IMP run folder (its round closest to the prior ticket's "
                   "sparsity is used)")
    p.add_argument("prior", type=Path, help="image-prior ticket file from lip find")
    p.add_argument("--input-layers", choices=("omit", "shared"), default="omit",
                   help="the convs reading the input (3 image vs 32 z channels): left out of "
                   "the overlap (default) or compared on the first 3 input channels")
    p.add_argument("--images", nargs="+", metavar="IMAGE",
                   help="cross-use: fit the priors on these images (files, builtin:, data:)")
    p.add_argument("--tasks", nargs="+", default=["denoise"], help="tasks (default: denoise)")
    add_task_args(p)
    add_optim_args(p)
    p.add_argument("--seeds", type=int, nargs="+", help="cross-use seeds (random masks and "
                   "input perturbation; default: 0 1 2)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    p.add_argument("--out", type=Path, help="output folder (default: "
                   "lip-out/classify/compare-HASH)")
    p.set_defaults(handler=cmd_compare)


def _data(args: argparse.Namespace, size: int):
    from lottery_prior.classify.data import load_dataset

    return load_dataset(args.dataset, args.data, size=size, train_limit=args.train_limit,
                        test_limit=args.test_limit)


def _train_config(args: argparse.Namespace, seed: int | None = None):
    from lottery_prior.classify.train import TrainConfig

    return TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                       momentum=args.momentum, weight_decay=args.weight_decay,
                       seed=args.seed if seed is None else seed, device=args.device)


def cmd_find(args: argparse.Namespace) -> None:
    from lottery_prior.classify.imp import ClassifierImpRun
    from lottery_prior.classify.report import write_accuracy_report
    from lottery_prior.output_folder import check_writable

    setup_device(args)
    config = _train_config(args)
    imp = imp_config_from_args(args)
    check_writable(args.out)
    data = _data(args, args.size)
    run = ClassifierImpRun(data, DEFAULT_MODEL | dict(args.model_opt), config, imp,
                           root=args.out)
    log.info("%s: %d train, %d test images, %d classes; IMP run folder %s (%d rounds, "
             "%d epochs each)", data.name, len(data.train_y), len(data.test_y),
             len(data.classes), run.folder, imp.n_rounds, config.epochs)
    records = run.run(progress_from_args(args))
    print(write_accuracy_report(records, run.folder,
                                title=f"classification IMP · {data.name}"))
    print(f"tickets, records, accuracy table and plot in {run.folder}/")


def cmd_eval(args: argparse.Namespace) -> None:
    from lottery_prior.classify.evaluate import METHODS, check_data, retrain_methods
    from lottery_prior.classify.model import check_image_size
    from lottery_prior.classify.report import write_eval
    from lottery_prior.classify.ticket import ClassifierTicket

    setup_device(args)
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown:
        raise LipError(f"unknown method {unknown[0]!r}; choose from {', '.join(METHODS)}")
    ticket = ClassifierTicket.load(args.ticket)
    size = args.size or int(ticket.meta.get("data", {}).get("size", 32))
    config = _train_config(args)
    data = _data(args, size)
    check_data(ticket, data)
    check_image_size(ticket.build(), data.size)
    with output_folder(args, "eval", files=("ticket",)) as out:
        rows, curves = retrain_methods(ticket, data, config, args.methods,
                                       args.seeds or [args.seed],
                                       progress=progress_from_args(args))
        print(write_eval(rows, curves, out, title=f"{args.ticket} · {data.name}"))
    print(f"tables and plot in {out}/")


def _classification_ticket(path: Path, sparsity: float):
    """The ticket at ``path``, or the round of the run folder ``path`` closest to
    ``sparsity``; returns the ticket file and the ticket."""
    import json

    from lottery_prior.classify.ticket import ClassifierTicket
    from lottery_prior.lottery import closest_round

    if path.is_dir():
        records = []
        for record_file in sorted(path.glob("round-*/record.json")):
            try:
                records.append(json.loads(record_file.read_text()))
            except (OSError, ValueError):
                continue
        if not records:
            raise LipError(f"{path} holds no finished round of a classification IMP run "
                           "(round-NN/record.json); give a run folder of lip classify find "
                           "or a ticket file")
        chosen = closest_round(records, sparsity)
        path = path / f"round-{int(chosen['round']):02d}" / "ticket.safetensors"
    return path, ClassifierTicket.load(path)


def cmd_compare(args: argparse.Namespace) -> None:
    from lottery_prior.classify.crossuse import classification_mask_for_prior, cross_use
    from lottery_prior.classify.overlap import overlap_rows, same_init_layers, shared_layers
    from lottery_prior.classify.report import write_cross_use, write_overlap
    from lottery_prior.compare import check_transfer
    from lottery_prior.tickets import Ticket

    setup_device(args)
    prior = Ticket.load(args.prior)
    args.classifier, ticket = _classification_ticket(args.classifier, prior.sparsity)
    _, left_out = shared_layers(ticket.mask, prior.mask, args.input_layers)
    problems = named_problems_from_args(args, args.images or [])
    check_transfer([("prior ticket", prior)], problems)
    classification_mask_for_prior(ticket.mask, prior, args.seed)  # checks shapes early
    seeds = args.seeds or [0, 1, 2]
    log.info("classification ticket %s (sparsity %.2f%%) vs image-prior ticket %s "
             "(sparsity %.2f%%)", args.classifier, 100 * ticket.sparsity, args.prior,
             100 * prior.sparsity)
    with output_folder(args, "compare", files=("classifier", "prior")) as out:
        pairs, _ = shared_layers(ticket.mask, prior.mask, args.input_layers)
        same = same_init_layers(ticket.rewind_weights, prior.rewind_weights, list(pairs))
        rows = overlap_rows(ticket.mask, prior.mask, args.input_layers, same_init=same)
        print(write_overlap(rows, out, title=f"classification vs image-prior ticket "
                            f"({100 * ticket.sparsity:.1f}% / {100 * prior.sparsity:.1f}%)"))
        for name, why in left_out.items():
            print(f"{name}: {why}")
        if same:
            print(f"note: {len(same)} of the {len(pairs)} compared layers start from the same "
                  "theta0 in both tickets (the same seed): their overlap above chance may "
                  "come from the shared init; a classification ticket of another --seed "
                  "separates the two")
        g = rows[-1]
        print(f"global IoU {g['iou']:.4f}; chance (independent random masks, same per-layer "
              f"counts, exact) {g['chance_iou']:.4f} ± {g['chance_iou_std']:.4f}")
        if problems:
            configs = {p.task: fit_config_from_args(args, p.task) for _, p in problems}
            rows = []
            for name, problem in problems:
                rows += cross_use(ticket.mask, prior, [(name, problem)],
                                  configs[problem.task], seeds,
                                  progress=progress_from_args(args))
            print(write_cross_use(rows, out, title="classification ticket as an image prior"))
    print(f"tables and plots in {out}/")

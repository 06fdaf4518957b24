"""``lip find``, ``compare``, ``transfer`` and ``demo``: find tickets (IMP or a learned mask),
compare them with baselines, retrain them on other images and tasks."""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path

from lottery_prior.cli.args import (
    SEARCH_STOPS,
    add_fit_args,
    add_imp_args,
    add_learn_args,
    add_optim_args,
    add_problem_args,
    add_score_at,
    add_task_args,
    fit_config_from_args,
    image_task_folder,
    imp_run_from_args,
    learn_config_from_args,
    named_problems_from_args,
    output_folder,
    problem_from_args,
    progress_from_args,
    search_stop_from_args,
)
from lottery_prior.compare import DEFAULT_CHANNEL_METHODS, DEFAULT_METHODS
from lottery_prior.errors import LipError
from lottery_prior.finders import REGISTRY, finder_names
from lottery_prior.precision import PRECISIONS

log = logging.getLogger("lottery_prior")


def add_find(sub: argparse._SubParsersAction) -> None:
    """Add ``lip find``."""
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
    p.add_argument("--finder", choices=search_finders(), default="imp",
                   help="IMP with rewinding (default) or a mask learned at initialisation")
    add_imp_args(p)
    add_learn_args(p)
    p.add_argument("--stop", choices=SEARCH_STOPS, default="none",
                   help="also report each round at the automatic stop (no oracle): auto, "
                   "discrepancy or wmv (default: none)")
    p.add_argument("--out", type=Path, default=Path("lip-out/runs"),
                   help="runs folder; the run gets a sub-folder named by its settings' hash")
    p.set_defaults(handler=cmd_find)


def add_compare(sub: argparse._SubParsersAction) -> None:
    """Add ``lip compare``."""
    p = sub.add_parser("compare", help="ticket vs random, pruning at init, Deep Decoder, dense",
                       description=(
        "Find a ticket (IMP, resumable) at the requested sparsity and fit the baselines at the "
        "same counted sparsity on the same image; one table and one plot."))
    add_problem_args(p)
    add_fit_args(p)
    add_imp_args(p)
    add_learn_args(p)
    add_score_at(p)
    p.add_argument("--sparsity", type=float, required=True, help="sparsity to compare at")
    p.add_argument("--stop", choices=SEARCH_STOPS, default="none",
                   help="also report every method at the automatic stop (no oracle): auto, "
                   "discrepancy or wmv")
    p.add_argument("--methods", nargs="+", default=None, metavar="METHOD",
                   help=f"{' '.join(finder_names(structure='weights'))}, and with --structured "
                   f"channels {' '.join(channel_only())} (default: "
                   f"{' '.join(DEFAULT_METHODS)}; channels: "
                   f"{' '.join(DEFAULT_CHANNEL_METHODS)})")
    p.add_argument("--seeds", type=int, nargs="+", help="repeat with these seeds (default: --seed)")
    p.add_argument("--out", type=Path, help="output folder; IMP runs go in its runs/ "
                   "(default: lip-out/compare/<image>-<task>-<settings hash>)")
    p.set_defaults(handler=cmd_compare)


def add_transfer(sub: argparse._SubParsersAction) -> None:
    """Add ``lip transfer``."""
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


def add_demo(sub: argparse._SubParsersAction) -> None:
    """Add ``lip demo``."""
    p = sub.add_parser("demo", help="the whole method in miniature on a built-in image",
                       description=(
        "IMP on a 64x64 built-in image with a narrow network, then the ticket against random "
        "pruning, a Deep Decoder of equal size and the dense network: a table and a plot."))
    p.add_argument("--out", type=Path, default=Path("lip-out/demo"), help="output folder")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="auto (default: the fastest here, measured), fp32, fp32-cl, bf16, fp16")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=cmd_demo)


def channel_only() -> list[str]:
    """The methods matched to channel tickets alone, from the registry."""
    return [n for n in finder_names(structure="channels") if REGISTRY[n].structure == "channels"]


def search_finders() -> list[str]:
    """The finders that search on their own (``lip find --finder``), from the registry."""
    return [c.search_name for c in REGISTRY.values() if c.search_name]


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
    run = imp_run_from_args(args, problem, args.seed, args.out, others)
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
    run = LearnedRun(problem, args.model, dict(args.model_opt),
                     fit_config_from_args(args, problem.task), learn, root=args.out,
                     **search_stop_from_args(args))
    log.info("learned-mask run folder: %s (%d learning steps)", run.folder, learn.n_steps)
    record = run.run(progress_from_args(args))
    table = [{"method": "learned", "sparsity": round(record["sparsity"], 4),
              "parameters": record["parameters"], **score_columns(record["scores"]),
              "seconds": record["seconds"], "find_seconds": record["find_seconds"]}]
    write_table(table, run.folder / "results")
    print(markdown_table(table))
    print(f"ticket, record and table in {run.folder}/")


def cmd_compare(args: argparse.Namespace) -> None:
    from lottery_prior.compare import check_comparison, compare_methods
    from lottery_prior.finders import FinderOptions
    from lottery_prior.finders.classical import Restored
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
    with image_task_folder(args) as out:
        runs = [imp_run_from_args(args, problem, seed, out / "runs")
                for seed in args.seeds or [args.seed]]
        rows = []
        for i, run in enumerate(runs):
            seed = run.fit_config.seed
            log.info("seed %d: IMP run folder %s", seed, run.folder)
            options = FinderOptions(learn=learn_config_from_args(args, args.sparsity))
            # a classical method has no network seed: it restores the observation once
            wanted = [m for m in methods if i == 0 or not REGISTRY[m].classical]
            for fitted in compare_methods(run, args.sparsity, wanted, options=options,
                                          progress=progress_from_args(args)):
                if isinstance(fitted, Restored):
                    rows.append({"seed": None, "noise_seed": args.noise_seed, **fitted.row()})
                    continue
                rows += [{"seed": seed, "noise_seed": args.noise_seed, **scored.row()}
                         | ({"step": step} if fitted.milestones else {})
                         for step, scored in fitted.by_milestone()]
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
    problems = named_problems_from_args(args, args.images)
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


DEMO = [
    "builtin:astronaut", "--task", "denoise", "--sigma", "25", "--size", "64",
    "--model-opt", "width=32", "--steps", "1000", "--search-steps", "100",
    "--sparsity", "0.67",
    "--methods", "ticket", "random", "random-layerwise", "decoder", "dense",
]
# Steps the demo fits, counted as steps of its hourglass: 5 searching rounds of 100 and the
# ticket's 1000, then 1000 each for random, layer-wise random, the (cheaper) Deep Decoder and
# the dense network (round 0 was a search: refitted in full).
DEMO_STEPS = 5 * 100 + 1000 + 4 * 1000


DEMO_BANNER = """\
demo: lottery image priors in miniature (about {minutes} on this machine: {precision}, {ms:.0f} ms
  per step measured on {device})
  denoise a 64x64 astronaut (sigma 25) with a 32-wide skip hourglass, 1000 steps per fit
  (about where the PSNR peaks); IMP with rewinding to 67% sparsity (5 rounds searched with
  100-step fits, as good as full rounds within seed noise; the ticket and every baseline get
  all 1000 steps), then random pruning at the same sparsity (global and with the ticket's
  layer-wise ratios), a Deep Decoder of the same size, and the dense network. One seed:
  differences of a few tenths of a dB are within seed noise.
"""


def cmd_demo(args: argparse.Namespace) -> None:
    """The whole method in miniature: IMP on a built-in image, then ticket vs baselines;
    the banner says how long it should take here, from the measured step time."""
    from lottery_prior.fit import FitConfig, select_device
    from lottery_prior.precision import device_name, step_ms
    from lottery_prior.problem import build_prior, make_problem, resolved

    parser = argparse.ArgumentParser(prog="lip")
    add_compare(parser.add_subparsers(dest="command"))
    command = [*DEMO, "--precision", args.precision]
    demo = parser.parse_args(["compare", *command, "--out", str(args.out),
                              *(["--quiet"] if args.quiet else [])])
    problem = make_problem("builtin:astronaut", "denoise", size=64)
    config = resolved(FitConfig(precision=args.precision), "dip", {"width": 32}, problem)
    model, z = build_prior("dip", {"width": 32}, problem)
    device = select_device(None)
    ms = step_ms(model.to(device), z.to(device), config.precision)
    seconds = 1.25 * DEMO_STEPS * ms / 1000  # with what else it does: building, tables, plots
    minutes = f"{math.ceil(seconds / 60)} minutes" if seconds > 90 else f"{seconds:.0f} s"
    print(DEMO_BANNER.format(minutes=minutes, precision=config.precision, ms=ms,
                             device=device_name(device))
          + f"  equivalent command: lip compare {' '.join(command)}")
    cmd_compare(demo)

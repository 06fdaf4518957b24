"""``lip sweep`` and ``lip report``: run an experiment spec's grid, report its results."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from lottery_prior.errors import LipError

log = logging.getLogger("lottery_prior")


def add_sweep(sub: argparse._SubParsersAction) -> None:
    """Add ``lip sweep``."""
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


def add_report(sub: argparse._SubParsersAction) -> None:
    """Add ``lip report``."""
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
    p.add_argument("--at", type=int, metavar="STEP",
                   help="report the scores at this milestone of the fits ([fit] score_at); "
                   "default: after each fit's last step")
    p.set_defaults(handler=cmd_report)


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

    paths = write_report(args.results, args.out, delta=args.delta, at=args.at)
    print(f"report: {paths['html']} (self-contained) and {paths['markdown']}")



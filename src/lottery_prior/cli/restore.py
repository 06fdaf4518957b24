"""``lip fit`` and ``lip eval``: fit one prior (dense, or a ticket retrained) to one image and
report its scores."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from lottery_prior.cli.args import (
    add_fit_args,
    add_optim_args,
    add_problem_args,
    add_score_at,
    add_stop_args,
    fit_config_from_args,
    image_task_folder,
    problem_from_args,
    stop_from_args,
)

log = logging.getLogger("lottery_prior")


def add_fit(sub: argparse._SubParsersAction) -> None:
    """Add ``lip fit``."""
    p = sub.add_parser("fit", help="fit a deep image prior to one image", description=(
        "Simulate the task's observation from IMAGE (or read it with --observed), fit the "
        "prior, and write restored.png, observation.png, metrics.json and a PSNR plot."))
    add_problem_args(p)
    add_fit_args(p)
    add_stop_args(p)
    add_score_at(p)
    p.add_argument("--out", type=Path,
                   help="output folder (default: lip-out/fit/<image>-<task>-<settings hash>)")
    p.set_defaults(handler=cmd_fit)


def add_eval(sub: argparse._SubParsersAction) -> None:
    """Add ``lip eval``."""
    p = sub.add_parser("eval", help="retrain a ticket on any image and task", description=(
        "Retrain TICKET (mask, rewind weights, z) on IMAGE for a task; writes what `lip fit` "
        "writes."))
    p.add_argument("ticket", type=Path, help="ticket file (ticket.safetensors)")
    add_problem_args(p)
    add_optim_args(p)
    add_stop_args(p)
    add_score_at(p)
    p.add_argument("--out", type=Path, help="output folder (default: "
                   "lip-out/eval/<image>-<task>-<settings hash>)")
    p.set_defaults(handler=cmd_eval)


def add_classical(sub: argparse._SubParsersAction) -> None:
    """Add ``lip classical``."""
    from lottery_prior.finders.classical import classical_names

    p = sub.add_parser("classical", help="restore one image with a classical method (BM3D, "
                       "biharmonic, bicubic, ...)", description=(
        "Simulate the task's observation from IMAGE (or read it with --observed) and restore "
        "it with a classical method, the baseline a user would otherwise run: writes "
        "restored.png, observation.png and metrics.json (scores when the truth is known, "
        "seconds, the library and its version). With --observed, a *-blind denoiser "
        "estimates σ from the photo."))
    add_problem_args(p)
    p.add_argument("--method", required=True, choices=classical_names(), metavar="METHOD",
                   help=" | ".join(classical_names()))
    p.add_argument("--out", type=Path, help="output folder (default: "
                   "lip-out/classical/<image>-<task>-<settings hash>)")
    p.set_defaults(handler=cmd_classical)


def cmd_classical(args: argparse.Namespace) -> None:
    from lottery_prior.files import write_json
    from lottery_prior.finders.classical import restore_classical
    from lottery_prior.images import save_image

    with image_task_folder(args) as out:
        problem = problem_from_args(args)
        restored = restore_classical(problem, args.method)
        save_image(restored.output, out / "restored.png")
        save_image(problem.observation, out / "observation.png")
        write_json(out / "metrics.json", {
            "method": restored.method, "library": restored.library,
            "settings": restored.settings, "seconds": round(restored.seconds, 3),
            "problem": problem.describe(), "metric": problem.metric_name,
            "scores": restored.scores})
        print(f"{restored.label} ({restored.library}) in {restored.seconds:.2f} s"
              + "".join(f", {k} {v:g}" for k, v in restored.settings.items()
                        if isinstance(v, float)))
        if problem.clean is not None:
            print(f"{problem.metric_name}, its one output: "
                  f"{restored.scores['averaged']['psnr']:6.2f} dB (no oracle, no stop)")
        print(f"outputs in {out}/: restored.png, observation.png, metrics.json")


def fit_and_report(args: argparse.Namespace, out: Path, problem, model, z, mask=None,
                   config=None, provenance: dict | None = None) -> dict:
    """Fit a prior (dense or masked) to a problem, print its scores, write its outputs."""
    from lottery_prior.fit import fit
    from lottery_prior.progress import ProgressBar
    from lottery_prior.report.outputs import write_fit_outputs
    from lottery_prior.scores import format_scores
    from lottery_prior.tickets import parameter_count

    config = config or fit_config_from_args(args, problem.task)
    stop = stop_from_args(args, problem)
    n_params = parameter_count(model, mask)
    log.info(
        "%s %s, %s: %s with %s parameters%s, %d steps%s", problem.image,
        "x".join(map(str, problem.shape[1:])), problem.task, model.spec["name"],
        f"{n_params:,}", f" (sparsity {mask.sparsity:.1%})" if mask is not None else "",
        config.steps, f", precision {config.precision}",
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
    ms = 1000 * result.seconds / result.steps
    print(f"ran in {result.precision} on {result.device}: {ms:.0f} ms per step")
    print_scores(result.scores, problem.metric_name)
    for step, scores in result.milestones.items():
        if step < result.steps:
            print(f"at step {step}: {format_scores(scores)}")
    if "stopped" in result.scores:
        s = result.scores["stopped"]
        state = (f"fired at step {s['stop_step']}" if s["fired"]
                 else "did not fire; its best output so far is kept")
        gaps = ""
        if "peak" in result.scores:
            peaks = result.scores["peak"]["psnr"], result.scores["peak_averaged"]["psnr"]
            gaps = (f", {s['psnr']:.2f} dB: {s['psnr'] - peaks[0]:+.2f} dB from the iterate's "
                    f"peak, {s['psnr'] - peaks[1]:+.2f} from the averaged output's peak")
        rule = (s.get("rule") or {}).get("rule", stop.__class__.__name__)
        print(f"automatic stop ({rule}, keeps the {s['kept']}; no ground "
              f"truth) {state}: kept step {s['step']}{gaps}")
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
    with image_task_folder(args) as out:
        problem = problem_from_args(args)
        model, z = build_prior(args.model, dict(args.model_opt), problem, seed=args.seed)
        fit_and_report(args, out, problem, model, z, config=config)


def cmd_eval(args: argparse.Namespace) -> None:
    from lottery_prior.lottery import ticket_input
    from lottery_prior.runs import file_sha256
    from lottery_prior.tickets import Ticket

    ticket = Ticket.load(args.ticket)
    config = fit_config_from_args(args, args.task, ticket.model_spec["name"])
    with image_task_folder(args, ["ticket"]) as out:
        problem = problem_from_args(args)
        model, mask, z, redrawn = ticket_input(ticket, problem, args.seed)
        provenance = {"ticket": {"path": str(args.ticket), "sha256": file_sha256(args.ticket),
                                 "run": ticket.meta.get("run"), "round": ticket.meta.get("round"),
                                 "z": f"redrawn for this size (seed {args.seed})" if redrawn
                                 else "the ticket's own"}}
        fit_and_report(args, out, problem, model, z, mask=mask, config=config,
                       provenance=provenance)



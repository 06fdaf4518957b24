"""Tickets against baselines at matched sparsity, and tickets transferred to other problems.

Every method is fitted with the same settings (steps, learning rate, input noise, seed) on
the same observation and scored with the same metric; sparsity is counted from the masks.

* ``ticket``: the IMP round closest to the requested sparsity (its own fit on this image);
* ``random``: uniform random pruning of all prunable weights at the ticket's sparsity;
* ``random-layerwise``: random pruning with the ticket's per-layer ratios;
* ``magnitude``, ``snip``, ``grasp``, ``synflow``: pruning at initialization (theta0);
* ``learned``: a mask learned at theta0 on this observation (:mod:`lottery_prior.learned`),
  at the ticket's counted sparsity;
* with a channel ticket (``ImpConfig(structure="channels")``), whose fit is the compact
  network's: ``random-channels``, random channels with the ticket's count in every layer;
  ``narrow``, the uniformly narrower hourglass whose step has the FLOPs closest to the
  ticket's, from its own theta0; ``unstructured``, the weight-level IMP ticket with the same
  parameter count (as many rounds as the channel ticket's, at the rate that gets there);
* ``decoder``: the Deep Decoder whose parameter count is closest to the ticket's, fitted with
  the model's own fit defaults (as its authors do, without input perturbation: with it, its
  small 1/32-scale code is swamped), the same steps as the others;
* ``dense``: the unpruned network (IMP round 0).

A round that was cut short while searching (``search_steps``, early bird) is fitted again in
full for its row, so every method gets the same number of steps. With a stopping rule, every
fit still runs all its steps (the truth is known) and the stop is recorded beside the others.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import torch

from lottery_prior.channels import channel_mask, kept_channels, random_channels
from lottery_prior.cost import step_flops
from lottery_prior.errors import LipError
from lottery_prior.fit import Callback, FitConfig, StoppingRule, fit
from lottery_prior.images import save_image
from lottery_prior.learned import LearnConfig, LearnedRun
from lottery_prior.lottery import (
    AVERAGED_PNG,
    ImpRun,
    evaluate_ticket,
    ticket_input,
    ticket_model_for,
)
from lottery_prior.masks import Mask
from lottery_prior.models import create_model, decoder_width_for_params, model_fit_defaults
from lottery_prior.problem import Problem, build_prior
from lottery_prior.pruning import dip_loss_fn, prune_at_init, random_mask
from lottery_prior.report.tables import score_columns
from lottery_prior.seeding import generator
from lottery_prior.tickets import Ticket, parameter_count

METHODS = ("ticket", "learned", "random", "random-layerwise", "magnitude", "snip", "grasp",
           "synflow", "decoder", "dense", "random-channels", "narrow", "unstructured")
CHANNEL_METHODS = ("random-channels", "narrow", "unstructured")
DEFAULT_METHODS = ("ticket", "random", "random-layerwise", "decoder", "dense")
DEFAULT_CHANNEL_METHODS = ("ticket", "random-channels", "narrow", "unstructured", "dense")

Progress = Callable[[str], Sequence[Callback]]


def closest_round(records: list[dict], sparsity: float) -> dict:
    """The IMP round whose counted sparsity is nearest the requested one."""
    return min(records[1:] or records, key=lambda r: abs(r["sparsity"] - sparsity))


def check_comparison(problem: Problem, sparsity: float, methods: Sequence[str],
                     structure: str = "weights") -> None:
    """Refuse a comparison that cannot be made, before any work: unknown methods, channel
    baselines without a channel ticket, a sparsity outside (0, 1), or no ground truth to
    score the methods against."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise LipError(f"unknown method {unknown[0]!r}; choose from {', '.join(METHODS)}")
    channel_only = [m for m in methods if m in CHANNEL_METHODS]
    if channel_only and structure != "channels":
        raise LipError(f"method {channel_only[0]!r} is a baseline of channel tickets; add "
                       "--structured channels")
    if structure == "channels" and "learned" in methods:
        raise LipError("the learned method learns weight masks; drop it with --structured "
                       "channels")
    if not 0 < sparsity < 1:
        raise LipError(f"sparsity must be in (0, 1), got {sparsity}")
    if problem.clean is None:
        raise LipError("a comparison scores every method against the clean image, which an "
                       "observed image lacks; drop --observed, or use lip find and lip eval")


def compare_methods(
    run: ImpRun,
    sparsity: float,
    methods: Sequence[str] = DEFAULT_METHODS,
    *,
    progress: Progress | None = None,
    learn: LearnConfig | None = None,
) -> list[dict]:
    """Run (or resume) IMP far enough, then fit every method; one row per method."""
    check_comparison(run.problem, sparsity, methods, run.imp.structure)
    run.records or run.run(progress)
    return [fit_method(run, method, sparsity, progress=progress, learn=learn)
            for method in methods]


def fit_method(run: ImpRun, method: str, sparsity: float, *, progress: Progress | None = None,
               output: Path | None = None, learn: LearnConfig | None = None) -> dict:
    """One method's row at the IMP round closest to ``sparsity`` (the run must have reached
    it); ``output``: where to write the PNG of its averaged output after the last step;
    ``learn``: settings of the ``learned`` method (its target is the round's sparsity)."""
    if method not in METHODS:
        raise LipError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    records = run.records or run.run(progress)
    chosen = closest_round(records, sparsity)
    problem, config = run.problem, run.fit_config
    found = None  # seconds the finder took (IMP's search for the ticket)
    flops = None  # FLOPs of a step, counted for the rows of a channel comparison
    if method in ("ticket", "dense"):
        record = chosen if method == "ticket" else records[0]
        found = search_seconds(records, record["round"]) if method == "ticket" else None
        saved = run.round_dir(record["round"]) / AVERAGED_PNG
        if run.fitted_in_full(record["round"]) and (output is None or saved.is_file()):
            if output is not None:
                shutil.copyfile(saved, output)
            return row(method, record["sparsity"], record["parameters"], record["scores"],
                       record["seconds"], find_seconds=found, steps=record["steps"],
                       flops=record.get("flops"))
        ticket = run.ticket(record["round"])
        result = evaluate_ticket(ticket, problem, config, stop=_stop(run),
                                 callbacks=_bar(progress, method))
        sparsity_, parameters, flops = record["sparsity"], record["parameters"], \
            record.get("flops")
    elif method == "learned":
        learned = learned_run(run, chosen, learn)
        record = learned.run(progress)
        if output is not None:
            shutil.copyfile(learned.folder / AVERAGED_PNG, output)
        return row(method, record["sparsity"], record["parameters"], record["scores"],
                   record["seconds"], find_seconds=record["find_seconds"])
    elif method == "unstructured":
        weights = unstructured_run(run, chosen)
        record = weights.run(progress)[-1]
        if output is not None:
            shutil.copyfile(weights.round_dir(record["round"]) / AVERAGED_PNG, output)
        return row(method, record["sparsity"], record["parameters"], record["scores"],
                   record["seconds"], find_seconds=search_seconds(weights.records,
                                                                  record["round"]),
                   steps=record["steps"], flops=records[0].get("flops"))  # dense kernels
    elif method == "narrow":
        width, flops = narrow_width(run, chosen["flops"])
        model, z = build_prior(run.model_name, {**run.model_options, "width": width}, problem,
                               seed=config.seed)
        result = fit(model, z, problem.operator, problem.observation, clean=problem.clean,
                     config=config, stop=_stop(run), callbacks=_bar(progress, method),
                     metric=problem.metric, run_past_stop=True)
        method, sparsity_, parameters = f"narrow (width={width})", 0.0, parameter_count(model)
        flops = flops if run.imp.channels else None
    elif method == "decoder":
        k = decoder_width_for_params(chosen["parameters"], out_channels=problem.shape[0])
        model, z = build_prior("decoder", {"k": k}, problem, seed=config.seed)
        result = fit(model, z, problem.operator, problem.observation, clean=problem.clean,
                     config=replace(config, **model_fit_defaults("decoder")),
                     stop=_stop(run), callbacks=_bar(progress, "decoder"),
                     metric=problem.metric, run_past_stop=True)
        method, sparsity_, parameters = f"decoder (k={k})", 0.0, parameter_count(model)
    else:
        ticket = method_ticket(run, method, sparsity)
        result = evaluate_ticket(ticket, problem, config, stop=_stop(run),
                                 callbacks=_bar(progress, method))
        sparsity_, parameters = ticket.sparsity, parameter_count(ticket.build(), ticket.mask)
        if run.imp.channels:
            model, _, z, _ = ticket_input(ticket, problem)
            flops = step_flops(model, z)
    if output is not None:
        save_image(result.averaged, output)
    return row(method, sparsity_, parameters, result.scores, result.seconds, find_seconds=found,
               steps=result.steps, flops=flops)


def method_ticket(run: ImpRun, method: str, sparsity: float, *,
                  progress: Progress | None = None, learn: LearnConfig | None = None) -> Ticket:
    """The ticket a mask method gives at the IMP round closest to ``sparsity``: IMP's own
    (``ticket``), a learned one, or a baseline mask with the IMP ticket's theta0 and z."""
    records = run.records or run.run(progress)
    chosen = closest_round(records, sparsity)
    if method == "learned":
        return learned_run(run, chosen, learn).find(progress)
    ticket = run.ticket(chosen["round"])
    if method == "ticket":
        return ticket
    if method in ("decoder", "dense") or method not in METHODS:
        raise LipError(f"method {method!r} has no mask to retrain; choose from "
                       f"{', '.join(m for m in METHODS if m not in ('decoder', 'dense'))}")
    if method == "random-channels":
        full = ticket.build()
        kept = random_channels(kept_channels(ticket.mask, full),
                               generator(run.fit_config.seed, "baseline-mask", method))
        return Ticket(channel_mask(full, kept), ticket.rewind_weights, ticket.z,
                      {**ticket.meta, "method": method})
    if method in CHANNEL_METHODS:
        raise LipError(f"method {method!r} has no mask of the run's network; choose from "
                       "ticket, random-channels, random, random-layerwise")
    mask = baseline_mask(method, ticket, run.problem, run.fit_config.seed)
    return Ticket(mask, ticket.rewind_weights, ticket.z,
                  {**ticket.meta, "method": method, "structure": "weights"})


def unstructured_run(run: ImpRun, record: dict) -> ImpRun:
    """The weight-level IMP run whose ticket has the channel ticket's parameter count: as many
    rounds as the channel ticket's, at the rate that removes the same number of parameters."""
    rounds = max(int(record["round"]), 1)
    model = run.ticket(0).build()
    removed = parameter_count(model) - record["parameters"]
    density = 1 - removed / Mask.ones(model).total
    imp = replace(run.imp, structure="weights", rounds=rounds, target_sparsity=None,
                  rate=1 - density ** (1 / rounds), channel_score="l1")
    return ImpRun(run.problem, run.model_name, run.model_options, run.fit_config, imp,
                  root=run.root, stop_factory=run.stop_factory, stop_name=run.stop_name)


def narrow_width(run: ImpRun, flops: int) -> tuple[int, int]:
    """The uniform width of the run's hourglass whose step FLOPs are closest to ``flops``
    (its skip channels as they are), and those FLOPs."""
    dense = run.ticket(0)
    spec = dense.model_spec

    def cost(width: int) -> int:
        return step_flops(create_model(spec["name"], **{**spec["options"], "width": width}),
                          dense.z)

    low, high = 1, int(spec["options"]["width"])  # FLOPs grow with the width: bisect
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if cost(middle) <= flops else (low, middle)
    return min(((w, cost(w)) for w in (low, high)), key=lambda wc: abs(wc[1] - flops))


def learned_run(run: ImpRun, record: dict, learn: LearnConfig | None = None) -> LearnedRun:
    """The learned-mask run matched to an IMP round: the same problem, model, theta0, z, fit
    settings, fit target and dense layers, at the round's counted mask sparsity."""
    target = record.get("mask_sparsity", record["sparsity"])
    learn = replace(learn or LearnConfig(sparsity=target), sparsity=target, penalty=None,
                    keep_dense=run.imp.keep_dense, target=run.imp.target)
    return LearnedRun(run.problem, run.model_name, run.model_options, run.fit_config, learn,
                      root=run.root, stop_factory=run.stop_factory, stop_name=run.stop_name)


def baseline_mask(method: str, ticket: Ticket, problem: Problem, seed: int) -> Mask:
    """A mask at the ticket's counted sparsity (and per-layer ratios for random-layerwise)."""
    model = ticket.build()
    model.load_state_dict(ticket.rewind_weights)  # unmasked theta0: scores see every weight
    template = Mask({n: torch.ones_like(ticket.mask[n]) for n in ticket.mask.weights})
    rng = generator(seed, "baseline-mask", method)
    if method == "random-layerwise":
        return random_mask(template, ticket.sparsity, rng,
                           layer_sparsity=ticket.mask.layer_sparsity())
    return prune_at_init(
        model, template, ticket.sparsity, "random" if method == "random" else method,
        loss_fn=dip_loss_fn(ticket.z, problem.operator, problem.observation),
        input_shape=tuple(ticket.z.shape), generator=rng,
    )


def search_seconds(records: list[dict], k: int) -> float:
    """Seconds of the IMP rounds before round ``k``: the search that found its mask."""
    return round(sum(r["seconds"] for r in records[:k]), 2)


def row(method: str, sparsity: float, parameters: int, scores: dict,
        seconds: float | None = None, *, find_seconds: float | None = None,
        steps: int | None = None, flops: int | None = None) -> dict:
    """One table row: method, counted sparsity, parameters, labelled PSNRs (and, when given,
    the fit's seconds and ms per step, GFLOP per step, and the seconds its finder took)."""
    out = {"method": method, "sparsity": round(sparsity, 4), "parameters": parameters,
           **score_columns(scores)}
    if flops is not None:
        out["gflop_step"] = round(flops / 1e9, 3)
    if seconds is not None:
        out["seconds"] = round(seconds, 2)
        if steps:
            out["ms_step"] = round(1000 * seconds / steps, 1)
    if find_seconds is not None:
        out["find_seconds"] = round(find_seconds, 2)
    if "averaged" in scores and scores["averaged"].get("ssim") is not None:
        out["ssim_averaged"] = round(scores["averaged"]["ssim"], 4)
    return out


def _bar(progress: Progress | None, desc: str) -> list[Callback]:
    return list(progress(desc)) if progress else []


def _stop(run: ImpRun) -> StoppingRule | None:
    """A fresh stopping rule of the run's kind (baselines are stopped as the ticket was)."""
    return run.stop_factory() if run.stop_factory else None


def ticket_name(path: str | Path, ticket: Ticket) -> str:
    """A ticket's label in tables: its IMP run and round, else its file's name."""
    run, k = ticket.meta.get("run"), ticket.meta.get("round")
    if run is not None and k is not None:
        return f"{run}/round-{int(k):02d}"
    path = Path(path)
    return f"{path.parent.name}/{path.stem}" if path.stem == "ticket" else path.stem


def check_transfer(tickets: Sequence[tuple[str, Ticket]],
                   problems: Sequence[tuple[str, Problem]]) -> None:
    """Check every (ticket, problem) pair before any fit: channels and image size."""
    for t_name, ticket in tickets:
        for p_name, problem in problems:
            try:
                ticket_model_for(ticket, problem)
            except LipError as err:
                raise LipError(f"ticket {t_name} cannot be retrained on {p_name}: {err}") from None


def transfer_grid(
    tickets: Sequence[tuple[str, Ticket]],
    problems: Sequence[tuple[str, Problem]],
    config: FitConfig,
    *,
    progress: Progress | None = None,
    label: str = "averaged",
) -> list[dict]:
    """Retrain each ticket on each problem; one row per (ticket, problem) pair."""
    rows = []
    for t_name, ticket in tickets:
        for p_name, problem in problems:
            result = evaluate_ticket(ticket, problem, config,
                                     callbacks=_bar(progress, f"{t_name} -> {p_name}"))
            rows.append({"ticket": t_name, "target": p_name,
                         "sparsity": round(ticket.sparsity, 4),
                         **{k: v for k, v in row("", 0, 0, result.scores).items()
                            if k.startswith(("psnr", "ssim"))}})
    return rows

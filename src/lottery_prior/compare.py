"""Tickets against baselines at matched sparsity, and tickets transferred to other problems.

Every method is a finder (:mod:`lottery_prior.finders`) matched to the IMP round nearest the
requested sparsity; its ticket is then fitted like every other one: the same steps, learning
rate, input perturbation and seed (a network of another model with that model's own fit
defaults, e.g. the Deep Decoder without input perturbation), **on the observation**, scored
with the same metric, with the stopping rule of the run recorded beside the other scores.
Sparsity is counted from the masks. A classical method (``bm3d``, ``biharmonic``,
``bicubic``, ...: :mod:`lottery_prior.finders.classical`) has no network: it restores the
same observation once and is scored with the same metric.

The target of a search only decides what IMP (or a learned mask) fits while *searching*:
a ticket found on the clean image (``target="clean"``, the reference code's oracle) is
refitted on the observation for its row, and so is a round that was cut short while
searching; a round fitted in full on the observation is reported as it was fitted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from lottery_prior.cost import step_flops
from lottery_prior.errors import LipError
from lottery_prior.files import copy_file
from lottery_prior.finders import (
    FinderOptions,
    Found,
    MaskFinder,
    Match,
    finder_class,
    make_finder,
)
from lottery_prior.finders.classical import Restored, classical_names
from lottery_prior.fit import Callback, FitConfig
from lottery_prior.images import save_image
from lottery_prior.lottery import AVERAGED_PNG, ImpRun, evaluate_ticket, ticket_input
from lottery_prior.problem import Problem
from lottery_prior.scores import score_columns
from lottery_prior.tickets import Ticket, parameter_count, tensors_sha256

DEFAULT_METHODS = ("ticket", "random", "random-layerwise", "decoder", "dense")
DEFAULT_CHANNEL_METHODS = ("ticket", "random-channels", "narrow", "unstructured", "dense")

Progress = Callable[[str], Sequence[Callback]]
log = logging.getLogger("lottery_prior")


def check_comparison(problem: Problem, sparsity: float, methods: Sequence[str],
                     structure: str = "weights") -> None:
    """Refuse a comparison that cannot be made, before any work: unknown methods, methods
    that cannot be matched to a ticket of this structure, a sparsity outside (0, 1), or no
    ground truth to score the methods against."""
    for method in methods:
        cls = finder_class(method)
        if cls.classical and cls.task != problem.task:
            raise LipError(f"method {method!r} restores {cls.task}, not {problem.task}; choose "
                           f"from {', '.join(classical_names(problem.task))}")
        if not cls.fits(structure):
            other = "channels" if structure == "weights" else "weights"
            raise LipError(f"method {method!r} is matched to {other} tickets, not to {structure} "
                           f"tickets; " + ("add --structured channels" if other == "channels"
                                           else "drop it with --structured channels"))
    if not 0 < sparsity < 1:
        raise LipError(f"sparsity must be in (0, 1), got {sparsity}")
    if problem.clean is None:
        raise LipError("a comparison scores every method against the clean image, which an "
                       "observed image lacks; drop --observed, or use lip find and lip eval")


@dataclass
class MethodFit:
    """One method's fit on one problem: what was found, the settings it was fitted with, and
    its labelled scores."""

    method: str
    found: Found
    config: FitConfig
    scores: dict
    seconds: float
    steps: int
    sparsity: float
    parameters: int
    flops: int | None = None
    precision: str = ""  # what ran
    device: str = ""  # the CPU's or GPU's name
    milestones: dict[int, dict] = field(default_factory=dict)  # step -> its scores

    def at(self, step: int) -> MethodFit:
        """The fit as scored at one of its milestones (``FitConfig.score_at``)."""
        if step not in self.milestones:
            raise LipError(f"the fit has no scores at step {step}; it recorded "
                           f"{', '.join(map(str, self.milestones)) or 'no milestones'}")
        return replace(self, scores=self.milestones[step], milestones={})

    def by_milestone(self) -> list[tuple[int, MethodFit]]:
        """``(step, the fit as scored there)`` at each milestone in order; without
        milestones, ``(steps, itself)``."""
        if not self.milestones:
            return [(self.steps, self)]
        return [(step, self.at(step)) for step in sorted(self.milestones)]

    @property
    def label(self) -> str:
        return self.found.label

    def row(self) -> dict:
        """A table row: method, counted sparsity, parameters, labelled PSNRs, the fit's
        seconds and ms per step, GFLOP per step (channel comparisons) and the finder's
        seconds."""
        out = {"method": self.label, "sparsity": round(self.sparsity, 4),
               "parameters": self.parameters, **score_columns(self.scores)}
        if self.flops is not None:
            out["gflop_step"] = round(self.flops / 1e9, 3)
        out["seconds"] = round(self.seconds, 2)
        if self.steps:
            out["ms_step"] = round(1000 * self.seconds / self.steps, 1)
        if self.found.find_seconds is not None:
            out["find_seconds"] = round(self.found.find_seconds, 2)
        if self.scores.get("averaged", {}).get("ssim") is not None:
            out["ssim_averaged"] = round(self.scores["averaged"]["ssim"], 4)
        return out

    def settings(self) -> dict:
        """The network this fit actually ran: the model and its options, the mask's
        content."""
        ticket = self.found.ticket
        return {"model": ticket.model_spec["name"],
                "model_options": ticket.model_spec["options"],
                "mask_sha256": mask_hash(ticket)}


def compare_methods(run: ImpRun, sparsity: float, methods: Sequence[str], *,
                    options: FinderOptions | None = None,
                    progress: Progress | None = None) -> list[MethodFit | Restored]:
    """The ticket against other ways of choosing a network, at matched counted sparsity.

    Runs (or resumes) IMP far enough, then fits every method at the run's round nearest
    ``sparsity``: each is a name of the finder registry
    (:data:`lottery_prior.finders.REGISTRY`: ``ticket``, ``dense``, ``random``,
    ``random-layerwise``, ``snip``, ``decoder``, ...), fitted the same way on the run's own
    observation; a classical method (``bm3d``, ...) restores that observation once (one
    whose optional library is missing here is left out with a one-line warning).

    Args:
        run: an IMP run (:func:`lottery_prior.find_ticket`), finished or not.
        sparsity: the sparsity to compare at, in (0, 1).
        methods: the finders to fit, in order.
        options: settings of the finders that take some (the ``learned`` method's).
        progress: a factory of fit callbacks (``label -> [callback]``).

    Returns:
        One :class:`MethodFit` per method (a :class:`~lottery_prior.finders.classical.Restored`
        for a classical one); ``fit.row()`` is its table row (method, counted sparsity,
        parameters, labelled PSNRs, seconds).
    """
    check_comparison(run.problem, sparsity, methods, run.imp.structure)
    if any(not finder_class(m).classical for m in methods):
        run.run(progress)
    out: list[MethodFit | Restored] = []
    for method in methods:
        if not finder_class(method).classical:
            out.append(fit_method(run, method, sparsity, options=options, progress=progress))
            continue
        classical = make_finder(method)
        why = classical.available()
        if why:
            log.warning("%s left out: %s", method, why)
            continue
        out.append(classical.restore(run.problem))
    return out


def fit_method(run: ImpRun, method: str, sparsity: float, *,
               options: FinderOptions | None = None, progress: Progress | None = None,
               output: Path | None = None) -> MethodFit:
    """One method fitted on the run's own observation, matched to the run's finished round
    nearest ``sparsity``. ``output``: where to write the PNG of its averaged output after
    the last step."""
    finder = _finder(method, run, options)
    found = finder.find(Match.of(run, sparsity), progress=progress)
    return _fit(method, found, finder.fit_config(run.fit_config), run.problem, run,
                progress, output)


def transfer_method(run: ImpRun, method: str, sparsity: float, target: Problem,
                    config: FitConfig, *, options: FinderOptions | None = None,
                    progress: Progress | None = None, output: Path | None = None) -> MethodFit:
    """A method's ticket, found on the run's problem, retrained on ``target`` with
    ``config`` (the target task's fit settings)."""
    finder = _finder(method, run, options)
    if not finder.transferable:
        raise LipError(f"method {method!r} has no mask of the run's network to retrain; "
                       "choose a mask method")
    found = finder.find(Match.of(run, sparsity), progress=progress)
    found.record = None  # its own round's fit was on another problem
    return _fit(method, found, finder.fit_config(config), target, run, progress, output)


def _finder(method: str, run: ImpRun, options: FinderOptions | None) -> MaskFinder:
    finder = make_finder(method, options)
    if not finder.fits(run.imp.structure):
        raise LipError(f"method {method!r} cannot be matched to a {run.imp.structure} ticket")
    return finder


def _fit(method: str, found: Found, config: FitConfig, problem: Problem, run: ImpRun,
         progress: Progress | None, output: Path | None) -> MethodFit:
    """Fit what was found on ``problem`` (or take the IMP round's own fit when that is
    exactly it), scored like every other method."""
    ticket = found.ticket
    model, _, z, _ = ticket_input(ticket, problem, config.seed)
    flops = step_flops(model, z) if run.imp.channels else None
    parameters = parameter_count(ticket.build(), ticket.mask)
    record = found.record
    if record is not None:  # the round's own fit on this observation, in full
        if output is not None:
            copy_file(run.round_dir(record["round"]) / AVERAGED_PNG, output)
        return MethodFit(method, found, config, record["scores"], record["seconds"],
                         record["steps"], record["sparsity"], parameters, flops,
                         record.get("precision", config.precision), record.get("device", ""),
                         {int(k): v for k, v in record.get("milestones", {}).items()})
    result = evaluate_ticket(ticket, problem, config, stop=run.new_stop(),
                             callbacks=list(progress(found.label)) if progress else [])
    if output is not None:
        save_image(result.averaged, output)
    return MethodFit(method, found, config, result.scores, result.seconds, result.steps,
                     ticket.sparsity, parameters, flops, result.precision, result.device,
                     result.milestones)


def mask_hash(ticket: Ticket) -> str:
    """A content hash of a ticket's mask: two rows with the same hash fitted the same draw."""
    return tensors_sha256({n: m.to(torch.uint8) for n, m in ticket.mask.items()})[:16]


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
    from lottery_prior.lottery import ticket_model_for

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
) -> list[dict]:
    """Retrain each ticket on each problem; one row per (ticket, problem) pair."""
    rows = []
    for t_name, ticket in tickets:
        for p_name, problem in problems:
            result = evaluate_ticket(ticket, problem, config,
                                     callbacks=list(progress(f"{t_name} -> {p_name}"))
                                     if progress else [])
            scores = score_columns(result.scores)
            if result.scores["averaged"].get("ssim") is not None:
                scores["ssim_averaged"] = round(result.scores["averaged"]["ssim"], 4)
            rows.append({"ticket": t_name, "target": p_name,
                         "sparsity": round(ticket.sparsity, 4), **scores})
    return rows

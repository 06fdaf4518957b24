"""The verbs of the public API that are not a single library call already.

Everything here is a thin layer over the library (no second implementation): a search is an
:class:`~lottery_prior.lottery.ImpRun`, a transfer is
:func:`~lottery_prior.compare.transfer_method`, a sweep is an
:class:`~lottery_prior.experiments.sweep.Sweep`. Import them from ``lottery_prior``::

    import lottery_prior as lp

    problem = lp.make_problem("builtin:astronaut", "denoise", size=32)
    run = lp.find_ticket(problem, model_options={"width": 8, "scales": 2},
                         config=lp.FitConfig(steps=20), imp=lp.ImpConfig(rounds=2))

Tensors are ``(1, C, H, W)`` floats in [0, 1] on the CPU; settings are dataclasses
(:class:`~lottery_prior.fit.FitConfig`, :class:`~lottery_prior.lottery.ImpConfig`,
:class:`~lottery_prior.learned.LearnConfig`) checked when they are made.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from lottery_prior.compare import MethodFit, transfer_method
from lottery_prior.finders import FinderOptions
from lottery_prior.fit import FitConfig
from lottery_prior.learned import LearnConfig
from lottery_prior.lottery import ImpConfig, ImpRun
from lottery_prior.problem import Problem
from lottery_prior.tickets import Ticket

if TYPE_CHECKING:
    from lottery_prior.compare import Progress
    from lottery_prior.experiments.sweep import Sweep

PathLike = str | os.PathLike


def find_ticket(
    problem: Problem,
    model: str = "dip",
    model_options: dict | None = None,
    *,
    config: FitConfig | None = None,
    imp: ImpConfig | None = None,
    root: PathLike = "lip-out/runs",
    stop: str | None = None,
    others: Sequence[Problem] = (),
    progress: Progress | None = None,
) -> ImpRun:
    """Find a lottery image prior: IMP with rewinding on ``problem``'s observation.

    Runs (or resumes) the search in ``root/imp-<hash>/``, the hash taken over the run's
    identity, so calling it again with the same arguments reads the finished rounds back.
    Each round's ticket is ``run.ticket(k)``; ``run.records`` holds one record per round
    (counted ``sparsity``, labelled ``scores``, ``seconds``).

    Args:
        problem: what to restore (:func:`~lottery_prior.problem.make_problem`).
        model: a registered model: ``"dip"`` (the skip hourglass) or ``"decoder"``.
        model_options: the model's options, e.g. ``{"width": 32}``.
        config: the fit settings of every round (default: the task's,
            :meth:`FitConfig.for_task <lottery_prior.fit.FitConfig.for_task>`).
        imp: the pruning settings (default: the paper's, 16 rounds of 20%).
        root: the folder the run's own folder goes in.
        stop: ``"wmv"`` also scores every round at the automatic stop.
        others: more problems of the same size and task to search one shared ticket on.
        progress: a factory of fit callbacks (``label -> [callback]``), e.g. progress bars.

    Returns:
        The finished run.

    Examples:
        >>> import lottery_prior as lp
        >>> problem = lp.make_problem("builtin:astronaut", "denoise", size=32)
        >>> run = lp.find_ticket(problem, model_options={"width": 8, "scales": 2},
        ...                      config=lp.FitConfig(steps=10), imp=lp.ImpConfig(rounds=2))
        >>> [round(r["sparsity"], 2) for r in run.records]
        [0.0, 0.2, 0.36]
    """
    config = config if config is not None else FitConfig.for_task(problem.task, model)
    run = ImpRun(problem, model, dict(model_options or {}), config,
                 imp if imp is not None else ImpConfig(), root=Path(root), stop=stop,
                 others=tuple(others))
    run.run(progress)
    return run


def load_ticket(path: PathLike) -> Ticket:
    """Read a ticket file (``ticket.safetensors``): its mask, the weights it is retrained
    from, its input code ``z`` and its provenance; a damaged file is refused (its SHA-256 is
    checked). The same as :meth:`Ticket.load <lottery_prior.tickets.Ticket.load>`."""
    return Ticket.load(path)


def transfer(
    run: ImpRun,
    sparsity: float,
    target: Problem,
    *,
    method: str = "ticket",
    config: FitConfig | None = None,
    learn: LearnConfig | None = None,
    progress: Progress | None = None,
) -> MethodFit:
    """A mask found on ``run``'s problem, retrained on another image or task.

    Args:
        run: the finished IMP run the mask comes from.
        sparsity: the round nearest this sparsity gives the mask.
        target: the problem to retrain on (another image, or another task).
        method: a transferable finder (``ticket``, ``learned``, ``random``, ...).
        config: the fit settings on the target (default: the target task's).
        learn: settings of the ``learned`` method.
        progress: a factory of fit callbacks.
    """
    config = config if config is not None else FitConfig.for_task(
        target.task, run.model_name, seed=run.fit_config.seed)
    return transfer_method(run, method, sparsity, target, config,
                           options=FinderOptions(learn=learn), progress=progress)


def run_sweep(
    spec: PathLike,
    out: PathLike | None = None,
    *,
    workers: int | None = None,
    ray: str | None = None,
    device: str | None = None,
    show: bool = False,
) -> Sweep:
    """Run an experiment spec (TOML): every unit of its grid that is not done yet.

    Resumable: a unit whose outputs are there and intact is never run again. The results
    are in ``sweep.out / "results.parquet"`` (and ``results.csv``).

    Args:
        spec: the spec file (see the sweep-spec reference).
        out: the results folder (default ``lip-out/sweeps/<spec name>``).
        workers: local worker processes (default one per core; 0 runs in this process).
        ray: the address of a Ray cluster (``"auto"``) to run on instead.
        device: where every fit runs (default: CUDA if available).
        show: show a progress bar.

    Returns:
        The :class:`~lottery_prior.experiments.sweep.Sweep`, finished.
    """
    from lottery_prior.experiments.sweep import Sweep

    sweep = Sweep.load(spec, out)
    sweep.run(workers=workers, ray=ray, device=device, show=show)
    return sweep

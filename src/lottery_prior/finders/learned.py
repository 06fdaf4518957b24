"""Masks learned at initialisation (:mod:`lottery_prior.learned`) as a finder, matched to
an IMP round: the same problem, theta0, z, fit target and dense layers, at the round's
counted sparsity."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from lottery_prior.finders.base import (
    FinderOptions,
    Found,
    MaskFinder,
    Match,
    Progress,
    register_finder,
)
from lottery_prior.learned import LearnConfig, LearnedRun


@register_finder
@dataclass
class LearnedMask(MaskFinder):
    """A relaxed binary mask fitted at frozen theta0 (Optimal Eye Surgeon), then fixed."""

    learn: LearnConfig | None = None
    name = "learned"
    order = 2
    title = "learned mask (at init)"
    search_name = "learned"

    @classmethod
    def create(cls, options: FinderOptions) -> MaskFinder:
        return cls(options.learn)

    def config(self, match: Match) -> LearnConfig:
        """The learning settings: at the round's counted mask sparsity, from the run's theta0,
        fit target and dense layers, for as many steps as given (by default those of IMP's
        100-step-round search to the requested sparsity)."""
        run = match.run
        target = match.record.get("mask_sparsity", match.record["sparsity"])
        return replace(resolved(self.learn, match.sparsity), sparsity=target, penalty=None,
                       keep_dense=run.imp.keep_dense, target=run.imp.target)

    def learned_run(self, match: Match) -> LearnedRun:
        run = match.run
        return LearnedRun(run.problem, run.model_name, run.model_options, run.fit_config,
                          self.config(match), root=run.root, stop=run.stop)

    def find(self, match: Match, *, progress: Progress | None = None) -> Found:
        ticket = self.learned_run(match).find(progress)
        return Found(ticket, self.name, ticket.meta.get("find_seconds"))

    def identity(self, sparsity: float) -> dict:
        """The learning settings a sweep unit at ``sparsity`` is named by, all resolved."""
        learn = resolved(self.learn, sparsity)
        return {k: v for k, v in asdict(learn).items()
                if k not in ("sparsity", "penalty", "keep_dense", "target")}


def resolved(learn: LearnConfig | None, sparsity: float) -> LearnConfig:
    """``learn`` (or the defaults) at ``sparsity`` with the learning steps resolved."""
    learn = replace(learn or LearnConfig(sparsity=sparsity), sparsity=sparsity, penalty=None)
    return replace(learn, steps=learn.n_steps)

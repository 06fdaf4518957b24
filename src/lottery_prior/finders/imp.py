"""The IMP ticket and the dense network it was pruned from, as finders."""

from __future__ import annotations

from lottery_prior.finders.base import Found, MaskFinder, Match, Progress, register_finder
from lottery_prior.lottery import AVERAGED_PNG


def _round(match: Match, k: int) -> dict | None:
    """Round ``k``'s own record if its fit is what a comparison reports (in full, on the
    observation, its averaged output saved), else None: then the ticket is refitted."""
    run = match.run
    if run.fitted_as_reported(k) and (run.round_dir(k) / AVERAGED_PNG).is_file():
        return run.finished_records()[k]
    return None


@register_finder
class Dense(MaskFinder):
    """The unpruned network (IMP's round 0): same theta0 and z."""

    name = "dense"
    order = 0
    title = "dense"
    structure = "any"
    transferable = False

    def find(self, match: Match, *, progress: Progress | None = None) -> Found:
        return Found(match.run.ticket(0), self.name, None, _round(match, 0))


@register_finder
class ImpTicket(MaskFinder):
    """Iterative magnitude pruning with rewinding: the round nearest the sparsity."""

    name = "ticket"
    order = 1
    title = "ticket (IMP)"
    structure = "any"
    search_name = "imp"

    def find(self, match: Match, *, progress: Progress | None = None) -> Found:
        return Found(match.ticket, self.name, match.search_seconds, _round(match, match.round))

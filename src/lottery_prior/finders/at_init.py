"""Pruning at initialisation: one-shot masks scored at theta0 (magnitude, SNIP, GraSP,
SynFlow), at the IMP ticket's counted sparsity, with its theta0 and z."""

from __future__ import annotations

import torch

from lottery_prior.finders.base import Found, MaskFinder, Match, Progress, register_finder
from lottery_prior.masks import Mask
from lottery_prior.pruning import dip_loss_fn, prune_at_init
from lottery_prior.seeding import generator
from lottery_prior.tickets import Ticket


def matched_ticket(match: Match, mask: Mask, method: str) -> Ticket:
    """A baseline's ticket: its mask with the IMP ticket's theta0 and z."""
    ticket = match.ticket
    return Ticket(mask, ticket.rewind_weights, ticket.z,
                  {**ticket.meta, "method": method, "structure": "weights"})


def template(match: Match) -> Mask:
    """A dense mask over the IMP ticket's weights: what a baseline prunes from."""
    return Mask({n: torch.ones_like(match.ticket.mask[n]) for n in match.ticket.mask.weights})


def mask_stream(match: Match, method: str) -> torch.Generator:
    """The random stream of a baseline's mask: its own per method, seed and observation."""
    return generator(match.seed, "baseline-mask", method, match.observation)


class PruneAtInit(MaskFinder):
    """Scores every weight at theta0 and keeps the best, to the ticket's counted sparsity."""

    def find(self, match: Match, *, progress: Progress | None = None) -> Found:
        ticket, problem = match.ticket, match.problem
        model = ticket.build()
        model.load_state_dict(ticket.rewind_weights)  # unmasked theta0: scores see every weight
        mask = prune_at_init(
            model, template(match), ticket.sparsity, self.name,
            loss_fn=dip_loss_fn(ticket.z, problem.operator, problem.observation),
            input_shape=tuple(ticket.z.shape), generator=mask_stream(match, self.name))
        return Found(matched_ticket(match, mask, self.name), self.name)


@register_finder
class Magnitude(PruneAtInit):
    """The largest |theta0|."""

    name = "magnitude"
    order = 5
    title = "magnitude at init"


@register_finder
class Snip(PruneAtInit):
    """Connection sensitivity |w ⊙ ∂L/∂w| on the observation (Lee et al., 2019)."""

    name = "snip"
    order = 6
    title = "SNIP"


@register_finder
class Grasp(PruneAtInit):
    """Gradient-signal preservation, −θ ⊙ Hg (Wang et al., 2020)."""

    name = "grasp"
    order = 7
    title = "GraSP"


@register_finder
class SynFlow(PruneAtInit):
    """Iterative synaptic flow, data-free (Tanaka et al., 2020)."""

    name = "synflow"
    order = 8
    title = "SynFlow"

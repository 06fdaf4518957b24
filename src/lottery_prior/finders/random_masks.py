"""Random pruning at exactly the IMP ticket's counted sparsity: uniform over every prunable
weight, or with the ticket's own per-layer ratios. Each draw is its own stream of the seed
and the observation: two images never share a random mask."""

from __future__ import annotations

from lottery_prior.finders.at_init import mask_stream, matched_ticket, template
from lottery_prior.finders.base import Found, MaskFinder, Match, Progress, register_finder
from lottery_prior.pruning import random_mask


@register_finder
class RandomGlobal(MaskFinder):
    """Uniformly random weights, globally."""

    name = "random"
    order = 3
    title = "random (global)"
    random = True

    def find(self, match: Match, *, progress: Progress | None = None) -> Found:
        mask = random_mask(template(match), match.ticket.sparsity, mask_stream(match, self.name))
        return Found(matched_ticket(match, mask, self.name), self.name)


@register_finder
class RandomLayerwise(MaskFinder):
    """Uniformly random weights within each layer, at the ticket's per-layer sparsity."""

    name = "random-layerwise"
    order = 4
    title = "random (ticket's layer-wise ratios)"
    random = True

    def find(self, match: Match, *, progress: Progress | None = None) -> Found:
        ticket = match.ticket
        mask = random_mask(template(match), ticket.sparsity, mask_stream(match, self.name),
                           layer_sparsity=ticket.mask.layer_sparsity())
        return Found(matched_ticket(match, mask, self.name), self.name)

"""Cross-use: a classification ticket's mask on the image prior, fitted on restoration tasks
beside the image-prior ticket and layer-wise random masks at the same sparsity.

The prior keeps its own theta0 and z (those of the image-prior ticket); only the mask comes
from the classifier. Layers the classifier has in another shape or not at all are filled at
random, each from its own seeded stream: the convs that read z (32 input channels against
the classifier's 3) at the classification ticket's sparsity of that layer, and the prior's
output conv (absent in the classifier) at the classification ticket's global sparsity. Every
fit reports its labelled PSNRs (averaged output after the last step; peaks are oracles).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import torch

from lottery_prior.errors import LipError
from lottery_prior.fit import Callback, FitConfig
from lottery_prior.lottery import evaluate_ticket
from lottery_prior.masks import Mask
from lottery_prior.pruning import random_mask
from lottery_prior.report.tables import score_columns
from lottery_prior.seeding import generator
from lottery_prior.tickets import Ticket

Progress = Callable[[str], Sequence[Callback]]
METHODS = ("image-prior ticket", "classification ticket", "random-layerwise")


def classification_mask_for_prior(cls_mask: Mask, prior_ticket: Ticket,
                                   seed: int) -> tuple[Mask, dict[str, str]]:
    """The classification mask in the image prior's shapes, and how each layer got its mask
    (``classification``, or a random fill and why)."""
    masks: dict[str, torch.Tensor] = {}
    how: dict[str, str] = {}
    global_density = cls_mask.density
    if any(m.dim() < 2 for m in prior_ticket.mask.values()):
        raise LipError("the image-prior ticket masks channels (biases, BatchNorm); cross-use "
                       "takes a weight ticket from lip find")
    for name, prior_layer in prior_ticket.mask.items():
        if name in cls_mask and cls_mask[name].shape == prior_layer.shape:
            masks[name] = cls_mask[name].clone()
            how[name] = "classification"
            continue
        if name in cls_mask:
            c = cls_mask[name]
            if not (c.dim() == prior_layer.dim() == 4 and c.shape[0] == prior_layer.shape[0]
                    and c.shape[2:] == prior_layer.shape[2:]):
                raise LipError(f"layer {name} is {tuple(c.shape)} in the classifier and "
                               f"{tuple(prior_layer.shape)} in the prior: the networks differ "
                               "(give both the same width, scales and skip channels)")
            density = float(c.float().mean())
            why = "random at the classification ticket's sparsity of this layer (input conv)"
        else:
            density = global_density
            why = "random at the classification ticket's global sparsity (no such layer)"
        masks[name] = random_fill(prior_layer.shape, density,
                                  generator(seed, "cross-use-fill", name))
        how[name] = why
    shared = [n for n, h in how.items() if h == "classification"]
    if not shared:
        raise LipError("the classification ticket shares no layer with the image-prior ticket")
    return Mask(masks), how


def random_fill(shape: torch.Size, density: float, rng: torch.Generator) -> torch.Tensor:
    """A boolean mask keeping ``round(density * numel)`` entries chosen uniformly at random."""
    n = int(torch.Size(shape).numel())
    keep = torch.zeros(n, dtype=torch.bool)
    keep[torch.randperm(n, generator=rng)[: round(density * n)]] = True
    return keep.reshape(shape)


def cross_use_tickets(cls_mask: Mask, prior_ticket: Ticket, seed: int) -> dict[str, Ticket]:
    """The three priors compared, all with the image-prior ticket's theta0 and z: its own
    mask, the classification mask (:func:`classification_mask_for_prior`) and a layer-wise
    random mask with the classification mask's per-layer sparsities (the seed's
    ``baseline-mask`` stream)."""
    mask, _ = classification_mask_for_prior(cls_mask, prior_ticket, seed)
    template = Mask({n: torch.ones_like(m) for n, m in mask.items()})
    random = random_mask(template, mask.sparsity, generator(seed, "baseline-mask",
                                                           "cross-use-random-layerwise"),
                         layer_sparsity=mask.layer_sparsity())
    meta = prior_ticket.meta
    return {
        "image-prior ticket": prior_ticket,
        "classification ticket": Ticket(mask, prior_ticket.rewind_weights, prior_ticket.z,
                                        {**meta, "method": "classification ticket"}),
        "random-layerwise": Ticket(random, prior_ticket.rewind_weights, prior_ticket.z,
                                   {**meta, "method": "random-layerwise"}),
    }


def cross_use(cls_mask: Mask, prior_ticket: Ticket, problems: Sequence[tuple[str, object]],
              config: FitConfig, seeds: Sequence[int], *,
              progress: Progress | None = None) -> list[dict]:
    """Fit each prior on each problem for each seed (the seed draws the random masks and the
    fit's input perturbation); one row per fit."""
    rows = []
    for seed in seeds:
        tickets = cross_use_tickets(cls_mask, prior_ticket, seed)
        seeded = replace(config, seed=seed)
        for p_name, problem in problems:
            for method, ticket in tickets.items():
                bar = list(progress(f"{method} · {p_name} · seed {seed}")) if progress else []
                result = evaluate_ticket(ticket, problem, seeded, callbacks=bar)
                for b in bar:
                    close = getattr(b, "close", None)
                    if close:
                        close()
                rows.append({"problem": p_name, "seed": seed, "method": method,
                             "sparsity": round(ticket.sparsity, 4),
                             **score_columns(result.scores)})
    return rows

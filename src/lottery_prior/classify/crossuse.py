"""Cross-use: a classification ticket's mask on the image prior, fitted on restoration tasks
beside the image-prior ticket and layer-wise random masks at the same sparsity.

The prior keeps its own theta0 and z (those of the image-prior ticket); only the mask comes
from the classifier, at exactly the image-prior ticket's global sparsity: the layers the
classifier has in another shape or not at all (the convs that read z, the output conv) are
filled at random to make up the count (see :func:`classification_mask_for_prior`). Every fit
reports its labelled PSNRs (averaged output after the last step; peaks are oracles).
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
from lottery_prior.scores import score_columns
from lottery_prior.seeding import generator
from lottery_prior.tickets import Ticket

Progress = Callable[[str], Sequence[Callback]]
METHODS = ("image-prior ticket", "classification ticket", "random-layerwise")


def classification_mask_for_prior(cls_mask: Mask, prior_ticket: Ticket,
                                   seed: int) -> tuple[Mask, dict[str, str]]:
    """The classification mask in the image prior's shapes, at exactly the image-prior
    ticket's global sparsity; and how each layer got its mask.

    Layers of the same shape take the classification mask as it is. The others (the convs
    that read z, 32 input channels against the classifier's 3, and the prior's output conv,
    which the classifier lacks) are filled at random, each from its own stream, with as many
    kept weights as the image-prior ticket keeps there, scaled together so that the total
    kept equals the image-prior ticket's (largest-remainder rounding, within each layer's
    size).
    """
    if any(m.dim() < 2 for m in prior_ticket.mask.values()):
        raise LipError("the image-prior ticket masks channels (biases, BatchNorm); cross-use "
                       "takes a weight ticket from lip find")
    masks: dict[str, torch.Tensor] = {}
    how: dict[str, str] = {}
    others: list[str] = []
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
        others.append(name)
    if not masks:
        raise LipError("the classification ticket shares no layer with the image-prior ticket")
    prior = prior_ticket.mask
    kept_shared = sum(int(m.sum()) for m in masks.values())
    sizes = {n: prior[n].numel() for n in others}
    target = min(max(prior.kept - kept_shared, 0), sum(sizes.values()))
    counts = _apportion(target, {n: int(prior[n].sum()) for n in others}, sizes)
    for name in others:
        masks[name] = random_fill(prior[name].shape, counts[name] / sizes[name],
                                  generator(seed, "cross-use-fill", name))
        what = "input conv" if name in cls_mask else "not in the classifier"
        how[name] = (f"random ({what}): {counts[name]} of {sizes[name]} kept, the image-prior "
                     f"ticket's {int(prior[name].sum())} scaled to match its global sparsity")
    return Mask({n: masks[n] for n in prior}), how


def _apportion(total: int, weights: dict[str, int], caps: dict[str, int]) -> dict[str, int]:
    """Split ``total`` over names in proportion to ``weights`` (largest remainders), none above
    its cap."""
    counts = dict.fromkeys(weights, 0)
    left = total
    open_names = [n for n in weights if caps[n] > 0]
    while left > 0 and open_names:
        w = {n: weights[n] or 1 for n in open_names}
        share = {n: left * w[n] / sum(w.values()) for n in open_names}
        add = {n: min(int(share[n]), caps[n] - counts[n]) for n in open_names}
        for n in sorted(open_names, key=lambda n: share[n] - int(share[n]), reverse=True):
            if sum(add.values()) >= left:
                break
            if counts[n] + add[n] < caps[n]:
                add[n] += 1
        for n, a in add.items():
            counts[n] += a
        left -= sum(add.values())
        open_names = [n for n in open_names if counts[n] < caps[n]]
        if not any(add.values()):
            break
    return counts


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

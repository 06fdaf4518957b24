"""Iterative magnitude pruning of a pretrained GAN, rewinding to the pretrained weights.

Round 0 fine-tunes the dense networks. Round k removes ``rate`` of the remaining conv weights
(one global |w| threshold over the generator's, and separately the critic's, prunable convs,
scored on round k-1's fine-tuned weights; or, with ``method="random"``, a uniformly random
mask of the same sparsity 1 - (1 - rate)^k), rewinds the survivors to the pretrained weights
and fine-tunes with WGAN-GP (:func:`finetune_gan`, Adam 2e-4, betas (0, 0.99)).
The layers that only translate to and from RGB stay dense by default: the toRGB/fromRGB of the
lower scales are unused at full resolution and would otherwise soak up the pruning budget.
Magnitudes are those of the stored (equalized-lr, N(0, 1)-scaled) weights, which puts every
layer on the same footing.

Every round and method fine-tunes with the same random streams of the seed (batches,
augmentation, latents, penalty interpolations: common random numbers), so rounds and methods
differ by their masks only; random masks come from the stream ``gan-random-mask`` (one per
round and network).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lottery_prior import seeding
from lottery_prior.errors import LipError
from lottery_prior.gan.networks import Discriminator, Generator
from lottery_prior.gan.train import Callback, GanModels, WganLoss, finetune_gan
from lottery_prior.masks import Mask
from lottery_prior.pruning import magnitude_prune, random_mask

PRUNE_METHODS = ("magnitude", "random")


@dataclass
class GanTicket:
    """One IMP round: the masks, their counted sparsities and the fine-tuned networks (use
    ``models.average``)."""

    round: int
    generator_mask: Mask
    discriminator_mask: Mask | None
    models: GanModels

    @property
    def sparsity(self) -> float:
        """Counted sparsity of the generator's prunable weights."""
        return self.generator_mask.sparsity


def _next_mask(method: str, net: nn.Module, mask: Mask, template: Mask, rate: float,
               k: int, rng: Callable[[], torch.Generator]) -> Mask:
    if method == "magnitude":
        return magnitude_prune(net, mask, rate)
    return random_mask(template, 1 - (1 - rate) ** k, rng())


def prune_gan(
    generator: Generator,
    discriminator: Discriminator,
    images: Tensor,
    *,
    rounds: int = 6,
    rate: float = 0.2,
    method: str = "magnitude",
    prune_discriminator: bool = True,
    keep_dense: Sequence[str] = ("toRGBLayers.*",),
    keep_dense_discriminator: Sequence[str] = ("fromRGBLayers.*",),
    steps: int = 200,
    lr: float = 2e-4,
    batch_size: int = 16,
    loss: WganLoss | None = None,
    seed: int = 0,
    callback: Callback | None = None,
    on_round: Callable[[GanTicket], None] | None = None,
) -> list[GanTicket]:
    """IMP with rewinding on a pretrained GAN: ``rounds + 1`` tickets (round 0 is dense).

    ``images`` is the fine-tuning split (N, C, R, R) in [0, 1]; keep evaluation images out of
    it. ``on_round`` is called with each ticket as soon as it is ready.
    """
    if method not in PRUNE_METHODS:
        raise LipError(f"method must be one of {', '.join(PRUNE_METHODS)}, got {method!r}")
    if rounds < 0 or not 0 < rate < 1:
        raise LipError(f"need rounds >= 0 and 0 < rate < 1, got {rounds} and {rate}")
    template_g = Mask.ones(generator, keep_dense)
    template_d = Mask.ones(discriminator, keep_dense_discriminator) if prune_discriminator \
        else None
    mask_g, mask_d = template_g, template_d
    tickets: list[GanTicket] = []
    for k in range(rounds + 1):
        if k:
            last = tickets[-1].models
            mask_g = _next_mask(method, last.average, mask_g, template_g, rate, k, lambda k=k:
                                seeding.generator(seed, "gan-random-mask", "generator", k))
            if template_d is not None and mask_d is not None:
                mask_d = _next_mask(method, last.discriminator, mask_d, template_d, rate, k,
                                    lambda k=k: seeding.generator(seed, "gan-random-mask",
                                                                  "critic", k))
        models = finetune_gan(
            generator, discriminator, images, steps=steps, lr=lr, batch_size=batch_size,
            loss=loss, generator_mask=mask_g, discriminator_mask=mask_d, seed=seed,
            callback=None if callback is None else _tagged(callback, k),
        )
        tickets.append(GanTicket(k, mask_g, mask_d, models))
        if on_round is not None:
            on_round(tickets[-1])
    return tickets


def _tagged(callback: Callback, k: int) -> Callback:
    return lambda info: callback({"round": k, **info})

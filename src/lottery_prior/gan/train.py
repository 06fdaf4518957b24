"""Training and fine-tuning a progressive GAN with the WGAN-GP loss (pytorch_GAN_zoo recipe).

Critic loss ``D(fake) - D(real) + lambda_gp * GP + drift * D(real)^2``, generator loss
``-D(G(z))``; Adam with betas (0, 0.99); one critic step per generator step; an exponential
moving average of the generator (the zoo's ``avgG``, decay 0.999, with a warm-up
``min(decay, (1 + t) / (10 + t))`` so short runs are not dominated by the first weights).
The zoo sums the critic terms over the batch (``reduction="sum"``, also what the paper's
fine-tuning used); the default averages them, as Gulrajani et al. and Karras et al. write them.
Progressive growing: 4x4 first, then each new scale fades in with alpha going linearly from 1
to 0 (real images blended the same way), the optimizers and the average restarting per scale.

Random streams (:mod:`lottery_prior.seeding`), each its own of the seed: ``gan-init`` (the
generator's and the critic's initial weights, separately, per scale), ``gan-train-batches``
(which images), ``gan-train-augment`` (flips, shifts), ``gan-train-latents`` and
``gan-train-gp`` (the gradient penalty's interpolation weights); fine-tuning uses the same
purposes under the context ``finetune``. Torch's global random state is left as it was.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lottery_prior import seeding
from lottery_prior.errors import LipError
from lottery_prior.gan.networks import Discriminator, Generator
from lottery_prior.masks import Mask, masked_step

REDUCTIONS = ("mean", "sum")
Callback = Callable[[dict], None]


@dataclass
class GanModels:
    """A generator, its critic, and the moving average of the generator (the one to use)."""

    generator: Generator
    discriminator: Discriminator
    average: Generator


@dataclass
class Streams:
    """The random streams of one training or fine-tuning run (see the module docstring)."""

    batches: torch.Generator
    augment: torch.Generator
    latents: torch.Generator
    gp: torch.Generator

    @classmethod
    def of(cls, seed: int, *context: object) -> Streams:
        return cls(*(seeding.generator(seed, f"gan-train-{purpose}", *context)
                     for purpose in ("batches", "augment", "latents", "gp")))


@dataclass
class WganLoss:
    """WGAN-GP settings: gradient penalty weight, drift weight, batch reduction."""

    lambda_gp: float = 10.0
    drift: float = 1e-3
    reduction: str = "mean"

    def __post_init__(self) -> None:
        if self.reduction not in REDUCTIONS:
            raise LipError(f"reduction must be 'mean' or 'sum', got {self.reduction!r}")
        if not (self.lambda_gp >= 0 and self.drift >= 0):
            raise LipError("lambda_gp and drift must be >= 0")

    def reduce(self, x: Tensor) -> Tensor:
        return x.sum() if self.reduction == "sum" else x.mean()

    def critic(self, net_d: Discriminator, real: Tensor, fake: Tensor,
               rng: torch.Generator) -> Tensor:
        d_real = net_d(real)[:, 0]
        d_fake = net_d(fake)[:, 0]
        eps = torch.rand(real.shape[0], 1, 1, 1, generator=rng).to(real.device)
        mixed = (eps * real + (1 - eps) * fake).requires_grad_(True)
        (grad,) = torch.autograd.grad(net_d(mixed)[:, 0].sum(), mixed, create_graph=True)
        penalty = (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()
        return (self.reduce(d_fake) - self.reduce(d_real) + self.lambda_gp * penalty
                + self.drift * self.reduce(d_real.pow(2)))

    def generator(self, net_d: Discriminator, fake: Tensor) -> Tensor:
        return -self.reduce(net_d(fake)[:, 0])


def _adam(net: nn.Module, lr: float) -> torch.optim.Adam:
    return torch.optim.Adam(net.parameters(), lr=lr, betas=(0.0, 0.99))


def _check_images(images: Tensor, resolution: int, channels: int | None = None) -> None:
    channels = channels or (images.shape[1] if images.dim() == 4 else 1)
    if images.dim() != 4 or images.shape[1:] != (channels, resolution, resolution):
        raise LipError(f"training images must be (N, {channels}, {resolution}, {resolution}) "
                       f"in [0, 1] for this network, got {tuple(images.shape)}")
    if images.shape[0] < 2:
        raise LipError("training needs at least 2 images")


class _Batches:
    """Random minibatches in [-1, 1] at a given resolution: horizontal flips and shifts of up
    to 1/16 of the side (edge replicated) when ``augment``, then area downsampling."""

    def __init__(self, images: Tensor, batch_size: int, augment: bool, streams: Streams,
                 device: torch.device) -> None:
        self.images = images.float() * 2 - 1
        self.batch_size, self.augment, self.device = batch_size, augment, device
        self.pick, self.rng = streams.batches, streams.augment

    def __call__(self, resolution: int) -> Tensor:
        n, _, side, _ = self.images.shape
        x = self.images[torch.randint(n, (self.batch_size,), generator=self.pick)]
        if self.augment:
            flip = torch.rand(self.batch_size, generator=self.rng) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            pad = max(1, side // 16)
            padded = F.pad(x, (pad,) * 4, mode="replicate")
            dy, dx = torch.randint(2 * pad + 1, (2, self.batch_size), generator=self.rng)
            x = torch.stack([p[:, a:a + side, b:b + side]
                             for p, a, b in zip(padded, dy.tolist(), dx.tolist(), strict=True)])
        if resolution != side:
            x = F.avg_pool2d(x, side // resolution)
        return x.to(self.device)


def _blend_real(real: Tensor, alpha: float) -> Tensor:
    """The zoo's fade-in of real images: mix with their 2x-pooled, re-upsampled version."""
    if alpha == 0:
        return real
    low = F.interpolate(F.avg_pool2d(real, 2), scale_factor=2, mode="nearest")
    return alpha * low + (1 - alpha) * real


def _run(models: GanModels, batches: _Batches, steps: int, lr: float, loss: WganLoss,
         ema_decay: float, streams: Streams, *, fade_steps: int = 0,
         masks: tuple[Mask | None, Mask | None] = (None, None),
         callback: Callback | None = None, info: dict | None = None) -> None:
    """``steps`` WGAN-GP iterations at the networks' current resolution, masks kept applied."""
    net_g, net_d, avg = models.generator, models.discriminator, models.average
    mask_g, mask_d = masks
    opt_g, opt_d = _adam(net_g, lr), _adam(net_d, lr)
    device = next(net_g.parameters()).device
    n = batches.batch_size
    for t in range(steps):
        alpha = max(0.0, 1.0 - t / fade_steps) if fade_steps else 0.0
        for net in (net_g, net_d, avg):
            if len(net.depths) > 1:
                net.alpha = alpha
        real = _blend_real(batches(net_g.resolution), alpha)

        z = torch.randn(n, net_g.latent_dim, generator=streams.latents).to(device)
        with torch.no_grad():
            fake = net_g(z)
        loss_d = loss.critic(net_d, real, fake, streams.gp)
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        masked_step(opt_d, net_d, mask_d)

        net_d.requires_grad_(False)
        z = torch.randn(n, net_g.latent_dim, generator=streams.latents).to(device)
        loss_g = loss.generator(net_d, net_g(z))
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        net_d.requires_grad_(True)
        masked_step(opt_g, net_g, mask_g)

        decay = min(ema_decay, (1 + t) / (10 + t))
        with torch.no_grad():
            for p_avg, p in zip(avg.parameters(), net_g.parameters(), strict=True):
                p_avg.lerp_(p, 1 - decay)
        if callback is not None:
            callback({**(info or {}), "step": t + 1, "steps": steps, "alpha": alpha,
                      "loss_d": loss_d.item(), "loss_g": loss_g.item()})
        if t % 50 == 0 and not math.isfinite(loss_d.item()):
            raise LipError("GAN training diverged (non-finite critic loss); lower the lr")


def _check_common(steps: int, batch_size: int, lr: float, ema_decay: float) -> None:
    if steps < 1 or batch_size < 2:
        raise LipError(f"need steps >= 1 and batch_size >= 2, got {steps} and {batch_size}")
    if not (lr > 0 and 0 <= ema_decay < 1):
        raise LipError(f"need lr > 0 and 0 <= ema_decay < 1, got {lr} and {ema_decay}")


def train_gan(
    images: Tensor,
    *,
    latent_dim: int = 64,
    depths: Sequence[int] = (64, 64, 32, 16),
    steps_per_scale: int = 800,
    fade_steps: int = 400,
    batch_size: int = 16,
    lr: float = 1e-3,
    loss: WganLoss | None = None,
    ema_decay: float = 0.999,
    minibatch_std: bool = True,
    augment: bool = True,
    seed: int = 0,
    device: str | torch.device = "cpu",
    callback: Callback | None = None,
) -> GanModels:
    """Train a progressive GAN from scratch on ``images`` (N, C, R, R) in [0, 1].

    ``depths[k]`` is the width at resolution 4 * 2**k; R must be 4 * 2**(len(depths) - 1).
    Each scale runs ``steps_per_scale`` iterations, the first ``fade_steps`` of them (scales
    above 4x4) fading the new scale in. Seeded: the same arguments give the same networks.
    ``callback`` gets a dict per iteration (scale, resolution, step, steps, alpha, losses).
    """
    _check_common(steps_per_scale, batch_size, lr, ema_decay)
    if not 0 <= fade_steps <= steps_per_scale:
        raise LipError(f"fade_steps must be in [0, steps_per_scale], got {fade_steps}")
    depths = list(depths)
    if not depths:
        raise LipError("depths must list at least the 4x4 width")
    _check_images(images, 4 * 2 ** (len(depths) - 1))
    loss = loss or WganLoss()
    device = torch.device(device)
    streams = Streams.of(seed)
    with seeding.seeded_global(seed, "gan-init", "generator", 0):
        net_g = Generator(latent_dim, depths[:1], images.shape[1]).to(device)
    with seeding.seeded_global(seed, "gan-init", "critic", 0):
        net_d = Discriminator(depths[:1], images.shape[1], minibatch_std=minibatch_std).to(device)
    batches = _Batches(images, batch_size, augment, streams, device)
    for scale, depth in enumerate(depths):
        if scale:
            with seeding.seeded_global(seed, "gan-init", "generator", scale):
                net_g.add_scale(depth)
            with seeding.seeded_global(seed, "gan-init", "critic", scale):
                net_d.add_scale(depth)
            net_g.to(device)
            net_d.to(device)
        models = GanModels(net_g, net_d, copy.deepcopy(net_g))
        _run(models, batches, steps_per_scale, lr, loss, ema_decay, streams,
             fade_steps=fade_steps if scale else 0, callback=callback,
             info={"scale": scale, "resolution": net_g.resolution})
    return models


def finetune_gan(
    generator: Generator,
    discriminator: Discriminator,
    images: Tensor,
    *,
    steps: int = 200,
    batch_size: int = 16,
    lr: float = 2e-4,
    loss: WganLoss | None = None,
    ema_decay: float = 0.999,
    generator_mask: Mask | None = None,
    discriminator_mask: Mask | None = None,
    augment: bool = True,
    seed: int = 0,
    callback: Callback | None = None,
) -> GanModels:
    """Fine-tune copies of the networks with WGAN-GP (the paper: Adam 2e-4, betas (0, 0.99)).

    Masks are applied first and kept: pruned weights stay exactly zero in the generator, the
    critic and the average (which starts from the masked generator). Inputs are not modified.
    """
    _check_common(steps, batch_size, lr, ema_decay)
    _check_images(images, generator.resolution, generator.out_channels)
    if discriminator.resolution != generator.resolution:
        raise LipError(f"generator ({generator.resolution}px) and discriminator "
                       f"({discriminator.resolution}px) are at different scales")
    net_g, net_d = copy.deepcopy(generator), copy.deepcopy(discriminator)
    for net, mask in ((net_g, generator_mask), (net_d, discriminator_mask)):
        if mask is not None:
            mask.check(net)
            mask.apply_(net)
        net.requires_grad_(True)
    models = GanModels(net_g, net_d, copy.deepcopy(net_g))
    device = next(net_g.parameters()).device
    streams = Streams.of(seed, "finetune")
    batches = _Batches(images, batch_size, augment, streams, device)
    _run(models, batches, steps, lr, loss or WganLoss(), ema_decay, streams,
         masks=(generator_mask, discriminator_mask), callback=callback)
    return models

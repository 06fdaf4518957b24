"""Recovering an image with a generator prior: x = G(z), z found by gradient descent.

Images are in [0, 1]: a generator's output g in [-1, 1] stands for the image (g + 1) / 2.

* Compressive sensing (CSGM, Bora et al. 2017): y = A x + e, A Gaussian with N(0, 1/m)
  entries (:class:`GaussianMeasurement`), z = argmin ||A G(z) - y||^2. The robust variant
  (Jalal et al. 2020) minimises a median of means instead: the squared residuals are
  shuffled into ``batches`` groups every step and the median of the group means is taken, so a
  few corrupted measurements cannot pull the estimate. Outliers are rows *added* to the m
  measurements (``GaussianMeasurement(n, m, outliers=k)``: m + k rows, the first m exactly
  those of the operator without outliers), as in the paper's protocol.
* Inpainting: z = argmin ||m * (G(z) - x)||^2 (squared, over the observed pixels).

Adam (lr 1e-2, 1500 steps) from ``restarts`` random codes optimised together (Adam is
per-coordinate, so they are independent); the restart kept is the one with the lowest
objective, which only uses the measurements, never the truth.

Every random draw has its own named stream of the seed (:mod:`lottery_prior.seeding`):
``cs-matrix`` (a stream per row of A), ``cs-noise``, ``cs-outliers``, ``recovery-latents`` (the
restarts' starting codes), ``mom-shuffle`` and ``mom-order`` (median-of-means groups); an
optional ``context`` (e.g. an image's content hash) separates the streams of different images.
Nothing here reads or changes torch's global random state.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from lottery_prior import seeding
from lottery_prior.errors import LipError
from lottery_prior.gan.networks import Generator
from lottery_prior.masks import Mask
from lottery_prior.metrics import psnr

CACHE_LIMIT_BYTES = 1 << 30
Callback = Callable[[dict], None]
Objective = Callable[[Tensor, bool], Tensor]


class GaussianMeasurement:
    """An (m + outliers) x n matrix A with i.i.d. N(0, 1/m) entries, never stored unless small.

    Row i comes from its own stream ``numpy_rng(seed, "cs-matrix", *context, i)``, so A
    depends only on (n, m, seed, context): not on ``block_rows``, the device, or which rows are
    asked for, and the first m rows of an operator with ``outliers`` k are exactly the operator
    without outliers. The k added rows are measured like the others, then corrupted by
    :meth:`observe` (the robust-recovery setting: outliers are added, never replacing any of
    the m measurements). ``rows_total`` = m + k is the length of A x and y.
    Products stream A through memory ``block_rows`` rows at a time (the backward pass
    regenerates them), so memory is O(block_rows * n). ``cache`` keeps the whole matrix
    instead (default: when it takes at most 1 GiB), which is much faster for repeated products.
    """

    def __init__(self, n: int, m: int, seed: int = 0, block_rows: int = 256,
                 cache: bool | None = None, *, outliers: int = 0,
                 context: Sequence[object] = ()) -> None:
        for name, value in (("n", n), ("m", m), ("block_rows", block_rows)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise LipError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(outliers, bool) or not isinstance(outliers, int) or outliers < 0:
            raise LipError(f"outliers must be an integer >= 0, got {outliers!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise LipError(f"seed must be an integer >= 0, got {seed!r}")
        self.n, self.m, self.seed, self.block_rows = n, m, seed, block_rows
        self.outliers, self.context = outliers, tuple(context)
        self.rows_total = m + outliers
        self.cache = self.rows_total * n * 4 <= CACHE_LIMIT_BYTES if cache is None else cache
        self._dense: Tensor | None = None

    def rows(self, start: int, stop: int) -> Tensor:
        """Rows start..stop-1 of A, float32 on the CPU."""
        if not 0 <= start <= stop <= self.rows_total:
            raise LipError(f"rows {start}:{stop} are outside A's {self.rows_total} rows")
        out = np.empty((stop - start, self.n), dtype=np.float32)
        for k, i in enumerate(range(start, stop)):
            rng = seeding.numpy_rng(self.seed, "cs-matrix", *self.context, i)
            rng.standard_normal(self.n, np.float32, out[k])
        return torch.from_numpy(out).div_(math.sqrt(self.m))

    def blocks(self) -> list[tuple[int, int]]:
        """Row ranges of ``block_rows`` rows covering A."""
        return [(a, min(a + self.block_rows, self.rows_total))
                for a in range(0, self.rows_total, self.block_rows)]

    def dense(self) -> Tensor:
        """The whole matrix (m + outliers, n) on the CPU, built block by block."""
        return torch.cat([self.rows(a, b) for a, b in self.blocks()])

    def __call__(self, x: Tensor) -> Tensor:
        """A x for x of shape (n,) or (B, n): (rows_total,) or (B, rows_total),
        differentiable in x."""
        if x.shape[-1] != self.n or x.dim() not in (1, 2):
            raise LipError(f"A takes vectors of length {self.n} (or (B, {self.n})), "
                           f"got shape {tuple(x.shape)}")
        flat = x.reshape(-1, self.n)
        if self.cache:
            if self._dense is None or self._dense.device != x.device:
                self._dense = self.dense().to(x.device)
            out = flat @ self._dense.to(x.dtype).T
        else:
            out = _Streamed.apply(flat, self)
        return out.reshape(*x.shape[:-1], self.rows_total)

    def observe(self, x: Tensor, noise_std: float = 0.01, *, outlier_scale: float = 10.0,
                seed: int = 0, context: Sequence[object] = ()) -> Tensor:
        """y = A x + e, e ~ N(0, noise_std^2), for an image x in [0, 1] (any shape, n values).

        The noise of the m rows comes from the stream ``cs-noise`` of ``seed`` (and
        ``context``); the ``outliers`` added rows get, besides their own noise, an error
        N(0, (outlier_scale * s)^2) from the stream ``cs-outliers``, s the RMS of the m clean
        measurements. So y[:m] equals the observation by the operator without outliers.
        """
        if x.numel() != self.n:
            raise LipError(f"the image has {x.numel()} values, A expects n = {self.n}")
        if not noise_std >= 0 or not outlier_scale >= 0:
            raise LipError(f"need noise_std >= 0 and outlier_scale >= 0, got {noise_std} and "
                           f"{outlier_scale}")
        clean = self(x.detach().reshape(-1).float().cpu())
        noise = torch.randn(self.m, generator=seeding.generator(seed, "cs-noise", *context))
        y = clean.clone()
        y[:self.m] += noise_std * noise
        if self.outliers:
            rng = seeding.generator(seed, "cs-outliers", *context)
            k = self.outliers
            rms = clean[:self.m].pow(2).mean().sqrt()
            y[self.m:] += noise_std * torch.randn(k, generator=rng) \
                + outlier_scale * rms * torch.randn(k, generator=rng)
        return y


class _Streamed(torch.autograd.Function):
    """x @ A^T with A regenerated block by block in both passes (no m x n tensor is kept)."""

    @staticmethod
    def forward(ctx, x: Tensor, op: GaussianMeasurement) -> Tensor:  # type: ignore[override]
        ctx.op = op
        return torch.cat([x @ op.rows(a, b).to(x).T for a, b in op.blocks()], dim=1)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        op: GaussianMeasurement = ctx.op
        out = torch.zeros(grad.shape[0], op.n, dtype=grad.dtype, device=grad.device)
        for a, b in op.blocks():
            out += grad[:, a:b] @ op.rows(a, b).to(grad)
        return out, None


@dataclass
class Recovery:
    """The kept restart: image (C,H,W) in [0, 1], its code z, the objective it reached, the
    mean squared residual over all measurements (or observed pixels), every restart's
    objective, and PSNR / per-pixel MSE against the truth when one was given."""

    image: Tensor
    z: Tensor
    objective: float
    residual: float
    objectives: list[float]
    psnr: float | None = None
    mse: float | None = None


def _prepare(generator: Generator, mask: Mask | None) -> Generator:
    net = copy.deepcopy(generator).eval().requires_grad_(False)
    if mask is not None:
        mask.check(net)
        mask.apply_(net)
    return net


def _images(net: Generator, z: Tensor) -> Tensor:
    return (net(z) + 1) / 2


def _output_shape(net: Generator) -> tuple[int, int, int]:
    return net.out_channels, net.resolution, net.resolution


def initial_latents(latent_dim: int, restarts: int, seed: int = 0,
                    context: Sequence[object] = ()) -> Tensor:
    """The restarts' starting codes (restarts, latent_dim): the stream ``recovery-latents``."""
    rng = seeding.generator(seed, "recovery-latents", *context)
    return torch.randn(restarts, latent_dim, generator=rng)


def _optimise(net: Generator, objective: Objective, *, steps: int, lr: float, restarts: int,
              seed: int, context: Sequence[object], callback: Callback | None) -> Tensor:
    """Adam over ``restarts`` codes; returns the final codes (restarts, latent).

    ``objective(images, training)`` gives one value per restart.
    """
    if steps < 1 or restarts < 1 or not lr > 0:
        raise LipError(f"need steps >= 1, restarts >= 1 and lr > 0; got {steps}, {restarts}, {lr}")
    device = next(net.parameters()).device
    z = initial_latents(net.latent_dim, restarts, seed, context).to(device).requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    for step in range(steps):
        per_restart = objective(_images(net, z), True)
        opt.zero_grad(set_to_none=True)
        per_restart.sum().backward()
        opt.step()
        if callback is not None:
            callback({"step": step + 1, "steps": steps, "objective": per_restart.min().item()})
    return z.detach()


def _result(net: Generator, z: Tensor, objective: Objective,
            residual: Callable[[Tensor], Tensor], truth: Tensor | None) -> Recovery:
    with torch.no_grad():
        images = _images(net, z)
        final = objective(images, False)
        best = int(final.argmin())
        out = Recovery(
            image=images[best].clamp(0, 1).cpu(),
            z=z[best].cpu(),
            objective=final[best].item(),
            residual=residual(images[best:best + 1])[0].item(),
            objectives=final.tolist(),
        )
    if truth is not None:
        ref = truth.detach().float().cpu().reshape(out.image.shape)
        out.psnr = psnr(out.image, ref)
        out.mse = torch.mean((out.image - ref) ** 2).item()
    return out


def _check_truth(truth: Tensor | None, shape: tuple[int, int, int]) -> None:
    if truth is not None and truth.numel() != math.prod(shape):
        raise LipError(f"the truth has shape {tuple(truth.shape)}, the generator makes {shape}")


def recover_cs(
    generator: Generator,
    y: Tensor,
    operator: GaussianMeasurement,
    *,
    truth: Tensor | None = None,
    steps: int = 1500,
    lr: float = 1e-2,
    restarts: int = 5,
    robust: bool = False,
    batches: int = 50,
    mask: Mask | None = None,
    seed: int = 0,
    context: Sequence[object] = (),
    callback: Callback | None = None,
) -> Recovery:
    """Compressive sensing with a generator prior: min_z ||A G(z) - y||^2 (mean over rows).

    ``y`` holds all ``operator.rows_total`` measurements (outlier rows included).
    ``robust`` uses the median of ``batches`` means (rows reshuffled every step; a fixed
    shuffle for the final choice of restart). ``mask`` prunes a copy of the generator.
    ``seed`` and ``context`` name the random streams (starting codes, shuffles).
    """
    net = _prepare(generator, mask)
    shape = _output_shape(net)
    if operator.n != math.prod(shape):
        raise LipError(f"A has n = {operator.n} columns, the generator makes {shape} images")
    rows = operator.rows_total
    if y.shape != (rows,):
        raise LipError(f"y must hold the {rows} measurements of A (m = {operator.m}"
                       + (f" + {operator.outliers} outlier rows" if operator.outliers else "")
                       + f"), got {tuple(y.shape)}")
    if robust and not 1 <= batches <= rows:
        raise LipError(f"batches must be in [1, {rows}] (the rows of A), got {batches}")
    _check_truth(truth, shape)
    device = next(net.parameters()).device
    y = y.to(device, torch.float32)
    shuffle = seeding.generator(seed, "mom-shuffle", *context)
    fixed = torch.randperm(rows, generator=seeding.generator(seed, "mom-order", *context))

    def squared(x: Tensor) -> Tensor:
        return (operator(x.flatten(1)) - y).pow(2)

    def objective(x: Tensor, training: bool) -> Tensor:
        r2 = squared(x)
        if not robust:
            return r2.mean(dim=1)
        order = torch.randperm(rows, generator=shuffle) if training else fixed
        means = torch.stack([r2[:, idx.to(device)].mean(dim=1)
                             for idx in order.tensor_split(batches)], dim=1)
        return means.median(dim=1).values

    z = _optimise(net, objective, steps=steps, lr=lr, restarts=restarts, seed=seed,
                  context=context, callback=callback)
    return _result(net, z, objective, lambda x: squared(x).mean(dim=1), truth)


def recover_inpaint(
    generator: Generator,
    observed: Tensor,
    pixel_mask: Tensor,
    *,
    truth: Tensor | None = None,
    steps: int = 1500,
    lr: float = 1e-2,
    restarts: int = 5,
    mask: Mask | None = None,
    seed: int = 0,
    context: Sequence[object] = (),
    callback: Callback | None = None,
) -> Recovery:
    """Inpainting with a generator prior: min_z mean over observed pixels of (G(z) - x)^2.

    ``observed`` (C,H,W) in [0, 1] (values where ``pixel_mask`` is 0 are ignored);
    ``pixel_mask`` (H,W), (1,H,W) or (C,H,W), 1 = observed. ``mask`` prunes the generator.
    ``seed`` and ``context`` name the starting codes' random stream.
    """
    net = _prepare(generator, mask)
    shape = _output_shape(net)
    if tuple(observed.shape) != shape:
        raise LipError(f"the observation has shape {tuple(observed.shape)}, the generator "
                       f"makes {shape}")
    keep = pixel_mask.detach().float()
    if keep.dim() == 2:
        keep = keep[None]
    if keep.dim() != 3 or keep.shape[-2:] != shape[-2:] or keep.shape[0] not in (1, shape[0]):
        raise LipError(f"pixel_mask must be (H,W), (1,H,W) or (C,H,W) for {shape} images, got "
                       f"{tuple(pixel_mask.shape)}")
    if not ((keep == 0) | (keep == 1)).all() or keep.sum() == 0:
        raise LipError("pixel_mask must be 0 (missing) or 1 (observed), with some observed")
    _check_truth(truth, shape)
    device = next(net.parameters()).device
    keep = keep.expand(shape).to(device)
    target = observed.detach().float().to(device) * keep
    count = keep.sum()

    def objective(x: Tensor, training: bool) -> Tensor:
        return ((x - target) * keep).pow(2).sum(dim=(1, 2, 3)) / count

    z = _optimise(net, objective, steps=steps, lr=lr, restarts=restarts, seed=seed,
                  context=context, callback=callback)
    return _result(net, z, objective, lambda x: objective(x, False), truth)

"""Forward models A of the three DIP tasks; the fit loss is mse(A(G(z)), y).

Operators take and return batched images (N,C,H,W) in [0, 1].
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lottery_prior import images
from lottery_prior.checks import MAX_SIGMA, check_float
from lottery_prior.errors import LipError

TASKS = ("denoise", "inpaint", "sr")
TASK_DEFAULTS: dict[str, dict] = {
    "denoise": {"steps": 3000, "input_noise": 1 / 30},
    "inpaint": {"steps": 3000, "input_noise": 0.03},
    "sr": {"steps": 2000, "input_noise": 0.03},
}


def _check_batch(x: Tensor) -> None:
    if x.dim() != 4:
        raise LipError(f"operators take batched images (N,C,H,W), got shape {tuple(x.shape)}")


class Operator(nn.Module):
    """A forward model: ``observe`` simulates y from a clean image, ``forward`` is A."""

    task: str

    def observe(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """The simulated observation y of a clean batch x."""
        raise NotImplementedError

    def forward(self, x_hat: Tensor) -> Tensor:
        """A(x_hat), differentiable, shaped like the observation."""
        raise NotImplementedError

    def describe(self) -> dict:
        """JSON-serializable settings for provenance."""
        raise NotImplementedError


class Denoise(Operator):
    """Additive white Gaussian noise of std sigma/255, clipped to [0, 1]; A is the identity."""

    task = "denoise"

    def __init__(self, sigma: float) -> None:
        super().__init__()
        self.sigma = check_float("sigma (0-255 units)", sigma, 0, MAX_SIGMA, low_open=True)

    def observe(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        _check_batch(x)
        noise = torch.randn(x.shape, generator=generator) * (self.sigma / 255.0)
        return (x + noise.to(x.device, x.dtype)).clamp(0, 1)

    def forward(self, x_hat: Tensor) -> Tensor:
        return x_hat

    def describe(self) -> dict:
        return {"task": self.task, "sigma": self.sigma}

    def noise_variance(self, y: Tensor) -> float:
        """The mean squared difference between an observation and its image that the noise
        alone explains, estimated from the observation ``y`` (no truth): σ², less where
        clipping to [0, 1] cut the noise short. Per pixel, ``E[(clip(x + n) - x)^2]`` for
        ``n ~ N(0, σ²)`` in closed form, with ``x`` a 5x5 local mean of ``y``."""
        s = self.sigma / 255.0
        padded = torch.nn.functional.pad(y.double(), (2, 2, 2, 2), mode="reflect")
        x = torch.nn.functional.avg_pool2d(padded, 5, stride=1).clamp(0, 1)
        low, high = -x / s, (1 - x) / s  # where the noise is clipped, in units of σ

        def pdf(t: Tensor) -> Tensor:
            return torch.exp(-t.square() / 2) / math.sqrt(2 * math.pi)

        cdf_low, cdf_high = torch.special.ndtr(low), torch.special.ndtr(high)
        inside = s * s * (cdf_high - cdf_low - (high * pdf(high) - low * pdf(low)))
        clipped = x.square() * cdf_low + (1 - x).square() * (1 - cdf_high)
        return float((inside + clipped).mean())


class Inpaint(Operator):
    """Pixels where mask = 0 are missing (set to 0); A multiplies by the mask."""

    task = "inpaint"
    mask: Tensor

    def __init__(self, mask: Tensor, *, source: str | None = None) -> None:
        super().__init__()
        if mask.dim() == 3:
            mask = mask.unsqueeze(0)
        if mask.dim() != 4 or mask.shape[:2] != (1, 1):
            raise LipError(f"mask must be (1,H,W) or (1,1,H,W), got {tuple(mask.shape)}")
        if not ((mask == 0) | (mask == 1)).all():
            raise LipError("mask values must be 0 (missing) or 1 (observed)")
        if not mask.any():
            raise LipError("mask observes no pixel (it is 0 everywhere); white (1, or 255 in a "
                           "file) marks the observed pixels")
        self.register_buffer("mask", mask.float())
        self.source = source

    def _check(self, x: Tensor) -> None:
        _check_batch(x)
        if x.shape[-2:] != self.mask.shape[-2:]:
            h, w = self.mask.shape[-2:]
            raise LipError(
                f"mask {h}x{w} does not match image {x.shape[-2]}x{x.shape[-1]}; "
                "give a mask of the image's size"
            )

    def observe(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        self._check(x)
        return x * self.mask

    def forward(self, x_hat: Tensor) -> Tensor:
        self._check(x_hat)
        return x_hat * self.mask

    def describe(self) -> dict:
        return {
            "task": self.task,
            "mask": self.source,
            "mask_hw": list(self.mask.shape[-2:]),
            "missing_fraction": round(1.0 - self.mask.mean().item(), 6),
        }


def lanczos2_kernel(factor: int) -> Tensor:
    """The DIP Lanczos-2 downsampling kernel (4f x 4f, phase 1/2), normalized to sum 1."""
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise LipError(f"factor must be a positive integer, got {factor!r}")
    n = 4 * factor
    c = (n + 2) / 2
    d = (torch.arange(1, n + 1, dtype=torch.float64) + 0.5 - c).abs() / factor
    # with phase 1/2, d is never 0, so L(0) = 1 needs no special case
    lanczos = 2 * torch.sin(math.pi * d) * torch.sin(math.pi * d / 2) / (math.pi**2 * d**2)
    kernel = torch.outer(lanczos, lanczos)
    return (kernel / kernel.sum()).float()


def _check_divisible(h: int, w: int, factor: int) -> None:
    if h % factor or w % factor:
        raise LipError(
            f"image {h}x{w} is not divisible by factor {factor}; crop it to a multiple of {factor}"
        )


class SuperResolve(Operator):
    """y is a Lanczos (Pillow) downscale of x by ``factor``; A is the DIP Lanczos-2 downsampler."""

    task = "sr"
    kernel: Tensor

    def __init__(self, factor: int) -> None:
        super().__init__()
        if isinstance(factor, bool) or factor not in (2, 4, 8):
            raise LipError(f"super-resolution factor must be 2, 4 or 8, got {factor}")
        self.factor = int(factor)
        self.register_buffer("kernel", lanczos2_kernel(self.factor)[None, None])

    def _check(self, x: Tensor) -> None:
        _check_batch(x)
        _check_divisible(x.shape[-2], x.shape[-1], self.factor)

    def observe(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        self._check(x)
        H, W = x.shape[-2:]
        return images.resize(x, H // self.factor, W // self.factor).to(x.dtype)

    def forward(self, x_hat: Tensor) -> Tensor:
        self._check(x_hat)
        pad = 3 * self.factor // 2
        channels = x_hat.shape[1]
        padded = F.pad(x_hat, (pad, pad, pad, pad), mode="replicate")
        weight = self.kernel.to(x_hat.dtype).expand(channels, 1, -1, -1)
        return F.conv2d(padded, weight, stride=self.factor, groups=channels)

    def upscale(self, y: Tensor) -> Tensor:
        """Bicubic (Pillow) upsampling of a low-resolution batch back to full size: a baseline."""
        _check_batch(y)
        h, w = y.shape[-2:]
        return images.resize(y, h * self.factor, w * self.factor, method="bicubic").to(y.dtype)

    def describe(self) -> dict:
        return {
            "task": self.task,
            "factor": self.factor,
            "observe": "pillow-lanczos",
            "forward": "lanczos2",
        }


def make_operator(
    task: str,
    image_hw: tuple[int, int],
    *,
    sigma: float = 25,
    mask: str | None = None,
    keep: float | None = None,
    factor: int = 4,
    generator: torch.Generator | None = None,
    size: int | None = None,
    source_hw: tuple[int, int] | None = None,
    multiple: int = 32,
) -> Operator:
    """The operator for ``task`` on images of size image_hw.

    Inpainting uses ``mask`` (a file/``data:`` spec, or "text" for ``images.text_mask``),
    else a Bernoulli mask keeping pixels with probability ``keep`` (default 0.5). A mask file
    must have the image's size (see ``images.load_mask``): ``image_hw``, or larger by the crop
    to ``multiple`` that ``load_image`` applied, or, when the image was loaded with
    ``size``, the image's original size ``source_hw`` (``images.image_size(spec)``), which
    then gets the image's square crop and resize.
    """
    h, w = image_hw
    if task == "denoise":
        return Denoise(sigma)
    if task == "inpaint":
        if mask is not None and keep is not None:
            raise LipError("give either a mask or a keep ratio for inpainting, not both")
        if mask == "text":
            return Inpaint(images.text_mask(h, w), source="text")
        if mask is not None:
            loaded = images.load_mask(mask, (h, w), multiple=multiple, size=size,
                                      source_hw=source_hw)
            return Inpaint(loaded, source=mask)
        keep = 0.5 if keep is None else keep
        return Inpaint(images.bernoulli_mask(h, w, keep, generator), source=f"bernoulli:{keep}")
    if task == "sr":
        op = SuperResolve(factor)
        _check_divisible(h, w, op.factor)
        return op
    raise LipError(f"unknown task {task!r}; use one of: {', '.join(TASKS)}")

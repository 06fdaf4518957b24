"""A restoration problem: an image, a task's forward model, the observation, and its score.

Data flows one way: image -> operator -> observation -> (prior, fit) -> result. A problem is
either simulated from a clean image (the truth is known and every output is scored) or built
from an observed, already degraded image (no truth, nothing to score).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cached_property

import torch
from torch import Tensor, nn

from lottery_prior.checks import MAX_SIGMA, check_float, check_int, check_seed
from lottery_prior.errors import LipError
from lottery_prior.fit import FitConfig, select_device
from lottery_prior.images import check_size_fits_memory, image_size, load_image
from lottery_prior.metrics import psnr, psnr_y
from lottery_prior.models import create_model
from lottery_prior.operators import TASK_DEFAULTS, make_operator
from lottery_prior.precision import resolve
from lottery_prior.seeding import generator, seeded_global


@dataclass
class Problem:
    """Everything a fit needs about the data; tensors are ``(1, C, H, W)`` on the CPU."""

    image: str
    task: str
    operator: nn.Module
    observation: Tensor
    clean: Tensor | None
    shape: tuple[int, int, int]
    noise_seed: int | None = None

    @property
    def metric(self) -> Callable[[Tensor, Tensor], float]:
        """PSNR on RGB; for super-resolution on the Y channel with a 4-pixel border crop."""
        return psnr_y if self.task == "sr" else psnr

    @cached_property
    def noise_variance(self) -> float:
        """What the observation's noise alone adds to the loss, in [0, 1] units, estimated
        from the observation (σ² of denoising, less where clipping cut the noise; 0 for the
        noise-free tasks): what the discrepancy stopping rule compares the loss with."""
        estimate = getattr(self.operator, "noise_variance", None)
        return estimate(self.observation) if estimate is not None else 0.0

    @property
    def metric_name(self) -> str:
        return "PSNR-Y (border 4)" if self.task == "sr" else "PSNR"

    def describe(self) -> dict:
        """JSON-ready provenance and identity: the image and observation (content hashes, so
        two different observations never look alike), the noise seed, the operator's
        settings (and its mask's content for inpainting)."""
        described = {
            "image": self.image,
            "image_sha256": content_hash(self.clean if self.clean is not None
                                         else self.observation),
            "observation_sha256": content_hash(self.observation),
            "noise_seed": self.noise_seed,
            "observed": self.clean is None,
            "shape": list(self.shape),
            **self.operator.describe(),
        }
        if isinstance(getattr(self.operator, "mask", None), Tensor):
            described["mask_sha256"] = content_hash(self.operator.mask)
        return described


def make_problem(
    image: str,
    task: str = "denoise",
    *,
    sigma: float = 25.0,
    mask: str | None = None,
    keep: float | None = None,
    factor: int = 4,
    size: int | None = None,
    observed: bool = False,
    multiple: int = 32,
    noise_seed: int = 0,
) -> Problem:
    """Load ``image`` and simulate the task's observation, or take it as observed.

    The observation's randomness (noise, Bernoulli mask) comes from ``noise_seed`` through
    streams of its own, named by purpose and keyed by the image's content: independent of the
    network's seed (init, z, perturbation), and two images never share a noise field.
    With ``observed=True`` the file is the degraded image itself: for super-resolution it is
    the low-resolution image and the problem is ``factor`` times larger; inpainting then needs
    a mask file.
    """
    if not isinstance(task, str) or task not in TASK_DEFAULTS:
        raise LipError(f"unknown task {task!r}; choose one of {', '.join(TASK_DEFAULTS)}")
    check_problem_settings(task, sigma=sigma, keep=keep, factor=factor, size=size,
                           multiple=multiple, noise_seed=noise_seed)
    # a mask file follows --size only if it has the image's own (original) size
    source_hw = image_size(image) if size is not None and mask not in (None, "text") else None
    if observed:
        if task == "inpaint" and (mask is None or mask == "text"):
            raise LipError("an observed inpainting image needs its mask file: pass --mask FILE")
        lr_multiple = max(1, multiple // factor) if task == "sr" else multiple
        y = load_image(image, size=size, multiple=lr_multiple).unsqueeze(0)
        scale = factor if task == "sr" else 1
        hw = (y.shape[-2] * scale, y.shape[-1] * scale)
        operator = make_operator(task, hw, sigma=sigma, mask=mask, keep=keep, factor=factor,
                                 size=size, source_hw=source_hw, multiple=lr_multiple)
        return Problem(image, task, operator, y, None, (y.shape[1], *hw))
    x = load_image(image, size=size, multiple=multiple).unsqueeze(0)
    hw = (x.shape[-2], x.shape[-1])
    content = content_hash(x)
    operator = make_operator(task, hw, sigma=sigma, mask=mask, keep=keep, factor=factor,
                             generator=generator(noise_seed, "inpaint-mask", content), size=size,
                             source_hw=source_hw, multiple=multiple)
    y = operator.observe(x, generator=generator(noise_seed, "observation", content))
    return Problem(image, task, operator, y, x, (x.shape[1], *hw), noise_seed)


def check_problem_settings(task: str, *, sigma: float = 25.0, keep: float | None = None,
                           factor: int = 4, size: int | None = None, multiple: int = 32,
                           noise_seed: int = 0) -> None:
    """Refuse (one-line LipError) a setting of an observation that is not a finite number
    within its bounds, before any image is loaded: the noise seed (0 <= seed < 2**63), sigma
    (0-255 units), keep, the super-resolution factor, and a size that fits in memory."""
    check_seed("noise seed", noise_seed)
    check_float("sigma (0-255 units)", sigma, 0, MAX_SIGMA, low_open=True)
    if keep is not None:
        check_float("keep", keep, 0, 1, low_open=True)
    if task == "sr" and (isinstance(factor, bool) or factor not in (2, 4, 8)
                         or not isinstance(factor, int)):
        raise LipError(f"super-resolution factor must be 2, 4 or 8, got {factor!r}")
    check_int("multiple", multiple, 1, 2**16)
    if size is not None:
        check_int("size", size, 1)
        check_size_fits_memory(size)


def content_hash(t: Tensor) -> str:
    """A short hash of a tensor's values (its identity in run folders and random streams)."""
    data = t.detach().to("cpu", torch.float32).contiguous().numpy()
    return hashlib.sha256(str(data.shape).encode() + data.tobytes()).hexdigest()[:16]


def resolved(config: FitConfig, model: str, options: dict | None,
             problem: Problem) -> FitConfig:
    """``config`` with its precision resolved for this network on this problem: ``auto``
    becomes the precision measured fastest here (once per machine, then cached), so that a
    run's identity holds what will run."""
    if config.precision != "auto":
        return config
    device = select_device(config.device)
    name = resolve("auto", device, model, dict(options or {}),
                   lambda: build_prior(model, options, problem, seed=config.seed),
                   problem.shape[1:])
    return replace(config, precision=name)


def build_prior(
    name: str, options: dict | None, problem: Problem, seed: int = 0
) -> tuple[nn.Module, Tensor]:
    """A freshly initialised network and its fixed input code ``z`` for a problem, from the
    seed's ``init`` and ``z`` streams (torch's global random state is left as it was)."""
    options = dict(options or {})
    channels, height, width = problem.shape
    options.setdefault("out_channels", channels)
    with seeded_global(seed, "init"):
        model = create_model(name, **options)
    model.check_size(height, width)
    return model, model.make_input(height, width, generator=generator(seed, "z"))

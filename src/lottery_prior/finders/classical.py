"""Classical restoration methods: what a user would otherwise run, in every comparison.

Each is a thin wrapper over a well-kept library, never a re-implementation, registered in
the method registry beside the finders (so ``lip compare --methods``, sweeps and the report
know it), with ``classical = True``: it has no network to find, fit or transfer. It
restores the problem's observation once (:meth:`ClassicalMethod.restore`) and is scored with
the problem's own metric. Its one output fills the ``final`` and ``averaged`` scores; the
oracle peaks and the automatic stop do not apply to it and stay empty.

========================  ===================================  ==============================
name                      library call                         task
========================  ===================================  ==============================
``bm3d``                  ``bm3d.bm3d_rgb`` (CBM3D; optional)  denoise
``nl-means``              ``skimage.restoration.denoise_nl_means``  denoise
``tv``                    ``skimage.restoration.denoise_tv_chambolle``  denoise
``wavelet``               ``skimage.restoration.denoise_wavelet`` (BayesShrink)  denoise
``biharmonic``            ``skimage.restoration.inpaint_biharmonic``  inpaint
``bicubic``, ``lanczos``  Pillow resampling (as the observation was made)  sr
========================  ===================================  ==============================

Every denoiser comes twice: with the true σ (the synthetic setting, as in the paper) and as
``<name>-blind`` with σ estimated from the observation (``skimage.restoration.
estimate_sigma``: what a user with a real photo has).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from lottery_prior.errors import LipError
from lottery_prior.finders.base import REGISTRY, Found, MaskFinder, Match, register_finder
from lottery_prior.metrics import ssim
from lottery_prior.problem import Problem
from lottery_prior.scores import score_columns

CLASSICAL_ORDER = 200  # after every network in tables and legends
CLASSICAL = "classical"  # in a list of methods: every classical method of the task


class ClassicalMethod(MaskFinder):
    """A classical method of one task: ``restore(problem)`` from the observation alone."""

    classical = True
    structure: ClassVar[str] = "any"
    transferable: ClassVar[bool] = False
    task: ClassVar[str]
    library: ClassVar[str]  # the distribution whose version is recorded

    def find(self, match: Match, *, progress=None) -> Found:
        raise LipError(f"{self.name!r} is a classical method: it has no network to find; "
                       "restore the problem with it instead")

    def available(self) -> str | None:
        """Why it cannot run here (its optional library is missing), or None."""
        return None

    def settings(self, problem: Problem) -> dict:
        """Its parameters, resolved for this observation (σ given or estimated)."""
        return {}

    def run(self, y: np.ndarray, problem: Problem, settings: dict) -> np.ndarray:
        """The library call on the observation, an ``(H, W, C)`` float array in [0, 1]."""
        raise NotImplementedError

    def restore(self, problem: Problem) -> Restored:
        """Restore ``problem``'s observation; scored against its clean image if it has one."""
        why = self.available()
        if why:
            raise LipError(why)
        if problem.task != self.task:
            raise LipError(f"{self.name!r} restores {self.task}, not {problem.task}; choose "
                           f"one of {', '.join(classical_names(problem.task))}")
        y = to_array(problem.observation)
        start = time.perf_counter()
        settings = self.settings(problem)
        restored = self.run(y, problem, settings)
        seconds = time.perf_counter() - start
        output = from_array(np.clip(restored, 0.0, 1.0))
        return Restored(self.name, self.title, output, _scores(output, problem), seconds,
                        library_version(self.library), settings)


@dataclass
class Restored:
    """A classical method's output on one problem, its scores (``final`` and ``averaged``:
    its one output; no oracle, no stop), seconds, library version and resolved settings."""

    method: str
    label: str
    output: Tensor
    scores: dict
    seconds: float
    library: str
    settings: dict

    def row(self) -> dict:
        """A table row like a network's fit: the labelled PSNRs it has, seconds, library."""
        out = {"method": self.label, "sparsity": None, "parameters": None,
               **score_columns(self.scores), "seconds": round(self.seconds, 2),
               "library": self.library}
        if self.scores["averaged"].get("ssim") is not None:
            out["ssim_averaged"] = round(self.scores["averaged"]["ssim"], 4)
        return out


def _scores(output: Tensor, problem: Problem) -> dict:
    entry: dict = {"step": None}
    if problem.clean is not None:
        entry = {"step": None, "psnr": problem.metric(output, problem.clean),
                 "ssim": ssim(output, problem.clean)}
    return {"final": dict(entry), "averaged": dict(entry)}


def to_array(t: Tensor) -> np.ndarray:
    """A ``(1, C, H, W)`` tensor as the ``(H, W, C)`` float64 array the libraries take."""
    return t[0].detach().to("cpu", torch.float64).permute(1, 2, 0).numpy()


def from_array(a: np.ndarray) -> Tensor:
    """An ``(H, W, C)`` array back as a ``(1, C, H, W)`` float32 tensor."""
    if a.ndim == 2:
        a = a[..., None]
    return torch.from_numpy(np.ascontiguousarray(a)).float().permute(2, 0, 1).unsqueeze(0)


def library_version(name: str) -> str:
    """``name version`` of an installed distribution."""
    try:
        return f"{name} {metadata.version(name)}"
    except metadata.PackageNotFoundError:
        return f"{name} (not installed)"


def restore_classical(problem: Problem, method: str) -> Restored:
    """Restore ``problem``'s observation with the classical ``method`` (``bm3d``,
    ``biharmonic``, ``bicubic``, ...: :func:`classical_names`), scored like a fit.

    Example:
        >>> import lottery_prior as lp
        >>> problem = lp.make_problem("builtin:astronaut", "denoise", sigma=25, size=32)
        >>> restored = lp.restore_classical(problem, "nl-means-blind")
        >>> restored.row()["psnr_averaged"] > 20
        True
    """
    if not is_classical(method):
        raise LipError(f"{method!r} is not a classical method; choose from "
                       f"{', '.join(classical_names(problem.task))}")
    return REGISTRY[method]().restore(problem)


def classical_names(task: str | None = None) -> list[str]:
    """The registered classical methods (of ``task``), in table order."""
    return [n for n, c in sorted(REGISTRY.items(), key=lambda item: item[1].order)
            if c.classical and (task is None or c.task == task)]


def is_classical(name: str) -> bool:
    cls = REGISTRY.get(name)
    return cls is not None and cls.classical


# --- denoising ------------------------------------------------------------------------------

def estimated_sigma(y: np.ndarray) -> float:
    """σ of the observation's noise in [0, 1] units, estimated by wavelet MAD
    (``skimage.restoration.estimate_sigma``, averaged over channels)."""
    from skimage.restoration import estimate_sigma

    return float(estimate_sigma(y, channel_axis=-1, average_sigmas=True))


class Denoiser(ClassicalMethod):
    """A denoiser given σ: the true one, or (``blind``) one estimated from the observation."""

    task = "denoise"
    blind: ClassVar[bool] = False

    def settings(self, problem: Problem) -> dict:
        if self.blind:
            return {"sigma": estimated_sigma(to_array(problem.observation)),
                    "sigma_from": "estimated"}
        return {"sigma": problem.operator.sigma / 255.0, "sigma_from": "given"}


def _denoisers(name: str, title: str, library: str, order: int,
               call: Callable[[np.ndarray, float], np.ndarray],
               available: Callable[[], str | None] = lambda: None) -> None:
    """Register ``name`` (true σ) and ``name-blind`` (σ estimated) for one library call."""
    for blind in (False, True):
        register_finder(type(f"{name}-{blind}", (Denoiser,), {
            "name": f"{name}-blind" if blind else name,
            "title": f"{title} (σ estimated)" if blind else title,
            "library": library, "order": CLASSICAL_ORDER + order + blind, "blind": blind,
            "run": lambda self, y, problem, s, call=call: call(y, s["sigma"]),
            "available": lambda self, available=available: available(),
            "__doc__": f"{title} through ``{library}``, σ "
                       f"{'estimated from the observation' if blind else 'given'}.",
        }))


def bm3d_missing() -> str | None:
    """Why CBM3D cannot run here: the optional ``bm3d`` package (or its binary) is missing."""
    try:
        import bm3d  # noqa: F401
    except (ImportError, OSError) as err:
        return (f"bm3d is not available here ({str(err).splitlines()[0]}); install it with "
                "pip install 'lottery_prior[classical]'")
    return None


def run_bm3d(y: np.ndarray, sigma: float) -> np.ndarray:
    """CBM3D on a colour image, BM3D on a grey one (``bm3d`` package, default profile)."""
    import bm3d

    if y.shape[-1] == 3:
        return bm3d.bm3d_rgb(y, sigma)
    return bm3d.bm3d(y[..., 0], sigma)


def run_nl_means(y: np.ndarray, sigma: float) -> np.ndarray:
    """Non-local means with scikit-image's recipe for a known σ: h = 0.8 σ, 5x5 patches,
    search distance 6, fast mode."""
    from skimage.restoration import denoise_nl_means

    return denoise_nl_means(y, h=0.8 * sigma, sigma=sigma, fast_mode=True, patch_size=5,
                            patch_distance=6, channel_axis=-1)


def run_tv(y: np.ndarray, sigma: float) -> np.ndarray:
    """Total variation (Chambolle) with weight = σ, a fixed rule (no tuning on the truth)."""
    from skimage.restoration import denoise_tv_chambolle

    return denoise_tv_chambolle(y, weight=sigma, channel_axis=-1)


def run_wavelet(y: np.ndarray, sigma: float) -> np.ndarray:
    """Wavelet BayesShrink, soft thresholds, in YCbCr, with σ given."""
    from skimage.restoration import denoise_wavelet

    return denoise_wavelet(y, sigma=sigma, method="BayesShrink", mode="soft",
                           rescale_sigma=True, convert2ycbcr=y.shape[-1] == 3,
                           channel_axis=-1)


_denoisers("bm3d", "CBM3D", "bm3d", 0, run_bm3d, bm3d_missing)
_denoisers("nl-means", "NL-means", "scikit-image", 2, run_nl_means)
_denoisers("tv", "TV (Chambolle)", "scikit-image", 4, run_tv)
_denoisers("wavelet", "wavelet BayesShrink", "scikit-image", 6, run_wavelet)


# --- inpainting and super-resolution ----------------------------------------------------------

@register_finder
class Biharmonic(ClassicalMethod):
    """Biharmonic inpainting of the missing pixels (``skimage.restoration.inpaint_biharmonic``)."""

    name = "biharmonic"
    title = "biharmonic inpainting"
    task = "inpaint"
    library = "scikit-image"
    order = CLASSICAL_ORDER + 10

    def run(self, y: np.ndarray, problem: Problem, settings: dict) -> np.ndarray:
        from skimage.restoration import inpaint_biharmonic

        missing = problem.operator.mask[0, 0].numpy() == 0
        return inpaint_biharmonic(y, missing, channel_axis=-1)


class Upsampler(ClassicalMethod):
    """The low-resolution observation upsampled by Pillow's antialiased resampling."""

    task = "sr"
    library = "pillow"
    method: ClassVar[str]

    def settings(self, problem: Problem) -> dict:
        return {"resample": self.method, "factor": problem.operator.factor}

    def run(self, y: np.ndarray, problem: Problem, settings: dict) -> np.ndarray:
        from lottery_prior.images import resize

        h, w = problem.shape[1:]
        return to_array(resize(problem.observation, h, w, method=self.method))


@register_finder
class Bicubic(Upsampler):
    """Bicubic upsampling (Pillow)."""

    name, title, method, order = "bicubic", "bicubic", "bicubic", CLASSICAL_ORDER + 20


@register_finder
class Lanczos(Upsampler):
    """Lanczos upsampling (Pillow), the filter the observation was downscaled with."""

    name, title, method, order = "lanczos", "Lanczos", "lanczos", CLASSICAL_ORDER + 21

"""Sparsity priors for compressive sensing: the CSGM paper's baseline, Lasso in a DCT or a
wavelet basis, on the same A and y as the generator's recovery.

x = Ψ c with Ψ an orthonormal synthesis (inverse 2-D DCT per channel, ``scipy.fft``; or an
orthonormal wavelet, ``pywt`` with periodization), so A x = (A Ψ) c and the rows of A Ψ are
the rows of A taken to the basis (Ψᵀ = Ψ⁻¹ = the analysis). c is found by scikit-learn's
Lasso: ``(1 / 2 rows) ‖y − A Ψ c‖² + α ‖c‖₁``. α is chosen two ways, both reported:
by 5-fold cross-validation on the measurements (no truth: what a user can run), and by the
truth (``-oracle``: the best α of the grid, an upper bound for the baseline).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from lottery_prior import seeding
from lottery_prior.errors import LipError
from lottery_prior.gan.recovery import Recovery

BASES = ("dct", "wavelet")
CS_BASELINES = ("least-norm", "lasso-dct", "lasso-wavelet")  # what `lip gan cs` can add
WAVELET = "db1"  # orthonormal at every level (Haar), as in the CSGM baseline
ALPHAS = np.logspace(-6, -1, 16)  # the grid for both choices of α


@dataclass(frozen=True)
class Basis:
    """An orthonormal basis of images of ``shape`` (C, H, W): ``analysis`` x -> c (n,) and
    ``synthesis`` c -> x, each the other's inverse and transpose."""

    name: str
    shape: tuple[int, int, int]

    def __post_init__(self) -> None:
        if self.name not in BASES:
            raise LipError(f"unknown basis {self.name!r}; choose {' or '.join(BASES)}")

    def analysis(self, x: np.ndarray) -> np.ndarray:
        """Coefficients of images ``(..., C, H, W)``, flattened to ``(..., n)``."""
        lead = x.shape[:-3]
        if self.name == "dct":
            from scipy.fft import dctn

            return dctn(x, axes=(-2, -1), norm="ortho").reshape(*lead, -1)
        import pywt

        coeffs = pywt.wavedec2(x, WAVELET, mode="periodization", axes=(-2, -1))
        array, _ = pywt.coeffs_to_array(coeffs, axes=(-2, -1))
        return array.reshape(*lead, -1)

    def synthesis(self, c: np.ndarray) -> np.ndarray:
        """Images ``(C, H, W)`` of coefficients ``(n,)``."""
        grid = c.reshape(self.shape)
        if self.name == "dct":
            from scipy.fft import idctn

            return idctn(grid, axes=(-2, -1), norm="ortho")
        import pywt

        _, slices = pywt.coeffs_to_array(
            pywt.wavedec2(np.zeros(self.shape), WAVELET, mode="periodization", axes=(-2, -1)),
            axes=(-2, -1))
        coeffs = pywt.array_to_coeffs(grid, slices, output_format="wavedec2")
        return pywt.waverec2(coeffs, WAVELET, mode="periodization", axes=(-2, -1))


def lasso_cs(a: Tensor, y: Tensor, shape: tuple[int, int, int], basis: str, *,
             truth: Tensor | None = None, seed: int = 0,
             alphas: np.ndarray = ALPHAS) -> dict[str, Recovery]:
    """Lasso in ``basis`` from ``y = A x + e``: ``{"lasso-<basis>": α by cross-validation}``,
    and ``"lasso-<basis>-oracle"`` (α chosen by the truth) when ``truth`` is given. ``a`` is
    A as a dense ``(rows, n)`` matrix; images are ``shape`` in [0, 1]."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LassoCV, lasso_path
    from sklearn.model_selection import KFold

    b = Basis(basis, shape)
    design = b.analysis(a.double().numpy().reshape(-1, *shape))  # A Ψ, row by row
    target = y.double().numpy()
    out = {}
    folds = KFold(5, shuffle=True, random_state=int(
        seeding.numpy_rng(seed, "lasso-cv", basis, *map(str, shape)).integers(2**31)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        cv = LassoCV(alphas=alphas, fit_intercept=False, cv=folds, max_iter=5000).fit(
            design, target)
        out[f"lasso-{basis}"] = _recovery(b, cv.coef_, design, target, truth)
        if truth is not None:
            _, coefs, _ = lasso_path(design, target, alphas=alphas, max_iter=5000)
            fits = [_recovery(b, coefs[:, i], design, target, truth)
                    for i in range(coefs.shape[1])]
            # the CV fit is one of the grid's α too (solved to its own tolerance)
            out[f"lasso-{basis}-oracle"] = min([*fits, out[f"lasso-{basis}"]],
                                               key=lambda r: r.mse)
    return out


def _recovery(basis: Basis, c: np.ndarray, design: np.ndarray, y: np.ndarray,
              truth: Tensor | None) -> Recovery:
    image = torch.from_numpy(basis.synthesis(c)).float().clamp(0, 1)
    residual = float(np.mean((design @ c - y) ** 2))
    mse = psnr = None
    if truth is not None:
        mse = (image - truth.reshape(image.shape).float()).pow(2).mean().item()
        psnr = 10 * math.log10(1 / mse) if mse else math.inf
    return Recovery(image=image, z=torch.empty(0), objective=residual, residual=residual,
                    objectives=[residual], psnr=psnr, mse=mse)

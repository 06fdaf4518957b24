"""Image-quality metrics: PSNR (all channels or luma Y) and SSIM, returned as Python floats.

Inputs are single images shaped (C,H,W) or (1,C,H,W) with values in [0, 1].
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from lottery_prior.errors import LipError


def _pair(x: Tensor, ref: Tensor) -> tuple[Tensor, Tensor]:
    """Both images as detached (C,H,W) float tensors on x's device."""
    if x.shape != ref.shape:
        raise LipError(
            f"image shapes differ: {tuple(x.shape)} vs {tuple(ref.shape)}; compare "
            "images of the same size"
        )
    if x.dim() == 4 and x.shape[0] == 1:
        x, ref = x[0], ref[0]
    if x.dim() != 3:
        raise LipError(f"metrics take one image (C,H,W) or (1,C,H,W), got {tuple(x.shape)}")
    return x.detach().float(), ref.detach().to(x.device).float()


def psnr(x: Tensor, ref: Tensor, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB over all channels; inf for identical images."""
    x, ref = _pair(x, ref)
    mse = torch.mean((x - ref) ** 2).item()
    return math.inf if mse == 0 else 10.0 * math.log10(data_range**2 / mse)


def rgb_to_y(x: Tensor) -> Tensor:
    """Luma of (..., 3, H, W) RGB in [0,1] as (..., 1, H, W), the MATLAB rgb2ycbcr convention
    (Y in [16/255, 235/255]). A 1-channel (gray) image is R = G = B, so its Y' is its value
    and it gets the same scaling: gray and the same image as RGB have the same luma."""
    if x.dim() < 3 or x.shape[-3] not in (1, 3):
        raise LipError(f"rgb_to_y takes (..., C, H, W) with C=1 or 3, got {tuple(x.shape)}")
    if x.shape[-3] == 1:
        luma = x
    else:
        r, g, b = x.unbind(-3)
        luma = (0.299 * r + 0.587 * g + 0.114 * b).unsqueeze(-3)
    return (16.0 + 219.0 * luma) / 255.0


def psnr_y(x: Tensor, ref: Tensor, border: int = 4) -> float:
    """PSNR on luma Y after removing ``border`` pixels from every side (super-resolution style)."""
    x, ref = _pair(x, ref)
    H, W = x.shape[-2:]
    if border < 0 or 2 * border >= min(H, W):
        raise LipError(
            f"border {border} does not fit image {H}x{W}; use 0 <= border < {(min(H, W) + 1) // 2}"
        )
    crop = (..., slice(border, H - border), slice(border, W - border))
    return psnr(rgb_to_y(x)[crop], rgb_to_y(ref)[crop])


def ssim(x: Tensor, ref: Tensor, data_range: float = 1.0) -> float:
    """Structural similarity (scikit-image, 7x7 window, float64), averaged over channels."""
    from skimage.metrics import structural_similarity

    x, ref = _pair(x, ref)
    if min(x.shape[-2:]) < 7:
        raise LipError(f"ssim needs images of at least 7x7, got {x.shape[-2]}x{x.shape[-1]}")
    a = x.cpu().double().numpy()
    b = ref.cpu().double().numpy()
    if a.shape[0] == 1:
        return float(structural_similarity(a[0], b[0], data_range=data_range))
    return float(structural_similarity(a, b, data_range=data_range, channel_axis=0))

"""PSNR, luma PSNR and SSIM against known values and scikit-image."""

import math

import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from lottery_prior.errors import LipError
from lottery_prior.metrics import psnr, psnr_y, rgb_to_y, ssim


@pytest.mark.parametrize("step", [2**-2, 2**-4, 2**-7, 2**-10])
def test_psnr_of_a_known_mse_is_exact(step):
    """An error of exactly +-step on every pixel (exact in float32): mse = step^2 and
    PSNR = 10 log10(1 / mse) to the last digits."""
    ref = torch.full((3, 16, 16), 0.5)
    signs = torch.ones(3, 16, 16)
    signs[:, ::2] = -1
    x = ref + signs * step
    mse = step**2
    assert psnr(x, ref) == pytest.approx(10 * math.log10(1 / mse), abs=1e-9)
    assert psnr(x, ref, data_range=2.0) == pytest.approx(10 * math.log10(4 / mse), abs=1e-9)
    half = ref.clone()
    half[:, :8] = x[:, :8]  # half the pixels wrong: mse halves, +3.0103 dB
    assert psnr(half, ref) == pytest.approx(10 * math.log10(2 / mse), abs=1e-9)


def test_psnr_known_values():
    x, ref = torch.zeros(3, 8, 8), torch.full((3, 8, 8), 0.1)
    assert psnr(x, ref) == pytest.approx(20.0, abs=1e-5)
    assert psnr(x[None], ref[None]) == pytest.approx(20.0, abs=1e-5)
    assert psnr(x * 255, ref * 255, data_range=255) == pytest.approx(20.0, abs=1e-5)
    assert psnr(ref, ref) == math.inf


@pytest.mark.parametrize("channels", [1, 3])
def test_psnr_matches_skimage(generator, channels):
    x = torch.rand(channels, 48, 80, generator=generator)
    ref = (x + 0.05 * torch.randn(x.shape, generator=generator)).clamp(0, 1)
    expected = peak_signal_noise_ratio(ref.double().numpy(), x.double().numpy(), data_range=1)
    assert psnr(x, ref) == pytest.approx(expected, abs=1e-4)


def test_psnr_shape_errors(rgb_image):
    with pytest.raises(LipError, match="shapes differ"):
        psnr(rgb_image, rgb_image[:, :-1])
    with pytest.raises(LipError, match="one image"):
        psnr(torch.stack([rgb_image] * 2), torch.stack([rgb_image] * 2))


def test_rgb_to_y(gray_image):
    white, black = torch.ones(3, 2, 2), torch.zeros(3, 2, 2)
    assert torch.allclose(rgb_to_y(white), torch.full((1, 2, 2), 235 / 255))
    assert torch.allclose(rgb_to_y(black[None]), torch.full((1, 1, 2, 2), 16 / 255))
    red = torch.zeros(3, 1, 1)
    red[0] = 1
    assert rgb_to_y(red).item() == pytest.approx((16 + 219 * 0.299) / 255)
    # gray is R = G = B: its luma gets the same (16 + 219 Y') / 255 scaling
    assert torch.allclose(rgb_to_y(gray_image), (16 + 219 * gray_image) / 255)
    assert torch.allclose(rgb_to_y(gray_image), rgb_to_y(gray_image.expand(3, -1, -1)))
    with pytest.raises(LipError):
        rgb_to_y(torch.zeros(2, 4, 4))


def test_psnr_y_border(rgb_image):
    noisy = rgb_image.clone()
    noisy[:, :4, :] = 0  # damage only the border
    assert psnr_y(noisy, rgb_image, border=4) == math.inf
    assert psnr_y(noisy, rgb_image, border=0) < 40
    x = rgb_image * 0.9
    cropped = (..., slice(4, -4), slice(4, -4))
    expected = psnr(rgb_to_y(x)[cropped], rgb_to_y(rgb_image)[cropped])
    assert psnr_y(x, rgb_image) == pytest.approx(expected)
    with pytest.raises(LipError, match="border"):
        psnr_y(x, rgb_image, border=24)


def test_psnr_y_of_gray_equals_psnr_y_of_the_same_image_as_rgb(gray_image, generator):
    """A gray image and the same image stored as 3 equal channels have one PSNR-Y."""
    ref = gray_image
    x = (ref + 0.05 * torch.randn(ref.shape, generator=generator)).clamp(0, 1)
    as_rgb = psnr_y(x.expand(3, -1, -1), ref.expand(3, -1, -1))
    assert psnr_y(x, ref) == pytest.approx(as_rgb, abs=1e-4)
    # and both are the independent formula: Y = (16 + 219 v) / 255 on the 4-px-cropped centre
    a = (16 + 219 * x[0, 4:-4, 4:-4].double().numpy()) / 255
    b = (16 + 219 * ref[0, 4:-4, 4:-4].double().numpy()) / 255
    expected = 10 * math.log10(1 / float(((a - b) ** 2).mean()))
    assert psnr_y(x, ref) == pytest.approx(expected, abs=1e-4)


def test_psnr_y_matches_an_independent_rgb_formula(rgb_image, generator):
    x = (rgb_image + 0.03 * torch.randn(rgb_image.shape, generator=generator)).clamp(0, 1)

    def luma(t):
        r, g, b = t.double().numpy()[:, 4:-4, 4:-4]
        return (16 + 219 * (0.299 * r + 0.587 * g + 0.114 * b)) / 255

    expected = 10 * math.log10(1 / float(((luma(x) - luma(rgb_image)) ** 2).mean()))
    assert psnr_y(x, rgb_image) == pytest.approx(expected, abs=1e-4)


def test_ssim(rgb_image, gray_image, generator):
    assert ssim(rgb_image, rgb_image) == pytest.approx(1.0)
    assert ssim(gray_image[None], gray_image[None]) == pytest.approx(1.0)
    noisy = (rgb_image + 0.1 * torch.randn(rgb_image.shape, generator=generator)).clamp(0, 1)
    expected = structural_similarity(
        noisy.double().numpy(), rgb_image.double().numpy(), data_range=1.0, channel_axis=0
    )
    assert ssim(noisy, rgb_image) == pytest.approx(expected) and expected < 0.9
    with pytest.raises(LipError, match="7x7"):
        ssim(torch.zeros(1, 5, 5), torch.zeros(1, 5, 5))

"""Forward models: shapes, the Lanczos-2 downsampler, masking, noise, factories and errors."""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from lottery_prior.errors import LipError
from lottery_prior.images import bernoulli_mask
from lottery_prior.operators import (
    TASK_DEFAULTS,
    Denoise,
    Inpaint,
    Operator,
    SuperResolve,
    lanczos2_kernel,
    make_operator,
)

H, W = 48, 80


def operators() -> list[Operator]:
    mask = bernoulli_mask(H, W, 0.5, torch.Generator().manual_seed(1))
    return [Denoise(25), Inpaint(mask), SuperResolve(2), SuperResolve(4), SuperResolve(8)]


@pytest.mark.parametrize("op", operators(), ids=lambda op: json.dumps(op.describe())[:40])
def test_shapes_and_describe(op, rgb_image, generator):
    x = rgb_image[None].repeat(2, 1, 1, 1)
    y = op.observe(x, generator)
    f = getattr(op, "factor", 1)
    assert y.shape == (2, 3, H // f, W // f) and y.dtype == torch.float32
    assert 0 <= y.min() and y.max() <= 1
    x_hat = x.clone().requires_grad_(True)
    out = op(x_hat)
    assert out.shape == y.shape
    out.square().mean().backward()
    assert x_hat.grad is not None and x_hat.grad.abs().sum() > 0
    # A is linear: A(a u + b v) = a A(u) + b A(v)
    u, v = torch.rand(x.shape, generator=generator), torch.rand(x.shape, generator=generator)
    torch.testing.assert_close(op(0.3 * u - 2.0 * v), 0.3 * op(u) - 2.0 * op(v))
    info = json.loads(json.dumps(op.describe()))
    assert info["task"] == op.task in TASK_DEFAULTS
    with pytest.raises(LipError, match="batched"):
        op.observe(rgb_image)


def dip_lanczos2_kernel(factor: int) -> np.ndarray:
    """DIP's ``get_kernel(factor, 'lanczos', phase=0.5, kernel_width=4 * factor + 1,
    support=2)``, written out from the formula with loops (PROTOCOL section 2)."""
    support, width = 2, 4 * factor + 1
    size = width - 1  # phase 1/2 drops one row and column
    center = (width + 1) / 2
    kernel = np.zeros((size, size))
    for i in range(1, size + 1):
        for j in range(1, size + 1):
            di = abs(i + 0.5 - center) / factor
            dj = abs(j + 0.5 - center) / factor
            val = 1.0
            for d in (di, dj):
                if d != 0:
                    val *= support * math.sin(math.pi * d) * math.sin(math.pi * d / support)
                    val /= math.pi * math.pi * d * d
            kernel[i - 1, j - 1] = val
    return kernel / kernel.sum()


def reference_downsample(x: np.ndarray, factor: int) -> np.ndarray:
    """DIP's Downsampler(preserve_size=True) on (C,H,W): replication pad (4f - f)/2, then a
    stride-f correlation with the kernel, channel by channel, as explicit sums."""
    kernel = dip_lanczos2_kernel(factor)
    n, pad = kernel.shape[0], (4 * factor - factor) // 2
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad)), mode="edge")
    C, H, W = x.shape
    out = np.zeros((C, H // factor, W // factor))
    for c in range(C):
        for i in range(H // factor):
            for j in range(W // factor):
                window = padded[c, i * factor : i * factor + n, j * factor : j * factor + n]
                out[c, i, j] = (window * kernel).sum()
    return out


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_lanczos_kernel_equals_dips_formula(factor):
    expected = dip_lanczos2_kernel(factor)
    assert expected.shape == (4 * factor, 4 * factor)
    np.testing.assert_allclose(lanczos2_kernel(factor).double().numpy(), expected,
                               rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize(("factor", "hw"), [(2, (6, 10)), (4, (8, 12)), (8, (16, 24))])
def test_sr_forward_equals_a_numpy_reference(factor, hw):
    g = torch.Generator().manual_seed(factor)
    x = torch.rand((1, 2, *hw), generator=g, dtype=torch.float64)
    out = SuperResolve(factor).to(torch.float64)(x)
    assert out.shape == (1, 2, hw[0] // factor, hw[1] // factor)
    np.testing.assert_allclose(out[0].numpy(), reference_downsample(x[0].numpy(), factor),
                               rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_lanczos_kernel(factor):
    k = lanczos2_kernel(factor)
    assert k.shape == (4 * factor, 4 * factor)
    assert k.sum().item() == pytest.approx(1.0, abs=1e-6)
    assert torch.equal(k, k.T) and torch.equal(k, k.flip(0)) and torch.equal(k, k.flip(1))
    c = 2 * factor
    assert k[c - 1 : c + 1, c - 1 : c + 1].min() == k.max()  # peak in the central 2x2
    assert (k < 0).any()  # Lanczos lobes


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_downsampler_constant_and_size(factor):
    op = SuperResolve(factor)
    x = torch.full((1, 3, H, W), 0.37)
    out = op(x)
    assert out.shape == (1, 3, H // factor, W // factor)
    assert torch.allclose(out, torch.full_like(out, 0.37), atol=1e-6)


def test_downsampler_is_depthwise(rgb_image):
    op = SuperResolve(4)
    x = rgb_image[None]
    out = op(x)
    for c in range(3):
        assert torch.allclose(op(x[:, c : c + 1]), out[:, c : c + 1], atol=1e-6)


def test_sr_observation_and_upscale(rgb_image):
    op = SuperResolve(4)
    y = op.observe(rgb_image[None])
    assert torch.allclose(y.mean(), rgb_image.mean(), atol=0.01)
    # the DIP forward model and the Pillow observation are both Lanczos: close, not equal
    assert (op(rgb_image[None]) - y).abs().mean() < 0.02
    up = op.upscale(y)
    assert up.shape == (1, 3, H, W) and 0 <= up.min() and up.max() <= 1
    # a real interpolation: closer to x than repeating each low-res pixel 4x4 times
    blocky = y.repeat_interleave(4, -2).repeat_interleave(4, -1)
    assert (up - rgb_image).square().mean() < 0.9 * (blocky - rgb_image).square().mean()
    flat = torch.full((1, 3, H // 4, W // 4), 0.6)
    torch.testing.assert_close(op.upscale(flat), torch.full((1, 3, H, W), 0.6))


def test_inpaint_masks_exactly(rgb_image, generator):
    mask = bernoulli_mask(H, W, 0.5, generator)
    op = Inpaint(mask[None])
    x = rgb_image[None]
    y = op.observe(x)
    observed = mask.bool().expand(3, H, W)
    assert torch.equal(y[0][observed], x[0][observed])
    assert (y[0][~observed] == 0).all()
    assert torch.equal(op(x), y)
    assert op.describe()["missing_fraction"] == pytest.approx(1 - mask.mean().item())


def test_denoise_noise_statistics(generator):
    op = Denoise(25)
    x = torch.full((1, 3, 128, 128), 0.5)
    y = op.observe(x, generator)
    assert (y - x).std().item() == pytest.approx(25 / 255, rel=0.02)
    assert abs((y - x).mean().item()) < 0.002
    assert torch.equal(y, op.observe(x, torch.Generator().manual_seed(0)))
    assert not torch.equal(y, op.observe(x, torch.Generator().manual_seed(1)))
    assert op(y) is y


def test_operators_are_modules_with_buffers():
    op = make_operator("sr", (H, W), factor=2)
    assert "kernel" in dict(op.named_buffers())
    assert "mask" in dict(make_operator("inpaint", (H, W)).named_buffers())
    assert op.to(torch.float64).kernel.dtype == torch.float64


def test_make_operator(generator):
    assert isinstance(make_operator("denoise", (H, W), sigma=50), Denoise)
    assert make_operator("denoise", (H, W), sigma=50).describe()["sigma"] == 50
    assert make_operator("sr", (H, W), factor=8).factor == 8
    bern = make_operator("inpaint", (H, W), generator=generator)
    assert bern.mask.mean().item() == pytest.approx(0.5, abs=0.05)
    assert make_operator("inpaint", (H, W), keep=0.2).mask.mean().item() == pytest.approx(
        0.2, abs=0.05
    )
    text = make_operator("inpaint", (H, W), mask="text")
    assert text.mask.shape == (1, 1, H, W) and text.describe()["mask"] == "text"


def test_make_operator_mask_file(shared_data):
    op = make_operator("inpaint", (512, 512), mask="data:inpainting/kate_mask")
    assert op.mask.shape == (1, 1, 512, 512)
    stored = np.asarray(Image.open(shared_data / "inpainting" / "kate_mask.png").convert("L"))
    assert torch.equal(op.mask[0, 0], torch.from_numpy((stored >= 128).astype(np.float32)))
    assert 0.02 < 1 - op.mask.mean().item() < 0.1  # the text covers 4.3% of the image


def write_mask(path, arr):
    Image.fromarray(arr.astype(np.uint8)).save(path)
    return str(path)


def test_make_operator_mask_follows_size_only_from_the_original_size(tmp_path):
    arr = np.full((96, 96), 255)
    arr[:, :48] = 0
    path = write_mask(tmp_path / "m.png", arr)
    op = make_operator("inpaint", (32, 32), mask=path, size=32, source_hw=(96, 96))
    assert op.mask.shape == (1, 1, 32, 32) and op.mask[..., :15].sum() == 0
    small = write_mask(tmp_path / "s.png", np.full((10, 10), 255))
    with pytest.raises(LipError, match="mask 10x10 does not match image 512x512"):
        make_operator("inpaint", (64, 64), mask=small, size=64, source_hw=(512, 512))
    # the crop to a multiple follows the image's multiple
    op = make_operator("inpaint", (40, 40), mask=write_mask(tmp_path / "o.png", arr[:44, 26:70]),
                       multiple=8)
    assert op.mask.shape == (1, 1, 40, 40)


def test_a_mask_that_observes_nothing_is_refused(tmp_path):
    black = write_mask(tmp_path / "black.png", np.zeros((48, 80)))
    with pytest.raises(LipError, match="mask observes no pixel"):
        make_operator("inpaint", (48, 80), mask=black)
    with pytest.raises(LipError, match="mask observes no pixel"):
        Inpaint(torch.zeros(1, 8, 8))


def test_task_defaults():
    assert TASK_DEFAULTS["denoise"] == {"steps": 3000, "input_noise": 1 / 30}
    assert TASK_DEFAULTS["inpaint"] == {"steps": 3000, "input_noise": 0.03}
    assert TASK_DEFAULTS["sr"] == {"steps": 2000, "input_noise": 0.03}


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: Denoise(0), "sigma"),
        (lambda: Denoise(-5), "sigma"),
        (lambda: SuperResolve(3), "factor"),
        (lambda: lanczos2_kernel(0), "factor"),
        (lambda: make_operator("sr", (50, 80), factor=4), "not divisible"),
        (lambda: SuperResolve(8)(torch.zeros(1, 3, 48, 84)), "not divisible"),
        (lambda: Inpaint(torch.ones(1, 32, 32)).observe(torch.zeros(1, 3, H, W)), "does not"),
        (lambda: Inpaint(torch.full((1, 8, 8), 0.5)), "0 .missing. or 1"),
        (lambda: make_operator("inpaint", (H, W), keep=0), "keep"),
        (lambda: make_operator("inpaint", (H, W), keep=1.2), "keep"),
        (lambda: make_operator("inpaint", (H, W), keep=0.5, mask="text"), "not both"),
        (lambda: make_operator("deblur", (H, W)), "denoise, inpaint, sr"),
    ],
)
def test_bad_input(build, match):
    with pytest.raises(LipError, match=match):
        build()

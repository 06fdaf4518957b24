"""Latent recovery with a generator prior: the Gaussian operator, CS, robust CS, inpainting."""

import pytest
import torch

from lottery_prior.errors import LipError
from lottery_prior.gan import GaussianMeasurement, Generator, recover_cs, recover_inpaint
from lottery_prior.masks import Mask

FAST = {"steps": 200, "restarts": 16, "lr": 3e-2}


@pytest.fixture(scope="module")
def tiny():
    """A random 8x8 gray generator (latent 8) with outputs inside [-1, 1], and x = G(z*)."""
    torch.manual_seed(3)
    g = Generator(8, (16, 8), 1).eval()
    with torch.no_grad():
        g.toRGBLayers[-1].module.weight.mul_(0.3)
        x = (g(torch.randn(1, 8, generator=torch.Generator().manual_seed(103))) + 1)[0] / 2
    assert 0 <= x.min() and x.max() <= 1
    return g, x


def test_block_generated_matrix_equals_dense():
    a = GaussianMeasurement(50, 37, seed=4, block_rows=8)
    dense = a.dense()
    assert dense.shape == (37, 50)
    torch.testing.assert_close(torch.cat([a.rows(0, 20), a.rows(20, 37)]), dense, rtol=0, atol=0)
    other = GaussianMeasurement(50, 37, seed=4, block_rows=5).dense()
    torch.testing.assert_close(other, dense, rtol=0, atol=0)  # block size is only memory
    assert not torch.equal(GaussianMeasurement(50, 37, seed=5).dense(), dense)
    big = GaussianMeasurement(400, 100, seed=0).dense()
    assert big.var().item() == pytest.approx(1 / 100, rel=0.05)


def test_streamed_product_and_gradient_match_dense():
    streamed = GaussianMeasurement(30, 23, seed=1, block_rows=4, cache=False)
    dense = streamed.dense()
    x = torch.randn(3, 30, requires_grad=True)
    weights = torch.randn(3, 23)
    (streamed(x) * weights).sum().backward()
    torch.testing.assert_close(streamed(x.detach()), x.detach() @ dense.T)
    torch.testing.assert_close(x.grad, weights @ dense)
    assert streamed(torch.randn(30)).shape == (23,)
    with pytest.raises(LipError, match="length 30"):
        streamed(torch.randn(29))


def test_observe_noise_and_outliers():
    a = GaussianMeasurement(64, 40, seed=0)
    x = torch.rand(1, 8, 8)
    clean = a(x.reshape(-1))
    noisy = a.observe(x, 0.01, seed=0)
    assert 0.002 < (noisy - clean).std() < 0.02
    with pytest.raises(LipError, match="n = 64"):
        a.observe(torch.rand(1, 4, 4))


def test_robust_cs_adds_outlier_rows():
    """PROTOCOL 6: the outliers are 20 rows added to the m rows, not m rows corrupted."""
    x = torch.rand(1, 8, 8)
    plain = GaussianMeasurement(64, 40, seed=3, context=("img",))
    robust = GaussianMeasurement(64, 40, seed=3, context=("img",), outliers=20)
    assert robust.rows_total == 60 and robust.dense().shape == (60, 64)
    torch.testing.assert_close(robust.dense()[:40], plain.dense(), rtol=0, atol=0)
    y = plain.observe(x, 0.01, seed=5, context=("img",))
    y_robust = robust.observe(x, 0.01, seed=5, context=("img",))
    assert y.shape == (40,) and y_robust.shape == (60,)
    torch.testing.assert_close(y_robust[:40], y, rtol=0, atol=0)
    clean = robust(x.reshape(-1))
    rms = clean[:40].pow(2).mean().sqrt()
    assert (y_robust[40:] - clean[40:]).std() > 3 * rms  # the added rows are the outliers
    assert robust(torch.rand(3, 64)).shape == (3, 60)


def test_recovers_an_image_the_generator_made(tiny):
    g, x = tiny
    a = GaussianMeasurement(64, 48, seed=1)
    y = a.observe(x, 0.0, seed=0)
    result = recover_cs(g, y, a, truth=x, **FAST)
    assert result.psnr > 40 and result.mse < 1e-4
    assert result.residual < 1e-5 and result.objective == min(result.objectives)
    assert result.image.shape == (1, 8, 8) and result.z.shape == (8,)
    keep = (torch.rand(1, 8, 8, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    inpainted = recover_inpaint(g, x * keep, keep, truth=x, **FAST)
    assert inpainted.psnr > 40 and inpainted.residual < 1e-5


def test_cs_error_falls_as_m_grows(tiny):
    g, x = tiny
    errors = []
    for m in (3, 12, 48):
        a = GaussianMeasurement(64, m, seed=1)
        y = a.observe(x, 0.01, seed=0)
        errors.append(recover_cs(g, y, a, truth=x, **FAST).mse)
    assert errors[2] < errors[1] < errors[0]
    assert errors[2] < errors[0] / 10


def test_median_of_means_resists_outliers(tiny):
    g, x = tiny
    a = GaussianMeasurement(64, 60, seed=1, outliers=4)
    y = a.observe(x, 0.01, seed=0)
    plain = recover_cs(g, y, a, truth=x, **FAST)
    robust = recover_cs(g, y, a, truth=x, robust=True, batches=16, **FAST)
    assert robust.psnr > plain.psnr + 5
    assert robust.objective < robust.residual  # the outliers dominate the plain residual


def test_pruned_generator_is_a_copy(tiny):
    g, x = tiny
    before = {k: v.clone() for k, v in g.state_dict().items()}
    mask = Mask({n: m & (not n.startswith("toRGB")) for n, m in Mask.ones(g).items()})
    keep = torch.ones(1, 8, 8)
    result = recover_inpaint(g, x, keep, truth=x, mask=mask, steps=5, restarts=2)
    assert torch.allclose(result.image, torch.full_like(x, 0.5))  # toRGB pruned: G(z) = 0
    assert all(torch.equal(v, before[k]) for k, v in g.state_dict().items())


def test_bad_recovery_inputs(tiny):
    g, x = tiny
    a = GaussianMeasurement(64, 10, seed=0)
    y = a.observe(x, 0.0)
    with pytest.raises(LipError, match="columns"):
        recover_cs(g, y, GaussianMeasurement(63, 10), steps=1)
    with pytest.raises(LipError, match="m = 10"):
        recover_cs(g, y[:5], a, steps=1)
    with pytest.raises(LipError, match="batches"):
        recover_cs(g, y, a, robust=True, batches=11, steps=1)
    with pytest.raises(LipError, match="pixel_mask"):
        recover_inpaint(g, x, torch.ones(1, 4, 4), steps=1)
    with pytest.raises(LipError, match="observed"):
        recover_inpaint(g, x, torch.zeros(8, 8), steps=1)
    with pytest.raises(LipError, match="steps"):
        recover_inpaint(g, x, torch.ones(8, 8), steps=0)
    with pytest.raises(LipError, match="positive integer"):
        GaussianMeasurement(0, 10)

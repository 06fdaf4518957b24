"""Progressive GAN networks: zoo key names and shapes, zoo forward semantics, blending, masks."""

import math

import pytest
import torch
import torch.nn.functional as F

from lottery_prior.errors import LipError
from lottery_prior.gan import Discriminator, Generator
from lottery_prior.gan.networks import minibatch_stddev
from lottery_prior.masks import Mask, prunable_names

DEPTHS = (8, 8, 4)  # 4x4 -> 8x8 -> 16x16


def zoo_generator_forward(state, z, alpha=0.0, leak=0.2):
    """pytorch_GAN_zoo's GNet.forward written out over a state dict (the reference)."""

    def layer(x, name):
        w, b = state[f"{name}.module.weight"], state[f"{name}.module.bias"]
        he = math.sqrt(2.0 / w[0].numel())
        out = F.conv2d(x, w, b, padding=w.shape[-1] // 2) if w.dim() == 4 else F.linear(x, w, b)
        return out * he

    def norm(x):
        return x * ((x**2).mean(dim=1, keepdim=True) + 1e-8).rsqrt()

    def upscale(x):
        s = x.shape
        return x.view(-1, s[1], s[2], 1, s[3], 1).expand(-1, s[1], s[2], 2, s[3], 2).reshape(
            -1, s[1], 2 * s[2], 2 * s[3])

    def act(x):
        return F.leaky_relu(x, leak)

    n = sum(1 for k in state if k.startswith("scaleLayers.") and k.endswith(".0.module.weight"))
    x = norm(z).view(z.shape[0], -1)
    x = norm(act(layer(x, "formatLayer")).view(z.shape[0], -1, 4, 4))
    x = norm(act(layer(x, "groupScale0.0")))
    y = None
    for i in range(n):
        if alpha > 0 and i == n - 1:
            y = upscale(layer(x, f"toRGBLayers.{n - 1}"))
        x = upscale(x)
        for j in range(2):
            x = norm(act(layer(x, f"scaleLayers.{i}.{j}")))
    x = layer(x, f"toRGBLayers.{n}")
    return alpha * y + (1 - alpha) * x if y is not None else x


def test_generator_keys_and_shapes_follow_the_zoo():
    g = Generator(16, DEPTHS, 3)
    shapes = {k: tuple(v.shape) for k, v in g.state_dict().items()}
    assert shapes == {
        "formatLayer.module.weight": (16 * 8, 16), "formatLayer.module.bias": (16 * 8,),
        "groupScale0.0.module.weight": (8, 8, 3, 3), "groupScale0.0.module.bias": (8,),
        "scaleLayers.0.0.module.weight": (8, 8, 3, 3), "scaleLayers.0.0.module.bias": (8,),
        "scaleLayers.0.1.module.weight": (8, 8, 3, 3), "scaleLayers.0.1.module.bias": (8,),
        "scaleLayers.1.0.module.weight": (4, 8, 3, 3), "scaleLayers.1.0.module.bias": (4,),
        "scaleLayers.1.1.module.weight": (4, 4, 3, 3), "scaleLayers.1.1.module.bias": (4,),
        "toRGBLayers.0.module.weight": (3, 8, 1, 1), "toRGBLayers.0.module.bias": (3,),
        "toRGBLayers.1.module.weight": (3, 8, 1, 1), "toRGBLayers.1.module.bias": (3,),
        "toRGBLayers.2.module.weight": (3, 4, 1, 1), "toRGBLayers.2.module.bias": (3,),
    }


def test_discriminator_keys_and_shapes_follow_the_zoo():
    d = Discriminator(DEPTHS, 3, minibatch_std=True)
    shapes = {k: tuple(v.shape) for k, v in d.state_dict().items() if k.endswith("weight")}
    assert shapes == {
        "decisionLayer.module.weight": (1, 8),
        "fromRGBLayers.0.module.weight": (8, 3, 1, 1),
        "fromRGBLayers.1.module.weight": (8, 3, 1, 1),
        "fromRGBLayers.2.module.weight": (4, 3, 1, 1),
        "groupScaleZero.0.module.weight": (8, 9, 3, 3),
        "groupScaleZero.1.module.weight": (8, 16 * 8),
        "scaleLayers.0.0.module.weight": (8, 8, 3, 3),
        "scaleLayers.0.1.module.weight": (8, 8, 3, 3),
        "scaleLayers.1.0.module.weight": (4, 4, 3, 3),
        "scaleLayers.1.1.module.weight": (8, 4, 3, 3),
    }


@pytest.mark.parametrize("alpha", [0.0, 0.4, 1.0])
def test_generator_matches_the_zoo_forward(alpha):
    torch.manual_seed(0)
    g = Generator(16, DEPTHS, 3)
    with torch.no_grad():  # non-zero biases, so the bias scaling is checked too
        for name, p in g.named_parameters():
            if name.endswith("bias"):
                p.normal_()
    g.alpha = alpha
    z = torch.randn(5, 16)
    torch.testing.assert_close(g(z), zoo_generator_forward(g.state_dict(), z, alpha))
    assert g(z).shape == (5, 3, 16, 16)


def test_equalized_weights_are_standard_normal_with_he_scale():
    g = Generator(64, (32, 16), 1)
    w = g.scaleLayers[0][0].module.weight
    assert abs(w.std().item() - 1) < 0.05
    assert g.scaleLayers[0][0].scale == pytest.approx(math.sqrt(2 / (32 * 9)))
    assert all(torch.all(b == 0) for n, b in g.named_parameters() if n.endswith("bias"))


def test_alpha_one_gives_the_upsampled_lower_scale():
    torch.manual_seed(1)
    g = Generator(8, (8, 4), 1)
    z = torch.randn(2, 8)
    g.alpha = 1.0
    low = Generator(8, (8,), 1)
    low.load_state_dict({k: v for k, v in g.state_dict().items()
                         if not k.startswith(("scaleLayers", "toRGBLayers.1"))})
    torch.testing.assert_close(g(z), F.interpolate(low(z), scale_factor=2, mode="nearest"))


def test_discriminator_shapes_and_blend():
    torch.manual_seed(0)
    d = Discriminator(DEPTHS, 1, decision_size=2)
    x = torch.randn(6, 1, 16, 16)
    assert d(x).shape == (6, 2)
    d.alpha = 0.5
    assert torch.isfinite(d(x)).all()
    with pytest.raises(LipError, match=r"\(N, 1, 16, 16\)"):
        d(torch.randn(2, 1, 8, 8))


def test_minibatch_stddev_groups():
    x = torch.randn(8, 3, 4, 4)
    out = minibatch_stddev(x)
    assert out.shape == (8, 4, 4, 4)
    groups = x.view(4, 2, 3, 4, 4)  # group size 4: sample i is in group i mod 2
    expected = torch.sqrt(groups.var(dim=0) + 1e-8).mean(dim=(1, 2, 3))
    torch.testing.assert_close(out[:, 3, 0, 0], expected.repeat(4))
    assert torch.all(minibatch_stddev(x[:1])[:, 3] == 0)


def test_masks_reach_every_conv_but_not_the_linear_layers():
    g = Generator(16, DEPTHS, 3)
    names = prunable_names(g)
    assert "groupScale0.0.module.weight" in names and "scaleLayers.1.1.module.weight" in names
    assert "formatLayer.module.weight" not in names
    mask = Mask.ones(g, keep_dense=("toRGBLayers.*",))
    assert not any(n.startswith("toRGB") for n in mask)


def test_bad_inputs_raise_lip_errors():
    g = Generator(16, DEPTHS, 3)
    with pytest.raises(LipError, match="latent"):
        g(torch.randn(2, 15))
    with pytest.raises(LipError, match="alpha"):
        g.alpha = 1.5
    with pytest.raises(LipError, match="scale above"):
        Generator(16, (8,), 3).alpha = 0.5
    with pytest.raises(LipError, match="output_activation"):
        Generator(16, DEPTHS, 3, output_activation="sigmoid")
    with pytest.raises(LipError, match="depths"):
        Generator(16, (), 3)

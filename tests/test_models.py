"""Model zoo: pinned parameter counts, shapes, inputs, size checks and the registry."""

import json

import pytest
import torch
from torch import nn

from lottery_prior.errors import LipError
from lottery_prior.models import (
    DeepDecoder,
    SkipHourglass,
    create_model,
    decoder_param_count,
    decoder_width_for_params,
    list_models,
)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def conv_weights(model: nn.Module) -> int:
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Conv2d))


def test_paper_dip_counts():
    model = create_model("dip")
    assert isinstance(model, SkipHourglass)
    assert n_params(model) == 2_217_831
    assert conv_weights(model) == 2_208_768
    assert (model.input_depth, model.input_stride, model.size_multiple) == (32, 1, 32)


def test_paper_dip_convs_are_plain_reflect_convs():
    convs = [m for m in create_model("dip").modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 5 * 5 + 1
    assert all(c.bias is not None for c in convs)
    assert all(c.padding_mode == "reflect" for c in convs if c.kernel_size == (3, 3))


@pytest.mark.parametrize("fast", [False, True])
def test_reflect_conv_equals_torch_reflect_conv(fast):
    """The bf16-padding conv gives nn.Conv2d(padding_mode="reflect")'s outputs and weight
    gradients exactly, in fp32 and under bf16 autocast (padding only moves values)."""
    from lottery_prior.models.skip import ReflectConv2d

    torch.manual_seed(0)
    ours = ReflectConv2d(6, 5, 3, stride=2, padding=1, padding_mode="reflect")
    ref = nn.Conv2d(6, 5, 3, stride=2, padding=1, padding_mode="reflect")
    ref.load_state_dict(ours.state_dict())
    x = torch.rand(1, 6, 12, 12)
    outs, grads = [], []
    for conv in (ours, ref):
        inp = x.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=fast):
            hidden = torch.nn.functional.leaky_relu(inp)  # bf16 activations under autocast
            hidden = hidden.bfloat16() if fast else hidden
            out = conv(hidden)
        out.float().square().sum().backward()
        outs.append(out)
        grads.append((inp.grad, conv.weight.grad))
    assert outs[0].dtype == outs[1].dtype == (torch.bfloat16 if fast else torch.float32)
    assert torch.equal(outs[0], outs[1])
    assert torch.equal(grads[0][1], grads[1][1])  # weight gradients
    # the input gradient of a reflected border pixel sums in bf16 instead of fp32: <= 2 ulp
    torch.testing.assert_close(grads[0][0], grads[1][0], rtol=2**-7 if fast else 0, atol=0)


@pytest.mark.parametrize(("k", "count"), [(64, 25_536), (128, 100_224)])
def test_decoder_counts(k, count):
    model = create_model("decoder", k=k)
    assert isinstance(model, DeepDecoder)
    assert n_params(model) == count == decoder_param_count(k)
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d))
    assert (model.input_depth, model.input_stride, model.size_multiple) == (k, 32, 32)


def test_decoder_width_for_params():
    assert decoder_width_for_params(25_536) == 64
    assert decoder_width_for_params(100_224) == 128
    assert decoder_width_for_params(1) == 1
    k = decoder_width_for_params(2_217_831)
    best = min(range(1, 2000), key=lambda w: abs(decoder_param_count(w) - 2_217_831))
    assert k == best
    with pytest.raises(LipError):
        decoder_width_for_params(0)


def assert_wired(model: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """The output depends on z, and every parameter gets a nonzero gradient (nothing is
    disconnected); returns the output."""
    out = model(z)
    assert not torch.allclose(model(z.flip(-1)), out)
    (out * torch.linspace(0, 1, out.numel()).view(out.shape)).sum().backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not dead, dead
    return out.detach()


@pytest.mark.parametrize("upsample", ["bilinear", "nearest"])
def test_narrow_dip_forward(upsample):
    torch.manual_seed(0)
    model = create_model("dip", width=16, scales=3, upsample=upsample)
    z = model.make_input(32, 32, torch.Generator().manual_seed(0))
    out = assert_wired(model, z)
    assert out.shape == (1, 3, 32, 32)
    modes = {m.mode for m in model.modules() if isinstance(m, nn.Upsample)}
    assert modes == {upsample}
    other = create_model("dip", width=16, scales=3,
                         upsample="nearest" if upsample == "bilinear" else "bilinear")
    other.load_state_dict(model.state_dict())
    assert not torch.allclose(other(z), model(z))  # the mode is really used


def test_decoder_forward():
    torch.manual_seed(0)
    model = create_model("decoder", k=16)
    z = model.make_input(64, 64, torch.Generator().manual_seed(0))
    assert z.shape == (1, 16, 2, 2)
    out = assert_wired(model, z)
    assert out.shape == (1, 3, 64, 64)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.kernel_size for c in convs] == [(1, 1)] * 7  # six of width k, one to RGB
    assert [c.out_channels for c in convs] == [16] * 6 + [3]
    assert sum(isinstance(m, nn.Upsample) for m in model.modules()) == 5


def test_odd_but_valid_size():
    model = create_model("dip", width=8, skip=2, out_channels=1)
    assert model(model.make_input(96, 160)).shape == (1, 1, 96, 160)


def test_per_scale_lists():
    model = create_model(
        "dip", scales=3, channels_down=(8, 16, 16), channels_up=[8, 12, 16], channels_skip=(0, 2, 4)
    )
    assert model(model.make_input(16, 24)).shape == (1, 3, 16, 24)
    level, seen = model.body, []
    while level is not None:
        down, up = level.deeper[0][0], level.merge[1][0]
        skip = level.skip[0].out_channels if level.skip is not None else 0
        seen.append((down.out_channels, up.out_channels, skip))
        deeper = [m for m in level.deeper if type(m).__name__ == "_Scale"]
        level = deeper[0] if deeper else None
    assert seen == [(8, 8, 0), (16, 12, 2), (16, 16, 4)]
    with pytest.raises(LipError, match="channels_down"):
        create_model("dip", scales=3, channels_down=(8, 16))


def test_make_input_shape_and_determinism():
    model = create_model("dip", width=8, scales=2)
    a = model.make_input(8, 12, torch.Generator().manual_seed(3))
    b = model.make_input(8, 12, torch.Generator().manual_seed(3))
    assert a.shape == (1, 32, 8, 12)
    assert torch.equal(a, b)
    assert a.min() >= 0 and a.max() < 0.1
    assert not torch.equal(a, model.make_input(8, 12, torch.Generator().manual_seed(4)))


@pytest.mark.parametrize(
    ("name", "size", "message"),
    [
        ("dip", (40, 40), "not a multiple of 32 .the network has 5 scales"),
        ("dip", (64, 48), "not a multiple of 32"),
        ("dip", (32, 64), "too small"),
        ("decoder", (48, 64), "not a multiple of 32 .the network has 6 layers"),
        ("decoder", (0, 64), "too small"),
    ],
)
def test_check_size_rejects(name, size, message):
    model = create_model(name, **({"width": 8} if name == "dip" else {"k": 8}))
    with pytest.raises(LipError, match=message):
        model.check_size(*size)
    with pytest.raises(LipError):
        model.make_input(*size)


def test_registry_errors():
    assert {"dip", "decoder"} <= set(list_models())
    with pytest.raises(LipError, match="known models: .*dip"):
        create_model("unet")
    with pytest.raises(LipError, match="valid options"):
        create_model("dip", depth=3)
    for bad in ({"width": 0}, {"scales": 2.5}, {"upsample": "cubic"}, {"skip": True}):
        with pytest.raises(LipError):
            create_model("dip", **bad)
    with pytest.raises(LipError):
        create_model("decoder", k=-1)


@pytest.mark.parametrize(
    ("name", "options"),
    [("dip", {"width": 8, "scales": 3, "channels_skip": (1, 2, 3)}), ("decoder", {"k": 8})],
)
def test_spec_round_trip(name, options):
    model = create_model(name, **options)
    spec = json.loads(json.dumps(model.spec))
    assert spec["name"] == name
    rebuilt = create_model(spec["name"], **spec["options"])
    assert rebuilt.spec == spec
    assert n_params(rebuilt) == n_params(model)

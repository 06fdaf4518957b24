"""Masks as data: coverage of the conv weights, counted sparsity, masking that really holds."""

import pytest
import torch
from torch import nn

from lottery_prior.errors import LipError
from lottery_prior.fit import FitConfig, fit
from lottery_prior.masks import Mask, prunable_names, weight_sparsity
from lottery_prior.models import create_model
from lottery_prior.problem import build_prior, make_problem

TINY = {"width": 16, "scales": 3}


def conv_weight_names(model: nn.Module) -> list[str]:
    return [f"{n}.weight" for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def half_mask(model: nn.Module, seed: int = 0) -> Mask:
    """About half of every conv weight kept, at random."""
    g = torch.Generator().manual_seed(seed)
    return Mask({n: torch.rand(m.shape, generator=g) < 0.5 for n, m in Mask.ones(model).items()})


@pytest.fixture
def model() -> nn.Module:
    torch.manual_seed(0)
    return create_model("dip", **TINY)


def test_ones_covers_exactly_the_conv_weights():
    net = create_model("dip", width=8)  # the paper's 5 scales
    mask = Mask.ones(net)
    params = dict(net.named_parameters())
    assert len(mask) == 26
    assert list(mask) == conv_weight_names(net)
    assert all(m.dtype == torch.bool and m.all() for m in mask.values())
    assert all(mask[n].shape == params[n].shape for n in mask)
    assert mask.total == mask.kept == sum(params[n].numel() for n in mask)
    assert mask.sparsity == 0.0 and mask.density == 1.0


def test_keep_dense_patterns_exclude_and_must_match(model):
    mask = Mask.ones(model, keep_dense=["head.*", "body.skip.*"])
    assert set(conv_weight_names(model)) - set(mask) == {"head.0.weight", "body.skip.0.weight"}
    with pytest.raises(LipError, match="matches no conv weight"):
        prunable_names(model, ["head.*", "nothing.*"])


def test_sparsity_is_counted(model):
    dense = Mask.ones(model)
    first, second = list(dense)[:2]
    masks = dict(dense)
    masks[first] = torch.zeros_like(masks[first])
    masks[second] = masks[second].clone()
    masks[second].view(-1)[:5] = False
    mask = Mask(masks)
    removed = dense[first].numel() + 5
    assert mask.kept == mask.total - removed
    assert mask.sparsity == pytest.approx(removed / mask.total, abs=1e-12)
    layers = mask.layer_sparsity()
    assert layers[first] == 1.0
    assert layers[second] == pytest.approx(5 / dense[second].numel())
    assert all(layers[n] == 0.0 for n in list(mask)[2:])


def test_apply_zeroes_exactly_the_masked_entries(model):
    mask = half_mask(model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    mask.apply_(model)
    for n, p in model.named_parameters():
        if n in mask:
            assert torch.equal(p[~mask[n]], torch.zeros_like(p[~mask[n]]))
            assert torch.equal(p[mask[n]], before[n][mask[n]])
        else:
            assert torch.equal(p, before[n])


def test_masked_weights_and_adam_state_stay_zero_through_fit(monkeypatch):
    problem = make_problem("builtin:chelsea", "denoise", size=16, multiple=8, noise_seed=0)
    net, z = build_prior("dip", TINY, problem, seed=0)
    mask = half_mask(net)
    start = {n: p.detach().clone() for n, p in net.named_parameters()}
    optimizers = []

    class SpyAdam(torch.optim.Adam):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            optimizers.append(self)

    monkeypatch.setattr(torch.optim, "Adam", SpyAdam)
    fit(net, z, problem.operator, problem.observation,
        config=FitConfig(steps=100, device="cpu"), mask=mask)
    (adam,) = optimizers
    params = dict(net.named_parameters())
    for n, m in mask.items():
        p, state = params[n], adam.state[params[n]]
        assert int(state["step"]) == 100
        for t in (p, state["exp_avg"], state["exp_avg_sq"]):
            assert torch.count_nonzero(t[~m]) == 0
        assert not torch.equal(p[m], start[n][m])  # the kept weights did train
    assert weight_sparsity(net, list(mask))[0] == mask.sparsity


def test_save_load_round_trip(model, tmp_path):
    mask = half_mask(model)
    mask.save(tmp_path / "mask.safetensors", metadata={"image": "chelsea"})
    loaded = Mask.load(tmp_path / "mask.safetensors")
    assert loaded == mask  # (safetensors stores the names sorted)
    assert all(m.dtype == torch.bool for m in loaded.values())
    assert loaded != half_mask(model, seed=1)
    (tmp_path / "bad.safetensors").write_bytes(b"not a mask")
    with pytest.raises(LipError, match="cannot read mask file"):
        Mask.load(tmp_path / "bad.safetensors")


def test_check_refuses_wrong_names_and_shapes(model):
    Mask.ones(model).check(model)
    with pytest.raises(LipError, match="not a parameter"):
        Mask({"nope.weight": torch.ones(3, dtype=torch.bool)}).check(model)
    wider = Mask.ones(create_model("dip", width=8, scales=3))
    with pytest.raises(LipError, match="another model"):
        wider.check(model)


def test_weight_sparsity_counts_the_weights(model):
    names = list(Mask.ones(model))
    assert weight_sparsity(model, names)[0] == 0.0
    with torch.no_grad():
        dict(model.named_parameters())[names[0]].view(-1)[:7] = 0.0
    mask = half_mask(model)
    mask.apply_(model)
    overall, per_layer = weight_sparsity(model, names)
    weights = dict(model.named_parameters())
    expected_zeros = {n: int((~mask[n]).sum()) for n in names}
    expected_zeros[names[0]] += int(mask[names[0]].view(-1)[:7].sum())
    for n in names:
        assert per_layer[n] == expected_zeros[n] / weights[n].numel()
    assert overall == sum(expected_zeros.values()) / mask.total

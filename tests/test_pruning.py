"""Pruning strategies: exact counts, the right weights removed, the model left untouched."""

import pytest
import torch
from torch import nn

from lottery_prior.errors import LipError
from lottery_prior.masks import Mask
from lottery_prior.models import create_model
from lottery_prior.problem import build_prior, make_problem
from lottery_prior.pruning import (
    PRUNING_METHODS,
    dip_loss_fn,
    erk_counts,
    keep_counts,
    magnitude_prune,
    prune_at_init,
    random_mask,
    score_grasp,
    score_snip,
    score_synflow,
)

TINY = {"width": 16, "scales": 3}
SPARSITY = 0.8


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def removed_count(mask: Mask, name: str | None = None) -> int:
    masks = [mask[name]] if name else list(mask.values())
    return sum(int((~m).sum()) for m in masks)


def assert_smallest_removed(model: nn.Module, old: Mask, new: Mask, names: list[str]) -> None:
    """Every kept |w| is >= every newly removed |w| (one threshold over ``names``)."""
    params = dict(model.named_parameters())
    kept = torch.cat([params[n].detach().abs()[new[n]] for n in names])
    removed = torch.cat([params[n].detach().abs()[old[n] & ~new[n]] for n in names])
    assert removed.numel() > 0 and kept.min() >= removed.max()


def state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: t.clone() for n, t in model.state_dict().items()}


@pytest.fixture(scope="module")
def setup():
    problem = make_problem("builtin:chelsea", "denoise", size=16, multiple=8, noise_seed=0)
    model, z = build_prior("dip", TINY, problem, seed=0)
    return model, z, dip_loss_fn(z, problem.operator, problem.observation)


@pytest.fixture(scope="module")
def at_init(setup):
    """One mask per method, each computed twice (to check determinism)."""
    model, z, loss_fn = setup
    template = Mask.ones(model)
    options = {"loss_fn": loss_fn, "input_shape": z.shape, "iterations": 10}
    return {m: [prune_at_init(model, template, SPARSITY, m, generator=gen(), **options)
                for _ in range(2)] for m in PRUNING_METHODS}


def test_imp_rounds_reach_powers_of_0_8():
    model = create_model("dip", **TINY)
    mask = Mask.ones(model)
    for k in range(1, 7):
        torch.manual_seed(k)  # a fresh init stands in for training between rounds
        model = create_model("dip", **TINY)
        new = magnitude_prune(model, mask, 0.2)
        assert removed_count(new) - removed_count(mask) == round(0.2 * mask.kept)
        assert abs(new.kept - 0.8**k * new.total) <= len(new)
        assert all(torch.equal(new[n] & mask[n], new[n]) for n in new)  # nested
        assert_smallest_removed(model, mask, new, list(mask))
        mask = new


def test_layerwise_prunes_each_layer_by_the_fraction():
    torch.manual_seed(0)
    model = create_model("dip", **TINY)
    start = magnitude_prune(model, Mask.ones(model), 0.5)  # uneven layers to start from
    new = magnitude_prune(model, start, 0.3, layerwise=True)
    for n in new:
        kept = int(start[n].sum())
        assert int(new[n].sum()) == kept - round(0.3 * kept)
        assert_smallest_removed(model, start, new, [n])


def test_magnitude_prune_leaves_model_and_mask_alone():
    model = create_model("dip", **TINY)
    before, mask = state(model), Mask.ones(model)
    magnitude_prune(model, mask, 0.2)
    assert all(torch.equal(t, before[n]) for n, t in model.state_dict().items())
    assert mask.kept == mask.total


def test_random_mask_global_exact_and_seeded():
    template = Mask.ones(create_model("dip", **TINY))
    a = random_mask(template, 0.37, gen(0))
    assert removed_count(a) == round(0.37 * template.total)
    assert a == random_mask(template, 0.37, gen(0))
    assert a != random_mask(template, 0.37, gen(1))


def test_random_mask_layerwise_matches_a_tickets_ratios():
    torch.manual_seed(0)
    model = create_model("dip", **TINY)
    ticket = Mask.ones(model)
    for _ in range(3):
        ticket = magnitude_prune(model, ticket, 0.2)
    rand = random_mask(Mask.ones(model), ticket.sparsity, gen(),
                       layer_sparsity=ticket.layer_sparsity())
    assert all(removed_count(rand, n) == removed_count(ticket, n) for n in ticket)
    assert rand != ticket
    assert rand == random_mask(Mask.ones(model), ticket.sparsity, gen(),
                               layer_sparsity=ticket.layer_sparsity())


def test_random_mask_keeps_pruned_entries_pruned():
    torch.manual_seed(0)
    model = create_model("dip", **TINY)
    start = magnitude_prune(model, Mask.ones(model), 0.5)
    rand = random_mask(start, 0.9, gen())
    assert removed_count(rand) == round(0.9 * start.total)
    assert all(not (rand[n] & ~start[n]).any() for n in rand)


@pytest.mark.parametrize("method", PRUNING_METHODS)
def test_prune_at_init_exact_and_deterministic(at_init, method):
    first, second = at_init[method]
    assert removed_count(first) == round(SPARSITY * first.total)
    assert first == second


def test_methods_give_different_masks(at_init):
    masks = {m: at_init[m][0] for m in PRUNING_METHODS}
    for i, a in enumerate(PRUNING_METHODS):
        for b in PRUNING_METHODS[i + 1:]:
            assert masks[a] != masks[b], (a, b)


def test_prune_at_init_leaves_model_unchanged(setup, at_init):
    model, z, loss_fn = setup
    for mode in (True, False):
        model.train(mode)
        before = state(model)
        for method in PRUNING_METHODS:
            prune_at_init(model, Mask.ones(model), 0.5, method, loss_fn=loss_fn,
                          input_shape=z.shape, generator=gen(), iterations=3)
        assert all(torch.equal(t, before[n]) for n, t in model.state_dict().items())
        assert all(m.training == mode for m in model.modules())
        assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("name, options, size", [("dip", TINY, 16), ("decoder", {"k": 16}, 32)])
def test_synflow_scores_are_finite_and_nonzero(name, options, size):
    problem = make_problem("builtin:chelsea", "denoise", size=size, multiple=size, noise_seed=0)
    model, z = build_prior(name, options, problem, seed=0)
    scores = score_synflow(model, Mask.ones(model), z.shape)
    # every weight of a dense network lies on a positive path: no overflow, no dead score
    for s in scores.values():
        assert s.dtype == torch.float64 and torch.isfinite(s).all() and (s > 0).all()


def test_synflow_score_formula_on_two_linear_layers():
    """Two bias-free 1x1 convs on an all-ones 4x4 input: R = 16 sum |W2||W1|, so the score
    of W1[j,i] is 16 |W1[j,i]| sum_k |W2[k,j]| and of W2[k,j] is 16 |W2[k,j]| sum_i |W1[j,i]|."""
    g = gen(3)
    model = nn.Sequential(nn.Conv2d(2, 3, 1, bias=False), nn.Conv2d(3, 2, 1, bias=False))
    with torch.no_grad():
        for conv in model:
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=g))
    w1 = model[0].weight.detach().double()[:, :, 0, 0].abs()  # (3, 2)
    w2 = model[1].weight.detach().double()[:, :, 0, 0].abs()  # (2, 3)
    scores = score_synflow(model, ["0.weight", "1.weight"], (1, 2, 4, 4))
    torch.testing.assert_close(scores["0.weight"][:, :, 0, 0], 16 * w1 * w2.sum(0)[:, None])
    torch.testing.assert_close(scores["1.weight"][:, :, 0, 0], 16 * w2 * w1.sum(1)[None, :])
    # with a mask, the pruned weights carry no flow
    mask = Mask({"0.weight": torch.tensor([[1, 1], [0, 0], [1, 1]]).bool()[:, :, None, None],
                 "1.weight": torch.ones(2, 3, 1, 1, dtype=torch.bool)})
    masked = score_synflow(model, mask, (1, 2, 4, 4), mask=mask)
    assert (masked["1.weight"][:, 1] == 0).all() and (masked["0.weight"][1] == 0).all()
    w1m = w1 * mask["0.weight"][:, :, 0, 0]
    torch.testing.assert_close(masked["1.weight"][:, :, 0, 0], 16 * w2 * w1m.sum(1)[None, :])


def test_synflow_iterates_on_an_exponential_schedule_with_the_mask_applied(setup, monkeypatch):
    """The default 100 scoring rounds; before round k the scored network keeps exactly
    round(total * density^((k-1)/100)) weights, the others are zero in it (the mask is
    re-applied) and stay pruned: the kept sets shrink, nested, to the final mask."""
    import lottery_prior.pruning as pruning

    model, z, _ = setup
    template = Mask.ones(model)
    names = list(template)
    scored: list[dict[str, torch.Tensor]] = []
    real = pruning._synflow_scores

    def spy(net, which, input_shape):
        params = dict(net.named_parameters())
        scored.append({n: params[n].detach() != 0 for n in names})
        return real(net, which, input_shape)

    monkeypatch.setattr(pruning, "_synflow_scores", spy)
    final = prune_at_init(model, template, SPARSITY, "synflow", input_shape=z.shape)
    total, keep = template.total, template.total - round(SPARSITY * template.total)
    assert final.kept == keep
    assert len(scored) == 100
    density = keep / total
    previous = None
    for k, nonzero in enumerate(scored):
        assert sum(int(m.sum()) for m in nonzero.values()) == round(total * density ** (k / 100))
        if previous is not None:
            assert all(not (nonzero[n] & ~previous[n]).any() for n in names)
        previous = nonzero
    assert all(not (final[n] & ~previous[n]).any() for n in names)
    # iterating matters: one round prunes differently
    once = prune_at_init(model, template, SPARSITY, "synflow", input_shape=z.shape, iterations=1)
    assert len(scored) == 101 and once != final


def test_pruning_never_touches_the_global_rng(setup):
    model, z, loss_fn = setup
    noisy = dip_loss_fn(z, nn.Identity(), torch.zeros(1, 3, 16, 16), input_noise=0.03,
                        generator=gen(5))
    before = torch.get_rng_state()
    for method in PRUNING_METHODS:
        prune_at_init(model, Mask.ones(model), 0.5, method, loss_fn=loss_fn,
                      input_shape=z.shape, generator=gen(), iterations=2)
    prune_at_init(model, Mask.ones(model), 0.5, "snip", loss_fn=noisy)
    random_mask(Mask.ones(model), 0.5, gen())
    assert torch.equal(torch.get_rng_state(), before)


def test_a_noisy_pruning_batch_comes_from_its_generator(setup):
    model, z, _ = setup
    y = torch.zeros(1, 3, 16, 16)

    def snip_with(seed):
        loss = dip_loss_fn(z, nn.Identity(), y, input_noise=0.03, generator=gen(seed))
        return prune_at_init(model, Mask.ones(model), 0.5, "snip", loss_fn=loss)

    assert snip_with(1) == snip_with(1)
    assert snip_with(1) != snip_with(2)
    assert snip_with(1) != prune_at_init(model, Mask.ones(model), 0.5, "snip",
                                         loss_fn=dip_loss_fn(z, nn.Identity(), y))
    with pytest.raises(LipError, match="generator"):
        dip_loss_fn(z, nn.Identity(), y, input_noise=0.03)
    with pytest.raises(LipError, match="input_noise"):
        dip_loss_fn(z, nn.Identity(), y, input_noise=-1.0)


def test_snip_and_grasp_formulas_on_a_quadratic():
    """One 1x1 conv, L = mean((w.x - y)^2): g and H are known in closed form."""
    torch.manual_seed(0)
    model = nn.Conv2d(3, 1, 1, bias=False)
    x, y = torch.randn(1, 3, 4, 4), torch.randn(1, 1, 4, 4)

    def loss_fn(m: nn.Module) -> torch.Tensor:
        return ((m(x) - y) ** 2).mean()

    w = model.weight.detach().flatten()
    xs = x.flatten(2)[0]  # (3, 16)
    residual = w @ xs - y.flatten()
    g = 2 * xs @ residual / 16
    hessian = 2 * xs @ xs.T / 16
    snip = score_snip(model, ["weight"], loss_fn)["weight"].flatten()
    grasp = score_grasp(model, ["weight"], loss_fn)["weight"].flatten()
    torch.testing.assert_close(snip, (w * g).abs())
    torch.testing.assert_close(grasp, -w * (hessian @ g))
    mask = prune_at_init(model, Mask.ones(model), 0.3, "grasp", loss_fn=loss_fn)
    keep = mask["weight"].flatten()
    assert int(keep.sum()) == 2 and grasp[keep].max() <= grasp[~keep].min()  # highest removed


def test_bad_input(setup):
    model, z, loss_fn = setup
    ones = Mask.ones(model)
    for bad in (0, 1, -0.1, 1.5, float("nan")):
        with pytest.raises(LipError, match="sparsity"):
            prune_at_init(model, ones, bad, "magnitude")
        with pytest.raises(LipError, match="sparsity"):
            random_mask(ones, bad, gen())
        with pytest.raises(LipError, match="fraction"):
            magnitude_prune(model, ones, bad)
    with pytest.raises(LipError, match="unknown pruning method"):
        prune_at_init(model, ones, 0.5, "lottery")
    for method, needs in (("snip", "loss"), ("grasp", "loss"), ("synflow", "input shape"),
                          ("random", "generator")):
        with pytest.raises(LipError, match=needs):
            prune_at_init(model, ones, 0.5, method)
    with pytest.raises(LipError, match="seeded generator"):
        random_mask(ones, 0.5, None)  # never torch's global generator
    with pytest.raises(LipError, match="every layer"):
        random_mask(ones, 0.5, gen(), layer_sparsity={"head.0.weight": 0.5})
    with pytest.raises(LipError, match="already sparser"):
        prune_at_init(model, magnitude_prune(model, ones, 0.9), 0.5, "magnitude")
    other = Mask.ones(create_model("decoder", k=8))
    with pytest.raises(LipError):
        magnitude_prune(model, other, 0.2)


def test_erk_counts_are_exact_prune_big_convs_hardest_and_cap_at_dense():
    template = Mask({"big": torch.ones(64, 64, 3, 3, dtype=torch.bool),
                     "mid": torch.ones(32, 64, 1, 1, dtype=torch.bool),
                     "tiny": torch.ones(3, 2, 1, 1, dtype=torch.bool)})
    for sparsity in (0.5, 0.9, 0.98):
        counts = erk_counts(template, sparsity)
        assert sum(counts.values()) == template.total - round(sparsity * template.total)
        density = {n: counts[n] / template[n].numel() for n in counts}
        assert density["big"] < density["mid"] <= density["tiny"] <= 1
    # density proportional to sum(shape) / numel, up to rounding, where no layer is capped
    counts = erk_counts(template, 0.98)
    ratio = (counts["mid"] / 2048) / (counts["big"] / 36864)
    assert ratio == pytest.approx((98 / 2048) / (134 / 36864), rel=0.05)
    assert erk_counts(template, 0.5)["tiny"] == 6  # capped: kept whole


def test_keep_counts_keeps_the_highest_scores_of_each_layer():
    scores = {"a": torch.arange(10.0).view(10, 1, 1, 1), "b": -torch.arange(4.0).view(4, 1, 1, 1)}
    template = Mask({n: torch.ones_like(s, dtype=torch.bool) for n, s in scores.items()})
    mask = keep_counts(scores, template, {"a": 3, "b": 1})
    assert mask["a"].flatten().nonzero().flatten().tolist() == [7, 8, 9]
    assert mask["b"].flatten().nonzero().flatten().tolist() == [0]

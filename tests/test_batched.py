"""Batched fits (one vmap over N networks) equal N separate fits with the same seed.

The equivalence tests run the networks in float64. In float32 the two differ by summation order
only (vmap runs the N convolutions as one grouped convolution: ~5e-7 on the first output), but
a tiny DIP fit at the default learning rate is itself unstable at that level: scaling one layer
of the initial weights by 1 + 1e-7 changes the output of a single ``fit`` by 3e-3 after 7 steps
and by 9e-2 after 20 on this problem. No reordering can match to 1e-5 there; in float64 the
same 20-step fits agree to 3e-8 (one float32 ulp of the output). A short float32 fit checks the
production dtype path, before that instability sets in.
"""

import copy

import pytest
import torch

from lottery_prior.batched import fit_batched
from lottery_prior.errors import LipError
from lottery_prior.fit import FitConfig, fit
from lottery_prior.masks import Mask
from lottery_prior.problem import build_prior, make_problem

TINY = {"width": 8, "scales": 2, "skip": 2, "input_depth": 8}
CONFIG = FitConfig(steps=20, device="cpu", seed=0)


@pytest.fixture(scope="module")
def denoise():
    return make_problem("builtin:chelsea", "denoise", sigma=50, size=32, noise_seed=0)


@pytest.fixture(scope="module")
def inpaint():
    return make_problem("builtin:astronaut", "inpaint", size=32, noise_seed=1)


def prior(problem, seed, dtype=torch.float64):
    model, z = build_prior("dip", TINY, problem, seed=seed)
    return model.to(dtype), z.to(dtype)


def random_mask(model, seed):
    g = torch.Generator().manual_seed(seed)
    return Mask({n: torch.rand(w.shape, generator=g) < 0.5 for n, w in Mask.ones(model).items()})


def compare(inits, problems, masks, config=CONFIG, atol=1e-6, weights=True):
    """Fit each (model, z) separately and all in one batch, assert that the outputs, histories,
    scores and (with ``weights``) trained weights agree; return the batch's results and models."""
    separate = [copy.deepcopy(m) for m, _ in inits]
    batched = [copy.deepcopy(m) for m, _ in inits]
    expected = [
        fit(m, z, p.operator, p.observation, clean=p.clean, config=config, mask=k)
        for m, (_, z), p, k in zip(separate, inits, problems, masks, strict=True)
    ]
    results = fit_batched(
        batched, [z for _, z in inits], [p.operator for p in problems],
        [p.observation for p in problems], cleans=[p.clean for p in problems], config=config,
        masks=masks,
    )
    for want, got, m_want, m_got in zip(expected, results, separate, batched, strict=True):
        assert got.steps == want.steps == config.steps
        torch.testing.assert_close(got.output, want.output, atol=atol, rtol=0)
        torch.testing.assert_close(got.averaged, want.averaged, atol=atol, rtol=0)
        assert got.history.keys() == want.history.keys()
        assert got.history["step"] == want.history["step"]
        for key in ("loss", "psnr", "psnr_averaged"):
            assert got.history[key] == pytest.approx(want.history[key], abs=100 * atol)
        assert got.scores.keys() == want.scores.keys()
        for label, entry in want.scores.items():
            assert got.scores[label].keys() == entry.keys()
            assert got.scores[label] == pytest.approx(entry, abs=100 * atol)
        if weights:
            for (name, p), q in zip(m_want.named_parameters(), m_got.parameters(), strict=True):
                torch.testing.assert_close(q, p, atol=atol, rtol=0, msg=name)
    return results, batched


def test_two_masks_on_one_init_match_separate_fits(denoise):
    init = prior(denoise, seed=0)
    masks = [random_mask(init[0], 1), random_mask(init[0], 2)]
    _, models = compare([init, init], [denoise, denoise], masks)
    for model, mask in zip(models, masks, strict=True):
        params = dict(model.named_parameters())
        for name, keep in mask.items():
            assert torch.all(params[name][~keep] == 0), name


def test_two_inits_match_separate_fits(denoise):
    compare([prior(denoise, seed=0), prior(denoise, seed=1)], [denoise, denoise], [None, None])


def test_two_images_and_tasks_match_separate_fits(denoise, inpaint):
    init = prior(denoise, seed=0)
    compare([init, init], [denoise, inpaint], [None, random_mask(init[0], 3)])


def test_short_float32_fit_matches_separate_fits(denoise):
    """float32 as in production: the first outputs agree to ~1e-5 (summation order only).

    Weights are not compared: a conv bias in front of BatchNorm has zero true gradient, so in
    float32 its gradient is rounding noise that Adam turns into steps of +-lr (BN cancels it).
    """
    init = prior(denoise, seed=0, dtype=torch.float32)
    compare([init, init], [denoise, denoise], [random_mask(init[0], 1), None],
            config=FitConfig(steps=4, device="cpu", seed=0), atol=1e-4, weights=False)


def test_callbacks_see_live_weights_and_any_can_stop_all(denoise):
    (m0, z0), (m1, z1) = prior(denoise, seed=0), prior(denoise, seed=1)
    seen = []

    def watch(info):
        seen.append(info.model.head[0].weight.detach().clone())
        return info.step == 3

    results = fit_batched([m0, m1], [z0, z1], [denoise.operator] * 2, [denoise.observation] * 2,
                          config=CONFIG, callbacks=[[], [watch]])
    assert [r.steps for r in results] == [3, 3]
    assert [len(r.history["loss"]) for r in results] == [3, 3]
    assert not torch.equal(seen[0], seen[2])
    assert torch.equal(seen[-1], m1.head[0].weight)
    # after the fit, each model owns its weights (no view into the stacked tensors)
    assert m0.head[0].weight.untyped_storage().data_ptr() != (
        m1.head[0].weight.untyped_storage().data_ptr()
    )


def test_mismatches_are_refused(denoise):
    (m0, z0), (m1, z1) = prior(denoise, seed=0), prior(denoise, seed=1)
    ops, ys = [denoise.operator] * 2, [denoise.observation] * 2
    with pytest.raises(LipError, match="operators"):
        fit_batched([m0, m1], [z0, z1], ops[:1], ys, config=CONFIG)
    with pytest.raises(LipError, match="masks"):
        fit_batched([m0, m1], [z0, z1], ops, ys, config=CONFIG, masks=[None])
    with pytest.raises(LipError, match="at least one"):
        fit_batched([], [], [], [], config=CONFIG)
    with pytest.raises(LipError, match="twice"):
        fit_batched([m0, m0], [z0, z0], ops, ys, config=CONFIG)
    wide, _ = build_prior("dip", {**TINY, "width": 16}, denoise, seed=0)
    with pytest.raises(LipError, match="architecture"):
        fit_batched([m0, wide.double()], [z0, z1], ops, ys, config=CONFIG)
    with pytest.raises(LipError, match="another model"):
        fit_batched([m0, m1], [z0, z1], ops, ys, config=CONFIG, masks=[None, Mask.ones(wide)])
    with pytest.raises(LipError, match="shape"):
        fit_batched([m0, m1], [z0, z1[..., :16, :16]], ops, ys, config=CONFIG)

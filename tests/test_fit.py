"""The fit engine: a tiny DIP fit really denoises, is reproducible, and labels its scores."""

import pytest
import torch

from lottery_prior.errors import LipError
from lottery_prior.fit import FitConfig, fit
from lottery_prior.metrics import psnr
from lottery_prior.problem import build_prior, make_problem

TINY = {"width": 16, "scales": 3}


@pytest.fixture(scope="module")
def problem():
    return make_problem("builtin:chelsea", "denoise", sigma=50, size=64, noise_seed=0)


def tiny_fit(problem, **overrides):
    model, z = build_prior("dip", TINY, problem, seed=0)
    config = FitConfig(**{"steps": 150, "device": "cpu", "seed": 0, **overrides})
    return fit(model, z, problem.operator, problem.observation, clean=problem.clean,
               config=config)


@pytest.fixture(scope="module")
def result(problem):
    return tiny_fit(problem)


def test_tiny_fit_denoises_well_above_the_noisy_input(problem, result):
    noisy = psnr(problem.observation, problem.clean)
    assert result.scores["averaged"]["psnr"] > noisy + 5.0
    assert result.scores["peak"]["psnr"] >= result.scores["final"]["psnr"]


def test_scores_are_labelled_and_consistent(problem, result):
    assert set(result.scores) == {"final", "averaged", "peak", "peak_averaged"}
    assert result.scores["final"]["step"] == result.steps == 150
    assert result.scores["final"]["psnr"] == pytest.approx(psnr(result.output, problem.clean))
    assert result.history["psnr"][-1] == pytest.approx(result.scores["final"]["psnr"])
    assert max(result.history["psnr"]) == result.scores["peak"]["psnr"]
    assert 0 < result.scores["averaged"]["ssim"] <= 1
    assert result.output.shape == problem.clean.shape


def test_fit_is_reproducible_with_a_seed(problem, result):
    again = tiny_fit(problem)
    assert torch.equal(again.output, result.output)


def test_no_truth_means_no_psnr(problem):
    model, z = build_prior("dip", TINY, problem, seed=0)
    res = fit(model, z, problem.operator, problem.observation,
              config=FitConfig(steps=5, device="cpu"))
    assert "psnr" not in res.scores["final"] and "peak" not in res.scores
    assert len(res.history["loss"]) == 5


def test_callback_can_stop_the_fit(problem):
    model, z = build_prior("dip", TINY, problem, seed=0)
    res = fit(model, z, problem.operator, problem.observation,
              config=FitConfig(steps=50, device="cpu"), callbacks=[lambda i: i.step == 7])
    assert res.steps == 7


def test_fast_mode_runs_and_tracks_fp32(problem, result):
    fast = tiny_fit(problem, precision="bf16")
    assert abs(fast.scores["averaged"]["psnr"] - result.scores["averaged"]["psnr"]) < 1.0


@pytest.mark.parametrize("bad", [{"steps": 0}, {"lr": -1.0}, {"ema": 1.0}, {"input_noise": -1}])
def test_impossible_settings_are_refused(bad):
    with pytest.raises(LipError):
        FitConfig(**bad)

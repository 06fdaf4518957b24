"""Problems: the metric each task is scored with, fits that leave global state alone, and the
fit settings each model is given by default."""

import argparse

import torch

from lottery_prior.cli.args import fit_config_from_args
from lottery_prior.fit import FitConfig, fit
from lottery_prior.metrics import psnr, psnr_y
from lottery_prior.models import model_fit_defaults
from lottery_prior.problem import build_prior, make_problem


def test_super_resolution_is_scored_on_luma_with_a_border_crop():
    problem = make_problem("builtin:astronaut", "sr", factor=4, size=64)
    assert problem.metric is psnr_y and problem.metric_name == "PSNR-Y (border 4)"
    estimate = problem.operator.upscale(problem.observation)
    assert problem.metric(estimate, problem.clean) == psnr_y(estimate, problem.clean)
    assert abs(psnr_y(estimate, problem.clean) - psnr(estimate, problem.clean)) > 0.1
    assert make_problem("builtin:astronaut", size=64).metric is psnr


def test_a_fit_leaves_global_random_state_and_matmul_flags_alone():
    problem = make_problem("builtin:astronaut", size=32)
    model, z = build_prior("dip", {"width": 8, "scales": 2, "skip": 2}, problem)
    flags = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    state = torch.get_rng_state()
    fit(model, z, problem.operator, problem.observation,
        config=FitConfig(steps=3, precision="bf16", device="cpu"))
    assert torch.equal(torch.get_rng_state(), state)
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == flags


def test_the_deep_decoder_is_fitted_without_input_noise_wherever_it_is_fitted():
    assert model_fit_defaults("decoder") == {"input_noise": 0.0}
    assert model_fit_defaults("dip") == {}
    args = argparse.Namespace(steps=None, lr=0.01, input_noise=None, precision="fp32", device=None,
                              seed=0)
    assert fit_config_from_args(args, "denoise", "decoder").input_noise == 0.0
    assert fit_config_from_args(args, "denoise", "dip").input_noise == 1 / 30
    args.input_noise = 0.05  # the user's setting wins
    assert fit_config_from_args(args, "denoise", "decoder").input_noise == 0.05

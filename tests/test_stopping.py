"""Stopping rules: ES-WMV finds the minimum of the windowed variance from the outputs alone."""

import inspect

import pytest
import torch

from lottery_prior.errors import LipError
from lottery_prior.fit import FitConfig, fit
from lottery_prior.problem import build_prior, make_problem
from lottery_prior.stopping import FixedStep, WindowedVariance, make_stopping_rule

SHAPE = (1, 3, 32, 32)


def trajectory(steps: int, centre: int, seed: int = 0, base: float = 0.01, slope: float = 0.01):
    """Outputs ``clean + a_t * noise_t`` whose noise amplitude is smallest at step ``centre``."""
    g = torch.Generator().manual_seed(seed)
    clean = torch.rand(SHAPE, generator=g)
    return [
        clean + (base + slope * abs(t - centre)) * torch.randn(SHAPE, generator=g)
        for t in range(1, steps + 1)
    ]


def brute_force_variances(outputs, window: int) -> list[float]:
    """VAR_t = (1/W) sum ||x_i - mean||^2 / n over each full window, computed directly."""
    result = []
    for end in range(window, len(outputs) + 1):
        stack = torch.stack([o.double().reshape(-1) for o in outputs[end - window : end]])
        result.append(float((stack - stack.mean(0)).square().sum(1).mean()) / stack.shape[1])
    return result


def run(rule, outputs) -> int | None:
    """Feed outputs (steps from 1) until the rule stops; the step it stopped at, or None."""
    for step, out in enumerate(outputs, start=1):
        if rule.update(step, out):
            return step
    return None


def test_detector_stops_after_patience_at_the_variance_minimum():
    window, patience, centre = 11, 30, 60
    outputs = trajectory(200, centre)
    rule = WindowedVariance(window=window, patience=patience, keep="iterate")
    stopped = run(rule, outputs)
    # the window ending at centre + (W-1)/2 is the one centred on the quietest step
    expected = centre + (window - 1) // 2
    assert abs(rule.best_step - expected) <= 2
    reference = brute_force_variances(outputs, window)
    assert rule.best_step == window + reference.index(min(reference))
    assert stopped == rule.best_step + patience
    assert torch.equal(rule.best_output, outputs[rule.best_step - 1])
    assert rule.best_output is rule.best_iterate
    assert rule.best_variance == min(rule.variances)


def test_keep_mean_returns_the_mean_of_the_best_window():
    window = 11
    outputs = trajectory(120, centre=40)
    rule = WindowedVariance(window=window, patience=20, keep="mean")
    run(rule, outputs)
    best = rule.best_step
    expected = torch.stack(outputs[best - window : best]).double().mean(0).float()
    assert rule.best_output is rule.best_mean and rule.best_output.shape == SHAPE
    assert torch.allclose(rule.best_output, expected, atol=1e-6)


def test_running_variance_equals_brute_force_over_many_windows():
    window = 7
    outputs = trajectory(100, centre=50, base=1e-3, slope=1e-4)  # tiny spread on values ~0.5
    rule = WindowedVariance(window=window, patience=1000)
    assert run(rule, outputs) is None
    reference = brute_force_variances(outputs, window)
    assert rule.variances == pytest.approx(reference, rel=1e-9)
    assert rule.variance_steps == list(range(window, 101))


def test_no_check_before_the_window_is_full():
    rule = WindowedVariance(window=5, patience=1)
    outputs = trajectory(4, centre=0)
    assert run(rule, outputs) is None
    assert rule.variances == [] and rule.best_output is None and rule.best_step is None


def test_reset_forgets_the_previous_fit():
    outputs = trajectory(60, centre=20)
    rule = WindowedVariance(window=5, patience=10)
    first = run(rule, outputs)
    rule.reset()
    assert rule.variances == [] and rule.best_output is None
    assert run(rule, outputs) == first


def test_rules_never_take_the_truth():
    for cls in (WindowedVariance, FixedStep):
        assert list(inspect.signature(cls.update).parameters) == ["self", "step", "output"]
    assert set(inspect.signature(WindowedVariance).parameters) == {"window", "patience", "keep"}
    assert set(inspect.signature(FixedStep).parameters) == {"step"}


@pytest.mark.parametrize(
    "options",
    [{"window": 1}, {"window": 0}, {"patience": 0}, {"window": 2.5}, {"patience": True},
     {"keep": "average"}],
)
def test_bad_options_are_refused(options):
    with pytest.raises(LipError):
        WindowedVariance(**options)


def test_output_size_must_not_change():
    rule = WindowedVariance(window=3)
    rule.update(1, torch.zeros(1, 3, 8, 8))
    with pytest.raises(LipError, match="size changed"):
        rule.update(2, torch.zeros(1, 3, 8, 9))


def test_fixed_step_keeps_that_step_output():
    outputs = trajectory(20, centre=5)
    rule = FixedStep(7)
    assert run(rule, outputs) == 7
    assert rule.best_step == 7 and torch.equal(rule.best_output, outputs[6])
    with pytest.raises(LipError):
        FixedStep(0)


def test_make_stopping_rule():
    assert make_stopping_rule(None) is None and make_stopping_rule("none") is None
    rule = make_stopping_rule("wmv", window=20, patience=5)
    assert isinstance(rule, WindowedVariance) and (rule.window, rule.patience) == (20, 5)
    rule = make_stopping_rule("wmv")
    assert (rule.window, rule.patience, rule.keep) == (100, 200, "mean")
    assert make_stopping_rule("wmv", keep="iterate").keep == "iterate"
    assert isinstance(make_stopping_rule("fixed", step=3), FixedStep)
    with pytest.raises(LipError, match="unknown stopping rule"):
        make_stopping_rule("oracle")
    with pytest.raises(LipError, match="bad option"):
        make_stopping_rule("wmv", clean=1)
    with pytest.raises(LipError):
        make_stopping_rule("none", window=3)


def test_tiny_fit_stops_early_with_the_detector():
    problem = make_problem("builtin:chelsea", "denoise", sigma=50, size=64, noise_seed=0)
    model, z = build_prior("dip", {"width": 16, "scales": 3}, problem, seed=0)
    rule = WindowedVariance(window=10, patience=20)
    steps = 400
    result = fit(model, z, problem.operator, problem.observation, clean=problem.clean,
                 config=FitConfig(steps=steps, device="cpu", seed=0), stop=rule)
    assert result.steps < steps
    assert result.steps == rule.best_step + rule.patience
    stopped = result.scores["stopped"]
    assert stopped["step"] == rule.best_step and "psnr" in stopped
    assert torch.equal(result.stopped, rule.best_output.cpu())
    assert result.restored is result.stopped

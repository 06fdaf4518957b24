"""Stopping rules: ES-WMV finds the minimum of the windowed variance from the outputs alone."""

import inspect

import pytest
import torch

from lottery_prior.errors import LipError
from lottery_prior.fit import FitConfig, fit
from lottery_prior.problem import build_prior, make_problem
from lottery_prior.stopping import (
    FACTOR,
    Discrepancy,
    FixedStep,
    WindowedVariance,
    make_stopping_rule,
)

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
    for cls in (WindowedVariance, Discrepancy, FixedStep):
        assert list(inspect.signature(cls.update).parameters) == [
            "self", "step", "output", "loss"]
    assert set(inspect.signature(WindowedVariance).parameters) == {
        "window", "patience", "keep", "rise", "drop"}
    assert set(inspect.signature(Discrepancy).parameters) == {
        "noise_variance", "factor", "window", "keep"}
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


# --- where the stop fired is recorded wherever a stopped score is -----------------------------

def test_a_fit_records_where_the_stop_fired_and_the_rules_settings():
    problem = make_problem("builtin:chelsea", "denoise", sigma=50, size=64, noise_seed=0)

    def run_with(rule, steps):
        model, z = build_prior("dip", {"width": 8, "scales": 3}, problem, seed=0)
        return fit(model, z, problem.operator, problem.observation, clean=problem.clean,
                   config=FitConfig(steps=steps, device="cpu", seed=0), stop=rule,
                   run_past_stop=True).scores["stopped"]

    stopped = run_with(make_stopping_rule("wmv", window=5, patience=4), 60)
    assert stopped["fired"] and stopped["stop_step"] == stopped["step"] + 4  # ES-WMV: P checks
    assert stopped["rule"] == {"rule": "wmv", "window": 5, "patience": 4, "keep": "mean"}
    stopped = run_with(make_stopping_rule("wmv", window=5, patience=1000), 20)
    assert stopped["fired"] is False and stopped["stop_step"] is None
    assert stopped["step"] is not None  # its best output so far is what is kept


# --- the default rule: a shallow dip or a plateau of the variance does not stop it -----------

SIGMA2 = (25 / 255) ** 2


def fit_curves() -> tuple[list[float], list[float]]:
    """A synthetic fit: the windowed variance has a shallow early dip (step 300) with a small
    bump after it and a deeper minimum at step 1200, then rises as the noise is fitted; the
    loss falls from 3 σ² and crosses FACTOR σ² at step 1100."""
    import math

    variance, loss = [], []
    for step in range(1, 2401):
        if step <= 300:
            v = 1.0 + 4.0 * (300 - step) / 300
        elif step <= 500:
            v = 1.0 + 0.05 * math.sin(math.pi * (step - 300) / 200)
        elif step <= 1200:
            v = 1.0 - 0.4 * (step - 500) / 700
        else:
            v = 0.6 + 0.4 * (step - 1200) / 1200
        variance.append(v)
        loss.append(SIGMA2 * (FACTOR + (3 - FACTOR) * (1100 - step) / 1100) if step <= 1100
                    else SIGMA2 * (FACTOR - 0.1 * (step - 1100) / 1300))
    return variance, loss


def replay(rule, series) -> int | None:
    for step, value in enumerate(series, 1):
        if rule.check(step, value):
            return step
    return None


def test_a_shallow_early_dip_does_not_stop_the_default_rule():
    variance, loss = fit_curves()
    old = make_stopping_rule("wmv")
    assert replay(old, variance) == 500 and old.best_step == 300  # ES-WMV: at the dip
    default = make_stopping_rule("auto", noise_variance=SIGMA2)
    fired = replay(default, loss)
    assert default.settings()["rule"] == "discrepancy"
    assert fired is not None and 1100 < fired <= 1200 and default.best_step == fired
    noise_free = make_stopping_rule("auto", noise_variance=0.0)  # inpainting, SR: no noise
    assert replay(noise_free, loss) is None and noise_free.best_step == len(loss)


def test_the_discrepancy_rule_keeps_the_window_mean_where_the_loss_fell_below_the_noise():
    outputs = trajectory(300, 150)
    losses = [SIGMA2 * (2.0 - step / 100) for step in range(1, 301)]  # falling through FACTOR
    rule = Discrepancy(SIGMA2, window=20)
    fired = next(step for step, (out, loss) in enumerate(zip(outputs, losses, strict=True), 1)
                 if rule.update(step, out, loss))
    mean_loss = [sum(losses[s - 20:s]) / 20 for s in range(20, 301)]
    assert fired == 20 + next(i for i, m in enumerate(mean_loss) if m < FACTOR * SIGMA2)
    window = torch.stack(outputs[fired - 20: fired]).double().mean(0)
    assert rule.best_step == fired
    assert torch.allclose(rule.best_output.double(), window, atol=1e-6)
    quiet = Discrepancy(0.0, window=20)  # without noise it never fires: the last window kept
    assert not any(quiet.update(step, out, 0.0) for step, out in enumerate(outputs, 1))
    assert quiet.best_step == 300
    with pytest.raises(LipError, match="noise variance"):
        make_stopping_rule("discrepancy")


def test_wmv_with_a_rise_ignores_a_plateau_and_keeps_its_last_output():
    import random

    rng = random.Random(0)
    curve = [5.0 - 4.0 * min(step, 400) / 400 + 0.02 * rng.random() for step in range(1, 3001)]
    old, rising = make_stopping_rule("wmv"), make_stopping_rule("wmv", rise=0.1)
    assert replay(old, curve) is not None  # a noisy plateau: ES-WMV fires on it
    assert replay(rising, curve) is None and rising.best_step > 2900


def reference_es_wmv(outputs, window=100, patience=200):
    """ES-WMV as before version 0.4, written out: the step it fires at, the kept step and the
    mean of the window ending there."""
    best, best_step, wait, kept = float("inf"), None, 0, None
    for step in range(window, len(outputs) + 1):
        stack = torch.stack([o.double().reshape(-1) for o in outputs[step - window: step]])
        variance = float((stack - stack.mean(0)).square().sum(1).mean()) / stack.shape[1]
        if variance < best:
            best, best_step, wait, kept = variance, step, 0, stack.mean(0)
            continue
        wait += 1
        if wait >= patience:
            return step, best_step, kept
    return None, best_step, kept


def test_the_old_rule_is_still_selectable_and_gives_todays_numbers():
    outputs = trajectory(420, 150, slope=0.002)
    fired, kept_step, kept = reference_es_wmv(outputs, window=20, patience=50)
    rule = make_stopping_rule("wmv", window=20, patience=50)
    assert rule.settings() == {"rule": "wmv", "window": 20, "patience": 50, "keep": "mean"}
    assert run(rule, outputs) == fired and rule.best_step == kept_step
    assert torch.allclose(rule.best_output.double().reshape(-1), kept, atol=1e-6)
    default = make_stopping_rule("wmv")
    assert (default.window, default.patience, default.keep, default.rise) == (100, 200, "mean", 0)


def test_replaying_recorded_signals_stops_where_the_fit_stopped():
    """benchmarks/stopping.py scores rules by replaying recorded variances or losses through
    check(): the same stop and the same kept step as the rule watching the fit."""
    outputs = trajectory(600, 200, slope=0.003)
    losses = [SIGMA2 * (1.5 - step / 600) for step in range(1, 601)]
    for make in (lambda: make_stopping_rule("wmv", window=20, patience=30),
                 lambda: Discrepancy(SIGMA2, window=20)):
        online = make()
        fired = next((step for step, (out, loss) in enumerate(zip(outputs, losses, strict=True), 1)
                      if online.update(step, out, loss)), None)
        again = make()
        series = losses if again.signal == "loss" else [None] * 19 + online.variances
        stop = next((step for step, v in enumerate(series, 1)
                     if v is not None and again.check(step, v)), None)
        assert fired is not None and stop == fired and again.best_step == online.best_step

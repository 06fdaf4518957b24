"""Automatic stopping rules for a fit: they see only the outputs, never the clean image.

``fit(..., stop=rule)`` calls ``rule.update(step, output)`` after every step; when it returns
True the fit ends and ``rule.best_step`` / ``rule.best_output`` give the output to return.

``WindowedVariance`` is ES-WMV of Wang, Li, Zhuang, Chen, Liang & Sun, "Early Stopping for Deep
Image Prior" (TMLR 2023, arXiv:2112.06074). As in the authors' code (``ES_WMV.ipynb`` of
github.com/sun-umn/Early_Stopping_for_DIP), the variance is checked once the window is full and
the count of checks without a new minimum triggers the stop. Their values are window W = 100,
patience P = 1000, and the output kept is the iterate of the minimum-variance step
(``keep="iterate"``). Our defaults differ in two ways, both measured on Set5 (σ = 25, 128 px,
3000 steps; ``benchmarks/early_stopping.py``): P = 200, because after the first valley the
variance of these runs drifts slowly down again while the PSNR falls, so P = 1000 kept a late,
overfitted step on 2 of 5 images (for the dense net and a ticket; 500 and 300 did in some runs;
200 held on four more images); and ``keep="mean"``, the mean of the minimum-variance
window (free: the window is held anyway), which averages out the step-to-step jitter of DIP's
outputs and scored ~1.8 dB above the iterate at the same step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lottery_prior.checks import MAX_STEPS, check_float, check_int
from lottery_prior.errors import LipError

if TYPE_CHECKING:  # torch is imported on first use: the CLI reads the defaults below cheaply
    from torch import Tensor

KEEP = ("iterate", "mean")
WINDOW, PATIENCE, KEEP_DEFAULT = 100, 200, "mean"  # the paper's: 100, 1000, "iterate"


class WindowedVariance:
    """ES-WMV: stop when the windowed variance of the outputs has not hit a new minimum for
    ``patience`` consecutive checks; keep the mean of the minimum-variance window (or, with
    ``keep="iterate"``, the output of that step).

    ``VAR_t = (1/W) sum_i ||x_i - mean||^2 / n`` over the last W outputs (n = values per
    output, so the number does not depend on the image size). Running float64 sums make each
    step O(n); they are recomputed exactly from the window every W steps so no drift builds up.
    The window itself (W x n float32) is held on the outputs' device.
    """

    def __init__(
        self, window: int = WINDOW, patience: int = PATIENCE, keep: str = KEEP_DEFAULT, *,
        rise: float = 0.0, relative_patience: float = 0.0,
    ) -> None:
        check_int("window", window, 2, MAX_STEPS)  # W outputs are held in memory
        check_int("patience", patience, 1, MAX_STEPS)
        check_float("rise", rise, 0, 10)
        check_float("relative patience", relative_patience, 0, 100)
        if keep not in KEEP:
            raise LipError(f"keep must be one of {', '.join(KEEP)}, got {keep!r}")
        self.window, self.patience, self.keep = window, patience, keep
        self.rise, self.relative_patience = rise, relative_patience
        self.reset()

    def settings(self) -> dict:
        """The rule's name and settings (recorded beside its score)."""
        extra = {k: v for k, v in (("rise", self.rise),
                                   ("relative_patience", self.relative_patience)) if v}
        return {"rule": "wmv-rise" if self.rise else "wmv", "window": self.window,
                "patience": self.patience, "keep": self.keep, **extra}

    def reset(self) -> None:
        """Forget everything seen (to reuse the rule for another fit)."""
        self.variances: list[float] = []
        self.variance_steps: list[int] = []
        self.best_step: int | None = None  # the step of the output kept
        self.minimum_step: int | None = None  # the step of the lowest variance
        self.best_iterate: Tensor | None = None  # the output at best_step (the paper's choice)
        self.best_mean: Tensor | None = None  # the mean of the window ending at best_step
        self.best_variance = float("inf")
        self.wait = 0
        self._buffer: Tensor | None = None  # ring of the last W outputs, (W, n)
        self._sum: Tensor | None = None  # float64 sum of the window's outputs
        self._sq: Tensor | None = None  # float64 sum of their squared norms (0-d)
        self._count = 0  # outputs seen

    @property
    def best_output(self) -> Tensor | None:
        """The output to return: ``best_iterate``, or ``best_mean`` with ``keep="mean"``."""
        return self.best_mean if self.keep == "mean" else self.best_iterate

    def update(self, step: int, output: Tensor) -> bool:
        """Add the output after ``step``; True once ``patience`` checks found no new minimum."""
        import torch

        x = output.detach().reshape(-1).float()
        if self._buffer is None:
            self._buffer = torch.empty((self.window, x.numel()), device=x.device)
            self._sum = torch.zeros(x.numel(), dtype=torch.float64, device=x.device)
            self._sq = torch.zeros((), dtype=torch.float64, device=x.device)
        elif x.numel() != self._buffer.shape[1]:
            raise LipError(f"output size changed from {self._buffer.shape[1]} to {x.numel()}")
        assert self._sum is not None and self._sq is not None
        slot = self._count % self.window
        x64 = x.double()
        if self._count >= self.window:
            old = self._buffer[slot].double()
            self._sum -= old
            self._sq -= old.square().sum()
        self._buffer[slot] = x
        self._sum += x64
        self._sq += x64.square().sum()
        self._count += 1
        if self._count < self.window:
            return False
        if self._count % self.window == 0:  # exact recompute: no drift of the running sums
            self._sum.zero_()
            self._sq.zero_()
            for row in self._buffer:  # row by row: no (W, n) float64 copy
                row64 = row.double()
                self._sum += row64
                self._sq += row64.square().sum()

        w, n = self.window, x.numel()
        variance = float((self._sq - self._sum.square().sum() / w).clamp_min(0)) / (w * n)
        stop = self.check(step, variance)
        if self.best_step == step:
            self.best_iterate = output.detach().clone()
            self.best_mean = self.window_mean.to(output.dtype).reshape(output.shape)
        return stop

    @property
    def window_mean(self) -> Tensor:
        """The mean of the last ``window`` outputs, flat (float64)."""
        assert self._sum is not None
        return self._sum / self.window

    def check(self, step: int, variance: float) -> bool:
        """The rule itself, on the windowed variance after ``step``: True once ``patience``
        checks since the minimum found none as low. Sets ``minimum_step`` (where the variance
        was lowest) and ``best_step`` (the step whose output is kept). Benchmarks replay
        recorded variances through it.

        With ``rise`` > 0 a check counts against the patience only if its variance lies more
        than that fraction above the minimum: checks within it belong to the minimum's plateau
        (a plateau is not a rise), and the output kept is the plateau's last (with ``rise``
        0, the minimum's). With ``relative_patience`` r > 0 the patience is at least r times
        the minimum's step.
        """
        self.variances.append(variance)
        self.variance_steps.append(step)
        if variance < self.best_variance:
            self.best_variance, self.minimum_step, self.best_step = variance, step, step
            self.wait = 0
            return False
        if self.rise and variance <= self.best_variance * (1 + self.rise):
            self.best_step = step
            return False
        self.wait += 1
        assert self.minimum_step is not None
        return self.wait >= max(self.patience, self.relative_patience * self.minimum_step)


class FixedStep:
    """Stop at a fixed step and keep that step's output (a baseline; needs no truth either)."""

    def __init__(self, step: int) -> None:
        if isinstance(step, bool) or not isinstance(step, int) or step < 1:
            raise LipError(f"stop step must be an integer >= 1, got {step!r}")
        self.step = step
        self.best_step: int | None = None
        self.best_output: Tensor | None = None

    def settings(self) -> dict:
        """The rule's name and settings (recorded beside its score)."""
        return {"rule": "fixed", "step": self.step}

    def update(self, step: int, output: Tensor) -> bool:
        """True at (or after) the fixed step, whose output is kept."""
        if step < self.step:
            return False
        if self.best_output is None:
            self.best_step, self.best_output = step, output.detach().clone()
        return True


# The windowed-variance rules by name: their settings beyond WindowedVariance's defaults.
PRESETS: dict[str, dict] = {"wmv": {}, "wmv-rise": {"patience": 100, "rise": 0.1}}
DEFAULT_RULE = "wmv-rise"  # what "auto" is (benchmarks/results/stopping.md)
RULES = ("auto", *PRESETS, "fixed", "none")


def resolve_rule(name: str | None) -> str | None:
    """The rule a name stands for: ``auto`` is :data:`DEFAULT_RULE`, ``none`` is None."""
    if name is None or name == "none":
        return None
    return DEFAULT_RULE if name == "auto" else name


def make_stopping_rule(
    name: str | None, **options: int | float | str
) -> WindowedVariance | FixedStep | None:
    """A stopping rule by name, for :func:`lottery_prior.fit_prior`'s ``stop``.

    ``"wmv-rise"`` (the default, ``"auto"``) and ``"wmv"`` watch the windowed variance of
    the outputs and never see the ground truth. ``"wmv"`` is ES-WMV as before version 0.4
    (window 100, patience 200: it stops 200 checks after the variance's minimum);
    ``"wmv-rise"`` stops only once the variance has *risen* above its minimum (by
    ``rise``, for ``patience`` checks) and keeps the output where its plateau ended, so a
    fit whose variance only drifts on a plateau runs on. Options: ``window``, ``patience``,
    ``keep`` (``"mean"`` of the window, or the ``"iterate"``), ``rise``,
    ``relative_patience``. ``"fixed"`` stops at option ``step``; ``"none"`` (or None) never
    stops early and returns None.

    >>> make_stopping_rule("wmv", patience=300).patience
    300
    >>> make_stopping_rule("auto").settings()["rule"]
    'wmv-rise'
    """
    name = resolve_rule(name)
    if name is None:
        if options:
            raise LipError(f"stopping rule 'none' takes no options, got {sorted(options)}")
        return None
    if name not in PRESETS and name != "fixed":
        raise LipError(f"unknown stopping rule {name!r}; choose one of {', '.join(RULES)}")
    try:
        if name == "fixed":
            return FixedStep(**options)  # type: ignore[arg-type]
        return WindowedVariance(**(PRESETS[name] | options))  # type: ignore[arg-type]
    except TypeError as err:
        raise LipError(f"bad option for stopping rule {name!r}: {err}") from err

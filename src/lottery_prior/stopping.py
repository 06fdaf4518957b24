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

from lottery_prior.checks import MAX_STEPS, check_int
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
        self, window: int = WINDOW, patience: int = PATIENCE, keep: str = KEEP_DEFAULT
    ) -> None:
        check_int("window", window, 2, MAX_STEPS)  # W outputs are held in memory
        check_int("patience", patience, 1, MAX_STEPS)
        if keep not in KEEP:
            raise LipError(f"keep must be one of {', '.join(KEEP)}, got {keep!r}")
        self.window, self.patience, self.keep = window, patience, keep
        self.reset()

    def reset(self) -> None:
        """Forget everything seen (to reuse the rule for another fit)."""
        self.variances: list[float] = []
        self.variance_steps: list[int] = []
        self.best_step: int | None = None
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
        self.variances.append(variance)
        self.variance_steps.append(step)
        if variance < self.best_variance:
            self.best_variance, self.best_step, self.wait = variance, step, 0
            self.best_iterate = output.detach().clone()
            self.best_mean = (self._sum / w).to(output.dtype).reshape(output.shape)
            return False
        self.wait += 1
        return self.wait >= self.patience


class FixedStep:
    """Stop at a fixed step and keep that step's output (a baseline; needs no truth either)."""

    def __init__(self, step: int) -> None:
        if isinstance(step, bool) or not isinstance(step, int) or step < 1:
            raise LipError(f"stop step must be an integer >= 1, got {step!r}")
        self.step = step
        self.best_step: int | None = None
        self.best_output: Tensor | None = None

    def update(self, step: int, output: Tensor) -> bool:
        """True at (or after) the fixed step, whose output is kept."""
        if step < self.step:
            return False
        if self.best_output is None:
            self.best_step, self.best_output = step, output.detach().clone()
        return True


RULES = ("wmv", "fixed", "none")


def make_stopping_rule(
    name: str | None, **options: int | str
) -> WindowedVariance | FixedStep | None:
    """A stopping rule by name, for :func:`lottery_prior.fit_prior`'s ``stop``.

    ``"wmv"`` is ES-WMV, the windowed-variance detector, which never sees the ground truth
    (options ``window``, ``patience``, ``keep``: ``"mean"`` of the minimum-variance window,
    or the ``"iterate"`` at its step); ``"fixed"`` stops at option ``step``; ``"none"``
    (or None) never stops early and returns None.

    >>> make_stopping_rule("wmv", patience=200).patience
    200
    """
    if name is None or name == "none":
        if options:
            raise LipError(f"stopping rule 'none' takes no options, got {sorted(options)}")
        return None
    classes = {"wmv": WindowedVariance, "fixed": FixedStep}
    if name not in classes:
        raise LipError(f"unknown stopping rule {name!r}; choose one of {', '.join(RULES)}")
    try:
        return classes[name](**options)  # type: ignore[arg-type]
    except TypeError as err:
        raise LipError(f"bad option for stopping rule {name!r}: {err}") from err

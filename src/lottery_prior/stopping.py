"""Automatic stopping rules for a fit: they see the outputs and the loss, never the clean
image.

``fit(..., stop=rule)`` calls ``rule.update(step, output, loss)`` after every step; when it
returns True the fit ends and ``rule.best_step`` / ``rule.best_output`` give the output to
return. The default (``auto``) is :class:`Discrepancy`: ES-WMV, tuned on dense networks,
stopped far too early for many others (sparse, narrow and Deep Decoder networks whose
windowed variance drifts on a plateau, or rises while a sparse network starts to learn; and
inpainting fits, which have no noise to overfit), while the discrepancy principle held for
every network in ``benchmarks/stopping.py`` (``benchmarks/results/stopping.md``).

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

from collections import deque
from typing import TYPE_CHECKING

from lottery_prior.checks import MAX_STEPS, check_float, check_int
from lottery_prior.errors import LipError

if TYPE_CHECKING:  # torch is imported on first use: the CLI reads the defaults below cheaply
    from torch import Tensor

KEEP = ("iterate", "mean")
WINDOW, PATIENCE, KEEP_DEFAULT = 100, 200, "mean"  # the paper's: 100, 1000, "iterate"
FACTOR = 0.95  # the discrepancy rule's share of the noise variance


class WindowedVariance:
    """ES-WMV: stop when the windowed variance of the outputs has not hit a new minimum for
    ``patience`` consecutive checks; keep the mean of the minimum-variance window (or, with
    ``keep="iterate"``, the output of that step).

    ``VAR_t = (1/W) sum_i ||x_i - mean||^2 / n`` over the last W outputs (n = values per
    output, so the number does not depend on the image size). Running float64 sums make each
    step O(n); they are recomputed exactly from the window every W steps so no drift builds up.
    The window itself (W x n float32) is held on the outputs' device.
    """

    signal = "variance"  # what check() reads (benchmarks replay it from recorded fits)

    def __init__(
        self, window: int = WINDOW, patience: int = PATIENCE, keep: str = KEEP_DEFAULT, *,
        rise: float = 0.0, drop: float = 0.0,
    ) -> None:
        check_int("window", window, 2, MAX_STEPS)  # W outputs are held in memory
        check_int("patience", patience, 1, MAX_STEPS)
        check_float("rise", rise, 0, 10)
        check_float("drop", drop, 0, 1, high_open=True)
        if keep not in KEEP:
            raise LipError(f"keep must be one of {', '.join(KEEP)}, got {keep!r}")
        self.window, self.patience, self.keep = window, patience, keep
        self.rise, self.drop = rise, drop
        self.reset()

    def settings(self) -> dict:
        """The rule's name and settings (recorded beside its score)."""
        extra = {k: v for k, v in (("rise", self.rise), ("drop", self.drop)) if v}
        return {"rule": "wmv", "window": self.window, "patience": self.patience,
                "keep": self.keep, **extra}

    def reset(self) -> None:
        """Forget everything seen (to reuse the rule for another fit)."""
        self.variances: list[float] = []
        self.variance_steps: list[int] = []
        self.best_step: int | None = None  # the step of the output kept
        self.minimum_step: int | None = None  # the step of the lowest variance
        self.best_iterate: Tensor | None = None  # the output at best_step (the paper's choice)
        self.best_mean: Tensor | None = None  # the mean of the window ending at best_step
        self.best_variance = float("inf")
        self.first_variance: float | None = None
        self.wait = 0
        self._buffer: Tensor | None = None  # ring of the last W outputs, (W, n)
        self._sum: Tensor | None = None  # float64 sum of the window's outputs
        self._sq: Tensor | None = None  # float64 sum of their squared norms (0-d)
        self._count = 0  # outputs seen

    @property
    def best_output(self) -> Tensor | None:
        """The output to return: ``best_iterate``, or ``best_mean`` with ``keep="mean"``."""
        return self.best_mean if self.keep == "mean" else self.best_iterate

    def update(self, step: int, output: Tensor, loss: float | None = None) -> bool:
        """Add the output after ``step`` (the loss is not used); True once ``patience``
        checks found no new minimum."""
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
        0, the minimum's). With ``drop`` d > 0 the rule fires only once the minimum lies
        below (1 - d) times the first variance: a fit must have settled before its variance
        can rise (a sparse network's variance may grow as it starts to learn).
        """
        self.variances.append(variance)
        self.variance_steps.append(step)
        if self.first_variance is None:
            self.first_variance = variance
        if variance < self.best_variance:
            self.best_variance, self.minimum_step, self.best_step = variance, step, step
            self.wait = 0
            return False
        if self.rise and variance <= self.best_variance * (1 + self.rise):
            self.best_step = step
            return False
        self.wait += 1
        assert self.first_variance is not None
        settled = self.best_variance <= (1 - self.drop) * self.first_variance
        return settled and self.wait >= self.patience


class Discrepancy:
    """The discrepancy principle (Morozov): stop once the data term has fallen below what the
    noise alone explains, ``mean(loss over the last W steps) < factor * noise_variance``, and
    keep the mean of the last W outputs. ``noise_variance`` is what the noise adds to the
    loss (``Problem.noise_variance``: σ² of denoising, less where clipping to [0, 1] cut the
    noise, estimated from the observation); the rule never sees the truth.

    ``factor`` 0.95 was chosen in ``benchmarks/stopping.py`` on half of the images (dense
    networks of widths 32 and 128, tickets, random and learned masks, Deep Decoders and
    channel networks at σ 25) and checked on the other half. Without noise
    (``noise_variance`` 0) it never fires and keeps the last window's mean.
    """

    signal = "loss"  # what check() reads (benchmarks replay it from recorded fits)

    def __init__(self, noise_variance: float, factor: float = FACTOR, window: int = WINDOW,
                 keep: str = KEEP_DEFAULT) -> None:
        check_float("noise variance", noise_variance, 0, 1)
        check_float("factor", factor, 0, 10, low_open=True)
        check_int("window", window, 2, MAX_STEPS)
        if keep not in KEEP:
            raise LipError(f"keep must be one of {', '.join(KEEP)}, got {keep!r}")
        self.noise_variance, self.factor, self.window, self.keep = (
            noise_variance, factor, window, keep)
        self._window: Tensor | None = None  # ring of the last W outputs, (W, n)
        self._last: Tensor | None = None
        self._losses: deque[float] = deque(maxlen=window)
        self.best_step: int | None = None

    def settings(self) -> dict:
        """The rule's name and settings (recorded beside its score)."""
        return {"rule": "discrepancy", "noise_variance": round(self.noise_variance, 8),
                "factor": self.factor, "window": self.window, "keep": self.keep}

    def update(self, step: int, output: Tensor, loss: float | None = None) -> bool:
        """Add the output after ``step`` and the loss it gave; True once the window's mean
        loss is below the noise's share."""
        import torch

        if loss is None:
            raise LipError("the discrepancy rule needs the fit's loss at every step")
        x = output.detach()
        if self._window is None:
            self._window = torch.empty((self.window, x.numel()), device=x.device)
        self._window[(step - 1) % self.window] = x.reshape(-1)  # a copy, no sums per step
        self._last = x
        return self.check(step, loss)

    @property
    def best_output(self) -> Tensor | None:
        """The output kept: the mean of the window at the stop (or at the last step seen)."""
        if self.best_step is None or self._last is None:
            return None
        if self.keep == "iterate":
            return self._last
        assert self._window is not None
        mean = self._window.double().mean(0)  # computed once, when the output is asked for
        return mean.to(self._last.dtype).reshape(self._last.shape)

    def check(self, step: int, loss: float) -> bool:
        """The rule itself, on the loss after ``step``: the kept step follows the fit until
        the window's mean loss falls below ``factor * noise_variance``, then it stops."""
        self._losses.append(loss)
        if len(self._losses) < self.window:
            return False
        self.best_step = step
        return sum(self._losses) / self.window < self.factor * self.noise_variance


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

    def update(self, step: int, output: Tensor, loss: float | None = None) -> bool:
        """True at (or after) the fixed step, whose output is kept."""
        if step < self.step:
            return False
        if self.best_output is None:
            self.best_step, self.best_output = step, output.detach().clone()
        return True


RULES = ("auto", "discrepancy", "wmv", "fixed", "none")
SEARCH_RULES = ("discrepancy", "wmv")  # what searches and sweeps score fits at


def resolve_rule(name: str | None) -> str | None:
    """The rule a name stands for: ``auto`` is the discrepancy rule, ``none`` is None."""
    if name is None or name == "none":
        return None
    return "discrepancy" if name == "auto" else name


def make_stopping_rule(
    name: str | None, *, noise_variance: float | None = None, **options: int | float | str,
) -> WindowedVariance | Discrepancy | FixedStep | None:
    """A stopping rule by name, for :func:`lottery_prior.fit_prior`'s ``stop``; none of them
    sees the ground truth.

    ``"discrepancy"`` (``"auto"``) stops once the fit's loss (averaged over a window) has
    fallen below ``factor`` (0.95) times what the noise adds to it, and needs
    ``noise_variance`` (``problem.noise_variance``: σ² of denoising less the clipped share,
    in [0, 1] units; 0 for noise-free observations, where it never fires and keeps the last
    window's mean). ``"wmv"`` is ES-WMV, the windowed-variance detector (options ``window``,
    ``patience``, ``keep``: ``"mean"`` of the minimum-variance window, or the ``"iterate"``;
    ``rise`` and ``drop`` as in :class:`WindowedVariance`). ``"fixed"`` stops at option
    ``step``; ``"none"`` (or None) never stops early and returns None.

    >>> make_stopping_rule("wmv", patience=300).patience
    300
    >>> make_stopping_rule("auto", noise_variance=(25 / 255) ** 2).settings()["rule"]
    'discrepancy'
    """
    name = resolve_rule(name)
    if name is None:
        if options:
            raise LipError(f"stopping rule 'none' takes no options, got {sorted(options)}")
        return None
    if name not in RULES:
        raise LipError(f"unknown stopping rule {name!r}; choose one of {', '.join(RULES)}")
    try:
        if name == "fixed":
            return FixedStep(**options)  # type: ignore[arg-type]
        if name == "wmv":
            return WindowedVariance(**options)  # type: ignore[arg-type]
        if noise_variance is None:
            raise LipError("the discrepancy rule needs the noise variance of the observation "
                           "(problem.noise_variance)")
        return Discrepancy(noise_variance, **options)  # type: ignore[arg-type]
    except TypeError as err:
        raise LipError(f"bad option for stopping rule {name!r}: {err}") from err

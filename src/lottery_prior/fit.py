"""Fit one prior to one observation: the Deep Image Prior loop.

The network ``G`` maps a fixed code ``z`` (perturbed by fresh Gaussian noise each step) to an
image; Adam minimises ``mse(A(G(z + eta)), y)`` where ``A`` is the task's forward model and ``y``
the observation. The output is also kept as an exponential moving average. When the clean
image is known, every PSNR that is reported says which output it was measured on:

* ``final``: the last iterate ``G(z + eta)`` after the last step;
* ``averaged``: the moving average after the last step;
* ``peak`` / ``peak_averaged``: the best PSNR over all steps (an oracle: it needs the truth);
* ``stopped``: the output chosen by an automatic stopping rule (no truth needed): ``step`` is
  the step of the output it kept, ``fired`` whether the rule triggered (at ``stop_step``) or
  the steps ran out first (its best output so far, ``stop_step`` None), ``kept`` which output
  it is (``iterate``, or ``mean`` of ES-WMV's window) and ``rule`` the rule's settings.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lottery_prior import seeding
from lottery_prior.checks import MAX_STEPS, check_float, check_int, check_seed
from lottery_prior.errors import LipError
from lottery_prior.masks import masked_step
from lottery_prior.metrics import psnr as rgb_psnr
from lottery_prior.metrics import ssim
from lottery_prior.precision import Mode, check_precision, device_name, mode, resolve


@dataclass
class FitConfig:
    """Settings of one fit; the defaults are the paper's (denoising)."""

    steps: int = 3000
    lr: float = 0.01
    input_noise: float = 1 / 30
    ema: float = 0.99
    precision: str = "fp32"
    device: str | None = None
    seed: int = 0
    score_at: tuple[int, ...] = ()  # milestones: steps at which every score is recorded too

    def __post_init__(self) -> None:
        """Every field checked (types, finiteness, sane bounds) before any work."""
        check_int("steps", self.steps, 1, MAX_STEPS)
        if isinstance(self.score_at, (str, bytes)) or not hasattr(self.score_at, "__iter__"):
            raise LipError(f"score_at must be a list of steps, got {self.score_at!r}")
        for step in self.score_at:
            check_int(f"score_at step (at most steps = {self.steps})", step, 1, self.steps)
        self.score_at = tuple(sorted(set(self.score_at)))
        check_float("learning rate (lr)", self.lr, 0, low_open=True)
        check_float("input noise", self.input_noise, 0)
        check_float("ema weight", self.ema, 0, 1, high_open=True)
        check_precision(self.precision)
        if self.device is not None and not isinstance(self.device, str):
            raise LipError(f"device must be a name such as cpu or cuda, got {self.device!r}")
        check_seed("seed", self.seed)

    def identity(self) -> dict:
        """The settings as they name a run: never the device; the precision (concrete, once
        ``auto`` is resolved: it changes the numbers) as runs of version 0.2 spelled fp32 and
        bf16 (``fast`` false and true), so that their folders keep their names."""
        out = asdict(self) | {"device": None}
        if not out["score_at"]:
            del out["score_at"]  # runs without milestones keep the names they had
        precision = out.pop("precision")
        if precision in ("fp32", "bf16"):
            out["fast"] = precision == "bf16"
        else:
            out["precision"] = precision
        return out

    @classmethod
    def for_task(cls, task: str, model: str = "dip", **settings: object) -> FitConfig:
        """The settings of a fit for ``task``: the task's defaults (3000 steps for denoising
        and inpainting, 2000 for super-resolution, and its input perturbation), then the
        model's own (the Deep Decoder fits without input perturbation), then ``settings``
        (a ``None`` value keeps the default).

        >>> FitConfig.for_task("sr", steps=500).input_noise
        0.03
        """
        from lottery_prior.models import model_fit_defaults
        from lottery_prior.operators import TASK_DEFAULTS

        if not isinstance(task, str) or task not in TASK_DEFAULTS:
            raise LipError(f"unknown task {task!r}; choose one of {', '.join(TASK_DEFAULTS)}")
        defaults = TASK_DEFAULTS[task] | model_fit_defaults(model)
        given = {k: v for k, v in settings.items() if v is not None}
        fields = cls.__dataclass_fields__
        unknown = sorted(set(given) - set(fields))
        if unknown:
            raise LipError(f"unknown fit setting {unknown[0]!r}; known: {', '.join(fields)}")
        return cls(**({k: v for k, v in defaults.items() if k in fields} | given))


@dataclass
class StepInfo:
    """What callbacks see after each optimizer step (``step`` counts from 1)."""

    step: int
    steps: int
    loss: float
    psnr: float | None
    psnr_averaged: float | None
    model: nn.Module
    output: Tensor


class StoppingRule(Protocol):
    """Decides from the outputs alone when to stop, and which output to keep."""

    def update(self, step: int, output: Tensor, loss: float | None = None) -> bool:
        """Sees the output after ``step`` and the data term it gave (never the truth);
        returns True to stop now."""

    @property
    def best_step(self) -> int | None: ...

    @property
    def best_output(self) -> Tensor | None: ...


class MaskLike(Protocol):
    def to(self, device: torch.device) -> MaskLike: ...

    def apply_(self, model: nn.Module) -> None: ...

    def apply_grad_(self, model: nn.Module) -> None: ...


Callback = Callable[[StepInfo], bool | None]


@dataclass
class FitResult:
    """Outputs (CPU, ``(1, C, H, W)``) and labelled scores of a fit."""

    output: Tensor
    averaged: Tensor
    steps: int
    seconds: float
    scores: dict[str, dict[str, float | int | None]] = field(default_factory=dict)
    history: dict[str, list[float]] = field(default_factory=dict)
    stopped: Tensor | None = None
    precision: str = "fp32"  # what ran (``auto`` resolved)
    device: str = ""  # the CPU's or GPU's name
    milestones: dict[int, dict] = field(default_factory=dict)  # step -> labelled scores

    @property
    def restored(self) -> Tensor:
        """The image to hand a user: at the automatic stop if one fired, else the average."""
        return self.stopped if self.stopped is not None else self.averaged

    def summary(self) -> dict:
        """JSON-ready scores, timing, and what the fit ran on."""
        out = {"steps": self.steps, "seconds": round(self.seconds, 3), "scores": self.scores,
               "precision": self.precision, "device": self.device}
        if self.milestones:
            out["milestones"] = {str(step): scores for step, scores in self.milestones.items()}
        return out


def select_device(device: str | None = None) -> torch.device:
    """The requested device, else CUDA when available, else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise LipError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise LipError("CUDA was requested but is not available; use --device cpu")
    return dev


def run_mode(config: FitConfig, device: torch.device, model: nn.Module, z: Tensor) -> Mode:
    """How a fit runs: the config's precision, ``auto`` resolved for this network and input
    (measured on copies of them, once per machine)."""
    spec = getattr(model, "spec", {"name": type(model).__name__, "options": {}})
    name = resolve(config.precision, device, spec["name"], spec["options"],
                   lambda: (copy.deepcopy(model), z.detach().clone()), tuple(z.shape[-2:]))
    return mode(name, device)


def perturbation_generator(seed: int, device: torch.device) -> torch.Generator:
    """The input perturbation's own stream of the seed (never the stream of z or the noise)."""
    return seeding.generator(seed, "perturbation", device=device)


def _perturbed(z: Tensor, eta: Tensor, generator: torch.Generator, std: float) -> Tensor:
    """``z + std * eta`` with ``eta`` redrawn in place from ``generator`` (z itself if std 0)."""
    if std <= 0:
        return z
    eta.normal_(generator=generator)
    return z + std * eta


def fit(
    model: nn.Module,
    z: Tensor,
    operator: nn.Module,
    observation: Tensor,
    *,
    clean: Tensor | None = None,
    config: FitConfig | None = None,
    mask: MaskLike | None = None,
    stop: StoppingRule | None = None,
    callbacks: Sequence[Callback] = (),
    metric: Callable[[Tensor, Tensor], float] = rgb_psnr,
    run_past_stop: bool = False,
    penalty: Callable[[nn.Module], Tensor] | None = None,
) -> FitResult:
    """Fit ``model`` (in place) so that ``operator(model(z))`` matches ``observation``.

    ``clean`` (optional) is only used to score outputs, never to fit. ``mask`` keeps pruned
    weights at exactly zero (weights and gradients are masked every step). A callback that
    returns True, or the stopping rule, ends the fit early. ``metric`` scores an output
    against ``clean`` (PSNR on all channels by default). With ``run_past_stop`` the fit
    records where the rule stopped but runs all its steps (to compare the stop with the peak).
    ``penalty(model)``, if given, is added to the data term (e.g. a sparsity penalty).
    At each step of ``config.score_at`` every labelled score is recorded as it stands then
    (``FitResult.milestones``): the iterate, the average, the oracle peaks so far, and the
    automatic stop only if it had fired by then; at the last step, the fit's own scores.
    """
    cfg = config or FitConfig()
    device = select_device(cfg.device)
    run = run_mode(cfg, device, model.to(device), z.to(device))
    model.to(device=device, memory_format=run.memory_format).train()
    z = z.to(device=device, memory_format=run.memory_format)
    scaler = run.scaler(device)
    operator.to(device)
    y = observation.to(device)
    truth = clean.to(device) if clean is not None else None
    if mask is not None:
        mask = mask.to(device)
        mask.apply_(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    noise_gen = perturbation_generator(cfg.seed, device)
    eta = torch.empty(z.shape, dtype=z.dtype, device=device)  # NCHW: normal_ is 7x slower on NHWC

    tracker = _Tracker(truth, metric)
    milestones: dict[int, dict] = {}
    averaged: Tensor | None = None
    fired_at: int | None = None  # the step at which the rule fired
    start = time.perf_counter()
    step = 0
    for step in range(1, cfg.steps + 1):
        optimizer.zero_grad(set_to_none=True)
        net_input = _perturbed(z, eta, noise_gen, cfg.input_noise)
        with run.autocast(device):
            out = model(net_input)
        out = out.float()
        data = loss = F.mse_loss(operator(out), y)
        if penalty is not None:
            loss = data + penalty(model)
        (scaler.scale(loss) if scaler is not None else loss).backward()
        masked_step(optimizer, model, mask, scaler)

        out = out.detach().contiguous()
        averaged = out if averaged is None else averaged * cfg.ema + out * (1 - cfg.ema)
        loss_value = loss.item()
        p, p_avg = tracker.record(step, loss_value, out, averaged)
        info = StepInfo(step, cfg.steps, loss_value, p, p_avg, model, out)
        halt = any([bool(cb(info)) for cb in callbacks])
        if stop is not None and fired_at is None:
            data_value = loss_value if penalty is None else data.item()  # the data term
            if stop.update(step, out, data_value):
                fired_at = step
                halt = halt or not run_past_stop
        if step in cfg.score_at and step < cfg.steps:
            milestones[step] = _milestone(out, averaged, step, truth, tracker, stop, fired_at,
                                          metric)
        if halt:
            break
    seconds = time.perf_counter() - start

    assert averaged is not None
    result = FitResult(
        output=out.cpu(), averaged=averaged.cpu(), steps=step, seconds=seconds,
        history=tracker.history, precision=run.name, device=device_name(device),
    )
    if stop is not None and stop.best_output is not None:
        result.stopped = stop.best_output.detach().cpu()
    result.scores = _scores(result, clean, metric, tracker.peak, tracker.peak_avg, stop)
    if "stopped" in result.scores:
        result.scores["stopped"] |= _fired(stop, fired_at)
    if cfg.score_at:
        if step == cfg.steps and step in cfg.score_at:
            milestones[step] = copy.deepcopy(result.scores)
        result.milestones = milestones
    return result


def _fired(stop: StoppingRule, fired_at: int | None) -> dict:
    return {"fired": fired_at is not None, "stop_step": fired_at,
            "kept": getattr(stop, "keep", "iterate"), "rule": rule_settings(stop)}


def _milestone(out: Tensor, averaged: Tensor, step: int, truth: Tensor | None,
               tracker: _Tracker, stop: StoppingRule | None, fired_at: int | None,
               metric: Callable[[Tensor, Tensor], float]) -> dict:
    """The labelled scores as they stand after ``step``: the stop's only if it had fired."""
    now = FitResult(output=out, averaged=averaged, steps=step, seconds=0.0)
    fired = stop if fired_at is not None else None
    if fired is not None and stop.best_output is not None:
        now.stopped = stop.best_output.detach()
    scores = _scores(now, truth, metric, tracker.peak, tracker.peak_avg, fired)
    if "stopped" in scores:
        scores["stopped"] |= _fired(stop, fired_at)
    return scores


class _Tracker:
    """Per-step history and PSNR peaks of one fit (PSNRs only when the truth is known)."""

    def __init__(
        self, truth: Tensor | None, metric: Callable[[Tensor, Tensor], float], name: str = "the fit"
    ) -> None:
        self.truth, self.metric, self.name = truth, metric, name
        self.history: dict[str, list[float]] = {"step": [], "loss": []}
        if truth is not None:
            self.history.update(psnr=[], psnr_averaged=[])
        self.peak: dict = {"psnr": -float("inf"), "step": 0}
        self.peak_avg: dict = {"psnr": -float("inf"), "step": 0}

    def record(
        self, step: int, loss: float, out: Tensor, averaged: Tensor
    ) -> tuple[float | None, float | None]:
        """Log one step; returns the PSNRs of the output and the average (None without truth)."""
        if not math.isfinite(loss):
            raise LipError(f"{self.name} diverged at step {step} (loss {loss}); lower --lr")
        self.history["step"].append(step)
        self.history["loss"].append(loss)
        if self.truth is None:
            return None, None
        p, p_avg = self.metric(out, self.truth), self.metric(averaged, self.truth)
        self.history["psnr"].append(p)
        self.history["psnr_averaged"].append(p_avg)
        if p > self.peak["psnr"]:
            self.peak = {"psnr": p, "step": step}
        if p_avg > self.peak_avg["psnr"]:
            self.peak_avg = {"psnr": p_avg, "step": step}
        return p, p_avg


def _scores(
    result: FitResult,
    clean: Tensor | None,
    metric: Callable[[Tensor, Tensor], float],
    peak: dict,
    peak_avg: dict,
    stop: StoppingRule | None,
) -> dict[str, dict[str, float | int | None]]:
    """Labelled scores: which output, at which step, PSNR and SSIM when the truth is known."""

    def score(image: Tensor, step: int | None) -> dict[str, float | int | None]:
        entry: dict[str, float | int | None] = {"step": step}
        if clean is not None:
            entry["psnr"] = metric(image, clean)
            entry["ssim"] = ssim(image, clean)
        return entry

    scores = {
        "final": score(result.output, result.steps),
        "averaged": score(result.averaged, result.steps),
    }
    if clean is not None:
        scores["peak"] = dict(peak)
        scores["peak_averaged"] = dict(peak_avg)
    if result.stopped is not None and stop is not None:
        scores["stopped"] = score(result.stopped, stop.best_step)
    return scores


def rule_settings(stop: StoppingRule | None) -> dict | None:
    """A stopping rule's name and settings, as recorded beside its score."""
    settings = getattr(stop, "settings", None)
    return settings() if callable(settings) else None


def config_dict(config: FitConfig) -> dict:
    """The config as a JSON-ready dict (for provenance)."""
    return asdict(config)

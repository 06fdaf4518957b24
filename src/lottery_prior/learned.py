"""Learned masks at initialisation: a second ticket finder beside IMP.

The weights stay frozen at θ₀. Each prunable weight gets a logit ``s``; a relaxed binary mask
(binary concrete, i.e. Gumbel-sigmoid with temperature τ) is drawn every step,

    m = σ((s + log u - log(1 - u)) / τ),   u ~ U(0, 1),

and Adam fits the logits so that the network with weights θ₀ ⊙ m matches the observation: the
DIP loop of :func:`lottery_prior.fit.fit`, with the logits as its only parameters (Ghosh et
al., "Optimal Eye Surgeon", ICML 2024). Sparsity comes from one of:

* a **target sparsity** ``sparsity``: a KL term ``kl · Σ KL(Bern(σ(s)) ‖ Bern(1 - sparsity))``
  (summed over the weights, as its authors do) pulls the keep probabilities toward the target
  density, and the mask keeps exactly the weights with the highest logits, so its counted
  sparsity is the target;
* a **penalty** weight λ on the expected density ``mean σ(s)`` (an L0-style penalty); the mask
  keeps the weights whose logit is positive, and its sparsity is what the data and λ give.

Every output filter first keeps its ``per_filter`` highest-logit weights (default 1): ranked
globally alone, a short learning leaves the big 3x3 convs of the hourglass's deep branch with
the lowest logits and prunes them whole at 98% (the network then outputs a flat image, ~11 dB);
``per_filter = 0`` is the plain global ranking of Optimal Eye Surgeon.

The mask is then fixed and the sparse network is fitted from θ₀ like any ticket. A run lives in
a folder named by a hash of its settings (``learned-<hash>``) and resumes stage by stage: the
learned ticket (mask, θ₀, z), then its fit.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from lottery_prior import __version__
from lottery_prior.checks import MAX_STEPS, check_float, check_int
from lottery_prior.errors import LipError
from lottery_prior.files import atomic_path, write_json
from lottery_prior.fit import Callback, FitConfig, fit
from lottery_prior.images import save_image
from lottery_prior.lottery import (
    AVERAGED_PNG,
    TARGETS,
    ImpConfig,
    Progress,
    fit_target,
    ticket_input,
)
from lottery_prior.masks import Mask, weight_sparsity
from lottery_prior.problem import Problem, build_prior, resolved
from lottery_prior.pruning import erk_counts, keep_counts, keep_highest
from lottery_prior.runs import Run, digest, read_json
from lottery_prior.scores import format_scores
from lottery_prior.seeding import generator
from lottery_prior.stopping import make_stopping_rule, resolve_rule
from lottery_prior.tickets import Ticket, parameter_count

log = logging.getLogger("lottery_prior")

ALLOCATIONS = ("global", "erk")
SEARCH_STEPS_PER_ROUND = 100  # the default learning budget: IMP's 100-step-round search
PENALTY_STEPS = 1000  # the default learning steps with a penalty (no target to cost-match)
MAX_PER_FILTER = 1_000_000


@dataclass(frozen=True)
class LearnConfig:
    """Settings of a learned mask: a target ``sparsity`` or a ``penalty`` (exactly one).

    ``steps`` defaults to the steps of an IMP search with 100-step rounds to the same
    sparsity (20% a round: 11 rounds, 1100 steps for 90%; 1400 for 95%; 1800 for 98%), so the
    learned finder costs about what IMP's cheapest search does; an early-bird search (rounds
    of at least 100 steps) costs more. The learning rate and temperature suit that short
    budget (tuned on a held-out image); Optimal Eye Surgeon's own settings are 60000 steps,
    ``lr`` 0.01 and ``temperature`` 0.2.
    ``target``: the mask is learned on the observation, or (an oracle, as IMP's option) on
    the clean image.
    """

    sparsity: float | None = None
    penalty: float | None = None
    steps: int | None = None
    lr: float = 0.1
    temperature: float = 1.0
    kl: float = 1e-9
    allocation: str = "global"
    per_filter: int = 1
    keep_dense: tuple[str, ...] = ()
    target: str = "observation"

    def __post_init__(self) -> None:
        if (self.sparsity is None) == (self.penalty is None):
            raise LipError("a learned mask needs a target sparsity or a penalty weight (one "
                           "of them): use --target-sparsity S or --penalty L")
        if self.sparsity is not None:
            check_float("target sparsity", self.sparsity, 0, 1, low_open=True, high_open=True)
        if self.penalty is not None:
            check_float("the sparsity penalty", self.penalty, 0, low_open=True)
        if self.steps is not None:
            check_int("mask-learning steps", self.steps, 1, MAX_STEPS)
        check_float("mask learning rate", self.lr, 0, low_open=True)
        check_float("temperature", self.temperature, 0, low_open=True)
        check_float("the KL weight", self.kl, 0)
        check_int("weights kept per filter", self.per_filter, 0, MAX_PER_FILTER)
        if self.allocation not in ALLOCATIONS:
            raise LipError(f"unknown allocation {self.allocation!r}; use "
                           f"{' or '.join(ALLOCATIONS)}")
        if self.allocation == "erk" and self.sparsity is None:
            raise LipError("the erk allocation needs a target sparsity, not a penalty")
        if self.target not in TARGETS:
            raise LipError(f"unknown fit target {self.target!r}; use observation or clean")

    @property
    def n_steps(self) -> int:
        """Learning steps: as given, else the cost of IMP's 100-step-round search."""
        if self.steps is not None:
            return self.steps
        if self.sparsity is None:
            return PENALTY_STEPS
        rounds = ImpConfig(target_sparsity=self.sparsity).n_rounds
        return SEARCH_STEPS_PER_ROUND * rounds


class MaskLogits(nn.Module):
    """A network at frozen weights θ₀ whose prunable weights are multiplied by a relaxed mask.

    The logits are the module's only trainable parameters (one per prunable weight, starting
    at 0: keep probability 1/2). Each forward pass in training mode draws a new binary
    concrete sample from the ``mask-noise`` stream of ``seed``; in eval mode the mask is the
    deterministic ``σ(s / τ)``.
    """

    def __init__(self, model: nn.Module, names: Sequence[str], temperature: float,
                 seed: int) -> None:
        super().__init__()
        self.net = model.requires_grad_(False)
        self.names = list(names)
        params = dict(model.named_parameters())
        self.theta0 = [params[n] for n in self.names]  # the frozen weights the mask scales
        self.logits = nn.ParameterList(
            [nn.Parameter(torch.zeros_like(w)) for w in self.theta0])
        self.temperature, self.seed = temperature, seed
        self._generator: torch.Generator | None = None

    def relaxed(self, logits: Tensor) -> Tensor:
        """A binary concrete sample (train mode) or σ(s/τ) (eval mode) for one layer."""
        if not self.training:
            return torch.sigmoid(logits / self.temperature)
        if self._generator is None or self._generator.device != logits.device:
            self._generator = generator(self.seed, "mask-noise", device=logits.device)
        u = torch.rand(logits.shape, generator=self._generator, device=logits.device,
                       dtype=logits.dtype).clamp_(1e-6, 1 - 1e-6)
        return torch.sigmoid((logits + torch.log(u) - torch.log1p(-u)) / self.temperature)

    def forward(self, x: Tensor) -> Tensor:
        weights = {n: w * self.relaxed(s)
                   for n, w, s in zip(self.names, self.theta0, self.logits, strict=True)}
        return functional_call(self.net, weights, (x,))

    def scores(self) -> dict[str, Tensor]:
        """The learned logits, by parameter name (on the CPU)."""
        return {n: s.detach().cpu() for n, s in zip(self.names, self.logits, strict=True)}


def sparsity_penalty(config: LearnConfig) -> Callable[[nn.Module], Tensor]:
    """The regulariser added to the data term: the KL to Bernoulli(target density), summed
    over the weights, or λ times the expected density."""

    def penalty(module: nn.Module) -> Tensor:
        logits = torch.cat([s.flatten() for s in module.logits]).float()  # type: ignore[union-attr]
        keep = torch.sigmoid(logits)
        if config.penalty is not None:
            return config.penalty * keep.mean()
        density = torch.tensor(1 - config.sparsity, dtype=keep.dtype, device=keep.device)
        kl = (keep * (F.logsigmoid(logits) - density.log())
              + (1 - keep) * (F.logsigmoid(-logits) - (1 - density).log()))
        return config.kl * kl.sum()

    return penalty


def with_filter_floor(scores: dict[str, Tensor], per_filter: int,
                      counts: dict[str, int] | None = None) -> dict[str, Tensor]:
    """The scores with each output filter's ``per_filter`` highest set to +inf (kept first);
    with per-layer ``counts``, no more filters than a layer's count are favoured this way."""
    if per_filter == 0:
        return scores
    out = {}
    for name, s in scores.items():
        rows = s.detach().to(torch.float64).reshape(s.shape[0], -1).clone()
        k = min(per_filter, rows.shape[1])
        if counts is not None and counts[name] < k * rows.shape[0]:
            out[name] = rows.view(s.shape)  # fewer weights than filters: the logits decide
            continue
        top = rows.topk(k, dim=1).indices
        out[name] = rows.scatter_(1, top, float("inf")).view(s.shape)
    return out


def select(logits: dict[str, Tensor], template: Mask, config: LearnConfig) -> Mask:
    """The mask of the learned logits: the target's count (globally, or per layer by the ERK
    allocation) or the positive logits under a penalty, each filter's best weights first."""
    if config.penalty is not None:
        mask = Mask({n: s > 0 for n, s in with_filter_floor(logits, config.per_filter).items()})
        if mask.kept == 0:
            raise LipError(f"the penalty {config.penalty} pruned every weight; lower --penalty")
        return mask
    if config.allocation == "erk":
        counts = erk_counts(template, config.sparsity)
        return keep_counts(with_filter_floor(logits, config.per_filter, counts), template, counts)
    scores = with_filter_floor(logits, config.per_filter)
    floor = sum(int(s.isinf().sum()) for s in scores.values())
    if floor > template.total - round(config.sparsity * template.total):
        raise LipError(f"{config.per_filter} weight(s) per filter are {floor} weights, more "
                       f"than sparsity {config.sparsity} keeps; lower --per-filter")
    return keep_highest(scores, template, config.sparsity)


def learn_mask(model: nn.Module, z: Tensor, operator: nn.Module, observation: Tensor,
               config: LearnConfig, fit_config: FitConfig, *, clean: Tensor | None = None,
               callbacks: Sequence[Callback] = ()) -> tuple[Mask, dict]:
    """Learn a mask over ``model``'s prunable weights at its current (frozen) weights.

    The fit uses ``fit_config``'s input perturbation, precision, device and seed, with the
    learning's own steps and learning rate. Returns the mask and a summary of the learning
    (steps, seconds, final loss). ``model``'s parameters are never changed.
    """
    template = Mask.ones(model, config.keep_dense)
    module = MaskLogits(model, list(template), config.temperature, fit_config.seed)
    settings = replace(fit_config, steps=config.n_steps, lr=config.lr, score_at=())
    start = time.perf_counter()
    result = fit(module, z, operator, observation, clean=clean, config=settings,
                 callbacks=callbacks, penalty=sparsity_penalty(config))
    seconds = time.perf_counter() - start
    model.requires_grad_(True)
    logits = module.scores()
    mask = select(logits, template, config)
    keep = torch.cat([s.flatten() for s in logits.values()]).sigmoid().mean().item()
    summary = {"steps": result.steps, "seconds": round(seconds, 2),
               "loss": result.history["loss"][-1], "mean_keep_probability": keep,
               "mask_sparsity": mask.sparsity, "scores": result.scores}
    return mask, summary


@dataclass(eq=False)
class LearnedRun(Run):
    """A resumable learned-mask run on one problem: learn the ticket (stage 1), then, for
    ``lip find --finder learned``, fit it (stage 2). A finished ticket is read without the
    lock, so fits and transfers that need it never wait for each other."""

    problem: Problem
    model_name: str
    model_options: dict
    fit_config: FitConfig
    learn: LearnConfig
    root: Path = Path("runs")
    stop: str | None = None
    prefix: ClassVar[str] = "learned"

    def __post_init__(self) -> None:
        self.fit_config = resolved(self.fit_config, self.model_name, self.model_options,
                                   self.problem)
        self.stop = resolve_rule(self.stop)  # auto: named by its rule

    def identity(self) -> dict:
        """Everything that determines the run's results, every learning setting resolved."""
        return self._identity(replace(self.learn, steps=self.learn.n_steps))

    def legacy_names(self) -> list[str]:
        """Schema 1 hashed the learning steps as given (None for the default)."""
        given = [self.learn.steps, None] if self.learn.steps == self.learn.n_steps or \
            self.learn.steps is None else [self.learn.steps]
        return [f"{self.prefix}-{digest(self._identity(replace(self.learn, steps=s)))}"
                for s in dict.fromkeys(given)]

    def _identity(self, learn: LearnConfig) -> dict:
        return {
            "finder": "learned",
            "problem": self.problem.describe(),
            "model": {"name": self.model_name, "options": self.model_options},
            "fit": self.fit_config.identity(),
            "learn": asdict(learn),
            "stop": self.stop,
        }

    @property
    def ticket_path(self) -> Path:
        return self.folder / "ticket.safetensors"

    def read_finished(self) -> Ticket | None:
        """The learned ticket, if learning finished and left it intact."""
        if read_json(self.folder / "learn.json") is None or not self.ticket_path.exists():
            return None
        return Ticket.load(self.ticket_path)

    def find(self, progress: Progress | None = None) -> Ticket:
        """The learned ticket: read back if an earlier run left it intact (no lock needed),
        else learned now."""
        ticket = self.finished()
        if ticket is not None:
            return ticket
        with self.opened():
            return self._find(progress)

    def run(self, progress: Progress | None = None) -> dict:
        """Learn the ticket and fit it in full (each stage skipped if done earlier); returns
        the record: counted sparsity, parameters, labelled scores, fit and finder seconds."""
        with self.opened():
            ticket = self.finished() or self._find(progress)
            path = self.folder / "record.json"
            record = read_json(path)
            if record is not None and isinstance(record.get("scores"), dict):
                log.info("learned ticket: fitted earlier, skipped")
                return record
            model, _, z, _ = ticket_input(ticket, self.problem, self.fit_config.seed)
            result = fit(model, z, self.problem.operator, self.problem.observation,
                         clean=self.problem.clean, config=self.fit_config, mask=ticket.mask,
                         stop=make_stopping_rule(self.stop,
                                                 noise_variance=self.problem.noise_variance),
                         callbacks=list(progress("fit the learned ticket")) if progress else [],
                         metric=self.problem.metric,
                         run_past_stop=self.problem.clean is not None)
            model.cpu()
            sparsity, layers = weight_sparsity(model, list(ticket.mask))
            with atomic_path(self.folder / AVERAGED_PNG) as tmp:
                save_image(result.averaged, tmp)
            learning = read_json(self.folder / "learn.json") or {}
            record = {
                "finder": "learned", "sparsity": sparsity, "mask_sparsity": ticket.sparsity,
                "parameters": parameter_count(model, ticket.mask), "layer_sparsity": layers,
                "steps": result.steps, "seconds": round(result.seconds, 2),
                "find_steps": learning.get("steps"), "find_seconds": learning.get("seconds"),
                "scores": result.scores, "version": __version__,
            }
            write_json(path, record)
            log.info("learned ticket at %.2f%% (counted): %s", 100 * sparsity,
                     format_scores(result.scores))
            return record

    def _find(self, progress: Progress | None) -> Ticket:
        model, z = build_prior(self.model_name, self.model_options, self.problem,
                               seed=self.fit_config.seed)
        theta0 = {k: v.detach().clone() for k, v in model.state_dict().items()}
        callbacks = list(progress("learn the mask")) if progress else []
        operator, y = fit_target(self.problem, self.learn.target)
        mask, summary = learn_mask(model, z, operator, y, self.learn, self.fit_config,
                                   clean=self.problem.clean, callbacks=callbacks)
        meta = {
            "model": model.spec, "problem": self.problem.describe(),
            "fit": asdict(self.fit_config), "learn": asdict(self.learn),
            "finder": "learned", "keep_dense": list(self.learn.keep_dense),
            "sparsity": mask.sparsity, "seed": self.fit_config.seed, "run": self.folder.name,
            "find_seconds": summary["seconds"],
        }
        (self.folder / "learn.json").unlink(missing_ok=True)  # the ticket first, then its mark
        (self.folder / "record.json").unlink(missing_ok=True)  # a new mask: fit it again
        ticket = Ticket(mask, theta0, z, meta)
        ticket.save(self.ticket_path)
        write_json(self.folder / "learn.json", summary)
        log.info("learned a mask at %.2f%% sparsity in %d steps (%.0f s)",
                 100 * mask.sparsity, summary["steps"], summary["seconds"])
        return ticket

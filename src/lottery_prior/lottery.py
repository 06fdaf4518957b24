"""Iterative magnitude pruning with rewinding: finding the lottery image prior.

Round 0 fits the dense prior. Each later round prunes a fraction of the remaining weights of
the previous round's trained network (one global magnitude threshold by default), rewinds the
survivors to theta0 (or to the dense fit's weights at ``rewind_step``) and fits again with
the mask fixed. The ticket is found on the observation; fitting the clean image, as the
reference code did for denoising, is an explicit option (``target="clean"``). Searching rounds
can be cut short (``search_steps``, or an early-bird stop once the next mask has stabilised);
the last round, which fits the final ticket, always runs the full steps.

With ``structure="channels"`` the same loop prunes whole output channels instead of weights
(:mod:`lottery_prior.channels`): each round then fits the compact network, so the search gets
faster as it prunes, and each round also leaves its ticket compacted (``compact.safetensors``).

A run lives in a folder named by a hash of all its settings. Each round is written as it
ends (its ticket, its record, the next mask), so rerunning the same command after an
interruption continues from the last finished round.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from lottery_prior import __version__
from lottery_prior.batched import fit_batched
from lottery_prior.channels import (
    CHANNEL_SCORES,
    all_channels,
    channel_mask,
    channel_summary,
    compact,
    compact_ticket,
    expand_into,
    kept_channels,
    prune_channels,
)
from lottery_prior.checks import MAX_ROUNDS, MAX_STEPS, check_float, check_int
from lottery_prior.errors import LipError
from lottery_prior.files import atomic_path, write_json
from lottery_prior.fit import Callback, FitConfig, FitResult, StepInfo, StoppingRule, fit
from lottery_prior.images import save_image
from lottery_prior.masks import Mask, weight_sparsity
from lottery_prior.problem import Problem, build_prior, resolved
from lottery_prior.pruning import magnitude_prune
from lottery_prior.runs import Run, one_line, read_stage
from lottery_prior.scores import format_scores
from lottery_prior.seeding import generator
from lottery_prior.stopping import SEARCH_RULES, make_stopping_rule, resolve_rule
from lottery_prior.tickets import Ticket, parameter_count

log = logging.getLogger("lottery_prior")

TARGETS = ("observation", "clean")
STRUCTURES = ("weights", "channels")
Progress = Callable[[str], Sequence["Callback"]]
COMPACT = "compact.safetensors"  # a channel round's ticket as a narrower dense network
AVERAGED_PNG = "averaged.png"  # a round's averaged output after its last step


@dataclass(frozen=True)
class ImpConfig:
    """Settings of an IMP run; the defaults are the paper's (denoising, inpainting)."""

    rounds: int = 16
    rate: float = 0.2
    target_sparsity: float | None = None
    layerwise: bool = False
    rewind_step: int = 0
    keep_dense: tuple[str, ...] = ()
    target: str = "observation"
    search_steps: int | None = None
    early_bird: float | None = None
    early_bird_every: int = 25
    structure: str = "weights"
    channel_score: str = "l1"

    def __post_init__(self) -> None:
        check_int("rounds", self.rounds, 1, MAX_ROUNDS)
        check_float("pruning rate", self.rate, 0, 1, low_open=True, high_open=True)
        if self.target_sparsity is not None:
            check_float("target sparsity", self.target_sparsity, 0, 1, low_open=True,
                        high_open=True)
        check_int("rewind step", self.rewind_step, 0, MAX_STEPS)
        if self.search_steps is not None:
            check_int("search steps", self.search_steps, 1, MAX_STEPS)
        if self.early_bird is not None:
            check_float("early-bird threshold", self.early_bird, 0, 1, low_open=True,
                        high_open=True)
        check_int("early-bird check interval", self.early_bird_every, 1, MAX_STEPS)
        if not isinstance(self.layerwise, bool):
            raise LipError(f"layerwise must be true or false, got {self.layerwise!r}")
        if not isinstance(self.keep_dense, tuple) or not all(
                isinstance(p, str) for p in self.keep_dense):
            raise LipError(f"keep_dense must be glob patterns of weight names, got "
                           f"{self.keep_dense!r}")
        if self.structure not in STRUCTURES:
            raise LipError(f"unknown structure {self.structure!r}; use weights or channels")
        if self.channel_score not in CHANNEL_SCORES:
            raise LipError(f"unknown channel score {self.channel_score!r}; use "
                           f"{', '.join(CHANNEL_SCORES)}")
        if self.channels and self.keep_dense:
            raise LipError("--keep-dense applies to weight tickets; a channel ticket keeps at "
                           "least one channel in every layer")
        if self.channels and self.early_bird is not None:
            raise LipError("--early-bird applies to weight tickets; drop it or use "
                           "--search-steps to shorten a channel search")
        if self.target not in TARGETS:
            raise LipError(f"unknown fit target {self.target!r}; use observation or clean")
        if self.n_rounds > MAX_ROUNDS:
            raise LipError(f"pruning {self.rate:g} a round to {self.target_sparsity:g} sparsity "
                           f"takes {self.n_rounds} rounds, more than {MAX_ROUNDS}; raise the "
                           "rate or lower the target sparsity")

    @property
    def channels(self) -> bool:
        return self.structure == "channels"

    def initial_mask(self, model: nn.Module) -> Mask:
        """The dense mask a run starts from (over weights, or over channels)."""
        if self.channels:
            return channel_mask(model, all_channels(model))
        return Mask.ones(model, self.keep_dense)

    def prune(self, model: nn.Module, mask: Mask) -> Mask:
        """One round's pruning of a trained model: weights by magnitude, or channels."""
        if self.channels:
            return prune_channels(model, mask, self.rate, score=self.channel_score,
                                  layerwise=self.layerwise)
        return magnitude_prune(model, mask, self.rate, layerwise=self.layerwise)

    def hashed(self) -> dict:
        """The settings as hashed into a run's name (weight runs keep their old names)."""
        out = asdict(self)
        if not self.channels:
            del out["structure"], out["channel_score"]
        return out

    @property
    def n_rounds(self) -> int:
        """Pruning rounds: enough to reach the target sparsity if one is set."""
        if self.target_sparsity is None:
            return self.rounds
        rounds = math.log1p(-self.target_sparsity) / math.log1p(-self.rate)
        return math.ceil(rounds - 1e-9) if rounds < 1e9 else 10**9


def fit_target(problem: Problem, target: str) -> tuple[nn.Module, Tensor]:
    """Operator and data the ticket is found on: the observation, or (oracle) the clean image."""
    if target == "observation":
        return problem.operator, problem.observation
    if problem.clean is None:
        raise LipError("target 'clean' needs the clean image; it is not known with --observed")
    return nn.Identity(), problem.clean


class ImpRounds(Run):
    """IMP with rewinding, round by round, resumable: the engine of image-prior and
    classifier searches (:class:`ImpRun`, :class:`~lottery_prior.classify.imp.ClassifierImpRun`).

    Round 0 trains the dense network from theta0; each later round starts from the rewind
    weights with the mask the previous round left (``next_mask.safetensors``), trains, and
    leaves its ticket, its record and (before the last round) the next mask, each written
    atomically as the round ends. A round done earlier is kept when its record reads back,
    its ticket loads (checksum and all), its mask is the one the previous round left, and
    (before the last round) the next mask reads back; a round that fails any of these (a
    damaged or deleted file) is recomputed, with a warning naming the file, and so are the
    rounds that depended on it if it comes out differently. Subclasses train a round
    (:meth:`train_round`) and say what their records and tickets are.
    """

    imp: ImpConfig
    records: list[dict]
    INIT = "init.safetensors"
    REWIND = "rewind.safetensors"
    NEXT_MASK = "next_mask.safetensors"

    # --- what a subclass provides ------------------------------------------------------------

    def draw_init(self) -> dict[str, Tensor]:
        """theta0 (the model's state dict), plus any other tensor drawn once (z)."""
        raise NotImplementedError

    def train_round(self, k: int, model: nn.Module, init: dict[str, Tensor], mask: Mask,
                    callbacks: list[Callback], last: bool) -> tuple[dict, nn.Module]:
        """Train round ``k``'s model (at its rewind weights, masked); return its record and
        the trained model on the CPU (what pruning ranks)."""
        raise NotImplementedError

    def new_model(self) -> nn.Module:
        raise NotImplementedError

    def save_ticket(self, k: int, model: nn.Module, mask: Mask, theta: dict[str, Tensor],
                    init: dict[str, Tensor]) -> None:
        """Write round ``k``'s ticket: the mask and the weights it is retrained from."""
        raise NotImplementedError

    def ticket(self, k: int) -> Any:
        """Round ``k``'s ticket (read and verified)."""
        raise NotImplementedError

    def record_complete(self, record: dict) -> bool:
        """Whether a round's record holds what a finished round writes."""
        return isinstance(record.get("sparsity"), int | float)

    def describe_round(self, record: dict) -> str:
        return ""

    # --- the engine ------------------------------------------------------------------------------

    def round_dir(self, k: int) -> Path:
        return self.folder / f"round-{k:02d}"

    def ticket_path(self, k: int) -> Path:
        return self.round_dir(k) / "ticket.safetensors"

    def run(self, progress: Progress | None = None) -> list[dict]:
        """Run (or finish) every round; returns one record per round, dense first. One
        process at a time works in a run folder: a second one is refused at once."""
        rounds = self.imp.n_rounds
        with self.opened():
            init = self._init()
            theta0 = {k: v for k, v in init.items() if k != "z"}
            mask = None
            self.records = []
            for k in range(rounds + 1):
                if k > 0:
                    mask = Mask.load(self.round_dir(k - 1) / self.NEXT_MASK)
                try:
                    record = self._done_earlier(k, mask)
                except LipError as err:
                    log.warning("round %d/%d: %s; recomputing the round", k, rounds,
                                one_line(err))
                    record = None
                if record is not None:
                    log.info("round %d/%d: done earlier (sparsity %.1f%%), skipped", k, rounds,
                             100 * record["sparsity"])
                else:
                    theta = theta0 if k == 0 else self._rewind_weights(theta0)
                    callbacks = list(progress(f"round {k}/{rounds}")) if progress else []
                    try:
                        record = self._round(k, theta, init, mask, callbacks, last=k == rounds)
                    finally:
                        for callback in callbacks:
                            getattr(callback, "close", lambda: None)()
                    log.info("round %d/%d: sparsity %.2f%% (counted), %d steps%s", k, rounds,
                             100 * record["sparsity"], record["steps"],
                             self.describe_round(record))
                self.records.append(record)
            return self.records

    def read_finished(self) -> list[dict] | None:
        """Every round's record, if each round has finished (record and ticket present)."""
        records = []
        for k in range(self.imp.n_rounds + 1):
            path = self.round_dir(k) / "record.json"
            if not path.is_file():
                return None
            record = read_stage(path, lambda r, k=k: r.get("round") == k
                                and self.record_complete(r), f"record of round {k}")
            check_safetensors(self.ticket_path(k))
            records.append(record)
        return records

    def finished_records(self) -> list[dict]:
        """The records of the finished run (read without its lock); a one-line error if it
        has not finished."""
        if not self.records:
            records = self.finished()
            if records is None:
                raise LipError(f"IMP run {self.folder} has not finished; run its search first")
            self.records = records
        return self.records

    def closest(self, sparsity: float) -> dict:
        """The finished round whose counted sparsity is nearest ``sparsity``."""
        return closest_round(self.finished_records(), sparsity)

    def _done_earlier(self, k: int, mask: Mask | None) -> dict | None:
        """Round k's record if the round finished earlier and is intact, None if it has not
        run; a LipError naming the file if something it left is damaged."""
        record_file = self.round_dir(k) / "record.json"
        if not record_file.exists():
            return None
        record = read_stage(record_file, lambda r: r.get("round") == k
                            and self.record_complete(r), f"record of round {k}")
        ticket = self.ticket(k)
        if mask is not None and ticket.mask != mask:
            raise LipError(f"the mask of {self.ticket_path(k)} is not the one round {k - 1} "
                           "left (that round was recomputed differently)")
        if k < self.imp.n_rounds:
            Mask.load(self.round_dir(k) / self.NEXT_MASK)
        if k == 0 and self.imp.rewind_step > 0:
            self._rewind_weights({})
        return record

    def _init(self) -> dict[str, Tensor]:
        """theta0 (and z): drawn once (seeded), saved, reused by every round and resume."""
        path = self.folder / self.INIT
        if path.exists():
            try:
                return load_file(str(path))
            except (SafetensorError, OSError) as err:
                log.warning("%s is damaged (%s); drawing theta0 again (seeded: the same draw)",
                            path, one_line(err))
        init = {k: v.detach().clone().contiguous() for k, v in self.draw_init().items()}
        with atomic_path(path) as tmp:
            save_file(init, str(tmp))
        return init

    def _rewind_weights(self, theta0: dict[str, Tensor]) -> dict[str, Tensor]:
        if self.imp.rewind_step == 0:
            return theta0
        path = self.folder / self.REWIND
        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as err:
            raise LipError(f"cannot read {path}: {one_line(err)}") from None

    def _round(self, k: int, theta: dict[str, Tensor], init: dict[str, Tensor],
               mask: Mask | None, callbacks: list[Callback], last: bool) -> dict:
        model = self.new_model()
        model.load_state_dict(theta)
        if mask is None:
            mask = self.imp.initial_mask(model)
        mask.check(model)
        mask.apply_(model)
        snapshot: dict[str, Tensor] = {}
        if k == 0 and self.imp.rewind_step > 0:
            callbacks.append(snapshot_at(self.imp.rewind_step, snapshot))
        self.round_dir(k).mkdir(parents=True, exist_ok=True)
        record, model = self.train_round(k, model, init, mask, callbacks, last)
        if snapshot:
            with atomic_path(self.folder / self.REWIND) as tmp:
                save_file(snapshot, str(tmp))
            theta = snapshot
        self.save_ticket(k, model, mask, theta, init)
        if not last:
            self.imp.prune(model, mask).save(self.round_dir(k) / self.NEXT_MASK)
        write_json(self.round_dir(k) / "record.json", record)
        return record


@dataclass(eq=False)
class ImpRun(ImpRounds):
    """A resumable IMP run on one problem, or on several at once (``others``).

    With several images, each gets its own copy of the network (same theta0 and z), all are
    fitted in one batched computation with the one shared mask, the loss is the sum of the
    per-image losses, and pruning ranks the weights by their magnitude averaged over the
    copies: the ticket is the mask that suits every image, not one image's mask.
    ``stop``: ``"wmv"`` records the automatic stop in every round (``stop_factory``, if
    given, makes the rule instead of the default ES-WMV).
    """

    problem: Problem
    model_name: str
    model_options: dict
    fit_config: FitConfig
    imp: ImpConfig
    root: Path = Path("runs")
    stop: str | None = None
    others: tuple[Problem, ...] = ()
    stop_factory: Callable[[], StoppingRule] | None = None
    records: list[dict] = field(default_factory=list)
    prefix: ClassVar[str] = "imp"

    def __post_init__(self) -> None:
        self.stop = resolve_rule(self.stop)  # auto: named by its rule
        if self.stop not in (None, *SEARCH_RULES):
            raise LipError(f"an IMP run records the stop of {', '.join(SEARCH_RULES)} or "
                           f"none, got {self.stop!r}")
        for other in self.others:
            if other.shape != self.problem.shape or other.task != self.problem.task:
                raise LipError(f"images searched together must share size and task: "
                               f"{other.image} is {other.shape} ({other.task}), "
                               f"{self.problem.image} is {self.problem.shape} "
                               f"({self.problem.task}); use --size")
        if self.others and (self.stop or self.imp.early_bird is not None):
            raise LipError("a search on several images supports neither --stop nor "
                           "--early-bird; drop them or search one image")
        first = self.round_steps(0)
        if self.imp.rewind_step > first:
            raise LipError(f"--rewind-step {self.imp.rewind_step} is past the end of round 0 "
                           f"(it can end at step {first}); rewind to a step <= {first}")
        self.fit_config = resolved(self.fit_config, self.model_name, self.model_options,
                                   self.problem)  # auto: what will run names the run

    def identity(self) -> dict:
        """Everything that determines the run's results: the problem's content, the model,
        the fit settings (not the device), the IMP settings and the stopping rule."""
        settings = {
            "problem": self.problem.describe(),
            "model": {"name": self.model_name, "options": self.model_options},
            "fit": self.fit_config.identity(),
            "imp": self.imp.hashed(),
            "stop": self.stop,
        }
        if self.others:
            settings["others"] = [p.describe() for p in self.others]
        return settings

    def new_stop(self) -> StoppingRule | None:
        """A fresh stopping rule of the run's kind (baselines are stopped as the ticket)."""
        if self.stop_factory is not None:
            return self.stop_factory()
        return make_stopping_rule(self.stop, noise_variance=self.problem.noise_variance)

    def round_steps(self, k: int) -> int:
        """The fewest steps round ``k`` can run (a searching round may end at its early-bird
        stop; the last round runs in full)."""
        imp, steps = self.imp, self.fit_config.steps
        if self.fitted_in_full(k):
            return steps
        if imp.search_steps is not None:
            steps = min(steps, imp.search_steps)
        if imp.early_bird is not None:  # the earliest stop: `window` checks after the first
            steps = min(steps, imp.early_bird_every * (EarlyBird.window + 1))
        return steps

    def fitted_in_full(self, k: int) -> bool:
        """Whether round ``k`` ran the full fit (searching rounds may be cut short)."""
        imp = self.imp
        return k == imp.n_rounds or (imp.search_steps is None and imp.early_bird is None)

    def fitted_as_reported(self, k: int) -> bool:
        """Whether round ``k``'s own fit is what a comparison reports: in full, and on the
        observation (a search on the clean image is refitted on the observation)."""
        return self.fitted_in_full(k) and self.imp.target == "observation" and not self.others

    def ticket(self, k: int) -> Ticket:
        return Ticket.load(self.ticket_path(k))

    def record_complete(self, record: dict) -> bool:
        return super().record_complete(record) and isinstance(record.get("scores"), dict)

    def describe_round(self, record: dict) -> str:
        search = "" if self.fitted_in_full(record["round"]) else " (search)"
        return f"{search}: {format_scores(record['scores'])}"

    def new_model(self) -> nn.Module:
        model, _ = build_prior(self.model_name, self.model_options, self.problem,
                               seed=self.fit_config.seed)
        return model

    def draw_init(self) -> dict[str, Tensor]:
        model, z = build_prior(self.model_name, self.model_options, self.problem,
                               seed=self.fit_config.seed)
        return {**model.state_dict(), "z": z}

    def train_round(self, k: int, model: nn.Module, init: dict[str, Tensor], mask: Mask,
                    callbacks: list[Callback], last: bool) -> tuple[dict, nn.Module]:
        z = init["z"]
        config = self.fit_config  # the last round fits the final ticket in full
        if self.imp.search_steps is not None and not last:
            config = replace(config, steps=self.imp.search_steps, score_at=())
        early_bird = None
        if self.imp.early_bird is not None and not last:
            early_bird = EarlyBird(mask, self.imp.rate, layerwise=self.imp.layerwise,
                                   threshold=self.imp.early_bird, every=self.imp.early_bird_every)
            callbacks.append(early_bird)
        per_image = None
        if self.others:
            result, per_image, model = self._fit_together(model, z, mask, config, callbacks)
        else:
            operator, y = fit_target(self.problem, self.imp.target)
            net, net_mask = model, mask
            if self.imp.channels:  # the round fits the compact network: the same function
                kept = kept_channels(mask, model)
                net, net_mask = compact(model, kept), None
            result = fit(net, z, operator, y, clean=self.problem.clean, config=config,
                         mask=net_mask, stop=self.new_stop(), callbacks=callbacks,
                         metric=self.problem.metric, run_past_stop=self.problem.clean is not None)
            if net is not model:  # back into the full network, removed channels at zero
                expand_into(model, net.cpu(), kept)
                mask.apply_(model)
        model.cpu()
        with atomic_path(self.round_dir(k) / AVERAGED_PNG) as tmp:
            save_image(result.averaged, tmp)
        sparsity, layers = weight_sparsity(model, mask.weights)
        record = round_record(k, result, mask, sparsity, layers, parameter_count(model, mask))
        if self.imp.channels:
            record |= channel_summary(model, mask, z)
        if early_bird is not None:  # fraction of the next mask that changed, per check
            record["early_bird_changes"] = [[step, round(d, 5)] for step, d in early_bird.distances]
        if per_image is not None:
            record["scores"] = mean_scores(list(per_image.values()))
            record["per_image"] = per_image
        return record, model

    def save_ticket(self, k: int, model: nn.Module, mask: Mask, theta: dict[str, Tensor],
                    init: dict[str, Tensor]) -> None:
        meta = {
            "model": model.spec,
            "problem": self.problem.describe(),
            **({"others": [p.describe() for p in self.others]} if self.others else {}),
            "fit": asdict(self.fit_config),
            "imp": asdict(self.imp),
            "round": k,
            "sparsity": mask.sparsity,
            "seed": self.fit_config.seed,
            "run": self.folder.name,
        }
        ticket = Ticket(mask, theta, init["z"], meta)
        ticket.save(self.ticket_path(k))
        if self.imp.channels:
            compact_ticket(ticket).save(self.round_dir(k) / COMPACT)

    def _fit_together(self, model: nn.Module, z: Tensor, mask: Mask, config: FitConfig,
                      callbacks: list[Callback]) -> tuple[FitResult, dict, nn.Module]:
        """One copy of the network per image, fitted at once with the shared mask; returns
        the first fit, the scores per image, and a model holding the mean |w| of the copies
        (what pruning ranks)."""
        problems = (self.problem, *self.others)
        models = [model] + [copy.deepcopy(model) for _ in self.others]
        targets = [fit_target(p, self.imp.target) for p in problems]
        results = fit_batched(
            models, [z] * len(models), [t[0] for t in targets], [t[1] for t in targets],
            cleans=[p.clean for p in problems], config=config, masks=[mask] * len(models),
            callbacks=[callbacks] + [[] for _ in self.others], metric=self.problem.metric)
        ranked = copy.deepcopy(model).cpu()
        params = [dict(m.named_parameters()) for m in models]
        with torch.no_grad():
            for name, p in ranked.named_parameters():
                if name in mask:
                    p.copy_(torch.stack([ps[name].detach().cpu().abs() for ps in params]).mean(0))
        per_image = {f"{i}:{p.image}": r.scores for i, (p, r) in
                     enumerate(zip(problems, results, strict=True))}
        return results[0], per_image, ranked


def closest_round(records: Sequence[dict], sparsity: float) -> dict:
    """The pruned round whose counted sparsity is nearest ``sparsity`` (round 0 if none)."""
    return min(records[1:] or records, key=lambda r: abs(r["sparsity"] - sparsity))


def check_safetensors(path: Path) -> None:
    """Refuse (one line) a missing, truncated or unreadable safetensors file; reads only its
    header (the full check, checksum and all, is done when the file is loaded)."""
    try:
        with safe_open(str(path), framework="pt"):
            pass
    except (SafetensorError, OSError) as err:
        raise LipError(f"cannot read {path} ({one_line(err)})") from None


def mean_scores(all_scores: list[dict]) -> dict:
    """Scores averaged over several images, label by label (steps are not averaged)."""
    out = {}
    for label, entry in all_scores[0].items():
        out[label] = {"step": None, "images": len(all_scores)}
        for key in ("psnr", "ssim"):
            if entry.get(key) is not None:
                out[label][key] = sum(s[label][key] for s in all_scores) / len(all_scores)
    return out


def round_record(k: int, result: FitResult, mask: Mask, sparsity: float,
                 layers: dict[str, float], parameters: int) -> dict:
    """What a round leaves: counted sparsity (global, per layer), scores, time."""
    return {
        "round": k,
        "sparsity": sparsity,
        "mask_sparsity": mask.sparsity,
        "parameters": parameters,
        "layer_sparsity": layers,
        "steps": result.steps,
        "seconds": round(result.seconds, 2),
        "scores": result.scores,
        "precision": result.precision,
        "device": result.device,
        "version": __version__,
        **({"milestones": {str(step): scores for step, scores in result.milestones.items()}}
           if result.milestones else {}),
    }


class EarlyBird:
    """Ends a round's fit once the mask that pruning would take has stabilised.

    Every ``every`` steps it computes the next mask from the current weights (the same
    magnitude pruning IMP will apply) and stops once the distance between consecutive next
    masks stayed below ``threshold`` for ``window`` checks in a row (You et al., "Drawing
    Early-Bird Tickets", ICLR 2020, applied to one IMP round). The distance is the number of
    entries that changed over the most that can change, twice the number of weights the round
    prunes (each mask removes that many of the current survivors): 0 = same mask, 1 = disjoint
    choices. (Dividing by all entries instead would make the rule pass trivially once few
    weights remain.)
    """

    window = 3  # checks in a row below the threshold

    def __init__(self, mask: Mask, rate: float, *, layerwise: bool = False,
                 threshold: float = 0.05, every: int = 25) -> None:
        self.mask, self.rate, self.layerwise = mask, rate, layerwise
        self.threshold, self.every = threshold, every
        self.previous: Mask | None = None
        self.distances: list[tuple[int, float]] = []

    def __call__(self, info: StepInfo) -> bool:
        if info.step % self.every:
            return False
        current = magnitude_prune(info.model, self.mask, self.rate, layerwise=self.layerwise)
        previous, self.previous = self.previous, current
        if previous is None:
            return False
        self.distances.append((info.step, mask_change(previous, current, self.mask)))
        recent = [d for _, d in self.distances[-self.window:]]
        return len(recent) == self.window and max(recent) < self.threshold


def mask_change(previous: Mask, current: Mask, mask: Mask) -> float:
    """How much two candidate next masks (both pruned from ``mask``) differ: the entries that
    changed over the most that can change (twice the number pruned), in [0, 1]."""
    changed = sum(int((a != previous[n].to(a.device)).sum()) for n, a in current.items())
    most = 2 * (mask.kept - current.kept)
    return changed / most if most else 0.0


def snapshot_at(step: int, store: dict[str, Tensor]) -> Callback:
    """A callback that copies the model's state dict after step ``step`` (late rewinding)."""
    def callback(info: StepInfo) -> None:
        if info.step == step:
            store.update({k: v.detach().cpu().clone()
                          for k, v in info.model.state_dict().items()})
    return callback


def ticket_model_for(ticket: Ticket, problem: Problem) -> nn.Module:
    """The ticket's masked model, after checking that it can restore the problem's image
    (channels, size); a one-line error otherwise."""
    model = ticket.build()
    channels, height, width = problem.shape
    out_channels = ticket.model_spec["options"].get("out_channels", channels)
    if out_channels != channels:
        raise LipError(f"the ticket's model outputs {out_channels} channels, the image has "
                       f"{channels}")
    model.check_size(height, width)
    return model


def ticket_input(ticket: Ticket, problem: Problem,
                 seed: int = 0) -> tuple[nn.Module, Mask | None, Tensor, bool]:
    """What retraining a ticket on a problem fits: the model at its rewind weights, the mask
    that keeps its pruned weights at zero (None for a channel ticket, whose model is then the
    compact network), and its input: the ticket's own z when the size matches, else a fresh
    one of the problem's size (from the seed's ``z`` stream); the flag says whether z was
    redrawn."""
    model = ticket_model_for(ticket, problem)
    mask: Mask | None = ticket.mask
    if ticket.structure == "channels":  # fitted as the compact network: nothing to mask
        if "parent" not in ticket.meta:
            model = compact(model, kept_channels(ticket.mask, model))
        mask = None
    height, width = problem.shape[1:]
    z = model.make_input(height, width, generator=generator(seed, "z"))
    if z.shape == ticket.z.shape:
        return model, mask, ticket.z, False
    log.warning("the ticket's z is %s, the image needs %s: z redrawn (seed %d)",
                "x".join(map(str, ticket.z.shape[-2:])), "x".join(map(str, z.shape[-2:])), seed)
    return model, mask, z, True


def evaluate_ticket(
    ticket: Ticket,
    problem: Problem,
    config: FitConfig,
    *,
    stop: StoppingRule | None = None,
    callbacks: Sequence[Callback] = (),
) -> FitResult:
    """Retrain a ticket (rewind weights, mask; its z when the size matches) on any image and
    task. With a stopping rule and a known truth, the fit runs all its steps and records the
    stop (as every fit that is compared does). A channel ticket fits its compact network."""
    model, mask, z, _ = ticket_input(ticket, problem, config.seed)
    return fit(model, z, problem.operator, problem.observation, clean=problem.clean,
               config=config, mask=mask, stop=stop, callbacks=callbacks,
               metric=problem.metric, run_past_stop=problem.clean is not None)

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
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from safetensors import SafetensorError
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
from lottery_prior.errors import LipError
from lottery_prior.files import RunLock, atomic_path, remove_temporaries, write_json
from lottery_prior.fit import Callback, FitConfig, FitResult, StepInfo, StoppingRule, fit
from lottery_prior.images import save_image
from lottery_prior.masks import Mask, weight_sparsity
from lottery_prior.output_folder import settings_hash
from lottery_prior.problem import Problem, build_prior
from lottery_prior.pruning import magnitude_prune
from lottery_prior.report.tables import score_label
from lottery_prior.seeding import generator
from lottery_prior.tickets import Ticket, parameter_count

log = logging.getLogger("lottery_prior")

TARGETS = ("observation", "clean")
STRUCTURES = ("weights", "channels")
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
        if self.rounds <= 0:
            raise LipError(f"rounds must be positive, got {self.rounds}")
        if not 0 < self.rate < 1:
            raise LipError(f"pruning rate must be in (0, 1), got {self.rate}")
        if self.target_sparsity is not None and not 0 < self.target_sparsity < 1:
            raise LipError(f"target sparsity must be in (0, 1), got {self.target_sparsity}")
        if self.rewind_step < 0:
            raise LipError(f"rewind step must be >= 0, got {self.rewind_step}")
        if self.target not in TARGETS:
            raise LipError(f"unknown fit target {self.target!r}; use observation or clean")
        if self.search_steps is not None and self.search_steps <= 0:
            raise LipError(f"search steps must be positive, got {self.search_steps}")
        if self.early_bird is not None and not 0 < self.early_bird < 1:
            raise LipError(f"early-bird threshold must be in (0, 1), got {self.early_bird}")
        if self.early_bird_every <= 0:
            raise LipError(f"early-bird check interval must be positive, got "
                           f"{self.early_bird_every}")

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
        return math.ceil(math.log(1 - self.target_sparsity) / math.log(1 - self.rate) - 1e-9)


def fit_target(problem: Problem, target: str) -> tuple[nn.Module, Tensor]:
    """Operator and data the ticket is found on: the observation, or (oracle) the clean image."""
    if target == "observation":
        return problem.operator, problem.observation
    if problem.clean is None:
        raise LipError("target 'clean' needs the clean image; it is not known with --observed")
    return nn.Identity(), problem.clean


@dataclass
class ImpRun:
    """A resumable IMP run on one problem, or on several at once (``others``).

    With several images, each gets its own copy of the network (same theta0 and z), all are
    fitted in one batched computation with the one shared mask, the loss is the sum of the
    per-image losses, and pruning ranks the weights by their magnitude averaged over the
    copies: the ticket is the mask that suits every image, not one image's mask.
    """

    problem: Problem
    model_name: str
    model_options: dict
    fit_config: FitConfig
    imp: ImpConfig
    root: Path = Path("runs")
    stop_factory: Callable[[], StoppingRule] | None = None
    stop_name: str | None = None
    others: tuple[Problem, ...] = ()
    records: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        for other in self.others:
            if other.shape != self.problem.shape or other.task != self.problem.task:
                raise LipError(f"images searched together must share size and task: "
                               f"{other.image} is {other.shape} ({other.task}), "
                               f"{self.problem.image} is {self.problem.shape} "
                               f"({self.problem.task}); use --size")
        if self.others and (self.stop_factory or self.imp.early_bird is not None):
            raise LipError("a search on several images supports neither --stop nor "
                           "--early-bird; drop them or search one image")
        first = self.round_steps(0)
        if self.imp.rewind_step > first:
            raise LipError(f"--rewind-step {self.imp.rewind_step} is past the end of round 0 "
                           f"(it can end at step {first}); rewind to a step <= {first}")

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

    @property
    def settings(self) -> dict:
        """Everything that determines the run's results (hashed into its folder name)."""
        settings = {
            "problem": self.problem.describe(),
            "model": {"name": self.model_name, "options": self.model_options},
            "fit": asdict(self.fit_config) | {"device": None},
            "imp": self.imp.hashed(),
            "stop": self.stop_name,
        }
        if self.others:
            settings["others"] = [p.describe() for p in self.others]
        return settings

    @property
    def folder(self) -> Path:
        return self.root / f"imp-{settings_hash(self.settings)}"

    def round_dir(self, k: int) -> Path:
        return self.folder / f"round-{k:02d}"

    def ticket_path(self, k: int) -> Path:
        return self.round_dir(k) / "ticket.safetensors"

    def run(self, progress: Callable[[str], Sequence[Callback]] | None = None) -> list[dict]:
        """Run (or finish) all rounds; returns one record per round, dense first.

        One process at a time works in a run folder: a second one is refused at once. A round
        done earlier is kept when its record reads back, its ticket loads (checksum and all),
        its mask is the one the previous round left, and (before the last round) the next mask
        reads back; a round that fails any of these (a damaged or deleted file) is recomputed,
        with a warning naming the file, and so are the rounds that depended on it if it comes
        out differently.
        """
        rounds = self.imp.n_rounds

        def done_earlier(k: int, mask: Mask | None) -> dict | None:
            """Round k's record if the round finished earlier and is intact, else None."""
            rd = self.round_dir(k)
            record_file = rd / "record.json"
            if not record_file.exists():
                return None
            try:
                try:
                    record = json.loads(record_file.read_text())
                except (OSError, ValueError) as err:  # JSONDecodeError, UnicodeDecodeError
                    raise LipError(f"{record_file} is not readable JSON ({err})") from err
                if (not isinstance(record, dict) or record.get("round") != k
                        or not isinstance(record.get("sparsity"), int | float)
                        or not isinstance(record.get("scores"), dict)):
                    raise LipError(f"{record_file} is not a complete record of round {k}")
                ticket = Ticket.load(self.ticket_path(k))
                if mask is not None and ticket.mask != mask:
                    raise LipError(f"the mask of {self.ticket_path(k)} is not the one round "
                                   f"{k - 1} left (that round was recomputed differently)")
                if k < rounds:
                    Mask.load(rd / "next_mask.safetensors")
                if k == 0 and self.imp.rewind_step > 0:
                    rewind = self.folder / "rewind.safetensors"
                    try:
                        load_file(str(rewind))
                    except (SafetensorError, OSError) as err:
                        raise LipError(f"cannot read {rewind}: {err}") from err
            except LipError as err:
                log.warning("round %d/%d: %s; recomputing the round", k, rounds,
                            " ".join(str(err).split()))
                return None
            return record

        with RunLock(self.folder):
            remove_temporaries(self.folder)  # of writers killed earlier; none can be running
            settings_file = self.folder / "settings.json"
            if not settings_file.exists():
                write_json(settings_file, self.settings)
            weights, z = self._init()
            mask = None
            self.records = []
            for k in range(rounds + 1):
                if k > 0:
                    mask = Mask.load(self.round_dir(k - 1) / "next_mask.safetensors")
                record = done_earlier(k, mask)
                if record is not None:
                    log.info("round %d/%d: done earlier (sparsity %.1f%%), skipped",
                             k, rounds, 100 * record["sparsity"])
                else:
                    if k > 0:
                        weights = self._rewind_weights(weights)
                    callbacks = list(progress(f"round {k}/{rounds}")) if progress else []
                    record = self._round(k, weights, z, mask, callbacks, last=k == rounds)
                    log.info("round %d/%d: sparsity %.2f%% (counted), %d steps%s: %s", k,
                             rounds, 100 * record["sparsity"], record["steps"],
                             "" if self.fitted_in_full(k) else " (search)",
                             format_scores(record["scores"]))
                self.records.append(record)
            return self.records

    def fitted_in_full(self, k: int) -> bool:
        """Whether round ``k`` ran the full fit (searching rounds may be cut short)."""
        imp = self.imp
        return k == imp.n_rounds or (imp.search_steps is None and imp.early_bird is None)

    def ticket(self, k: int) -> Ticket:
        """The ticket of round ``k`` (after the run has reached it)."""
        return Ticket.load(self.ticket_path(k))

    def _init(self) -> tuple[dict[str, Tensor], Tensor]:
        """theta0 and z: drawn once (seeded), saved, reused by every round and resume."""
        path = self.folder / "init.safetensors"
        if path.exists():
            try:
                tensors = load_file(str(path))
                z = tensors.pop("z")
                return tensors, z
            except (SafetensorError, OSError, KeyError) as err:
                log.warning("%s is damaged (%s); drawing theta0 and z again (seeded: the same "
                            "draw)", path, " ".join(str(err).split()) or type(err).__name__)
        model, z = build_prior(self.model_name, self.model_options, self.problem,
                               seed=self.fit_config.seed)
        theta0 = {k: v.detach().clone() for k, v in model.state_dict().items()}
        with atomic_path(path) as tmp:
            save_file({**theta0, "z": z.contiguous()}, str(tmp))
        return theta0, z

    def _rewind_weights(self, theta0: dict[str, Tensor]) -> dict[str, Tensor]:
        if self.imp.rewind_step == 0:
            return theta0
        return load_file(str(self.folder / "rewind.safetensors"))

    def _round(self, k: int, theta: dict[str, Tensor], z: Tensor, mask: Mask | None,
               callbacks: list[Callback], last: bool) -> dict:
        model, _ = build_prior(self.model_name, self.model_options, self.problem,
                               seed=self.fit_config.seed)
        model.load_state_dict(theta)
        if mask is None:
            mask = self.imp.initial_mask(model)
        snapshot: dict[str, Tensor] = {}
        if k == 0 and self.imp.rewind_step > 0:
            callbacks.append(_snapshot_at(self.imp.rewind_step, snapshot))
        config = self.fit_config  # the last round fits the final ticket in full
        if self.imp.search_steps is not None and not last:
            config = replace(config, steps=self.imp.search_steps)
        early_bird = None
        if self.imp.early_bird is not None and not last:
            early_bird = EarlyBird(mask, self.imp.rate, layerwise=self.imp.layerwise,
                                   threshold=self.imp.early_bird, every=self.imp.early_bird_every)
            callbacks.append(early_bird)
        if self.others:
            result, per_image, model = self._fit_together(model, z, mask, config, callbacks)
        else:
            operator, y = fit_target(self.problem, self.imp.target)
            net, net_mask = model, mask
            if self.imp.channels:  # the round fits the compact network: the same function
                kept = kept_channels(mask, model)
                net, net_mask = compact(model, kept), None
            result = fit(net, z, operator, y, clean=self.problem.clean, config=config,
                         mask=net_mask, stop=self.stop_factory() if self.stop_factory else None,
                         callbacks=callbacks, metric=self.problem.metric,
                         run_past_stop=self.problem.clean is not None)
            if net is not model:  # back into the full network, removed channels at zero
                expand_into(model, net.cpu(), kept)
                mask.apply_(model)
            per_image = None
        if snapshot:
            with atomic_path(self.folder / "rewind.safetensors") as tmp:
                save_file(snapshot, str(tmp))
            theta = snapshot
        model.cpu()
        sparsity, layers = weight_sparsity(model, mask.weights)
        rd = self.round_dir(k)
        rd.mkdir(parents=True, exist_ok=True)
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
        ticket = Ticket(mask, theta, z, meta)
        ticket.save(self.ticket_path(k))
        if self.imp.channels:
            compact_ticket(ticket).save(rd / COMPACT)
        with atomic_path(rd / AVERAGED_PNG) as tmp:
            save_image(result.averaged, tmp)
        if not last:
            self.imp.prune(model, mask).save(rd / "next_mask.safetensors")
        record = round_record(k, result, mask, sparsity, layers, parameter_count(model, mask))
        if self.imp.channels:
            record |= channel_summary(model, mask, z)
        if early_bird is not None:  # fraction of the next mask that changed, per check
            record["early_bird_changes"] = [[step, round(d, 5)] for step, d in early_bird.distances]
        if per_image is not None:
            record["scores"] = mean_scores(list(per_image.values()))
            record["per_image"] = per_image
        write_json(rd / "record.json", record)
        return record


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
        "version": __version__,
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


def _snapshot_at(step: int, store: dict[str, Tensor]) -> Callback:
    def callback(info: StepInfo) -> None:
        if info.step == step:
            store.update({k: v.detach().cpu().clone()
                          for k, v in info.model.state_dict().items()})
    return callback


def format_scores(scores: dict) -> str:
    """A compact one-line summary of labelled PSNRs."""
    parts = [f"{score_label(label)} {entry['psnr']:.2f} dB" for label, entry in scores.items()
             if entry.get("psnr") is not None]
    return ", ".join(parts) if parts else "no ground truth"


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

"""IMP for classification: the image prior's IMP building blocks on the classifier.

Round 0 trains the dense classifier; each later round prunes ``rate`` of the remaining conv
weights of the previous round's trained network (:func:`lottery_prior.pruning.magnitude_prune`,
one global threshold, or layer-wise), rewinds the survivors to theta0 (or to the dense run's
weights after ``rewind_step`` SGD steps) and trains again with the mask fixed. Settings are an
:class:`lottery_prior.lottery.ImpConfig` (its fit-only fields must stay at their defaults).

A run lives in ``<root>/cls-imp-<hash>``, the hash of all its settings (data set contents
included), held by one process at a time (:class:`lottery_prior.files.RunLock`). Each round
writes its ticket, record and next mask atomically as it ends, so rerunning after an
interruption continues from the last finished round. Sparsity is counted from the weights.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from lottery_prior import __version__
from lottery_prior.classify.data import Dataset
from lottery_prior.classify.model import HourglassClassifier, check_image_size, create_classifier
from lottery_prior.classify.ticket import ClassifierTicket
from lottery_prior.classify.train import TrainConfig, TrainResult, train
from lottery_prior.errors import LipError
from lottery_prior.files import RunLock, atomic_path, remove_temporaries, write_json
from lottery_prior.fit import Callback, StepInfo
from lottery_prior.lottery import ImpConfig
from lottery_prior.masks import Mask, prunable_names, weight_sparsity
from lottery_prior.output_folder import settings_hash
from lottery_prior.pruning import magnitude_prune
from lottery_prior.tickets import parameter_count

log = logging.getLogger("lottery_prior")

Progress = Callable[[str], Sequence[Callback]]


def check_imp_config(imp: ImpConfig) -> None:
    """Refuse the fit-only IMP options (fit target, search steps, early bird)."""
    defaults = ImpConfig()
    for name, flag in (("target", "--target"), ("search_steps", "--search-steps"),
                       ("early_bird", "--early-bird")):
        if getattr(imp, name) != getattr(defaults, name):
            raise LipError(f"{flag} applies to image-prior IMP, not to classification")


@dataclass
class ClassifierImpRun:
    """A resumable IMP run of the hourglass classifier on one data set."""

    data: Dataset
    model_options: dict
    train_config: TrainConfig
    imp: ImpConfig
    root: Path = Path("lip-out/classify/runs")
    records: list[dict] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_imp_config(self.imp)
        self.model_options = dict(self.model_options)
        model = self.new_model()  # checks the options
        check_image_size(model, self.data.size)
        prunable_names(model, self.imp.keep_dense)  # checks the --keep-dense patterns
        steps = self.train_config.steps(len(self.data.train_y))
        if self.imp.rewind_step > steps:
            raise LipError(f"--rewind-step {self.imp.rewind_step} is past the end of round 0 "
                           f"({steps} SGD steps); rewind to a step <= {steps}")

    @property
    def classes(self) -> int:
        return len(self.data.classes)

    @property
    def settings(self) -> dict:
        """Everything that determines the results (hashed into the folder's name)."""
        return {"kind": "classification", "data": self.data.describe(),
                "model": {"name": "dip", "options": self.model_options,
                          "classes": self.classes},
                "train": asdict(self.train_config) | {"device": None},
                "imp": asdict(self.imp)}

    @property
    def folder(self) -> Path:
        return self.root / f"cls-imp-{settings_hash(self.settings)}"

    def round_dir(self, k: int) -> Path:
        return self.folder / f"round-{k:02d}"

    def ticket_path(self, k: int) -> Path:
        return self.round_dir(k) / "ticket.safetensors"

    def ticket(self, k: int) -> ClassifierTicket:
        return ClassifierTicket.load(self.ticket_path(k))

    def new_model(self) -> HourglassClassifier:
        """The classifier at theta0 (the seed's ``init`` stream)."""
        return create_classifier(self.classes, self.model_options, seed=self.train_config.seed)

    def round_start(self, k: int) -> HourglassClassifier:
        """The network as round ``k`` starts training: its rewind weights, its mask applied
        (round 0: theta0, dense). The run must have written round ``k - 1``."""
        theta = self._init()
        mask = None
        if k > 0:
            theta = self._rewind_weights(theta)
            mask = Mask.load(self.round_dir(k - 1) / "next_mask.safetensors")
        return self._start(theta, mask)

    def run(self, progress: Progress | None = None) -> list[dict]:
        """Run (or finish) every round; one record per round, dense first."""
        rounds = self.imp.n_rounds
        with RunLock(self.folder):
            remove_temporaries(self.folder)
            settings_file = self.folder / "settings.json"
            if not settings_file.exists():
                write_json(settings_file, self.settings)
            theta0 = self._init()
            mask: Mask | None = None
            self.records = []
            for k in range(rounds + 1):
                if k > 0:
                    mask = Mask.load(self.round_dir(k - 1) / "next_mask.safetensors")
                record = self._done_earlier(k, mask, rounds)
                if record is not None:
                    log.info("round %d/%d: done earlier (sparsity %.1f%%, test accuracy "
                             "%.2f%%), skipped", k, rounds, 100 * record["sparsity"],
                             100 * record["test_accuracy"])
                else:
                    theta = theta0 if k == 0 else self._rewind_weights(theta0)
                    callbacks = list(progress(f"round {k}/{rounds}")) if progress else []
                    try:
                        record = self._round(k, theta, mask, callbacks, last=k == rounds)
                    finally:
                        for callback in callbacks:
                            close = getattr(callback, "close", None)
                            if close is not None:
                                close()
                    log.info("round %d/%d: sparsity %.2f%% (counted), test accuracy %.2f%%, "
                             "%.0f s", k, rounds, 100 * record["sparsity"],
                             100 * record["test_accuracy"], record["seconds"])
                self.records.append(record)
        return self.records

    def _done_earlier(self, k: int, mask: Mask | None, rounds: int) -> dict | None:
        """Round k's record if it finished earlier and its files read back, else None."""
        record_file = self.round_dir(k) / "record.json"
        if not record_file.exists():
            return None
        try:
            try:
                record = json.loads(record_file.read_text())
            except (OSError, ValueError) as err:
                raise LipError(f"{record_file} is not readable JSON ({err})") from err
            if not isinstance(record, dict) or record.get("round") != k \
                    or not isinstance(record.get("test_accuracy"), float | int):
                raise LipError(f"{record_file} is not a complete record of round {k}")
            ticket = self.ticket(k)
            if mask is not None and ticket.mask != mask:
                raise LipError(f"the mask of {self.ticket_path(k)} is not the one round "
                               f"{k - 1} left")
            if k < rounds:
                Mask.load(self.round_dir(k) / "next_mask.safetensors")
            if k == 0 and self.imp.rewind_step > 0:
                self._rewind_weights({})
        except LipError as err:
            log.warning("round %d/%d: %s; recomputing the round", k, rounds,
                        " ".join(str(err).split()))
            return None
        return record

    def _init(self) -> dict[str, Tensor]:
        """theta0: drawn once (seeded), saved, reused by every round and by a resumed run."""
        path = self.folder / "init.safetensors"
        if path.exists():
            try:
                return load_file(str(path))
            except (SafetensorError, OSError) as err:
                log.warning("%s is damaged (%s); drawing theta0 again (seeded: the same draw)",
                            path, " ".join(str(err).split()))
        theta0 = {k: v.detach().clone() for k, v in self.new_model().state_dict().items()}
        with atomic_path(path) as tmp:
            save_file(theta0, str(tmp))
        return theta0

    def _rewind_weights(self, theta0: dict[str, Tensor]) -> dict[str, Tensor]:
        if self.imp.rewind_step == 0:
            return theta0
        path = self.folder / "rewind.safetensors"
        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as err:
            raise LipError(f"cannot read {path}: {err}") from err

    def _start(self, theta: dict[str, Tensor], mask: Mask | None) -> HourglassClassifier:
        model = self.new_model()
        model.load_state_dict(theta)
        if mask is not None:
            mask.check(model)
            mask.apply_(model)
        return model

    def _round(self, k: int, theta: dict[str, Tensor], mask: Mask | None,
               callbacks: list[Callback], last: bool) -> dict:
        model = self._start(theta, mask)
        if mask is None:
            mask = Mask.ones(model, self.imp.keep_dense)
        snapshot: dict[str, Tensor] = {}
        if k == 0 and self.imp.rewind_step > 0:
            callbacks.append(snapshot_at(self.imp.rewind_step, snapshot))
        d = self.data
        result = train(model, d.train_x, d.train_y, d.test_x, d.test_y, self.train_config,
                       mask=mask, callbacks=callbacks)
        if snapshot:
            with atomic_path(self.folder / "rewind.safetensors") as tmp:
                save_file(snapshot, str(tmp))
            theta = snapshot
        sparsity, layers = weight_sparsity(model, list(mask))
        rd = self.round_dir(k)
        rd.mkdir(parents=True, exist_ok=True)
        meta = {"model": model.spec, "data": d.describe(), "train": asdict(self.train_config),
                "imp": asdict(self.imp), "keep_dense": list(self.imp.keep_dense), "round": k,
                "sparsity": mask.sparsity, "rewind_step": self.imp.rewind_step,
                "seed": self.train_config.seed, "run": self.folder.name}
        ClassifierTicket(mask, theta, meta).save(self.ticket_path(k))
        if not last:
            magnitude_prune(model, mask, self.imp.rate, layerwise=self.imp.layerwise).save(
                rd / "next_mask.safetensors")
        record = round_record(k, result, mask, sparsity, layers, parameter_count(model, mask))
        write_json(rd / "record.json", record)
        return record


def round_record(k: int, result: TrainResult, mask: Mask, sparsity: float,
                 layers: dict[str, float], parameters: int) -> dict:
    """What a round leaves: counted sparsity (global, per layer), accuracies, time."""
    return {"round": k, "sparsity": sparsity, "mask_sparsity": mask.sparsity,
            "parameters": parameters, "layer_sparsity": layers,
            "test_accuracy": result.test_accuracy, "test_loss": result.test_loss,
            "train_accuracy": result.train_accuracy, "steps": result.steps,
            "seconds": round(result.seconds, 2), "history": result.history,
            "version": __version__}


def snapshot_at(step: int, store: dict[str, Tensor]) -> Callback:
    """A training callback that copies the state dict after SGD step ``step``."""
    def callback(info: StepInfo) -> None:
        if info.step == step:
            store.update({k: v.detach().cpu().clone()
                          for k, v in info.model.state_dict().items()})
    return callback


def closest_round(records: Sequence[dict], sparsity: float) -> dict:
    """The pruned round whose counted sparsity is nearest ``sparsity`` (round 0 if none)."""
    return min(records[1:] or records, key=lambda r: abs(r["sparsity"] - sparsity))

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

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

from torch import Tensor, nn

from lottery_prior import __version__
from lottery_prior.classify.data import Dataset
from lottery_prior.classify.model import HourglassClassifier, check_image_size, create_classifier
from lottery_prior.classify.ticket import ClassifierTicket
from lottery_prior.classify.train import TrainConfig, TrainResult, train
from lottery_prior.errors import LipError
from lottery_prior.fit import Callback
from lottery_prior.lottery import ImpConfig, ImpRounds
from lottery_prior.masks import Mask, prunable_names, weight_sparsity
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


@dataclass(eq=False)
class ClassifierImpRun(ImpRounds):
    """A resumable IMP run of the hourglass classifier on one data set."""

    data: Dataset
    model_options: dict
    train_config: TrainConfig
    imp: ImpConfig
    root: Path = Path("lip-out/classify/runs")
    records: list[dict] = field(default_factory=list)
    prefix: ClassVar[str] = "cls-imp"

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

    def identity(self) -> dict:
        """Everything that determines the results: the data set's content, the model, the
        training settings (not the device) and the IMP settings."""
        return {"kind": "classification", "data": self.data.describe(),
                "model": {"name": "dip", "options": self.model_options,
                          "classes": self.classes},
                "train": asdict(self.train_config) | {"device": None},
                "imp": asdict(self.imp)}

    def ticket(self, k: int) -> ClassifierTicket:
        return ClassifierTicket.load(self.ticket_path(k))

    def new_model(self) -> HourglassClassifier:
        """The classifier at theta0 (the seed's ``init`` stream)."""
        return create_classifier(self.classes, self.model_options, seed=self.train_config.seed)

    def draw_init(self) -> dict[str, Tensor]:
        return self.new_model().state_dict()

    def round_start(self, k: int) -> HourglassClassifier:
        """The network as round ``k`` starts training: its rewind weights, its mask applied
        (round 0: theta0, dense). The run must have written round ``k - 1``."""
        theta = self._init()
        model = self.new_model()
        model.load_state_dict(theta if k == 0 else self._rewind_weights(theta))
        if k > 0:
            mask = Mask.load(self.round_dir(k - 1) / self.NEXT_MASK)
            mask.check(model)
            mask.apply_(model)
        return model

    def record_complete(self, record: dict) -> bool:
        return super().record_complete(record) and isinstance(record.get("test_accuracy"),
                                                              float | int)

    def describe_round(self, record: dict) -> str:
        return f": test accuracy {100 * record['test_accuracy']:.2f}%, {record['seconds']:.0f} s"

    def train_round(self, k: int, model: nn.Module, init: dict[str, Tensor], mask: Mask,
                    callbacks: list[Callback], last: bool) -> tuple[dict, nn.Module]:
        d = self.data
        result = train(model, d.train_x, d.train_y, d.test_x, d.test_y, self.train_config,
                       mask=mask, callbacks=callbacks)
        model.cpu()
        sparsity, layers = weight_sparsity(model, list(mask))
        return round_record(k, result, mask, sparsity, layers,
                            parameter_count(model, mask)), model

    def save_ticket(self, k: int, model: nn.Module, mask: Mask, theta: dict[str, Tensor],
                    init: dict[str, Tensor]) -> None:
        meta = {"model": model.spec, "data": self.data.describe(),
                "train": asdict(self.train_config), "imp": asdict(self.imp),
                "keep_dense": list(self.imp.keep_dense), "round": k, "sparsity": mask.sparsity,
                "rewind_step": self.imp.rewind_step, "seed": self.train_config.seed,
                "run": self.folder.name}
        ClassifierTicket(mask, theta, meta).save(self.ticket_path(k))


def round_record(k: int, result: TrainResult, mask: Mask, sparsity: float,
                 layers: dict[str, float], parameters: int) -> dict:
    """What a round leaves: counted sparsity (global, per layer), accuracies, time."""
    return {"round": k, "sparsity": sparsity, "mask_sparsity": mask.sparsity,
            "parameters": parameters, "layer_sparsity": layers,
            "test_accuracy": result.test_accuracy, "test_loss": result.test_loss,
            "train_accuracy": result.train_accuracy, "steps": result.steps,
            "seconds": round(result.seconds, 2), "history": result.history,
            "version": __version__}

"""Classification tickets: a mask over the classifier's conv weights and the weights it is
retrained from (theta0, or the dense run's weights at step k), with readable provenance.

One safetensors file, as for image-prior tickets (:mod:`lottery_prior.tickets`): tensors
``mask/<name>`` (uint8) and ``weights/<name>``, and JSON metadata (model spec with its number
of classes, data set, training and IMP settings, round, counted sparsity) with a sha256 of the
tensors, so a damaged file is refused rather than silently retrained. There is no ``z``: the
classifier reads images.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from lottery_prior.classify.model import HourglassClassifier, create_classifier
from lottery_prior.errors import LipError
from lottery_prior.masks import Mask
from lottery_prior.tickets import (
    read_ticket_file,
    state_dict_mismatch,
    tensors_sha256,
    write_ticket_file,
)

FORMAT = "lottery_prior.classifier-ticket/1"


@dataclass
class ClassifierTicket:
    """A sparse classifier that can be retrained: mask and rewind weights."""

    mask: Mask
    rewind_weights: dict[str, Tensor]
    meta: dict = field(default_factory=dict)

    @property
    def model_spec(self) -> dict:
        return self.meta["model"]

    @property
    def sparsity(self) -> float:
        """Counted fraction of pruned conv weights."""
        return self.mask.sparsity

    def build(self) -> HourglassClassifier:
        """The classifier at its rewind weights with the mask applied."""
        spec = self.model_spec
        model = create_classifier(spec["classes"], spec["options"])
        problems = state_dict_mismatch(model.state_dict(), self.rewind_weights)
        if problems:
            raise LipError(f"classification ticket weights do not fit its model: {problems}")
        model.load_state_dict(self.rewind_weights)
        self.mask.check(model)
        self.mask.apply_(model)
        return model

    def tensors(self) -> dict[str, Tensor]:
        tensors = {f"mask/{n}": m.to(torch.uint8).cpu().contiguous() for n, m in self.mask.items()}
        tensors.update({f"weights/{n}": t.detach().cpu().contiguous()
                        for n, t in self.rewind_weights.items()})
        return tensors

    def save(self, path: str | Path) -> Path:
        """Write the ticket atomically."""
        return write_ticket_file(path, self.tensors(), {**self.meta, "format": FORMAT})

    @classmethod
    def load(cls, path: str | Path) -> ClassifierTicket:
        """Read and verify a classification ticket; a one-line error for anything else."""
        path = Path(path)
        tensors, meta = read_ticket_file(path, "classification ticket",
                                         "round-05/ticket.safetensors")
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            kind = (meta or {}).get("format", "") if isinstance(meta, dict) else ""
            hint = (" (it is an image-prior ticket from lip find)"
                    if str(kind).startswith("lottery_prior.ticket/") else "")
            raise LipError(f"{path} is not a classification ticket{hint}")
        if tensors_sha256(tensors) != meta.get("sha256"):
            raise LipError(f"classification ticket {path} is corrupt: its tensors do not match "
                           "their sha256 checksum")
        mask = Mask({k[5:]: v for k, v in tensors.items() if k.startswith("mask/")})
        weights = {k[8:]: v for k, v in tensors.items() if k.startswith("weights/")}
        return cls(mask, weights, meta)

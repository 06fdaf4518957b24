"""Tickets: a mask, the weights it is retrained from (theta0), and the input code z.

One safetensors file holds the tensors (``mask/<name>`` as uint8, ``theta0/<name>``, ``z``);
its metadata holds readable JSON provenance (model and options, task and settings, image
name and hash, round, counted sparsity, seed, library version), so a ticket can be retrained
exactly and its origin is never lost.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from lottery_prior import __version__
from lottery_prior.errors import LipError
from lottery_prior.masks import Mask
from lottery_prior.models import create_model

FORMAT = "lottery_prior.ticket/1"


@dataclass
class Ticket:
    """A sparse prior that can be retrained on any image: mask, initial weights, input code."""

    mask: Mask
    theta0: dict[str, Tensor]
    z: Tensor
    meta: dict = field(default_factory=dict)

    @property
    def model_spec(self) -> dict:
        return self.meta["model"]

    @property
    def sparsity(self) -> float:
        """Counted fraction of pruned weights among the prunable ones."""
        return self.mask.sparsity

    def build(self) -> nn.Module:
        """The model at theta0 with the mask applied (pruned weights exactly zero)."""
        spec = self.model_spec
        model = create_model(spec["name"], **spec["options"])
        try:
            model.load_state_dict(self.theta0)
        except RuntimeError as err:
            first = str(err).strip().splitlines()[0]
            raise LipError(f"ticket weights do not fit model {spec['name']!r}: {first}") from err
        self.mask.check(model)
        self.mask.apply_(model)
        return model

    def save(self, path: str | Path) -> Path:
        """Write the ticket (atomically: an interrupted save never leaves half a file)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {f"mask/{n}": m.to(torch.uint8).contiguous() for n, m in self.mask.items()}
        tensors.update({f"theta0/{n}": t.detach().cpu().contiguous()
                        for n, t in self.theta0.items()})
        tensors["z"] = self.z.detach().cpu().contiguous()
        meta = {"format": FORMAT, "version": __version__, **self.meta}
        tmp = path.with_name(path.name + ".tmp")
        save_file(tensors, str(tmp), metadata={"lottery_prior": json.dumps(meta)})
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Ticket:
        """Read a ticket file; anything else gets a one-line error."""
        path = Path(path)
        if not path.is_file():
            raise LipError(f"ticket file {path} does not exist")
        try:
            with safe_open(str(path), framework="pt") as f:
                raw = (f.metadata() or {}).get("lottery_prior")
                tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        except (SafetensorError, OSError, ValueError) as err:
            raise LipError(f"{path} is not a readable ticket file (corrupt or truncated)") from err
        try:
            meta = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            meta = None
        if not meta or meta.get("format") != FORMAT or "model" not in meta or "z" not in tensors:
            raise LipError(f"{path} is not a lottery_prior ticket (no ticket metadata)")
        mask = Mask({k[5:]: v for k, v in tensors.items() if k.startswith("mask/")})
        theta0 = {k[7:]: v for k, v in tensors.items() if k.startswith("theta0/")}
        return cls(mask, theta0, tensors["z"], meta)


def parameter_count(model: nn.Module, mask: Mask | None = None) -> int:
    """Parameters that remain: all of them, less the weights the mask removes."""
    total = sum(p.numel() for p in model.parameters())
    return total - (mask.total - mask.kept if mask is not None else 0)

"""Pruning masks as data: a mapping from parameter name to a boolean tensor.

A mask is applied from outside the model (weights and gradients are multiplied by it), so any
registered model can be pruned and stays a plain ``nn.Module`` with its usual state dict.
Sparsity is always counted, from the mask or from the weights themselves, never assumed.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from lottery_prior.errors import LipError


def prunable_names(model: nn.Module, keep_dense: Sequence[str] = ()) -> list[str]:
    """Names of every Conv2d weight (the paper's choice), minus those matching ``keep_dense``.

    ``keep_dense`` holds glob patterns of parameter names, e.g. ``"head.*"``.
    """
    names = [
        f"{module_name}.weight" if module_name else "weight"
        for module_name, module in model.named_modules()
        if isinstance(module, nn.Conv2d)
    ]
    kept = [n for n in names if not any(fnmatch.fnmatchcase(n, p) for p in keep_dense)]
    unmatched = [p for p in keep_dense if not any(fnmatch.fnmatchcase(n, p) for n in names)]
    if unmatched:
        raise LipError(f"--keep-dense pattern {unmatched[0]!r} matches no conv weight")
    return kept


class Mask(Mapping[str, Tensor]):
    """Parameter name -> boolean tensor (True = weight kept).

    Counts (``total``, ``kept``, sparsity) are over the weights: entries of two or more
    dimensions. A channel mask also holds per-channel vectors (biases, BatchNorm scales and
    shifts of removed channels), which it applies but does not count.
    """

    def __init__(self, masks: Mapping[str, Tensor]) -> None:
        self._masks = {name: m.detach().to(torch.bool) for name, m in masks.items()}

    @classmethod
    def ones(cls, model: nn.Module, keep_dense: Sequence[str] = ()) -> Mask:
        """A dense mask over the model's prunable weights."""
        params = dict(model.named_parameters())
        return cls({n: torch.ones_like(params[n], dtype=torch.bool)
                    for n in prunable_names(model, keep_dense)})

    def __getitem__(self, name: str) -> Tensor:
        return self._masks[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._masks)

    def __len__(self) -> int:
        return len(self._masks)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Mask) or self.keys() != other.keys():
            return False
        return all(torch.equal(self[n], other[n]) for n in self)

    __hash__ = None  # type: ignore[assignment]

    @property
    def weights(self) -> list[str]:
        """Names of the entries that are weights (two or more dimensions)."""
        return [n for n, m in self._masks.items() if m.dim() >= 2]

    @property
    def total(self) -> int:
        """Number of prunable weights."""
        return sum(self._masks[n].numel() for n in self.weights)

    @property
    def kept(self) -> int:
        """Number of weights the mask keeps."""
        return sum(int(self._masks[n].sum()) for n in self.weights)

    @property
    def density(self) -> float:
        return self.kept / self.total if self.total else 1.0

    @property
    def sparsity(self) -> float:
        """Fraction of prunable weights removed (counted)."""
        return 1.0 - self.density

    def layer_sparsity(self) -> dict[str, float]:
        """Counted sparsity of each masked weight."""
        return {n: 1.0 - int(self._masks[n].sum()) / self._masks[n].numel()
                for n in self.weights}

    def check(self, model: nn.Module) -> None:
        """Refuse a mask whose names or shapes do not fit the model."""
        params = dict(model.named_parameters())
        for name, m in self._masks.items():
            if name not in params:
                raise LipError(f"mask entry {name!r} is not a parameter of this model")
            if params[name].shape != m.shape:
                raise LipError(
                    f"mask entry {name!r} has shape {tuple(m.shape)}, the model's weight has "
                    f"{tuple(params[name].shape)}: the mask is from another model"
                )

    @torch.no_grad()
    def apply_(self, model: nn.Module) -> None:
        """Zero the pruned weights in place."""
        params = dict(model.named_parameters())
        for name, m in self._masks.items():
            p = params[name]
            p.mul_(m.to(p.device))

    @torch.no_grad()
    def apply_grad_(self, model: nn.Module) -> None:
        """Zero the gradients of pruned weights, so optimizer state never moves them."""
        params = dict(model.named_parameters())
        for name, m in self._masks.items():
            g = params[name].grad
            if g is not None:
                g.mul_(m.to(g.device))

    def to(self, device: torch.device | str) -> Mask:
        return Mask({n: m.to(device) for n, m in self._masks.items()})

    def save(self, path: str | Path, metadata: dict[str, str] | None = None) -> None:
        """Write as safetensors (uint8), with optional string metadata (atomically)."""
        from lottery_prior.files import atomic_path

        tensors = {n: m.to(torch.uint8).contiguous().cpu() for n, m in self._masks.items()}
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=metadata)

    @classmethod
    def load(cls, path: str | Path) -> Mask:
        try:
            return cls(load_file(str(path)))
        except (SafetensorError, OSError) as err:
            raise LipError(f"cannot read mask file {path}: {err}") from err


def masked_step(optimizer: torch.optim.Optimizer, model: nn.Module, mask: Mask | None,
                scaler: torch.amp.GradScaler | None = None) -> None:
    """One optimizer step that keeps pruned weights at exactly zero: their gradients are
    zeroed first (so optimizer state never moves them), the weights masked after. With a
    gradient scaler (fp16), the step goes through it (a step it skips changes nothing)."""
    if mask is not None:
        mask.apply_grad_(model)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    if mask is not None:
        mask.apply_(model)


def weight_sparsity(model: nn.Module, names: Sequence[str]) -> tuple[float, dict[str, float]]:
    """Counted fraction of exactly-zero weights among ``names``: global and per layer."""
    params = dict(model.named_parameters())
    zeros = total = 0
    per_layer = {}
    for name in names:
        w = params[name].detach()
        z = int((w == 0).sum())
        per_layer[name] = z / w.numel()
        zeros, total = zeros + z, total + w.numel()
    return (zeros / total if total else 0.0), per_layer

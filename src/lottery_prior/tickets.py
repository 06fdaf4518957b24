"""Tickets: a mask, the weights it is retrained from, and the input code z.

One safetensors file holds the tensors (``mask/<name>`` as uint8, ``weights/<name>``, ``z``);
its metadata holds readable JSON provenance (model and options, task and settings, image
name and hash, round, rewind step, counted sparsity, seed, library version) and a sha256
checksum of the tensors, so a ticket can be retrained exactly, its origin is never lost, and
a damaged file is refused instead of silently retrained. Files of format 1 (weights stored
as ``theta0/<name>``, no checksum) still load.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from lottery_prior import __version__
from lottery_prior.errors import LipError
from lottery_prior.files import atomic_path
from lottery_prior.masks import Mask, prunable_names
from lottery_prior.models import create_model

FORMAT = "lottery_prior.ticket/2"
FORMATS = {"lottery_prior.ticket/1": "theta0/", FORMAT: "weights/"}  # format -> weights prefix


@dataclass
class Ticket:
    """A sparse prior that can be retrained on any image: mask, weights, input code."""

    mask: Mask
    rewind_weights: dict[str, Tensor]
    """The weights the mask is retrained from: theta0 (rewind_step 0) or the dense fit's
    weights at step k (``rewind_step`` k > 0, late rewinding)."""
    z: Tensor
    meta: dict = field(default_factory=dict)

    @property
    def model_spec(self) -> dict:
        return self.meta["model"]

    @property
    def structure(self) -> str:
        """``weights`` (unstructured) or ``channels`` (whole channels removed)."""
        return self.meta.get("structure") or (self.meta.get("imp") or {}).get(
            "structure", "weights")

    @property
    def sparsity(self) -> float:
        """Counted fraction of pruned weights among the prunable ones; for a compact channel
        ticket, among the prunable weights of the network it was cut from (``parent``)."""
        parent = self.meta.get("parent")
        if parent is None:
            return self.mask.sparsity
        with torch.device("meta"):  # shapes only
            full = create_model(parent["name"], **parent["options"])
        params = dict(full.named_parameters())
        return 1 - self.mask.kept / sum(params[n].numel() for n in prunable_names(full))

    @property
    def rewind_step(self) -> int:
        """The fit step ``rewind_weights`` were taken at (0: the initialisation theta0)."""
        if "rewind_step" in self.meta:
            return int(self.meta["rewind_step"])
        return int((self.meta.get("imp") or {}).get("rewind_step", 0))

    def build(self) -> nn.Module:
        """The model at ``rewind_weights`` with the mask applied (pruned weights exactly zero)."""
        spec = self.model_spec
        model = create_model(spec["name"], **spec["options"])
        problems = state_dict_mismatch(model.state_dict(), self.rewind_weights)
        if problems:
            raise LipError(f"ticket weights do not fit model {spec['name']!r} "
                           f"({_options_text(spec['options'])}): {problems}")
        try:
            model.load_state_dict(self.rewind_weights)
        except RuntimeError as err:
            text = " ".join(str(err).split())
            raise LipError(f"ticket weights do not fit model {spec['name']!r}: {text}") from err
        self.mask.check(model)
        self.mask.apply_(model)
        return model

    def tensors(self) -> dict[str, Tensor]:
        """The tensors as stored: ``mask/<name>`` (uint8), ``weights/<name>``, ``z``."""
        tensors = {f"mask/{n}": m.to(torch.uint8).cpu().contiguous() for n, m in self.mask.items()}
        tensors.update({f"weights/{n}": t.detach().cpu().contiguous()
                        for n, t in self.rewind_weights.items()})
        tensors["z"] = self.z.detach().cpu().contiguous()
        return tensors

    def save(self, path: str | Path) -> Path:
        """Write the ticket (atomically: an interrupted save never leaves half a file)."""
        return write_ticket_file(path, self.tensors(), {**self.meta, "format": FORMAT,
                                                        "rewind_step": self.rewind_step})

    @classmethod
    def load(cls, path: str | Path) -> Ticket:
        """Read and verify a ticket file; anything else, or a damaged one, gets a one-line
        error."""
        path = Path(path)
        tensors, meta = read_ticket_file(path, "ticket file", "ticket.safetensors")
        if (not isinstance(meta, dict) or meta.get("format") not in FORMATS
                or "model" not in meta or "z" not in tensors):
            raise LipError(f"{path} is not a lottery_prior ticket (no ticket metadata)")
        problem = verify(tensors, meta)
        if problem:
            raise LipError(f"ticket {path} is corrupt: {problem}")
        prefix = FORMATS[meta["format"]]
        mask = Mask({k[5:]: v for k, v in tensors.items() if k.startswith("mask/")})
        weights = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        return cls(mask, weights, tensors["z"], meta)


def write_ticket_file(path: str | Path, tensors: Mapping[str, Tensor], meta: dict) -> Path:
    """Save tensors with JSON metadata (``format`` given, version and sha256 added),
    atomically; the file layout every kind of ticket shares."""
    meta = {"version": __version__, **meta, "sha256": tensors_sha256(tensors)}
    with atomic_path(path) as tmp:
        save_file(dict(tensors), str(tmp), metadata={"lottery_prior": json.dumps(meta)})
    return Path(path)


def read_ticket_file(path: Path, what: str, example: str) -> tuple[dict[str, Tensor],
                                                                   dict | None]:
    """A ticket file's tensors and JSON metadata (None when absent or unreadable); a
    one-line error for a folder (naming ``example`` inside it), a missing or a corrupt file."""
    if path.is_dir():
        raise LipError(f"{path} is a folder; give the ticket file (e.g. {path / example})")
    if not path.is_file():
        raise LipError(f"{what} {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get("lottery_prior")
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise LipError(f"{path} is not a readable ticket file (corrupt or truncated)") from err
    try:
        meta = json.loads(raw) if raw else None
    except json.JSONDecodeError:
        meta = None
    return tensors, meta if isinstance(meta, dict) else None


def tensors_sha256(tensors: Mapping[str, Tensor]) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes, in sorted name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        header = json.dumps([name, str(t.dtype).removeprefix("torch."), list(t.shape)])
        digest.update(header.encode() + b"\n")
        if t.numel():
            digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def verify(tensors: Mapping[str, Tensor], meta: dict) -> str | None:
    """What is wrong with a ticket's stored tensors, or None: checksum, mask values, a
    prunable layer without a mask, non-finite weights or z."""
    stored = meta.get("sha256")
    if meta.get("format") == FORMAT and not stored:
        return "its checksum is missing"
    if stored and tensors_sha256(tensors) != stored:
        return "its tensors do not match their sha256 checksum (changed or damaged)"
    prefix = FORMATS[meta["format"]]
    for name, t in sorted(tensors.items()):
        if name.startswith("mask/"):
            if t.dtype not in (torch.uint8, torch.bool):
                return f"mask entry {name[5:]!r} is stored as {t.dtype}, not uint8"
            if t.dtype == torch.uint8 and bool((t > 1).any()):
                return f"mask entry {name[5:]!r} holds values other than 0 and 1"
        elif (name == "z" or name.startswith(prefix)) and t.is_floating_point() \
                and not bool(torch.isfinite(t).all()):
            what = "the input code z" if name == "z" else f"weight {name[len(prefix):]!r}"
            return f"{what} is not finite (NaN or infinity)"
    masked = {k[5:] for k in tensors if k.startswith("mask/")}
    missing = [n for n in _prunable(meta) if n not in masked]
    if missing:
        return (f"prunable conv weight {missing[0]!r} has no mask entry (it would be "
                f"silently dense)" + (f", nor do {len(missing) - 1} more" if len(missing) > 1
                                      else ""))
    return None


def _prunable(meta: dict) -> list[str]:
    """The conv weights a ticket of this model must mask (less those kept dense on purpose)."""
    spec = meta["model"]
    if not isinstance(spec, dict) or "name" not in spec:
        return []
    keep_dense = meta.get("keep_dense", (meta.get("imp") or {}).get("keep_dense", ()))
    try:
        with torch.device("meta"):  # shapes only: no memory, no random init
            model = create_model(spec["name"], **spec.get("options", {}))
    except LipError:
        raise
    except Exception:  # noqa: BLE001 - a constructor that needs real tensors
        model = create_model(spec["name"], **spec.get("options", {}))
    try:
        return prunable_names(model, keep_dense)
    except LipError:  # patterns that match nothing in this model: check every conv
        return prunable_names(model)


def state_dict_mismatch(expected: Mapping[str, Tensor], given: Mapping[str, Tensor],
                        show: int = 3) -> str:
    """One line on how ``given`` differs from a model's state dict ('' if it fits)."""

    def names(items: list[str]) -> str:
        more = f" and {len(items) - show} more" if len(items) > show else ""
        return ", ".join(items[:show]) + more

    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    sizes = [f"{k} {tuple(given[k].shape)} vs {tuple(v.shape)}"
             for k, v in expected.items() if k in given and given[k].shape != v.shape]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing ({names(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected ({names(unexpected)})")
    if sizes:
        parts.append(f"{len(sizes)} of another shape, ticket vs model ({names(sizes)})")
    if parts:
        parts.append("the ticket is from another model or other model options")
    return "; ".join(parts)


def _options_text(options: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in options.items()) or "default options"


def parameter_count(model: nn.Module, mask: Mask | None = None) -> int:
    """Parameters that remain: all of them, less those the mask removes (for a channel mask,
    the removed channels' biases and BatchNorm parameters as well as their weights)."""
    total = sum(p.numel() for p in model.parameters())
    if mask is None:
        return total
    return total - sum(m.numel() - int(m.sum()) for m in mask.values())

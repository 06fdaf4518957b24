"""Channel-level tickets of the skip hourglass: channel masks, channel pruning, compaction.

A channel ticket removes whole output channels (filters) of the hourglass's convs. As a mask
it zeroes, for every removed channel, the conv's filter and bias, the scale and shift of the
BatchNorm after it, the matching entries of any BatchNorm that normalises the concatenation
it enters, and the weights of the next convs that read it. A zero channel then stays exactly
zero through BN (train-mode statistics of a constant 0 give 0, and the shift is masked), the
activation, upsampling and concatenation, so the masked network computes what the
:func:`compact` one does: a narrower dense hourglass with real convs of fewer channels, built
from the models registry by its per-scale, per-conv width lists. Every layer keeps at least
one channel. Models know nothing of this: the couplings are read from the hourglass's module
structure here (:func:`layout`).

Why not Torch-Pruning (DepGraph): it would trace the graph to find the same handful of
couplings, edit modules in place, and leave a model the registry cannot rebuild from a spec.
Here the compact network is an ordinary registered model, so a compact ticket is an ordinary
ticket file, and the couplings are few, explicit and tested layer by layer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lottery_prior.cost import step_flops
from lottery_prior.errors import LipError
from lottery_prior.masks import Mask
from lottery_prior.models import create_model
from lottery_prior.models.skip import SkipHourglass, _Scale
from lottery_prior.tickets import Ticket

CHANNEL_SCORES = ("l1", "l2", "bn")
Source = str | None  # a conv whose output channels feed in, or None: the network's input


@dataclass(frozen=True)
class ConvSite:
    """One conv: its BatchNorm (None for the head), and where its input channels come from,
    in concatenation order (a BatchNorm ``norm`` may normalise that concatenation first)."""

    conv: str
    bn: str | None
    inputs: tuple[Source, ...]
    norm: str | None = None

    @property
    def prunable(self) -> bool:
        return self.bn is not None


def layout(model: nn.Module) -> list[ConvSite]:
    """Every conv of a skip hourglass with its couplings, in forward order."""
    if not isinstance(model, SkipHourglass):
        raise LipError(f"channel tickets need the skip hourglass (model 'dip'), not "
                       f"{type(model).__name__}")
    sites: list[ConvSite] = []

    def scale(prefix: str, module: _Scale, source: Source) -> Source:
        skip = None
        if module.skip is not None:
            skip = f"{prefix}skip.0"
            sites.append(ConvSite(skip, f"{prefix}skip.1", (source,)))
        first, second = f"{prefix}deeper.0.0", f"{prefix}deeper.1.0"
        sites.append(ConvSite(first, f"{prefix}deeper.0.1", (source,)))
        sites.append(ConvSite(second, f"{prefix}deeper.1.1", (first,)))
        deeper = module.deeper[2] if isinstance(module.deeper[2], _Scale) else None
        below = scale(f"{prefix}deeper.2.", deeper, second) if deeper is not None else second
        merged = tuple(s for s in (skip,) if s is not None) + (below,)
        up_first, up = f"{prefix}merge.1.0", f"{prefix}merge.2.0"
        sites.append(ConvSite(up_first, f"{prefix}merge.1.1", merged, norm=f"{prefix}merge.0"))
        sites.append(ConvSite(up, f"{prefix}merge.2.1", (up_first,)))
        return up

    top = scale("body.", model.body, None)
    sites.append(ConvSite("head.0", None, (top,)))
    return sites


Kept = dict[str, Tensor]  # prunable conv -> bool vector over its output channels


def kept_channels(mask: Mask, model: nn.Module) -> Kept:
    """The channels a channel mask keeps, per prunable conv (read from its BN's entries)."""
    sites = [s for s in layout(model) if s.prunable]
    missing = [s.bn for s in sites if f"{s.bn}.weight" not in mask]
    if missing:
        raise LipError(f"the mask is not a channel mask (no entry for {missing[0]}.weight); "
                       "find the ticket with --structured channels")
    return {s.conv: mask[f"{s.bn}.weight"].clone() for s in sites}


def all_channels(model: nn.Module) -> Kept:
    """Every output channel of every prunable conv."""
    modules = dict(model.named_modules())
    return {s.conv: torch.ones(modules[s.conv].out_channels, dtype=torch.bool)
            for s in layout(model) if s.prunable}


def _input_keep(site: ConvSite, kept: Kept, modules: Mapping[str, nn.Module]) -> Tensor:
    """Which input channels of ``site`` remain: its sources' kept channels, concatenated."""
    parts = []
    for source in site.inputs:
        if source is None:
            conv = modules[site.conv]
            parts.append(torch.ones(conv.in_channels, dtype=torch.bool))
        else:
            parts.append(kept[source])
    return torch.cat(parts)


def channel_mask(model: nn.Module, kept: Kept) -> Mask:
    """The mask over the full model that removes the channels ``kept`` leaves out."""
    modules = dict(model.named_modules())
    sites = layout(model)
    _check_kept(sites, kept, modules)
    entries: dict[str, Tensor] = {}
    for site in sites:
        conv = modules[site.conv]
        inputs = _input_keep(site, kept, modules)
        out = kept[site.conv] if site.prunable else torch.ones(conv.out_channels, dtype=torch.bool)
        entries[f"{site.conv}.weight"] = (out[:, None, None, None] & inputs[None, :, None, None]
                                          ).expand_as(conv.weight).clone()
        if site.prunable:
            entries[f"{site.conv}.bias"] = out.clone()
            entries[f"{site.bn}.weight"] = out.clone()
            entries[f"{site.bn}.bias"] = out.clone()
        if site.norm is not None:
            entries[f"{site.norm}.weight"] = inputs.clone()
            entries[f"{site.norm}.bias"] = inputs.clone()
    return Mask(entries)


def _check_kept(sites: Sequence[ConvSite], kept: Kept, modules: Mapping[str, nn.Module]) -> None:
    for site in sites:
        if not site.prunable:
            continue
        if site.conv not in kept:
            raise LipError(f"no channel choice for conv {site.conv}")
        k = kept[site.conv]
        if k.shape != (modules[site.conv].out_channels,):
            raise LipError(f"channel choice for {site.conv} has {k.numel()} entries, the conv "
                           f"has {modules[site.conv].out_channels} channels")
        if not bool(k.any()):
            raise LipError(f"conv {site.conv} would keep no channel; every layer keeps one")


def channel_sparsity(kept: Kept) -> float:
    """Fraction of the prunable convs' output channels removed (counted)."""
    total = sum(k.numel() for k in kept.values())
    return 1 - sum(int(k.sum()) for k in kept.values()) / total


def channel_scores(model: nn.Module, score: str = "l1") -> dict[str, Tensor]:
    """Importance of each output channel: its filter's L1 or L2 norm, or |gamma| of its BN."""
    if score not in CHANNEL_SCORES:
        raise LipError(f"unknown channel score {score!r}; use {', '.join(CHANNEL_SCORES)}")
    modules = dict(model.named_modules())
    out = {}
    for site in layout(model):
        if not site.prunable:
            continue
        if score == "bn":
            out[site.conv] = modules[site.bn].weight.detach().abs().cpu().double()
        else:
            w = modules[site.conv].weight.detach().flatten(1).cpu().double()
            out[site.conv] = w.abs().sum(1) if score == "l1" else w.pow(2).sum(1).sqrt()
    return out


def prune_channels(model: nn.Module, mask: Mask, fraction: float, *, score: str = "l1",
                   layerwise: bool = False) -> Mask:
    """One channel-IMP round: remove ``round(fraction * kept)`` of the kept channels.

    Globally, ranked by the score divided by its layer's mean over kept channels (so layers of
    any scale compete), or, with ``layerwise``, the same fraction of each layer's channels.
    Every layer keeps at least one channel; ties go to the earlier channel (stable order).
    """
    if not 0 < fraction < 1:
        raise LipError(f"fraction must be in (0, 1), got {fraction}")
    kept = kept_channels(mask, model)
    scores = channel_scores(model, score)
    new = {name: k.clone() for name, k in kept.items()}
    if layerwise:
        for name, k in kept.items():
            alive = k.nonzero().flatten()
            remove = min(round(fraction * alive.numel()), alive.numel() - 1)
            order = torch.sort(scores[name][alive], stable=True).indices[:remove]
            new[name][alive[order]] = False
        return channel_mask(model, new)
    candidates = []  # (normalised score, layer order, channel) for every kept channel
    for i, (name, k) in enumerate(kept.items()):
        alive = k.nonzero().flatten()
        s = scores[name][alive]
        s = s / s.mean() if float(s.mean()) > 0 else torch.ones_like(s)
        candidates += [(float(v), i, int(c)) for v, c in zip(s, alive, strict=True)]
    remove = round(fraction * len(candidates))
    names = list(kept)
    left = {name: int(k.sum()) for name, k in kept.items()}
    for _, i, c in sorted(candidates):
        if remove == 0:
            break
        if left[names[i]] > 1:
            new[names[i]][c] = False
            left[names[i]] -= 1
            remove -= 1
    return channel_mask(model, new)


def random_channels(kept: Kept, generator: torch.Generator) -> Kept:
    """Random channels with the same count in every layer as ``kept`` (from ``generator``)."""
    out = {}
    for name in sorted(kept):
        k = kept[name]
        chosen = torch.randperm(k.numel(), generator=generator)[: int(k.sum())]
        out[name] = torch.zeros_like(k).index_fill_(0, chosen, True)
    return {name: out[name] for name in kept}


def compact_options(model: nn.Module, kept: Kept) -> dict:
    """Registry options of the narrower hourglass that holds only the kept channels."""
    options = dict(model.spec["options"])
    scales = options["scales"]
    counts = {name: int(k.sum()) for name, k in kept.items()}
    lists: dict[str, list[int]] = {key: [] for key in (
        "channels_down_first", "channels_down", "channels_up_first", "channels_up",
        "channels_skip")}
    for i in range(scales):
        prefix = "body." + "deeper.2." * i
        lists["channels_down_first"].append(counts[f"{prefix}deeper.0.0"])
        lists["channels_down"].append(counts[f"{prefix}deeper.1.0"])
        lists["channels_up_first"].append(counts[f"{prefix}merge.1.0"])
        lists["channels_up"].append(counts[f"{prefix}merge.2.0"])
        lists["channels_skip"].append(counts.get(f"{prefix}skip.0", 0))
    return options | lists


def _index_maps(model: nn.Module, kept: Kept) -> dict[str, tuple[Tensor, ...]]:
    """Parameter or buffer name -> the kept indices along each of its leading dims."""
    modules = dict(model.named_modules())
    maps: dict[str, tuple[Tensor, ...]] = {}
    for site in layout(model):
        conv = modules[site.conv]
        inputs = _input_keep(site, kept, modules).nonzero().flatten()
        out = (kept[site.conv] if site.prunable
               else torch.ones(conv.out_channels, dtype=torch.bool)).nonzero().flatten()
        maps[f"{site.conv}.weight"] = (out, inputs)
        maps[f"{site.conv}.bias"] = (out,)
        for bn, idx in ((site.bn, out), (site.norm, inputs)):
            if bn is not None:
                for part in ("weight", "bias", "running_mean", "running_var"):
                    maps[f"{bn}.{part}"] = (idx,)
    return maps


def compact_state(model: nn.Module, kept: Kept,
                  state: Mapping[str, Tensor] | None = None) -> dict[str, Tensor]:
    """The compact network's state dict cut from a full one (the model's own by default)."""
    state = model.state_dict() if state is None else state
    maps = _index_maps(model, kept)
    out = {}
    for name, t in state.items():
        idx = maps.get(name)
        if idx is None:  # num_batches_tracked
            out[name] = t.clone()
            continue
        cut = t.index_select(0, idx[0])
        if len(idx) > 1:
            cut = cut.index_select(1, idx[1])
        out[name] = cut.contiguous()
    return out


def compact(model: nn.Module, kept: Kept, state: Mapping[str, Tensor] | None = None
            ) -> nn.Module:
    """A narrower dense hourglass holding the kept channels of ``model`` (or of ``state``)."""
    small = create_model(model.spec["name"], **compact_options(model, kept))
    small.load_state_dict(compact_state(model, kept, state))
    return small


@torch.no_grad()
def expand_into(model: nn.Module, small: nn.Module, kept: Kept) -> None:
    """Write a compact network's parameters and buffers back into the full ``model`` at the
    kept positions (the removed ones are left as they are: masked, they stay zero)."""
    maps = _index_maps(model, kept)
    full = model.state_dict()
    for name, t in small.state_dict().items():
        idx = maps.get(name)
        target = full[name]
        if idx is None:
            target.copy_(t)
        elif len(idx) == 1:
            target.index_copy_(0, idx[0], t.to(target.dtype))
        else:
            rows = target.index_select(0, idx[0])
            rows.index_copy_(1, idx[1], t.to(target.dtype))
            target.index_copy_(0, idx[0], rows)


def compact_ticket(ticket: Ticket) -> Ticket:
    """A channel ticket as a narrower dense network: the compact model's spec and rewind
    weights, a dense mask, the same z; ``parent`` and ``channels`` (the kept indices per conv)
    record where it was cut from, so its sparsity is still counted against the full network."""
    full = ticket.build()
    kept = kept_channels(ticket.mask, full)
    small = create_model(full.spec["name"], **compact_options(full, kept))
    meta = {**ticket.meta, "model": small.spec, "structure": "channels",
            "parent": ticket.model_spec, "channel_sparsity": channel_sparsity(kept),
            "channels": {name: k.nonzero().flatten().tolist() for name, k in kept.items()}}
    return Ticket(Mask.ones(small), compact_state(full, kept, ticket.rewind_weights),
                  ticket.z, meta)


def channel_summary(model: nn.Module, mask: Mask, z: Tensor) -> dict:
    """Counted channel sparsity, channels kept per conv, and FLOPs of one step of the
    compact network on ``z``."""
    kept = kept_channels(mask, model)
    small = compact(model, kept)
    return {"channel_sparsity": channel_sparsity(kept),
            "channels": {name: int(k.sum()) for name, k in kept.items()},
            "flops": step_flops(small, z)}

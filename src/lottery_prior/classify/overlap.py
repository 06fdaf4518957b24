"""How much two masks agree: IoU of their kept weights, per layer and global, beside the IoU
two independent random masks with the same per-layer kept counts would have.

Chance, exactly: if one mask keeps ``a`` and the other ``b`` of a layer's ``n`` weights, each
uniformly at random and independently, the number kept by both, ``X``, is hypergeometric
(population ``n``, ``a`` successes, ``b`` draws), and the layer's IoU is ``X / (a + b - X)``.
:func:`chance_iou` returns its exact mean and standard deviation from the hypergeometric
probabilities: ``E[IoU] = sum_x P(X = x) x / (a + b - x)`` (not the ratio of expectations
``ab/n / (a + b - ab/n)``, which is only close). The global IoU of two such masks is
``S / (A + B - S)`` with ``S`` the sum of the layers' independent hypergeometric counts and
``A``, ``B`` the total kept: :func:`chance_global_iou` convolves the layers' distributions of
``X`` (probabilities below 1e-30 at the tails dropped; the mean is exact to ~1e-12).

Masks of two different networks are compared on the layers they share (same name and shape).
The convs that read the input differ in their input channels (3 image channels in the
classifier, 32 z channels in the prior): they are left out by default, or compared on the
shared part (the prior's first 3 input channels) with ``input_layers="shared"``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from scipy.stats import hypergeom
from torch import Tensor

from lottery_prior.errors import LipError

INPUT_LAYER_MODES = ("omit", "shared")
TAIL = 1e-30


def iou(a: Tensor, b: Tensor) -> float:
    """|a ∩ b| / |a ∪ b| of two boolean masks of one shape (1.0 when both keep nothing)."""
    if a.shape != b.shape:
        raise LipError(f"masks of shapes {tuple(a.shape)} and {tuple(b.shape)} cannot overlap")
    a, b = a.bool(), b.bool()
    union = int((a | b).sum())
    return int((a & b).sum()) / union if union else 1.0


def intersection_pmf(n: int, a: int, b: int) -> tuple[int, np.ndarray]:
    """The distribution of the number of weights kept by both of two independent uniformly
    random masks keeping ``a`` and ``b`` of ``n``: (smallest value, probabilities)."""
    for name, v in (("a", a), ("b", b)):
        if not 0 <= v <= n:
            raise LipError(f"kept count {name}={v} is not in [0, {n}]")
    lo, hi = max(0, a + b - n), min(a, b)
    x = np.arange(lo, hi + 1)
    pmf = hypergeom.pmf(x, n, a, b) if n else np.ones(1)
    keep = np.flatnonzero(pmf > TAIL)
    if len(keep) == 0:  # cannot happen for a proper pmf; keep the mode
        keep = np.array([int(np.argmax(pmf))])
    first, last = keep[0], keep[-1]
    pmf = pmf[first: last + 1]
    return lo + int(first), pmf / pmf.sum()


def _iou_moments(lo: int, pmf: np.ndarray, a: int, b: int) -> tuple[float, float]:
    x = lo + np.arange(len(pmf), dtype=np.float64)
    union = a + b - x
    with np.errstate(invalid="ignore", divide="ignore"):
        value = np.where(union > 0, x / np.where(union > 0, union, 1), 1.0)
    mean = float(np.dot(pmf, value))
    var = float(np.dot(pmf, (value - mean) ** 2))
    return mean, math.sqrt(max(var, 0.0))


def chance_iou(n: int, a: int, b: int) -> tuple[float, float]:
    """Exact mean and standard deviation of the IoU of two independent uniformly random masks
    keeping ``a`` and ``b`` of the same ``n`` weights."""
    lo, pmf = intersection_pmf(n, a, b)
    return _iou_moments(lo, pmf, a, b)


def chance_global_iou(layers: list[tuple[int, int, int]]) -> tuple[float, float]:
    """Exact mean and standard deviation of the global IoU of two masks drawn independently
    and uniformly at random within each layer, with the given ``(n, a, b)`` per layer."""
    lo, pmf = 0, np.ones(1)
    for n, a, b in layers:
        l_lo, l_pmf = intersection_pmf(n, a, b)
        lo, pmf = lo + l_lo, np.convolve(pmf, l_pmf)
        keep = np.flatnonzero(pmf > TAIL)
        pmf, lo = pmf[keep[0]: keep[-1] + 1], lo + int(keep[0])
    pmf = pmf / pmf.sum()
    a_total = sum(a for _, a, _ in layers)
    b_total = sum(b for _, _, b in layers)
    return _iou_moments(lo, pmf, a_total, b_total)


def shared_layers(first: Mapping[str, Tensor], second: Mapping[str, Tensor],
                  input_layers: str = "omit") -> tuple[dict[str, tuple[Tensor, Tensor]], dict]:
    """The pairs of masks to compare (name -> (first, second)) and what was left out and why.

    Layers of one name and shape are compared whole. Layers whose shapes differ only in their
    input channels (the convs reading the image or z) are left out (``omit``) or compared on
    the channels both have (``shared``: the first ``min(c1, c2)`` input channels). Any other
    difference (width, scales) is an error: the masks are of different networks.
    """
    if input_layers not in INPUT_LAYER_MODES:
        raise LipError(f"input layers must be {' or '.join(INPUT_LAYER_MODES)}, "
                       f"got {input_layers!r}")
    pairs: dict[str, tuple[Tensor, Tensor]] = {}
    left_out: dict[str, str] = {}
    for name in first:
        if first[name].dim() < 2:
            left_out[name] = "not a weight (a channel entry)"
            continue
        if name not in second:
            left_out[name] = "only in the first mask"
            continue
        a, b = first[name], second[name]
        if a.shape == b.shape:
            pairs[name] = (a, b)
        elif a.dim() == b.dim() == 4 and a.shape[0] == b.shape[0] and a.shape[2:] == b.shape[2:]:
            if input_layers == "omit":
                left_out[name] = (f"input channels differ ({a.shape[1]} vs {b.shape[1]}): "
                                  "left out")
            else:
                c = min(a.shape[1], b.shape[1])
                pairs[name] = (a[:, :c], b[:, :c])
                left_out[name] = f"compared on its first {c} input channels only"
        else:
            raise LipError(f"layer {name} is {tuple(a.shape)} in one mask and {tuple(b.shape)} "
                           "in the other: the networks differ (give both the same width, "
                           "scales and skip channels)")
    for name in second:
        if name not in first and second[name].dim() >= 2:
            left_out[name] = "only in the second mask"
    if not pairs:
        raise LipError("the two masks share no layer to compare")
    return pairs, left_out


def same_init_layers(first: Mapping[str, Tensor], second: Mapping[str, Tensor],
                     names: list[str]) -> list[str]:
    """The layers among ``names`` whose two weight tensors (e.g. the tickets' theta0) are
    identical: a classifier and a prior built with the same seed share the init of every
    conv built before the first one that reads the input, so their masks overlap above
    chance from the init alone."""
    return [n for n in names if n in first and n in second
            and first[n].shape == second[n].shape and torch.equal(first[n], second[n])]


def overlap_rows(first: Mapping[str, Tensor], second: Mapping[str, Tensor],
                 input_layers: str = "omit", same_init: Sequence[str] | None = None
                 ) -> list[dict]:
    """One row per shared layer and a last ``global`` row: weights, kept by each, kept by
    both, IoU, and the exact chance IoU (mean and std) of independent random masks with the
    same per-layer kept counts; ``iou / chance`` says how many times chance the overlap is.
    With ``same_init`` (layer names), a column says which layers started from the same
    weights."""
    pairs, _ = shared_layers(first, second, input_layers)
    rows, layers = [], []
    both_total = union_total = 0
    for name, (a, b) in pairs.items():
        n, ka, kb = a.numel(), int(a.sum()), int(b.sum())
        both = int((a.bool() & b.bool()).sum())
        mean, std = chance_iou(n, ka, kb)
        rows.append(_row(name, n, ka, kb, both, mean, std))
        if same_init is not None:
            rows[-1]["same_theta0"] = "yes" if name in same_init else "no"
        layers.append((n, ka, kb))
        both_total += both
        union_total += ka + kb - both
    mean, std = chance_global_iou(layers)
    n = sum(n for n, _, _ in layers)
    rows.append(_row("global", n, sum(a for _, a, _ in layers), sum(b for _, _, b in layers),
                     both_total, mean, std))
    if same_init is not None:
        rows[-1]["same_theta0"] = f"{sum(r['same_theta0'] == 'yes' for r in rows[:-1])} layers"
    return rows


def _row(layer: str, n: int, ka: int, kb: int, both: int, mean: float, std: float) -> dict:
    union = ka + kb - both
    value = both / union if union else 1.0
    return {"layer": layer, "weights": n, "density_first": round(ka / n, 4),
            "density_second": round(kb / n, 4), "kept_both": both, "iou": round(value, 4),
            "chance_iou": round(mean, 4), "chance_iou_std": round(std, 4),
            "iou_over_chance": round(value / mean, 3) if mean > 0 else None}

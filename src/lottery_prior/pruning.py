"""Pruning strategies: each returns a NEW :class:`Mask` and never modifies the model.

Every strategy works on the names held by the given mask (any model, any set of weights) and
counts exactly: a mask "of sparsity s" over ``total`` weights removes ``round(s * total)`` of
them (per layer for the layer-wise variants). Entries a mask already prunes stay pruned. Ties
between equal scores are broken deterministically (stable sort: the earlier entry, by sorted
parameter name then row-major order, is kept), so the mask's key order never matters.

* :func:`magnitude_prune`: one IMP round, removing a fraction of the kept weights by |w|.
* :func:`random_mask`: uniform random pruning, global or with given per-layer ratios.
* :func:`prune_at_init`: one-shot pruning at θ₀ by magnitude, SNIP, GraSP, SynFlow or random.
* :func:`keep_highest`: the mask of any scores (e.g. learned mask logits) at a sparsity;
  :func:`erk_counts` and :func:`keep_counts`: the same with per-layer budgets.

Score conventions (higher = more important = kept), except GraSP, whose score is the paper's
``S = -θ ⊙ Hg`` where the HIGHEST scores are removed (:func:`prune_at_init` keeps the lowest).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lottery_prior.errors import LipError
from lottery_prior.masks import Mask

PRUNING_METHODS = ("magnitude", "snip", "grasp", "synflow", "random")

LossFn = Callable[[nn.Module], Tensor]
Scores = dict[str, Tensor]


def dip_loss_fn(z: Tensor, operator: nn.Module, observation: Tensor, *,
                input_noise: float = 0.0, generator: torch.Generator | None = None) -> LossFn:
    """The DIP data term ``mse(A(G(z + η)), y)``: the batch SNIP and GraSP score on.

    By default η = 0 (the fixed code ``z``: no randomness at all). With ``input_noise`` σ > 0,
    each call draws η ~ N(0, σ²) from ``generator`` (required: a CPU generator of its own
    stream, e.g. ``seeding.generator(seed, "snip-batch")``; torch's global generator is never
    used). The closure moves ``z``, ``y`` and the operator to the device of the model.
    """
    if not (input_noise >= 0 and input_noise < float("inf")):
        raise LipError(f"input_noise must be >= 0, got {input_noise}")
    if input_noise > 0 and generator is None:
        raise LipError("a noisy pruning batch needs a seeded generator")

    def loss(model: nn.Module) -> Tensor:
        device = next(model.parameters()).device
        code = z
        if input_noise > 0:
            code = z + input_noise * torch.randn(z.shape, generator=generator).to(z.dtype)
        out = model(code.to(device))
        return F.mse_loss(operator.to(device)(out), observation.to(device))

    return loss


def magnitude_prune(model: nn.Module, mask: Mask, fraction: float, *,
                    layerwise: bool = False) -> Mask:
    """Remove ``round(fraction * kept)`` of the kept weights with the smallest |w|.

    One global threshold over all of the mask's layers (the paper's IMP), or, with
    ``layerwise``, the same fraction of each layer's kept weights.
    """
    _check_open("fraction", fraction)
    mask.check(model)
    scores = score_magnitude(model, mask)
    if not layerwise:
        return _keep_top(scores, mask, mask.kept - round(fraction * mask.kept))
    return _per_layer(scores, mask, {n: fraction * int(m.sum()) for n, m in mask.items()})


def random_mask(template: Mask, sparsity: float, generator: torch.Generator, *,
                layer_sparsity: Mapping[str, float] | None = None) -> Mask:
    """Uniformly random pruning of the template's kept weights, drawn from ``generator`` (CPU).

    Removes ``round(sparsity * total)`` weights globally or, with ``layer_sparsity`` (name ->
    sparsity for every layer, e.g. a ticket's ``.layer_sparsity()``), ``round(s_n * numel_n)``
    in each layer; ``sparsity`` is then only checked, the per-layer ratios decide.
    """
    _check_open("sparsity", sparsity)
    if not isinstance(generator, torch.Generator):
        raise LipError("random pruning needs a seeded generator (e.g. seeding.generator(seed, "
                       "\"baseline-mask\")), never torch's global one")
    scores = {n: torch.rand(template[n].shape, generator=generator, dtype=torch.float64)
              for n in sorted(template)}
    if layer_sparsity is None:
        return _keep_top(scores, template, _keep_count(template, sparsity))
    if set(layer_sparsity) != set(template):
        raise LipError("layer_sparsity must give one sparsity for every layer of the mask")
    for s in layer_sparsity.values():
        if not 0 <= s <= 1:
            raise LipError(f"a layer sparsity must be in [0, 1], got {s}")
    return _per_layer(scores, template,
                      {n: layer_sparsity[n] * m.numel() + int(m.sum()) - m.numel()
                       for n, m in template.items()})


def score_magnitude(model: nn.Module, names: Iterable[str]) -> Scores:
    """|w|."""
    return {n: p.detach().abs() for n, p in _params(model, names).items()}


def score_snip(model: nn.Module, names: Iterable[str], loss_fn: LossFn) -> Scores:
    """SNIP connection sensitivity |w ⊙ ∂L/∂w| (Lee et al. 2019), in train mode as DIP fits."""
    net = _scratch(model).train()
    params = _params(net, names)
    with torch.enable_grad():
        grads = torch.autograd.grad(loss_fn(net), list(params.values()), materialize_grads=True)
    return {n: (p.detach() * g).abs() for (n, p), g in zip(params.items(), grads, strict=True)}


def score_grasp(model: nn.Module, names: Iterable[str], loss_fn: LossFn) -> Scores:
    """GraSP ``S = -θ ⊙ Hg`` (Wang et al. 2020), in train mode; the HIGHEST S are removed.

    ``g = ∂L/∂θ``; ``Hg`` is the gradient of ``g.detach() · g`` (a Hessian-gradient product).
    Removing high S is what preserves (or increases) the gradient norm after pruning.
    """
    net = _scratch(model).train()
    params = _params(net, names)
    weights = list(params.values())
    with torch.enable_grad():
        grads = torch.autograd.grad(loss_fn(net), weights, create_graph=True,
                                    materialize_grads=True)
        gtg = sum((g.detach() * g).sum() for g in grads)
        hg = torch.autograd.grad(gtg, weights, materialize_grads=True)
    return {n: -(p.detach() * h) for (n, p), h in zip(params.items(), hg, strict=True)}


def score_synflow(model: nn.Module, names: Iterable[str], input_shape: Sequence[int], *,
                  mask: Mask | None = None) -> Scores:
    """SynFlow ``|θ ⊙ ∂R/∂θ|`` (Tanaka et al. 2020), one round, data-free.

    ``R`` is the sum of the output of the linearised network (see :func:`_synflow_net`) at an
    all-ones input of ``input_shape`` (e.g. ``z.shape``), with ``mask`` applied if given.
    """
    net = _synflow_net(model)
    if mask is not None:
        mask.apply_(net)
    return _synflow_scores(net, names, input_shape)


def prune_at_init(
    model: nn.Module,
    template: Mask,
    sparsity: float,
    method: str,
    *,
    loss_fn: LossFn | None = None,
    input_shape: Sequence[int] | None = None,
    generator: torch.Generator | None = None,
    iterations: int = 100,
) -> Mask:
    """One-shot pruning of ``template``'s weights to exactly ``sparsity``, scored at θ₀.

    Keeps the highest scores (the lowest for GraSP). ``loss_fn`` is needed by snip and grasp
    (see :func:`dip_loss_fn`), ``input_shape`` by synflow (re-scored with the current mask over
    ``iterations`` rounds, keeping ``round(total * density^(k/iterations))`` at round k),
    ``generator`` by random. SynFlow applies the template to its copy; the other scores are
    taken on the model as it is. Scoring runs on a copy, so the model's weights, buffers,
    gradients and modes are unchanged.
    """
    _check_open("sparsity", sparsity)
    if method not in PRUNING_METHODS:
        raise LipError(f"unknown pruning method {method!r}; choose one of "
                       f"{', '.join(PRUNING_METHODS)}")
    template.check(model)
    keep = _keep_count(template, sparsity)
    if method == "random":
        if generator is None:
            raise LipError("random pruning needs a seeded generator")
        return random_mask(template, sparsity, generator)
    if method == "synflow":
        if input_shape is None:
            raise LipError("synflow pruning needs the network's input shape")
        if iterations < 1:
            raise LipError(f"synflow iterations must be >= 1, got {iterations}")
        net, mask = _synflow_net(model), template
        for k in range(1, iterations + 1):
            target = round(template.total * (keep / template.total) ** (k / iterations))
            mask.apply_(net)
            scores = _synflow_scores(net, mask, input_shape)
            mask = _keep_top(scores, mask, min(mask.kept, max(keep, target)))
        return mask
    if method == "magnitude":
        return _keep_top(score_magnitude(model, template), template, keep)
    if loss_fn is None:
        raise LipError(f"{method} pruning needs a loss function (see dip_loss_fn)")
    if method == "snip":
        return _keep_top(score_snip(model, template, loss_fn), template, keep)
    scores = score_grasp(model, template, loss_fn)
    return _keep_top({n: -s for n, s in scores.items()}, template, keep)


def keep_highest(scores: Mapping[str, Tensor], template: Mask, sparsity: float) -> Mask:
    """The mask keeping the highest-scoring of ``template``'s weights: exactly
    ``total - round(sparsity * total)`` of them (ties: the earlier entry)."""
    _check_open("sparsity", sparsity)
    return _keep_top(scores, template, _keep_count(template, sparsity))


def erk_counts(template: Mask, sparsity: float) -> dict[str, int]:
    """Weights each layer keeps under the Erdős–Rényi-kernel allocation (Evci et al., "Rigging
    the Lottery", 2020): density proportional to ``sum(shape) / prod(shape)``, so big convs are
    pruned hardest, layers that would exceed density 1 kept whole, and the counts summing to
    exactly ``total - round(sparsity * total)`` (remainders to the largest fractions)."""
    keep = _keep_count(template, sparsity)
    raw = {n: sum(m.shape) / m.numel() for n, m in template.items()}
    dense: set[str] = set()
    while True:
        budget = keep - sum(template[n].numel() for n in dense)
        free = [n for n in template if n not in dense]
        scale = budget / sum(raw[n] * template[n].numel() for n in free)
        over = [n for n in free if scale * raw[n] > 1]
        if not over:
            break
        dense |= set(over)
    exact = {n: template[n].numel() if n in dense else scale * raw[n] * template[n].numel()
             for n in template}
    counts = {n: int(v) for n, v in exact.items()}
    by_fraction = sorted(template, key=lambda n: exact[n] - counts[n], reverse=True)
    for n in by_fraction[:keep - sum(counts.values())]:
        counts[n] += 1
    return counts


def keep_counts(scores: Mapping[str, Tensor], template: Mask, counts: Mapping[str, int]) -> Mask:
    """In each layer alone, the ``counts[name]`` highest-scoring of ``template``'s weights."""
    return _per_layer(scores, template, {n: int(m.sum()) - counts[n] for n, m in template.items()})


def _check_open(name: str, value: float) -> None:
    if not 0 < value < 1:
        raise LipError(f"{name} must be strictly between 0 and 1, got {value}")


def _keep_count(template: Mask, sparsity: float) -> int:
    """Weights to keep for ``sparsity`` over all of the template's weights (exact count)."""
    keep = template.total - round(sparsity * template.total)
    if keep > template.kept:
        raise LipError(f"the mask is already sparser ({template.sparsity:.4f}) than {sparsity}")
    return keep


def _params(model: nn.Module, names: Iterable[str]) -> dict[str, nn.Parameter]:
    params, names = dict(model.named_parameters()), list(names)
    missing = [n for n in names if n not in params]
    if missing:
        raise LipError(f"{missing[0]!r} is not a parameter of this model")
    return {n: params[n] for n in names}


def _scratch(model: nn.Module) -> nn.Module:
    """A copy to score on (so the model's weights, buffers and modes are never touched)."""
    net = copy.deepcopy(model)
    net.requires_grad_(True)
    return net


def _synflow_net(model: nn.Module) -> nn.Module:
    """The SynFlow network: a float64 copy in eval mode with |θ| (parameters and BN buffers).

    As the authors do, BN stays (eval mode: with init statistics it is a positive affine map).
    Sigmoid and Tanh modules become identities: on the all-positive signal they would saturate
    and zero every score, so R is the sum of the pre-activation output (the DIP nets' logits).
    """
    net = _scratch(model).double().eval()
    with torch.no_grad():
        for t in [*net.parameters(), *net.buffers()]:
            t.abs_()
    for module in list(net.modules()):
        for child_name, child in module.named_children():
            if isinstance(child, (nn.Sigmoid, nn.Tanh)):
                setattr(module, child_name, nn.Identity())
    return net


def _synflow_scores(net: nn.Module, names: Iterable[str], input_shape: Sequence[int]) -> Scores:
    params = _params(net, names)
    device = next(net.parameters()).device
    with torch.enable_grad():
        flow = net(torch.ones(tuple(input_shape), dtype=torch.float64, device=device)).sum()
        grads = torch.autograd.grad(flow, list(params.values()), materialize_grads=True)
    return {n: (p.detach() * g).abs() for (n, p), g in zip(params.items(), grads, strict=True)}


def _keep_top(scores: Mapping[str, Tensor], mask: Mask, keep: int) -> Mask:
    """Keep the ``keep`` highest-scoring entries among those ``mask`` keeps (exact count)."""
    names = sorted(mask)  # a canonical order: a mask loaded from file has its names sorted
    if not names:
        return Mask({})
    device = scores[names[0]].device
    flat = torch.cat([scores[n].detach().to(device, torch.float64).flatten() for n in names])
    if torch.isnan(flat).any():
        raise LipError("pruning scores contain NaN")
    kept = torch.cat([mask[n].to(device).flatten() for n in names]).nonzero().squeeze(1)
    if not 0 <= keep <= kept.numel():
        raise LipError(f"cannot keep {keep} of {kept.numel()} weights")
    order = torch.sort(flat[kept], descending=True, stable=True).indices[:keep]
    new = torch.zeros_like(flat, dtype=torch.bool)
    new[kept[order]] = True
    parts = dict(zip(names, new.split([mask[n].numel() for n in names]), strict=True))
    return Mask({n: parts[n].view(m.shape).to(m.device) for n, m in mask.items()})


def _per_layer(scores: Mapping[str, Tensor], mask: Mask, removed: Mapping[str, float]) -> Mask:
    """Apply :func:`_keep_top` to each layer alone, removing ``round(removed[n])`` weights."""
    out: dict[str, Tensor] = {}
    for n, m in mask.items():
        out.update(_keep_top({n: scores[n]}, Mask({n: m}), int(m.sum()) - round(removed[n])))
    return Mask(out)

"""N Deep Image Prior fits of one architecture, run as one batched computation (torch.func).

The N networks' parameters are stacked (``stack_module_state``) and run with
``vmap(functional_call)`` on a stateless copy of the architecture whose BatchNorm layers keep no
running statistics (they only use batch statistics, as the networks always run in training
mode, so outputs are unchanged). Each output goes through its own operator; the loss is the sum
of the N per-fit MSEs, so each network's gradient is that of its own fit, and one Adam over the
stacked tensors is exactly N separate Adams (Adam is elementwise). Every fit sees the same input
noise, drawn as :func:`lottery_prior.fit.fit` draws it, so a batched fit equals N separate fits
with the same seed up to float summation order (vmap runs the N convolutions as one grouped
convolution).

Differences from :func:`~lottery_prior.fit.fit`: no stopping rules (a callback returning True
ends all N fits); BatchNorm running statistics of the models are not updated (never used);
fast mode is bf16 autocast without channels_last; each result's ``seconds`` is the wall time of
the whole batched fit.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, replace_all_batch_norm_modules_, stack_module_state, vmap

from lottery_prior.errors import LipError
from lottery_prior.fit import (
    Callback,
    FitConfig,
    FitResult,
    StepInfo,
    _perturbed,
    _scores,
    _Tracker,
    perturbation_generator,
    run_mode,
    select_device,
)
from lottery_prior.masks import Mask
from lottery_prior.metrics import psnr
from lottery_prior.precision import device_name


def _per_fit(name: str, values: Sequence | None, n: int) -> list:
    """``values`` as a list of ``n`` (``n`` Nones when absent); LipError on another length."""
    if values is None:
        return [None] * n
    if len(values) != n:
        raise LipError(f"{name} has {len(values)} entries for {n} models; give one per model")
    return list(values)


def _check_architecture(models: Sequence[nn.Module], zs: Sequence[Tensor]) -> None:
    """LipError unless all models share the architecture (layers and shapes) and z shape."""
    if len({id(m) for m in models}) != len(models):
        raise LipError("a model appears twice; give distinct models (copy.deepcopy one)")

    def layout(model: nn.Module) -> tuple[str, dict]:
        return repr(model), {n: p.shape for n, p in model.named_parameters()}

    for i, model in enumerate(models[1:], start=1):
        if layout(model) != layout(models[0]):
            raise LipError(f"model {i} has another architecture than model 0; batch equal ones")
    for i, z in enumerate(zs):
        if z.shape != zs[0].shape:
            raise LipError(
                f"z {i} has shape {tuple(z.shape)}, z 0 has {tuple(zs[0].shape)}; "
                "batched fits need inputs of one shape"
            )


def _stack_masks(masks: list[Mask | None], params: dict[str, Tensor]) -> dict[str, Tensor]:
    """One stacked boolean mask per masked parameter name (all-True rows for unmasked fits)."""
    names = list(dict.fromkeys(n for mask in masks if mask is not None for n in mask))
    stacked = {}
    for name in names:
        rows = [
            mask[name].to(params[name].device)
            if mask is not None and name in mask
            else torch.ones(params[name].shape[1:], dtype=torch.bool, device=params[name].device)
            for mask in masks
        ]
        stacked[name] = torch.stack(rows)
    return stacked


def fit_batched(
    models: Sequence[nn.Module],
    zs: Sequence[Tensor],
    operators: Sequence[nn.Module],
    observations: Sequence[Tensor],
    *,
    cleans: Sequence[Tensor | None] | None = None,
    config: FitConfig | None = None,
    masks: Sequence[Mask | None] | None = None,
    callbacks: Sequence[Sequence[Callback]] = (),
    metric: Callable[[Tensor, Tensor], float] = psnr,
) -> list[FitResult]:
    """Fit ``models[i]`` (in place) so that ``operators[i](models[i](zs[i]))`` matches
    ``observations[i]``, for all i at once; returns one :class:`FitResult` per model.

    The models must share one architecture and the codes one shape. ``cleans``, ``masks`` and
    ``callbacks`` are optional, else one entry per model (None / an empty list for none).
    ``callbacks[i]`` see the StepInfo of fit i, whose ``model`` holds the current weights;
    one returning True ends all N fits. The trained weights end up in the models.
    """
    n = len(models)
    if n == 0:
        raise LipError("fit_batched needs at least one model")
    zs, operators = _per_fit("zs", zs, n), _per_fit("operators", operators, n)
    observations = _per_fit("observations", observations, n)
    cleans, masks = _per_fit("cleans", cleans, n), _per_fit("masks", masks, n)
    hooks = _per_fit("callbacks", callbacks, n) if callbacks else [[]] * n
    _check_architecture(models, zs)
    for mask, model in zip(masks, models, strict=True):
        if mask is not None:
            mask.check(model)
    cfg = config or FitConfig()
    device = select_device(cfg.device)
    run = run_mode(cfg, device, models[0].to(device), zs[0].to(device))
    if run.scaled:
        raise LipError("a batched fit runs fp32 or bf16; fp16 needs loss scaling per network")
    for model, op in zip(models, operators, strict=True):
        model.to(device).train()
        op.to(device)
    params, buffers = stack_module_state(list(models))
    base = replace_all_batch_norm_modules_(copy.deepcopy(models[0]).to("meta"))
    buffers = {name: buffers[name] for name, _ in base.named_buffers()}
    stacked_masks = _stack_masks(masks, params)

    def forward(p: dict[str, Tensor], b: dict[str, Tensor], x: Tensor) -> Tensor:
        return functional_call(base, (p, b), (x,))

    batched_forward = vmap(forward)
    z = torch.stack([z.to(device) for z in zs])
    ys = [y.to(device) for y in observations]
    truths = [c.to(device) if c is not None else None for c in cleans]
    with torch.no_grad():
        for name, m in stacked_masks.items():
            params[name].mul_(m)
    optimizer = torch.optim.Adam(params.values(), lr=cfg.lr)
    noise_gen = perturbation_generator(cfg.seed, device)
    eta = torch.empty(zs[0].shape, dtype=zs[0].dtype, device=device)  # as fit() draws it

    trackers = [
        _Tracker(truth, metric, name=f"fit {i} of the batch") for i, truth in enumerate(truths)
    ]
    averaged: Tensor | None = None
    start = time.perf_counter()
    step = 0
    for i, model in enumerate(models):  # the models view their slice while the fit runs
        for name, p in model.named_parameters():
            p.data = params[name].detach()[i]
    try:
        for step in range(1, cfg.steps + 1):
            optimizer.zero_grad(set_to_none=True)
            net_input = _perturbed(z, eta, noise_gen, cfg.input_noise)
            with run.autocast(device):
                out = batched_forward(params, buffers, net_input)
            out = out.float()
            per_fit = zip(operators, out, ys, strict=True)
            losses = torch.stack([F.mse_loss(op(o), y) for op, o, y in per_fit])
            losses.sum().backward()
            with torch.no_grad():
                for name, m in stacked_masks.items():
                    params[name].grad.mul_(m)
                optimizer.step()
                for name, m in stacked_masks.items():
                    params[name].mul_(m)

            out = out.detach()
            averaged = out if averaged is None else averaged * cfg.ema + out * (1 - cfg.ema)
            halt = False
            for i, loss_value in enumerate(losses.tolist()):
                p, p_avg = trackers[i].record(step, loss_value, out[i], averaged[i])
                info = StepInfo(step, cfg.steps, loss_value, p, p_avg, models[i], out[i])
                halt = any([bool(cb(info)) for cb in hooks[i]]) or halt
            if halt:
                break
        seconds = time.perf_counter() - start
    finally:  # end the views: each model keeps its own copy of its weights
        for model in models:
            for p in model.parameters():
                p.data = p.data.clone()
    assert averaged is not None
    results = []
    for i, (clean, tracker) in enumerate(zip(cleans, trackers, strict=True)):
        result = FitResult(
            output=out[i].to("cpu", copy=True), averaged=averaged[i].to("cpu", copy=True),
            steps=step, seconds=seconds, history=tracker.history, precision=run.name,
            device=device_name(device),
        )
        result.scores = _scores(result, clean, metric, tracker.peak, tracker.peak_avg, None)
        results.append(result)
    return results

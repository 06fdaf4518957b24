"""What a fit step costs: FLOPs counted from the network's convs (its time on the clock is
:func:`lottery_prior.precision.step_ms`)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def step_flops(model: nn.Module, z: Tensor) -> int:
    """FLOPs of one training step: the convs' multiply-adds (x2) of a forward pass, x3 for
    forward plus backward (the usual estimate; BN, activations and upsampling are left out)."""
    total = 0

    def count(module: nn.Module, _inputs: tuple, output: Tensor) -> None:
        nonlocal total
        k = module.kernel_size[0] * module.kernel_size[1]
        total += 2 * output.numel() * module.in_channels // module.groups * k

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            model(z.to(next(model.parameters()).device))
    finally:
        for h in hooks:
            h.remove()
    return 3 * total

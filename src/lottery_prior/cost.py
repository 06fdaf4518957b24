"""What a fit step costs: FLOPs counted from the network's convs, and time on the clock."""

from __future__ import annotations

import copy
import statistics
import time

import torch
import torch.nn.functional as F
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


def step_ms(model: nn.Module, z: Tensor, *, fast: bool = False, steps: int = 10,
            warmup: int = 3) -> float:
    """Median milliseconds of one Adam step of a DIP fit (fp32, or ``fast``: bf16 autocast and
    channels_last), measured on a copy of ``model`` on its device."""
    net = copy.deepcopy(model).train()
    fmt = torch.channels_last if fast else torch.contiguous_format
    device = next(net.parameters()).device
    net.to(memory_format=fmt)
    x = z.to(device=device, memory_format=fmt)
    with torch.no_grad():
        target = torch.full_like(net(x).float(), 0.5)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=fast):
            out = net(x)
        F.mse_loss(out.float(), target).backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)

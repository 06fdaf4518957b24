"""Deep Decoder (Heckel & Hand 2019): 1x1 convs, upsampling, ReLU and BN, no skips."""

from __future__ import annotations

import math

import torch
from torch import nn

from lottery_prior.models.registry import PriorNet, check_int, register_model, upsample_layer


class DeepDecoder(PriorNet):
    """``layers`` blocks of bias-free 1x1 conv (k->k), x2 upsampling (not the last), ReLU, BN."""

    def __init__(self, k: int, layers: int, out_channels: int, upsample: str) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        for i in range(layers):
            blocks.append(nn.Conv2d(k, k, 1, bias=False))
            if i < layers - 1:
                blocks.append(upsample_layer(upsample))
            blocks += [nn.ReLU(), nn.BatchNorm2d(k)]
        self.body = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.Conv2d(k, out_channels, 1, bias=False), nn.Sigmoid())
        self.input_depth, self.input_stride = k, 2 ** (layers - 1)
        self.size_multiple = self.min_size = self.input_stride
        self.depth, self.depth_unit = layers, "layers"

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(z))


@register_model("decoder", fit_defaults={"input_noise": 0.0})  # its authors perturb nothing
def decoder(
    k: int = 64, layers: int = 6, out_channels: int = 3, upsample: str = "bilinear"
) -> DeepDecoder:
    """The Deep Decoder of width ``k``; z is k x H/2**(layers-1) x W/2**(layers-1)."""
    return DeepDecoder(
        check_int("k", k),
        check_int("layers", layers),
        check_int("out_channels", out_channels),
        upsample,
    )


def decoder_param_count(k: int, out_channels: int = 3, layers: int = 6) -> int:
    """Parameters of a Deep Decoder: k*k per conv, 2k per BN, k*out_channels at the output."""
    return layers * (k * k + 2 * k) + out_channels * k


def decoder_width_for_params(target: int, out_channels: int = 3, layers: int = 6) -> int:
    """The width k whose Deep Decoder parameter count is closest to ``target`` (ties: smaller)."""
    check_int("target", target)
    check_int("out_channels", out_channels)
    check_int("layers", layers)
    b = 2 * layers + out_channels
    root = (-b + math.sqrt(b * b + 4 * layers * target)) / (2 * layers)
    candidates = {max(1, math.floor(root)), max(1, math.ceil(root))}
    return min(
        candidates,
        key=lambda k: (abs(decoder_param_count(k, out_channels, layers) - target), k),
    )

"""Deep Image Prior "skip" hourglass (Ulyanov et al. 2018, reference ``models/skip.py``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from lottery_prior.errors import LipError
from lottery_prior.models.registry import PriorNet, check_int, register_model, upsample_layer


class ReflectConv2d(nn.Conv2d):
    """``nn.Conv2d`` with ``padding_mode="reflect"`` whose padding keeps the input's dtype.

    Under CPU autocast ``reflection_pad2d`` runs in float32, so a bf16 activation would be cast
    up for the pad and back down for the conv (and again in the backward pass): ~10% of a
    fast-mode step. Padding is exact in any dtype, so it runs with autocast off.
    """

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor,
                      bias: torch.Tensor | None) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            x = F.pad(x, self._reversed_padding_repeated_twice, mode=self.padding_mode)
        return F.conv2d(x, weight, bias, self.stride, 0, self.dilation, self.groups)


def _conv(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    """Conv with bias and reflection padding that keeps the size (halves it at stride 2)."""
    return ReflectConv2d(cin, cout, kernel, stride, padding=kernel // 2, padding_mode="reflect")


def _conv_bn_act(cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(_conv(cin, cout, kernel, stride), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2))


def _center_crop(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    top, left = (x.shape[2] - height) // 2, (x.shape[3] - width) // 2
    return x[:, :, top : top + height, left : left + width]


class _Scale(nn.Module):
    """One level: [skip branch ‖ down, deeper levels, upsample], then BN and two convs.

    ``down_first``/``up_first`` are the widths of the first conv of the down pair (strided)
    and of the up pair (3x3); ``down``/``up`` those of the second, which the level passes on.
    """

    def __init__(
        self, in_depth: int, widths: tuple[int, int, int, int, int], deeper: _Scale | None,
        upsample: str,
    ) -> None:
        super().__init__()
        down_first, down, up_first, up, skip = widths
        self.out_channels = up
        self.skip = _conv_bn_act(in_depth, skip, 1) if skip else None
        branch = [_conv_bn_act(in_depth, down_first, 3, stride=2),
                  _conv_bn_act(down_first, down, 3)]
        if deeper is not None:
            branch.append(deeper)
        branch.append(upsample_layer(upsample))
        self.deeper = nn.Sequential(*branch)
        merged = skip + (deeper.out_channels if deeper is not None else down)
        self.merge = nn.Sequential(
            nn.BatchNorm2d(merged), _conv_bn_act(merged, up_first, 3),
            _conv_bn_act(up_first, up, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.deeper(x)
        if self.skip is not None:
            s = self.skip(x)
            height, width = min(s.shape[2], y.shape[2]), min(s.shape[3], y.shape[3])
            y = torch.cat([_center_crop(s, height, width), _center_crop(y, height, width)], 1)
        return self.merge(y)


class SkipHourglass(PriorNet):
    """The DIP encoder-decoder with skip connections; one entry per scale in each list
    (``channels_*_first``: the first conv of each down and up pair, default as the second)."""

    def __init__(
        self,
        input_depth: int,
        out_channels: int,
        channels_down: Sequence[int],
        channels_up: Sequence[int],
        channels_skip: Sequence[int],
        upsample: str,
        channels_down_first: Sequence[int] | None = None,
        channels_up_first: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        scales = len(channels_down)
        down_first = channels_down_first or channels_down
        up_first = channels_up_first or channels_up
        level: _Scale | None = None
        for i in reversed(range(scales)):
            in_depth = input_depth if i == 0 else channels_down[i - 1]
            widths = (down_first[i], channels_down[i], up_first[i], channels_up[i],
                      channels_skip[i])
            level = _Scale(in_depth, widths, level, upsample)
        self.body = level
        self.head = nn.Sequential(_conv(channels_up[0], out_channels, 1), nn.Sigmoid())
        self.input_depth, self.input_stride = input_depth, 1
        self.size_multiple, self.min_size = 2**scales, 2 ** (scales + 1)
        self.depth, self.depth_unit = scales, "scales"

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(z))


def _per_scale(
    name: str, values: Sequence[int] | None, default: int, scales: int, minimum: int = 1
) -> list[int]:
    if values is None:
        return [default] * scales
    if isinstance(values, str) or not isinstance(values, Sequence) or len(values) != scales:
        raise LipError(
            f"{name} must be a list of {scales} integers (one per scale), got {values!r}"
        )
    return [check_int(f"{name}[{i}]", v, minimum) for i, v in enumerate(values)]


@register_model("dip")
def dip(
    input_depth: int = 32,
    out_channels: int = 3,
    width: int = 128,
    skip: int = 4,
    scales: int = 5,
    upsample: str = "bilinear",
    channels_down: Sequence[int] | None = None,
    channels_up: Sequence[int] | None = None,
    channels_skip: Sequence[int] | None = None,
    channels_down_first: Sequence[int] | None = None,
    channels_up_first: Sequence[int] | None = None,
) -> SkipHourglass:
    """The DIP paper network; per-scale ``channels_*`` lists override ``width``/``skip``.

    ``channels_down_first``/``channels_up_first`` set the first conv of each scale's down and
    up pair apart from the second (default: the same), e.g. for a compacted channel ticket.
    """
    scales = check_int("scales", scales)
    width = check_int("width", width)
    skip = check_int("skip", skip, minimum=0)
    return SkipHourglass(
        check_int("input_depth", input_depth),
        check_int("out_channels", out_channels),
        _per_scale("channels_down", channels_down, width, scales),
        _per_scale("channels_up", channels_up, width, scales),
        _per_scale("channels_skip", channels_skip, skip, scales, minimum=0),
        upsample,
        None if channels_down_first is None
        else _per_scale("channels_down_first", channels_down_first, width, scales),
        None if channels_up_first is None
        else _per_scale("channels_up_first", channels_up_first, width, scales),
    )

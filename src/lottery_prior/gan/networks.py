"""Progressive GAN generator and discriminator (Karras et al. 2018), pytorch_GAN_zoo layout.

Parameter names match the public pytorch_GAN_zoo checkpoints, so their state dicts load as
they are: generator ``formatLayer.module.*``, ``groupScale0.0.module.*``,
``scaleLayers.{i}.{j}.module.*``, ``toRGBLayers.{i}.module.*``; discriminator
``fromRGBLayers.{i}.module.*``, ``scaleLayers.{i}.{j}.module.*``, ``groupScaleZero.{0,1}.module.*``,
``decisionLayer.module.*``. Every layer is a plain ``nn.Conv2d``/``nn.Linear`` inside an
:class:`EqualizedLayer`, so masks over Conv2d weights prune them like any other model.

Resolution 4 * 2**k for k added scales; ``alpha`` blends the last scale with the upsampled
output of the one below it (alpha = 1: only the lower scale, 0: only the new one), as in the zoo.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lottery_prior.errors import LipError
from lottery_prior.models.registry import check_int

OUTPUT_ACTIVATIONS = ("none", "tanh")


class EqualizedLayer(nn.Module):
    """Equalized learning rate: weights stored N(0, 1), the layer's output (bias included, as
    in the zoo) multiplied at run time by He's constant sqrt(2 / fan_in). Biases start at 0."""

    def __init__(self, module: nn.Conv2d | nn.Linear, equalized: bool = True) -> None:
        super().__init__()
        self.module = module
        nn.init.zeros_(module.bias)
        self.scale = 1.0
        if equalized:
            nn.init.normal_(module.weight)
            self.scale = math.sqrt(2.0 / module.weight[0].numel())

    def forward(self, x: Tensor) -> Tensor:
        return self.module(x) * self.scale


def _conv(c_in: int, c_out: int, k: int, equalized: bool) -> EqualizedLayer:
    return EqualizedLayer(nn.Conv2d(c_in, c_out, k, padding=k // 2), equalized)


def _linear(c_in: int, c_out: int, equalized: bool) -> EqualizedLayer:
    return EqualizedLayer(nn.Linear(c_in, c_out), equalized)


def pixel_norm(x: Tensor, eps: float = 1e-8) -> Tensor:
    """Normalize each pixel's feature vector (dim 1) to unit mean square."""
    return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + eps)


def minibatch_stddev(x: Tensor, group_size: int = 4) -> Tensor:
    """Append one channel: the mean over (C,H,W) of the per-feature std within each group.

    Groups as in the zoo: at most ``group_size`` samples (the whole batch if it does not
    divide), sample i in group i mod G; unbiased variance, sqrt(var + 1e-8). Each sample gets
    its own group's value (the zoo's broadcast mixes groups when a batch holds several).
    """
    n, c, h, w = x.shape
    g = min(n, group_size)
    if n % g:
        g = n
    if g == 1:
        return torch.cat([x, x.new_zeros(n, 1, h, w)], dim=1)
    y = x.view(g, n // g, c, h, w)
    std = torch.sqrt(y.var(dim=0, unbiased=True) + 1e-8).mean(dim=(1, 2, 3))  # (n // g,)
    stat = std.repeat(g).view(n, 1, 1, 1).expand(n, 1, h, w)
    return torch.cat([x, stat], dim=1)


def _upsample(x: Tensor) -> Tensor:
    return F.interpolate(x, scale_factor=2, mode="nearest")


class _Progressive(nn.Module):
    """Shared state: scale depths, leaky ReLU, blending factor alpha."""

    scaleLayers: nn.ModuleList

    def __init__(self, depth0: int, leaky: float, equalized: bool) -> None:
        super().__init__()
        self.depths = [check_int("depth of scale 0", depth0)]
        self.leaky = float(leaky)
        self.equalized = equalized
        self._alpha = 0.0

    @property
    def resolution(self) -> int:
        """Side of the images at the current top scale."""
        return 4 * 2 ** (len(self.depths) - 1)

    @property
    def alpha(self) -> float:
        return self._alpha

    @alpha.setter
    def alpha(self, value: float) -> None:
        if not 0.0 <= value <= 1.0:
            raise LipError(f"alpha must be in [0, 1], got {value}")
        if value > 0 and len(self.depths) == 1:
            raise LipError("alpha > 0 needs at least one scale above 4x4 to blend with")
        self._alpha = float(value)

    def _act(self, x: Tensor) -> Tensor:
        return F.leaky_relu(x, self.leaky)


class Generator(_Progressive):
    """Latent z (N, latent_dim) -> images (N, out_channels, R, R), roughly in [-1, 1].

    ``depths[0]`` is the width at 4x4 (the zoo's depthScale0), ``depths[1:]`` those of the
    added scales (depthOtherScales). The zoo's celebaHQ 256x256 model: latent 512, depths
    (512, 512, 512, 512, 256, 128, 64).
    """

    def __init__(
        self,
        latent_dim: int = 512,
        depths: Sequence[int] = (512,),
        out_channels: int = 3,
        *,
        leaky: float = 0.2,
        normalize: bool = True,
        equalized: bool = True,
        output_activation: str = "none",
    ) -> None:
        if not depths:
            raise LipError("depths must list at least the 4x4 width")
        if output_activation not in OUTPUT_ACTIVATIONS:
            raise LipError(f"output_activation must be one of {OUTPUT_ACTIVATIONS}, "
                           f"got {output_activation!r}")
        super().__init__(depths[0], leaky, equalized)
        self.latent_dim = check_int("latent_dim", latent_dim)
        self.out_channels = check_int("out_channels", out_channels)
        self.normalize = normalize
        self.output_activation = output_activation
        self.formatLayer = _linear(latent_dim, 16 * depths[0], equalized)
        self.groupScale0 = nn.ModuleList([_conv(depths[0], depths[0], 3, equalized)])
        self.scaleLayers = nn.ModuleList()
        self.toRGBLayers = nn.ModuleList([_conv(depths[0], out_channels, 1, equalized)])
        for d in depths[1:]:
            self.add_scale(d)

    def add_scale(self, depth: int) -> None:
        """Grow by one scale (x2 resolution): two 3x3 convs of width ``depth`` and a toRGB."""
        last = self.depths[-1]
        self.depths.append(check_int("scale depth", depth))
        self.scaleLayers.append(nn.ModuleList([_conv(last, depth, 3, self.equalized),
                                               _conv(depth, depth, 3, self.equalized)]))
        self.toRGBLayers.append(_conv(depth, self.out_channels, 1, self.equalized))

    def _norm(self, x: Tensor) -> Tensor:
        return pixel_norm(x) if self.normalize else x

    def forward(self, z: Tensor) -> Tensor:
        if z.dim() not in (2, 4) or z[0].numel() != self.latent_dim:
            raise LipError(f"latent codes must be (N, {self.latent_dim}), got {tuple(z.shape)}")
        x = self._norm(z).flatten(1)
        x = self._act(self.formatLayer(x)).view(z.shape[0], -1, 4, 4)
        x = self._norm(x)
        for conv in self.groupScale0:
            x = self._norm(self._act(conv(x)))
        low = None
        last = len(self.scaleLayers) - 1
        for i, group in enumerate(self.scaleLayers):
            if self.alpha > 0 and i == last:
                low = _upsample(self.toRGBLayers[-2](x))
            x = _upsample(x)
            for conv in group:
                x = self._norm(self._act(conv(x)))
        x = self.toRGBLayers[-1](x)
        if low is not None:
            x = self.alpha * low + (1.0 - self.alpha) * x
        return torch.tanh(x) if self.output_activation == "tanh" else x


class Discriminator(_Progressive):
    """Images (N, in_channels, R, R) -> critic scores (N, decision_size).

    Mirrors :class:`Generator`: ``depths[i]`` is the width at scale i. With ``minibatch_std``
    the 4x4 block sees one extra channel (:func:`minibatch_stddev`). While ``alpha`` > 0 the
    input is also pooled and fed through the previous scale's fromRGB and blended after the top
    scale (the zoo skips this blend when only one scale has been added; here it always runs).
    """

    def __init__(
        self,
        depths: Sequence[int] = (512,),
        in_channels: int = 3,
        *,
        leaky: float = 0.2,
        minibatch_std: bool = True,
        decision_size: int = 1,
        equalized: bool = True,
    ) -> None:
        if not depths:
            raise LipError("depths must list at least the 4x4 width")
        super().__init__(depths[0], leaky, equalized)
        d0 = depths[0]
        self.in_channels = check_int("in_channels", in_channels)
        self.minibatch_std = minibatch_std
        self.decisionLayer = _linear(d0, decision_size, equalized)
        self.fromRGBLayers = nn.ModuleList([_conv(in_channels, d0, 1, equalized)])
        self.groupScaleZero = nn.ModuleList([
            _conv(d0 + int(minibatch_std), d0, 3, equalized),
            _linear(16 * d0, d0, equalized),
        ])
        self.scaleLayers = nn.ModuleList()
        for d in depths[1:]:
            self.add_scale(d)

    def add_scale(self, depth: int) -> None:
        """Grow by one scale: fromRGB to ``depth``, 3x3 convs depth -> depth -> previous width."""
        last = self.depths[-1]
        self.depths.append(check_int("scale depth", depth))
        self.scaleLayers.append(nn.ModuleList([_conv(depth, depth, 3, self.equalized),
                                               _conv(depth, last, 3, self.equalized)]))
        self.fromRGBLayers.append(_conv(self.in_channels, depth, 1, self.equalized))

    def forward(self, x: Tensor) -> Tensor:
        r = self.resolution
        if x.dim() != 4 or x.shape[1:] != (self.in_channels, r, r):
            raise LipError(f"the discriminator takes (N, {self.in_channels}, {r}, {r}) images, "
                           f"got {tuple(x.shape)}")
        low = None
        if self.alpha > 0:
            low = self._act(self.fromRGBLayers[-2](F.avg_pool2d(x, 2)))
        x = self._act(self.fromRGBLayers[-1](x))
        for k, group in enumerate(reversed(self.scaleLayers)):
            for conv in group:
                x = self._act(conv(x))
            x = F.avg_pool2d(x, 2)
            if k == 0 and low is not None:
                x = self.alpha * low + (1.0 - self.alpha) * x
        if self.minibatch_std:
            x = minibatch_stddev(x)
        x = self._act(self.groupScaleZero[0](x))
        x = self._act(self.groupScaleZero[1](x.flatten(1)))
        return self.decisionLayer(x)

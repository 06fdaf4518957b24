"""The paper's hourglass as a classifier: the image in place of z, its last feature map
(the one that feeds the prior's output conv) average-pooled into a linear layer.

The conv layers keep the image prior's parameter names (``body.*``), so a classification mask
and an image-prior mask line up layer by layer. Two convs differ in shape: the ones that read
the input (``body.skip.0.weight`` and ``body.deeper.0.0.weight`` of the first scale) take 3
image channels here and 32 z channels in the prior (see :func:`input_layers`). The prior's
output conv (``head.0.weight``) has no counterpart: its place is taken by ``fc``, a linear
layer that is not pruned (IMP prunes conv weights, as for the image prior).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from lottery_prior.errors import LipError
from lottery_prior.models import create_model
from lottery_prior.seeding import seeded_global

IMAGE_CHANNELS = 3
# model options the classifier sets itself: it reads an RGB image and has no output conv
FIXED_OPTIONS = ("input_depth", "out_channels")


class HourglassClassifier(nn.Module):
    """``fc(mean_{h,w}(body(x)))``: plain logits (cross-entropy applies the softmax)."""

    def __init__(self, body: nn.Module, features: int, classes: int) -> None:
        super().__init__()
        self.body = body
        self.fc = nn.Linear(features, classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.body(x).mean(dim=(2, 3)))


def create_classifier(classes: int, options: dict[str, Any] | None = None,
                      seed: int | None = None) -> HourglassClassifier:
    """The registry's ``dip`` hourglass (``options``: width, scales, skip, ...) with 3 input
    channels and a ``classes``-way linear head; initialised from the seed's ``init`` stream
    when ``seed`` is given (torch's global random state is left as it was).

    ``model.spec`` holds what rebuilds it: ``{"name": "dip", "options": ..., "classes": ...}``.
    """
    options = dict(options or {})
    fixed = [k for k in FIXED_OPTIONS if k in options]
    if fixed:
        raise LipError(f"the classifier sets {fixed[0]} itself; drop that model option")
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 2:
        raise LipError(f"a classifier needs at least 2 classes, got {classes!r}")

    def build() -> tuple[HourglassClassifier, nn.Module]:
        prior = create_model("dip", input_depth=IMAGE_CHANNELS, **options)
        return HourglassClassifier(prior.body, prior.head[0].in_channels, classes), prior

    if seed is None:
        model, prior = build()
    else:
        with seeded_global(seed, "init"):
            model, prior = build()
    model.min_size, model.size_multiple = prior.min_size, prior.size_multiple
    spec_options = {k: v for k, v in prior.spec["options"].items() if k not in FIXED_OPTIONS}
    model.spec = {"name": "dip", "options": spec_options, "classes": classes}
    return model


def check_image_size(model: nn.Module, size: int) -> None:
    """Refuse an image side the hourglass cannot take (too small, or not a multiple)."""
    multiple, smallest = model.size_multiple, model.min_size
    scales = model.spec["options"].get("scales")
    if size % multiple or size < smallest:
        raise LipError(f"images of {size}x{size} do not fit a hourglass with {scales} scales "
                       f"(it needs a multiple of {multiple}, at least {smallest}); use "
                       f"--size or --model-opt scales=N")


def input_layers(names: list[str], shapes_a: dict[str, torch.Size],
                 shapes_b: dict[str, torch.Size]) -> list[str]:
    """The layers whose shapes differ only in their input channels (the convs that read the
    image in one net and z in the other)."""
    out = []
    for n in names:
        a, b = shapes_a[n], shapes_b[n]
        if len(a) == len(b) == 4 and a[0] == b[0] and a[2:] == b[2:] and a[1] != b[1]:
            out.append(n)
    return out

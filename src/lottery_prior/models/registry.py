"""Model registry (timm-style) and the interface every registered prior network shares."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import nn

from lottery_prior.errors import LipError

UPSAMPLE_MODES = ("bilinear", "nearest")

F = TypeVar("F", bound=Callable[..., "PriorNet"])
_REGISTRY: dict[str, Callable[..., PriorNet]] = {}
_FIT_DEFAULTS: dict[str, dict[str, Any]] = {}


class PriorNet(nn.Module):
    """A generator mapping a fixed random code ``z`` to an image.

    Subclasses set ``input_depth`` (channels of z), ``input_stride`` (how much smaller z is
    than the image), ``size_multiple`` (image sides must be multiples of it), ``min_size``
    (smallest side), and ``depth``/``depth_unit`` (e.g. 5 "scales") for error messages.
    """

    input_depth: int
    input_stride: int
    size_multiple: int
    min_size: int
    depth: int
    depth_unit: str
    spec: dict[str, Any]

    def check_size(self, height: int, width: int) -> None:
        """Raise LipError unless a ``height`` x ``width`` image fits this network."""
        unit = f"{self.depth} {self.depth_unit}"
        if height % self.size_multiple or width % self.size_multiple:
            raise LipError(
                f"image {height}x{width} is not a multiple of {self.size_multiple} "
                f"(the network has {unit}); crop it or use fewer {self.depth_unit}"
            )
        if min(height, width) < self.min_size:
            raise LipError(
                f"image {height}x{width} is too small for a network with {unit}; "
                f"it needs at least {self.min_size}x{self.min_size}, or use fewer {self.depth_unit}"
            )

    def make_input(
        self, height: int, width: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Draw the fixed code z ~ U[0, 1) * 0.1 on CPU for a ``height`` x ``width`` image."""
        self.check_size(height, width)
        shape = (1, self.input_depth, height // self.input_stride, width // self.input_stride)
        return torch.rand(shape, generator=generator) * 0.1


def check_int(name: str, value: object, minimum: int = 1) -> int:
    """Return ``value`` if it is an int >= ``minimum``, else raise LipError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise LipError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def upsample_layer(mode: str) -> nn.Upsample:
    """A x2 upsampling layer; ``mode`` is "bilinear" or "nearest"."""
    if mode not in UPSAMPLE_MODES:
        raise LipError(f"upsample must be one of {', '.join(UPSAMPLE_MODES)}, got {mode!r}")
    return nn.Upsample(
        scale_factor=2, mode=mode, align_corners=False if mode == "bilinear" else None
    )


def register_model(name: str, fit_defaults: dict[str, Any] | None = None) -> Callable[[F], F]:
    """Decorator registering a model factory under ``name``; ``fit_defaults`` are the fit
    settings (``FitConfig`` fields) this model is fitted with unless the user sets them."""

    def decorate(factory: F) -> F:
        if name in _REGISTRY:
            raise LipError(f"model {name!r} is already registered; pick another name")
        _REGISTRY[name] = factory
        _FIT_DEFAULTS[name] = dict(fit_defaults or {})
        return factory

    return decorate


def model_fit_defaults(name: str) -> dict[str, Any]:
    """The fit settings model ``name`` is fitted with by default (e.g. no input noise)."""
    if name not in _REGISTRY:
        raise LipError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    return dict(_FIT_DEFAULTS[name])


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    return sorted(_REGISTRY)


def create_model(name: str, **options: Any) -> PriorNet:
    """Build model ``name``; ``model.spec`` records the resolved options for rebuilding."""
    if name not in _REGISTRY:
        raise LipError(f"unknown model {name!r}; known models: {', '.join(list_models())}")
    factory = _REGISTRY[name]
    signature = inspect.signature(factory)
    try:
        bound = signature.bind(**options)
    except TypeError as err:
        raise LipError(
            f"bad options for model {name!r} ({err}); valid options: "
            f"{', '.join(signature.parameters)}"
        ) from None
    bound.apply_defaults()
    model = factory(**bound.arguments)
    model.spec = {"name": name, "options": json.loads(json.dumps(bound.arguments))}
    return model

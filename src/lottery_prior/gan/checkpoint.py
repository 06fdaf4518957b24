"""Reading and writing progressive-GAN checkpoints in the pytorch_GAN_zoo format.

A checkpoint is a ``torch.save``'d dict: ``config`` (the zoo's pickled
``models.utils.config.BaseConfig`` object, or a plain dict), ``netG``, ``netD`` and ``avgG``
(the averaged generator) state dicts. Loading never runs code from the file: it goes through
``torch.load(weights_only=True)``, which only rebuilds tensors and plain containers; the zoo's
config class is mapped to a harmless stand-in and any other class is refused.
The architecture is read from the weights' shapes; the config supplies what shapes cannot
tell (leak, pixel norm, equalized lr, alpha, output activation) and is checked against them.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from lottery_prior.errors import LipError
from lottery_prior.files import atomic_path
from lottery_prior.gan.networks import Discriminator, Generator

# Where the zoo's config class has lived (repository root, package, or models/ as root).
ZOO_CONFIG_CLASSES = (
    "models.utils.config.BaseConfig",
    "pytorch_GAN_zoo.models.utils.config.BaseConfig",
    "utils.config.BaseConfig",
)
GENERATOR_KEYS = ("avgG", "netG")


class ZooConfig:
    """Stand-in for the zoo's config class: an attribute bag, nothing else."""


def _plain_config(config: Any) -> dict[str, Any]:
    if config is None:
        return {}
    if isinstance(config, ZooConfig):
        return dict(vars(config))
    if isinstance(config, Mapping):
        return dict(config)
    raise LipError(f"checkpoint config is a {type(config).__name__}, expected a dict or the "
                   "zoo's BaseConfig")


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise LipError(f"no such checkpoint file: {path}")
    try:
        with torch.serialization.safe_globals([(ZooConfig, n) for n in ZOO_CONFIG_CLASSES]):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL (\S+)", str(err))
        if found:
            raise LipError(
                f"refusing to load {path}: it asks to import {found.group(1)}, which a GAN "
                "checkpoint never needs (only tensors and the zoo's config are allowed)"
            ) from None
        raise LipError(f"{path} is not a torch checkpoint ({_reason(err)})") from None
    except Exception as err:  # noqa: BLE001 - any failure to unpickle: not a checkpoint
        # (a text file can even end in a KeyError inside torch's restricted unpickler)
        raise LipError(f"{path} is not a torch checkpoint ({_reason(err)})") from None
    if not isinstance(state, dict) or not any(k in state for k in GENERATOR_KEYS):
        raise LipError(f"{path} is not a progressive-GAN checkpoint: expected a dict with "
                       "'avgG' or 'netG' (and 'config', 'netD'), as pytorch_GAN_zoo saves")
    return state


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def _reason(err: BaseException) -> str:
    """Why torch.load failed, in a few words (its weights-only message buries the cause)."""
    text = str(err)
    found = re.search(r"WeightsUnpickler error:\s*(.+)", text)
    if found:
        return f"unreadable pickle: {found.group(1).strip()}"
    if isinstance(err, KeyError | IndexError | EOFError):
        return f"unreadable pickle: {type(err).__name__} {text}".strip()
    return _first_line(err)


def check_finite(state: Mapping[str, Any], key: str, path: str | Path) -> None:
    """Refuse a state dict with a NaN or infinite weight: one line naming the first one."""
    for name, value in state.items():
        if isinstance(value, Tensor) and value.is_floating_point() \
                and not bool(torch.isfinite(value).all()):
            raise LipError(f"checkpoint {path} has non-finite weights in {key}.{name}")


def _zoo_keys(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Accept the zoo's legacy keys without ``.module.`` (``formatLayer.weight``)."""
    out = {}
    for key, value in state.items():
        head, _, leaf = key.rpartition(".")
        if ".module." not in key and leaf in ("weight", "bias") and head:
            key = f"{head}.module.{leaf}"
        out[key] = value
    return out


def _shape(state: Mapping[str, Tensor], key: str, what: str) -> tuple[int, ...]:
    if key not in state or not isinstance(state[key], Tensor):
        raise LipError(f"{what} state dict lacks {key!r}: not a progressive GAN of the zoo layout")
    return tuple(state[key].shape)


def _scales(state: Mapping[str, Tensor]) -> int:
    n = 0
    while f"scaleLayers.{n}.0.module.weight" in state:
        n += 1
    return n


def generator_from_state(state: Mapping[str, Tensor], config: Mapping[str, Any]) -> Generator:
    """A :class:`Generator` shaped like ``state`` (zoo keys), with its weights loaded."""
    state = _zoo_keys(state)
    out_features, latent = _shape(state, "formatLayer.module.weight", "generator")
    d0 = _shape(state, "groupScale0.0.module.weight", "generator")[0]
    depths = [d0] + [_shape(state, f"scaleLayers.{i}.0.module.weight", "generator")[0]
                     for i in range(_scales(state))]
    out_channels = _shape(state, "toRGBLayers.0.module.weight", "generator")[0]
    if out_features != 16 * d0:
        raise LipError(f"generator formatLayer gives {out_features} features, 16 x {d0} expected")
    _check_config(config, depths, "generator")
    loss = config.get("lossCriterion", "WGANGP")
    net = Generator(
        latent, depths, out_channels,
        leaky=float(config.get("leakyReluLeak", 0.2)),
        normalize=bool(config.get("perChannelNormalization", True)),
        equalized=bool(config.get("equalizedlR", True)),
        output_activation="tanh" if loss in ("MSE", "DCGAN") else "none",
    )
    _load(net, state, "generator")
    if len(depths) > 1:
        net.alpha = float(config.get("alpha", 0.0))
    return net


def discriminator_from_state(state: Mapping[str, Tensor],
                             config: Mapping[str, Any]) -> Discriminator:
    """A :class:`Discriminator` shaped like ``state`` (zoo keys), with its weights loaded."""
    state = _zoo_keys(state)
    d0, c_in = _shape(state, "groupScaleZero.0.module.weight", "discriminator")[:2]
    depths = [d0] + [_shape(state, f"scaleLayers.{i}.0.module.weight", "discriminator")[0]
                     for i in range(_scales(state))]
    in_channels = _shape(state, "fromRGBLayers.0.module.weight", "discriminator")[1]
    decision = _shape(state, "decisionLayer.module.weight", "discriminator")[0]
    _check_config(config, depths, "discriminator")
    net = Discriminator(
        depths, in_channels,
        leaky=float(config.get("leakyReluLeak", 0.2)),
        minibatch_std=c_in == d0 + 1,
        decision_size=decision,
        equalized=bool(config.get("equalizedlR", True)),
    )
    _load(net, state, "discriminator")
    if len(depths) > 1:
        net.alpha = float(config.get("alpha", 0.0))
    return net


def _check_config(config: Mapping[str, Any], depths: list[int], what: str) -> None:
    said = [config.get("depthScale0", depths[0]), *config.get("depthOtherScales", depths[1:])]
    if said != depths:
        raise LipError(f"checkpoint config gives scale depths {said} but the {what} weights "
                       f"have {depths}; the file is inconsistent")


def _load(net: torch.nn.Module, state: Mapping[str, Tensor], what: str) -> None:
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise LipError(f"{what} weights do not fit a progressive GAN: "
                       f"{_first_line(err)}") from None


def load_checkpoint(
    path: str | Path, *, generator: str = "avgG"
) -> tuple[Generator, Discriminator | None, dict[str, Any]]:
    """Load a zoo-format checkpoint: (generator, discriminator or None, config as a dict).

    ``generator`` picks the averaged generator ``"avgG"`` (default, falling back to ``"netG"``
    when a file has none) or the trained one ``"netG"``.
    """
    if generator not in GENERATOR_KEYS:
        raise LipError(f"generator must be 'avgG' or 'netG', got {generator!r}")
    path = Path(path)
    state = _read(path)
    config = _plain_config(state.get("config"))
    key = generator if generator in state else "netG"
    if key not in state:
        raise LipError(f"{path} has no {generator!r} generator weights")
    for part in (key, "netD"):
        if isinstance(state.get(part), Mapping):
            check_finite(state[part], part, path)
    try:
        net_g = generator_from_state(state[key], config)
        net_d = discriminator_from_state(state["netD"], config) if "netD" in state else None
    except LipError:
        raise
    except (TypeError, ValueError, AttributeError) as err:
        raise LipError(f"{path} has a malformed config or state dict ({err})") from None
    return net_g, net_d, config


def checkpoint_config(generator: Generator, discriminator: Discriminator | None = None,
                      **extra: Any) -> dict[str, Any]:
    """The zoo's config fields describing these networks, plus ``extra`` (plain values)."""
    config: dict[str, Any] = {
        "latentVectorDim": generator.latent_dim,
        "noiseVectorDim": generator.latent_dim,
        "categoryVectorDim": 0,
        "depthScale0": generator.depths[0],
        "depthOtherScales": list(generator.depths[1:]),
        "dimOutput": generator.out_channels,
        "leakyReluLeak": generator.leaky,
        "perChannelNormalization": generator.normalize,
        "equalizedlR": generator.equalized,
        "initBiasToZero": True,
        "alpha": generator.alpha,
        "lossCriterion": "DCGAN" if generator.output_activation == "tanh" else "WGANGP",
    }
    if discriminator is not None:
        config["miniBatchStdDev"] = discriminator.minibatch_std
    config.update(extra)
    return config


def save_checkpoint(
    path: str | Path,
    generator: Generator,
    discriminator: Discriminator | None = None,
    average: Generator | None = None,
    **extra: Any,
) -> None:
    """Write a zoo-format checkpoint; ``average`` (the EMA generator) defaults to ``generator``.

    ``extra`` (plain values: numbers, strings, lists, dicts) is stored in the config dict.
    """
    state: dict[str, Any] = {
        "config": checkpoint_config(generator, discriminator, **extra),
        "netG": generator.state_dict(),
        "avgG": (average or generator).state_dict(),
    }
    if discriminator is not None:
        state["netD"] = discriminator.state_dict()
    with atomic_path(path) as tmp:
        torch.save(state, tmp)

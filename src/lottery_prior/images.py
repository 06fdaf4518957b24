"""Loading, saving and cropping images and masks; built-in masks.

Images are float32 tensors in [0, 1] shaped (C, H, W) with C = 1 (gray) or 3 (RGB).
Sizes in messages are written HxW.
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError
from torch import Tensor

from lottery_prior.errors import LipError

log = logging.getLogger("lottery_prior")

_BUILTIN = tuple(
    "astronaut camera cat chelsea coffee hubble_deep_field immunohistochemistry moon page "
    "rocket text".split()
)
_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
_RESAMPLE = {"lanczos": Image.Resampling.LANCZOS, "bicubic": Image.Resampling.BICUBIC}
_WORDS = tuple(
    "the deep image prior lottery ticket sparse network winning mask pixel noise restore "
    "prune weights signal ground truth".split()
)


def list_builtin() -> list[str]:
    """Names usable as ``builtin:NAME`` (scikit-image's bundled images, available offline)."""
    return list(_BUILTIN)


def data_root() -> Path | None:
    """The shared test-image folder: ``$LIP_DATA`` if set, else the nearest ``shared/data``
    in the current directory or one of its parents; None if there is none."""
    env = os.environ.get("LIP_DATA")
    if env:
        return Path(env) if Path(env).is_dir() else None
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "shared" / "data").is_dir():
            return folder / "shared" / "data"
    return None


def _resolve_path(spec: str) -> Path:
    """A file path for a plain path or a ``data:REL`` spec (extension optional)."""
    if not spec.startswith("data:"):
        path = Path(spec).expanduser()
        if not path.is_file():
            raise LipError(f"no such image file: {spec}; check the path")
        return path
    root = data_root()
    if root is None:
        where = (
            f"LIP_DATA={os.environ['LIP_DATA']} is not a folder"
            if os.environ.get("LIP_DATA")
            else "no shared/data folder here or above"
        )
        raise LipError(f"cannot resolve {spec}: {where}; set LIP_DATA to the test-image folder")
    rel = root / spec[len("data:") :]
    for path in (rel, *(rel.with_name(rel.name + ext) for ext in _EXTENSIONS)):
        if path.is_file():
            return path
    raise LipError(f"no image {spec} under {root}; see the files there")


def _open(path: Path) -> Image.Image:
    try:
        with Image.open(path) as im:
            im.load()
            return ImageOps.exif_transpose(im)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise LipError(f"cannot read {path} as an image ({e}); give a PNG/JPEG/TIFF/BMP") from e


def _pil_to_tensor(im: Image.Image, name: str) -> Tensor:
    """Pillow image -> (C,H,W) float in [0,1]: gray stays 1 channel, alpha is dropped."""
    if im.mode.startswith("I"):  # 16/32-bit integer gray
        arr = np.asarray(im, dtype=np.float64).clip(0, 65535) / 65535.0
        return torch.from_numpy(arr[None].astype(np.float32))
    if im.mode == "F":
        arr = np.asarray(im, dtype=np.float32).clip(0, 1)
        return torch.from_numpy(arr[None].copy())
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        log.info("%s: dropped the alpha channel", name)
    gray = im.mode in ("1", "L", "LA", "La")
    arr = np.asarray(im.convert("L" if gray else "RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(arr[None] if gray else arr.transpose(2, 0, 1).copy())


def _read(spec: str) -> Tensor:
    if spec.startswith("builtin:"):
        name = spec[len("builtin:") :]
        if name not in _BUILTIN:
            raise LipError(f"unknown builtin image {name!r}; use one of {', '.join(_BUILTIN)}")
        import skimage.data

        arr = np.asarray(getattr(skimage.data, name)(), dtype=np.float32) / 255.0
        return torch.from_numpy(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1).copy())
    return _pil_to_tensor(_open(_resolve_path(spec)), spec)


def center_crop(t: Tensor, h: int, w: int) -> Tensor:
    """The central h x w window of a tensor shaped (..., H, W)."""
    H, W = t.shape[-2:]
    if not (0 < h <= H and 0 < w <= W):
        raise LipError(f"cannot centre-crop {H}x{W} to {h}x{w}; the crop must fit inside")
    top, left = (H - h) // 2, (W - w) // 2
    return t[..., top : top + h, left : left + w]


def resize(t: Tensor, h: int, w: int, *, method: str = "lanczos") -> Tensor:
    """Antialiased Pillow resize ("lanczos" or "bicubic") of (..., H, W) to (..., h, w),
    in float precision per channel, clamped to [0, 1]."""
    if method not in _RESAMPLE or h < 1 or w < 1:
        raise LipError(f"cannot resize to {h}x{w} with {method!r}; use lanczos or bicubic")
    src = t.detach().to("cpu", torch.float32)
    planes = src.reshape(-1, *src.shape[-2:]).numpy()
    out = np.stack(
        [np.asarray(Image.fromarray(p).resize((w, h), _RESAMPLE[method])) for p in planes]
    )
    return torch.from_numpy(out).reshape(*src.shape[:-2], h, w).clamp(0, 1).to(t.device)


def _fit(img: Tensor, name: str, size: int | None, multiple: int) -> Tensor:
    if size is not None:
        if size < 1:
            raise LipError(f"size must be a positive number of pixels, got {size}")
        H, W = img.shape[-2:]
        side = min(H, W)
        if H != W:
            log.info("%s: cropped %dx%d to %dx%d (centre square)", name, H, W, side, side)
            img = center_crop(img, side, side)
        if side != size:
            how = "downscaled" if side > size else "upscaled (image smaller than size)"
            log.info("%s: %s %dx%d to %dx%d", name, how, side, side, size, size)
            img = resize(img, size, size)
    if multiple < 1:
        raise LipError(f"multiple must be >= 1, got {multiple}")
    H, W = img.shape[-2:]
    h, w = H // multiple * multiple, W // multiple * multiple
    if h == 0 or w == 0:
        raise LipError(f"{name} is {H}x{W}, smaller than multiple={multiple}; lower the multiple")
    if (h, w) != (H, W):
        log.info("%s: cropped %dx%d to %dx%d (multiple of %d)", name, H, W, h, w, multiple)
        img = center_crop(img, h, w)
    return img.contiguous()


def load_image(spec: str, *, size: int | None = None, multiple: int = 32) -> Tensor:
    """Load ``spec`` (a file path, ``builtin:NAME`` or ``data:REL``) as (C,H,W) in [0,1].

    ``size`` centre-crops to a square and resizes it to size x size (Lanczos); then H and W
    are centre-cropped down to a multiple of ``multiple`` (1 disables).
    """
    return _fit(_read(spec), spec, size, multiple)


def load_mask(spec: str, shape: tuple[int, int], *, multiple: int = 32,
              size: int | None = None) -> Tensor:
    """Load an 8-bit mask file (255 = observed) as (1,H,W) float 0/1 of the given shape.

    A larger mask is accepted when centre-cropping it to a multiple of ``multiple`` gives
    ``shape`` (the crop ``load_image`` applied to its image). With ``size`` the mask gets the
    same square crop and resize as its image had (``load_image(..., size=size)``).
    """
    if size is not None:
        resized = load_image(spec, size=size, multiple=multiple).mean(0, keepdim=True)
        if tuple(resized.shape[-2:]) != tuple(shape):
            raise LipError(f"mask resized to {resized.shape[-2]}x{resized.shape[-1]} does not "
                           f"match image {shape[0]}x{shape[1]}")
        return (resized >= 0.5).float()
    im = _open(_resolve_path(spec))
    arr = np.asarray(im.convert("L"), dtype=np.uint8)
    mask = torch.from_numpy((arr >= 128).astype(np.float32))[None]
    H, W = mask.shape[-2:]
    h, w = shape
    if (H, W) != (h, w):
        if (H // multiple * multiple, W // multiple * multiple) != (h, w):
            raise LipError(
                f"mask {H}x{W} does not match image {h}x{w}; give a mask of the image's size"
            )
        log.info("%s: cropped %dx%d to %dx%d (multiple of %d)", spec, H, W, h, w, multiple)
        mask = center_crop(mask, h, w).contiguous()
    return mask


def save_image(img: Tensor, path: str | os.PathLike) -> None:
    """Write (C,H,W) or (1,C,H,W), C in {1,3}, values in [0,1], as an 8-bit PNG."""
    t = img.detach().to("cpu", torch.float32)
    if t.dim() == 4 and t.shape[0] == 1:
        t = t[0]
    if t.dim() != 3 or t.shape[0] not in (1, 3):
        raise LipError(
            f"save_image takes (C,H,W) or (1,C,H,W) with C=1 or 3, got {tuple(img.shape)}"
        )
    arr = (torch.nan_to_num(t).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0)).save(
        path, format="PNG"
    )


def text_mask(height: int, width: int, *, seed: int = 0) -> Tensor:
    """A text-overlay mask (1,H,W): 0 where lines of text are drawn, 1 elsewhere (deterministic)."""
    if height < 1 or width < 1:
        raise LipError(f"mask size must be positive, got {height}x{width}")
    rng = random.Random(seed)
    font_px = max(8, round(min(height, width) / 16))
    font = ImageFont.load_default(size=font_px)
    canvas = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(canvas)
    for y in range(-font_px // 3, height, round(font_px * 1.4)):
        words = " ".join(rng.choice(_WORDS) for _ in range(width // font_px + 2))
        draw.text((-rng.randrange(font_px * 3), y), words, fill=0, font=font)
    return torch.from_numpy((np.asarray(canvas) >= 128).astype(np.float32))[None]


def bernoulli_mask(
    height: int, width: int, keep: float, generator: torch.Generator | None = None
) -> Tensor:
    """A random (1,H,W) 0/1 mask keeping each pixel (all channels alike) with probability keep."""
    if not 0 < keep <= 1:
        raise LipError(f"keep must be in (0, 1], got {keep}")
    if height < 1 or width < 1:
        raise LipError(f"mask size must be positive, got {height}x{width}")
    return (torch.rand((1, height, width), generator=generator) < keep).float()

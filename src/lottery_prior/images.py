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

from lottery_prior.checks import check_float
from lottery_prior.errors import LipError
from lottery_prior.files import atomic_path

log = logging.getLogger("lottery_prior")

_BUILTIN = tuple(
    "astronaut camera cat chelsea coffee hubble_deep_field immunohistochemistry moon page "
    "rocket text".split()
)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")  # what an image file ends in
_RESAMPLE = {"lanczos": Image.Resampling.LANCZOS, "bicubic": Image.Resampling.BICUBIC,
             "bilinear": Image.Resampling.BILINEAR}
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
    if not spec[len("data:"):].strip("/."):
        raise LipError(f"{spec!r} names no image; give data:FOLDER/NAME, e.g. data:set5/baby")
    rel = root / spec[len("data:") :]
    for path in (rel, *(rel.with_name(rel.name + ext) for ext in IMAGE_EXTENSIONS)):
        inside_data_folder(path, root, spec)
        if path.is_file():
            return path
    raise LipError(f"no image {spec} under {root}; see the files there")


def inside_data_folder(path: Path, root: Path, spec: str) -> Path:
    """``path`` (a ``data:`` name joined to the data folder ``root``) if it stays inside the
    data folder once resolved (``..`` and symlinks followed), else a one-line LipError."""
    name = spec[len("data:"):] if spec.startswith("data:") else spec
    if Path(name).is_absolute():
        raise LipError(f"{spec}: a data: name is relative to the data folder {root}; give "
                       "e.g. data:set5/baby, or the file's own path without data:")
    try:
        inside = path.resolve().is_relative_to(root.resolve())
    except (OSError, RuntimeError):  # a symlink loop
        inside = False
    if not inside:
        raise LipError(f"{spec} leads outside the data folder {root} (through .. or a "
                       "symlink); give a data: name inside it, or the file's own path")
    return path


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


def read_image(path: str | os.PathLike) -> Tensor:
    """The image file at ``path`` as stored (turned upright by its EXIF orientation), as a
    (C,H,W) float tensor in [0, 1]: 1 channel for gray (8-, 16- or 32-bit, or float), 3 for
    colour; alpha dropped. The one image loader of the library: 16-bit images keep their
    full range (``convert("RGB")`` would clip them to white)."""
    path = Path(path)
    return _pil_to_tensor(_open(path), str(path))


def _read(spec: str) -> Tensor:
    if spec.startswith("builtin:"):
        name = spec[len("builtin:") :]
        if name not in _BUILTIN:
            raise LipError(f"unknown builtin image {name!r}; use one of {', '.join(_BUILTIN)}")
        import skimage.data

        arr = np.asarray(getattr(skimage.data, name)(), dtype=np.float32) / 255.0
        return torch.from_numpy(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1).copy())
    return _pil_to_tensor(_open(_resolve_path(spec)), spec)  # as read_image does


def center_crop(t: Tensor, h: int, w: int) -> Tensor:
    """The central h x w window of a tensor shaped (..., H, W)."""
    H, W = t.shape[-2:]
    if not (0 < h <= H and 0 < w <= W):
        raise LipError(f"cannot centre-crop {H}x{W} to {h}x{w}; the crop must fit inside")
    top, left = (H - h) // 2, (W - w) // 2
    return t[..., top : top + h, left : left + w]


def resize(t: Tensor, h: int, w: int, *, method: str = "lanczos") -> Tensor:
    """Antialiased Pillow resize ("lanczos", "bicubic" or "bilinear") of (..., H, W) to (..., h, w),
    in float precision per channel, clamped to [0, 1]."""
    if method not in _RESAMPLE or h < 1 or w < 1:
        raise LipError(f"cannot resize to {h}x{w} with {method!r}; use lanczos, bicubic or "
                       "bilinear")
    src = t.detach().to("cpu", torch.float32)
    planes = src.reshape(-1, *src.shape[-2:]).numpy()
    out = np.stack(
        [np.asarray(Image.fromarray(p).resize((w, h), _RESAMPLE[method])) for p in planes]
    )
    return torch.from_numpy(out).reshape(*src.shape[:-2], h, w).clamp(0, 1).to(t.device)


# Bytes one pixel of a --size image may cost while loading: 3 float32 channels, times the
# copies made on the way (Pillow planes, the stacked array, the clamped tensor, the
# observation, the batch, the fit's output and its average).
_BYTES_PER_PIXEL = 3 * 4 * 8


def memory_bytes() -> int | None:
    """This machine's memory in bytes (physical pages, or a smaller cgroup v2 limit); None if
    it cannot be told."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None
    if total <= 0:
        return None
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
    except OSError:
        limit = "max"
    return min(total, int(limit)) if limit.isdigit() and int(limit) > 0 else total


def check_size_fits_memory(size: int) -> None:
    """Refuse (LipError) a ``--size`` whose size x size image would not fit in memory, before
    anything of that size is allocated."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise LipError(f"--size must be a whole number of pixels >= 1, got {size!r}")
    need, have = _BYTES_PER_PIXEL * size * size, memory_bytes()
    if have is not None and need > have:
        raise LipError(
            f"--size {size} would need about {need / 2**30:,.0f} GiB to hold a {size}x{size} "
            f"image, more than this machine's {have / 2**30:,.1f} GiB of memory; use a smaller "
            "--size"
        )


def _fit(img: Tensor, name: str, size: int | None, multiple: int) -> Tensor:
    if size is not None:
        if size < 1:
            raise LipError(f"size must be a positive number of pixels, got {size}")
        check_size_fits_memory(size)
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
        raise LipError(
            f"{name} is {H}x{W}, smaller than {multiple} pixels, the size multiple the network "
            f"needs; use --size {multiple} or larger (or a larger image), or a network with "
            "fewer scales (--model-opt scales=N)"
        )
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


def image_size(spec: str) -> tuple[int, int]:
    """The (H, W) of image ``spec`` as stored, before any crop or resize (``load_image`` turns
    it upright first, so an EXIF rotation by 90 degrees swaps H and W here too).

    This is the ``source_hw`` that :func:`load_mask` needs to let a mask follow ``--size``.
    """
    if spec.startswith("builtin:"):
        return tuple(_read(spec).shape[-2:])  # type: ignore[return-value]
    path = _resolve_path(spec)
    try:
        with Image.open(path) as im:
            w, h = im.size
            turned = im.getexif().get(0x0112) in (5, 6, 7, 8)  # EXIF orientation
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise LipError(f"cannot read {path} as an image ({e}); give a PNG/JPEG/TIFF/BMP") from e
    return (w, h) if turned else (h, w)


def load_mask(spec: str, shape: tuple[int, int], *, multiple: int = 32,
              size: int | None = None, source_hw: tuple[int, int] | None = None) -> Tensor:
    """Load an 8-bit mask file (255 = observed) as (1,H,W) float 0/1 of the given shape.

    The mask must have the image's size: either ``shape`` itself, or a larger size whose
    centre crop to a multiple of ``multiple`` is ``shape`` (the crop ``load_image`` applied to
    its image). With ``size`` (the image was loaded with ``load_image(..., size=size)``), a
    mask of the image's original size ``source_hw`` (see :func:`image_size`) gets the same
    square crop and resize as its image. Any other size is a LipError: a mask is never
    stretched to fit an image it was not made for.
    """
    h, w = shape
    im = _open(_resolve_path(spec))
    gray = np.asarray(im.convert("L"), dtype=np.uint8)
    H, W = gray.shape
    source = None if source_hw is None else (int(source_hw[0]), int(source_hw[1]))
    if size is not None and source == (H, W):
        resized = _fit(torch.from_numpy(gray.astype(np.float32) / 255.0)[None], spec, size,
                       multiple)
        if tuple(resized.shape[-2:]) != (h, w):
            raise LipError(
                f"mask {H}x{W} resized like its image by --size {size} gives "
                f"{resized.shape[-2]}x{resized.shape[-1]}, not the image's {h}x{w}"
            )
        return (resized >= 0.5).float()
    mask = torch.from_numpy((gray >= 128).astype(np.float32))[None]
    if (H, W) == (h, w):
        return mask
    if (H // multiple * multiple, W // multiple * multiple) == (h, w):
        log.info("%s: cropped %dx%d to %dx%d (multiple of %d)", spec, H, W, h, w, multiple)
        return center_crop(mask, h, w).contiguous()
    if size is not None and source is not None:
        fix = (f"give a mask of the image's own size ({source[0]}x{source[1]}, resized with "
               f"it) or of {h}x{w}")
        image = f"image {source[0]}x{source[1]} ({h}x{w} after --size {size})"
    elif size is not None:
        fix, image = f"give a mask of {h}x{w}", f"image {h}x{w} (after --size {size})"
    else:
        fix, image = "give a mask of the image's size", f"image {h}x{w}"
    raise LipError(f"mask {H}x{W} does not match {image}; {fix}")


def save_image(img: Tensor, path: str | os.PathLike) -> None:
    """Write (C,H,W) or (1,C,H,W), C in {1,3}, values in [0,1], as an 8-bit PNG (atomically:
    a failed write leaves the old file)."""
    t = img.detach().to("cpu", torch.float32)
    if t.dim() == 4 and t.shape[0] == 1:
        t = t[0]
    if t.dim() != 3 or t.shape[0] not in (1, 3):
        raise LipError(
            f"save_image takes (C,H,W) or (1,C,H,W) with C=1 or 3, got {tuple(img.shape)}"
        )
    arr = (torch.nan_to_num(t).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    with atomic_path(path) as tmp:
        Image.fromarray(arr[0] if arr.shape[0] == 1 else arr.transpose(1, 2, 0)).save(
            tmp, format="PNG"
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
    check_float("keep", keep, 0, 1, low_open=True)
    if height < 1 or width < 1:
        raise LipError(f"mask size must be positive, got {height}x{width}")
    return (torch.rand((1, height, width), generator=generator) < keep).float()

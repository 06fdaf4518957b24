"""Image classification data, offline: scikit-learn's bundled digits (the default), CIFAR-10
from its python batches, or any folder of class sub-folders (ImageFolder layout).

Every data set is held in memory as float32 tensors ``(N, 3, S, S)`` in [0, 1] with int64
labels, split into train and test once and for all: CIFAR-10 and folders with ``train/`` and
``test/`` keep their own split, the others are split by a fixed permutation (its own named
random stream of seed 0, stratified by class), never by ``--seed``.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from lottery_prior.errors import LipError
from lottery_prior.images import center_crop, read_image, resize
from lottery_prior.seeding import numpy_rng

log = logging.getLogger("lottery_prior")

DATASETS = ("auto", "digits", "cifar10", "folder")
CIFAR_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch",)
CIFAR_SUBFOLDER = "cifar-10-batches-py"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")
TEST_FRACTION = 0.2


@dataclass
class Dataset:
    """Train and test images ``(N, 3, S, S)`` in [0, 1] and their labels ``(N,)``."""

    name: str
    classes: list[str]
    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor

    @property
    def size(self) -> int:
        return int(self.train_x.shape[-1])

    def describe(self) -> dict:
        """JSON-ready identity: name, sizes, classes and a hash of the contents."""
        digest = hashlib.sha256()
        for t in (self.train_x, self.train_y, self.test_x, self.test_y):
            digest.update(t.contiguous().numpy().tobytes())
        return {"name": self.name, "classes": self.classes, "size": self.size,
                "train": len(self.train_y), "test": len(self.test_y),
                "sha256": digest.hexdigest()[:16]}


def load_dataset(dataset: str = "auto", data: str | Path | None = None, *, size: int = 32,
                 train_limit: int | None = None, test_limit: int | None = None) -> Dataset:
    """The data set asked for: ``auto`` is digits without ``data``, else CIFAR-10 when the
    folder holds its batches, else a folder of class sub-folders. Images are resized to
    ``size`` x ``size``; ``*_limit`` keep the first N of each split (after the fixed split)."""
    if dataset not in DATASETS:
        raise LipError(f"unknown data set {dataset!r}; choose one of {', '.join(DATASETS)}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 8:
        raise LipError(f"image size must be an integer >= 8, got {size!r}")
    for name, limit in (("train", train_limit), ("test", test_limit)):
        if limit is not None and limit < 1:
            raise LipError(f"--{name}-limit must be >= 1, got {limit}")
    if dataset == "auto":
        dataset = "digits" if data is None else ("cifar10" if _looks_like_cifar(Path(data))
                                                 else "folder")
    if dataset == "digits":
        if data is not None:
            raise LipError("the digits are bundled with scikit-learn: drop --data, or choose "
                           "--dataset cifar10 or folder")
        ds = digits(size)
    else:
        if data is None:
            raise LipError(f"--dataset {dataset} needs --data DIR")
        ds = cifar10(Path(data), size) if dataset == "cifar10" else image_folder(Path(data), size)
    if train_limit is not None:
        ds.train_x, ds.train_y = ds.train_x[:train_limit], ds.train_y[:train_limit]
        ds.name += f" (first {len(ds.train_y)} train)"
    if test_limit is not None:
        ds.test_x, ds.test_y = ds.test_x[:test_limit], ds.test_y[:test_limit]
        ds.name += f" (first {len(ds.test_y)} test)"
    return ds


def digits(size: int = 32) -> Dataset:
    """scikit-learn's 1797 8x8 handwritten digits, upsampled (bilinear) to ``size`` and
    repeated over 3 channels; a fixed stratified 80/20 split."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.from_numpy(bunch.images.astype(np.float32) / 16.0).unsqueeze(1)
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = x.clamp(0, 1).repeat(1, 3, 1, 1)
    y = torch.from_numpy(bunch.target.astype(np.int64))
    train, test = fixed_split(y.numpy(), "digits")
    return Dataset(f"digits {size}px", [str(c) for c in range(10)], x[train], y[train],
                   x[test], y[test])


def fixed_split(labels: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices: each class shuffled by a fixed stream (seed 0, purpose
    ``data-split``, the data set's name) and its last 20% held out; both in shuffled order."""
    rng = numpy_rng(0, "data-split", name)
    train, test = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_test = max(1, round(TEST_FRACTION * len(idx))) if len(idx) > 1 else 0
        train.append(idx[: len(idx) - n_test])
        test.append(idx[len(idx) - n_test:])
    train_idx, test_idx = np.concatenate(train), np.concatenate(test)
    return rng.permutation(train_idx), rng.permutation(test_idx)


def _looks_like_cifar(folder: Path) -> bool:
    return (folder / CIFAR_SUBFOLDER).is_dir() or any(
        (folder / n).exists() for n in (*CIFAR_FILES, "batches.meta"))


def cifar10(folder: Path, size: int = 32) -> Dataset:
    """CIFAR-10 from the python batches (``cifar-10-python.tar.gz`` extracted): DIR holding
    data_batch_1..5 and test_batch, or their ``cifar-10-batches-py`` folder."""
    if (folder / CIFAR_SUBFOLDER).is_dir():
        folder = folder / CIFAR_SUBFOLDER
    missing = [n for n in CIFAR_FILES if not (folder / n).is_file()]
    if missing:
        raise LipError(f"CIFAR-10 python batches not found in {folder}: expected "
                       f"{', '.join(CIFAR_FILES)} (cifar-10-python.tar.gz, extracted); "
                       f"missing {', '.join(missing)}")
    parts = [_cifar_batch(folder / n) for n in CIFAR_FILES]
    train_x = torch.cat([p[0] for p in parts[:5]])
    train_y = torch.cat([p[1] for p in parts[:5]])
    test_x, test_y = parts[5]
    classes = [str(c) for c in range(10)]
    meta = folder / "batches.meta"
    if meta.is_file():
        try:
            names = load_cifar_pickle(meta).get(b"label_names")
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
            if len(names) == len(classes):
                classes = names
        except LipError:
            raise
        except _NotABatch:  # damaged names: the classes keep their numbers
            log.warning("%s: unreadable class names; the classes are numbered", meta)
        except (AttributeError, TypeError, UnicodeDecodeError):
            log.warning("%s: no list of class names; the classes are numbered", meta)
    if size != 32:
        train_x, test_x = _resize(train_x, size), _resize(test_x, size)
    return Dataset(f"cifar10 {size}px", classes, train_x, train_y, test_x, test_y)


def _cifar_batch(path: Path) -> tuple[Tensor, Tensor]:
    try:
        batch = load_cifar_pickle(path)
        data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
        if labels.ndim != 1:
            raise ValueError("labels are not a list")
    except LipError:
        raise
    except _NotABatch as err:
        raise LipError(f"{path} is not a CIFAR-10 python batch ({err})") from None
    except (KeyError, ValueError, TypeError, AttributeError, OverflowError) as err:
        raise LipError(f"{path} is not a CIFAR-10 python batch ({type(err).__name__})") from None
    if len(labels) != len(data):
        raise LipError(f"{path} holds {len(data)} images but {len(labels)} labels")
    if len(labels) and not (labels.min() >= 0 and labels.max() < 10):
        raise LipError(f"{path} has labels outside 0-9 (from {labels.min()} to "
                       f"{labels.max()}); CIFAR-10 has 10 classes")
    return torch.from_numpy(data).float() / 255.0, torch.from_numpy(labels)


class _NotABatch(Exception):
    """A file that does not unpickle (damaged, truncated, not a pickle)."""


def _latin1_encode(text: object, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles of bytes use it, for latin-1 only."""
    if not isinstance(text, str) or encoding.lower().replace("_", "-") not in (
            "latin1", "latin-1", "iso-8859-1"):
        raise pickle.UnpicklingError("codecs.encode is allowed for latin-1 bytes only")
    return text.encode("latin-1")


def _bytes(*args: object) -> bytes:
    """``bytes()`` as protocol-2 pickles write an empty bytes object; nothing else."""
    if args and not isinstance(args[0], bytes | bytearray):
        raise pickle.UnpicklingError("bytes() is allowed on bytes only")
    return bytes(*args[:1])


def _numpy_globals() -> dict[tuple[str, str], object]:
    """What a pickled array needs (the reconstructors numpy's own ``__reduce__`` names, under
    the module names numpy 1 and 2 write), and nothing else of numpy."""
    reconstruct = np.zeros(1).__reduce__()[0]
    scalar = np.float64(0).__reduce__()[0]
    out: dict[tuple[str, str], object] = {("numpy", "ndarray"): np.ndarray,
                                          ("numpy", "dtype"): np.dtype}
    for package in ("numpy.core", "numpy._core"):
        out[(f"{package}.multiarray", "_reconstruct")] = reconstruct
        out[(f"{package}.multiarray", "scalar")] = scalar
        out[(f"{package}.numeric", "_frombuffer")] = _frombuffer
    return out


def _frombuffer(buffer: object, dtype: object, shape: object, order: object) -> np.ndarray:
    """numpy's protocol-5 array reconstructor (``numpy._core.numeric._frombuffer``)."""
    if not isinstance(dtype, np.dtype) or dtype.hasobject or order not in ("C", "F"):
        raise pickle.UnpicklingError("not a plain numeric array")
    return np.frombuffer(buffer, dtype=dtype).reshape(shape, order=order)


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles what a CIFAR-10 python batch holds (dicts, lists, tuples, bytes, strings,
    numbers, numpy arrays and dtypes) and refuses every other global *before* anything is
    built: a pickle is a program, and a downloaded batch must not run one."""

    ALLOWED: dict[tuple[str, str], object] = {
        ("_codecs", "encode"): _latin1_encode, ("codecs", "encode"): _latin1_encode,
        ("builtins", "bytes"): _bytes, ("__builtin__", "bytes"): _bytes,
    }

    def find_class(self, module: str, name: str) -> object:
        allowed = self.ALLOWED.get((module, name)) or _numpy_globals().get((module, name))
        if allowed is None:
            raise _Forbidden(f"{module}.{name}")
        return allowed


class _Forbidden(pickle.UnpicklingError):
    """A global that a CIFAR-10 batch never holds: its name is the message."""


def load_cifar_pickle(path: Path) -> dict:
    """A CIFAR-10 python batch (or ``batches.meta``) as a dict, through the restricted
    unpickler: a file that asks to import anything but numpy's array reconstructors is
    refused with a one-line ``LipError``, before any object of it is built."""
    try:
        with path.open("rb") as f:
            obj = _CifarUnpickler(f, encoding="bytes").load()
    except _Forbidden as err:
        raise LipError(f"refusing to load {path}: it asks to import {err}, which a CIFAR-10 "
                       "python batch never holds (only numpy arrays, lists, strings and "
                       "numbers); use the batches of cifar-10-python.tar.gz") from None
    except OSError as err:
        raise LipError(f"cannot read {path} ({err.strerror or err})") from None
    except (pickle.UnpicklingError, EOFError, MemoryError, RecursionError, ValueError,
            TypeError, AttributeError, KeyError, IndexError, OverflowError,
            UnicodeDecodeError) as err:
        raise _NotABatch(f"unreadable pickle: {type(err).__name__}") from None
    if not isinstance(obj, dict):
        raise _NotABatch(f"a pickled {type(obj).__name__}, not a dict")
    return obj


def image_folder(folder: Path, size: int = 32) -> Dataset:
    """Images in class sub-folders (``DIR/<class>/*.png``), split by :func:`fixed_split`; or
    ``DIR/train/<class>/`` and ``DIR/test/<class>/`` with their own split. Images are
    converted to RGB, centre-cropped to a square and resized to ``size``."""
    if not folder.is_dir():
        raise LipError(f"--data {folder} is not a folder")
    if (folder / "train").is_dir() and (folder / "test").is_dir():
        classes = _class_names(folder / "train")
        train_x, train_y = _read_classes(folder / "train", classes, size)
        test_x, test_y = _read_classes(folder / "test", classes, size)
        return Dataset(f"{folder.name} {size}px", classes, train_x, train_y, test_x, test_y)
    classes = _class_names(folder)
    x, y = _read_classes(folder, classes, size)
    train, test = fixed_split(y.numpy(), f"folder:{len(y)}")
    return Dataset(f"{folder.name} {size}px", classes, x[train], y[train], x[test], y[test])


def _class_names(folder: Path) -> list[str]:
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise LipError(f"{folder} needs at least 2 class sub-folders of images (ImageFolder "
                       f"layout: {folder}/<class>/<image>), found {len(classes)}")
    return classes


def _read_classes(folder: Path, classes: list[str], size: int) -> tuple[Tensor, Tensor]:
    images, labels = [], []
    for label, name in enumerate(classes):
        sub = folder / name
        files = sorted(p for p in sub.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) \
            if sub.is_dir() else []
        if not files:
            raise LipError(f"class folder {sub} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        for path in files:
            images.append(_square_rgb(read_image(path), size))
            labels.append(label)
    return torch.stack(images), torch.tensor(labels, dtype=torch.int64)


def _square_rgb(x: Tensor, size: int) -> Tensor:
    """A (C,H,W) image as 3 channels (gray repeated), centre square resized to ``size``."""
    side = min(x.shape[-2:])
    x = resize(center_crop(x, side, side), size, size, method="bilinear")
    return x.expand(3, -1, -1).contiguous() if x.shape[0] == 1 else x


def _resize(x: Tensor, size: int) -> Tensor:
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)

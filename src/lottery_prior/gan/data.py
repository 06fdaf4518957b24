"""Offline data for the small GAN: faces bundled with scikit-image, digits with scikit-learn.

``skimage.data.lfw_subset()`` holds 100 gray 25x25 face crops followed by 100 non-faces; only
the faces are used. Faces 0-79 are the training (fine-tuning) split, faces 80-99 the held-out
evaluation split, never used to train or fine-tune.

``sklearn.datasets.load_digits()`` holds 1,797 gray 8x8 handwritten digits (an MNIST-like
setting, as in the CSGM paper's MNIST experiments): digits 0-1496 train, 1497-1796 are held
out.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from lottery_prior import images
from lottery_prior.errors import LipError

N_FACES = 100
N_TRAIN = 80
SPLITS = ("train", "eval", "all")
N_DIGITS = 1797
N_DIGITS_TRAIN = 1497
DATASETS = ("faces", "digits")


def load_faces(split: str = "train", size: int = 32) -> Tensor:
    """Faces as (N, 1, size, size) float32 in [0, 1] (Lanczos resize from 25x25).

    ``split``: "train" (80 faces), "eval" (the 20 held-out faces) or "all" (100).
    """
    if split not in SPLITS:
        raise LipError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if size < 4:
        raise LipError(f"size must be at least 4 pixels, got {size}")
    import skimage.data

    faces = np.asarray(skimage.data.lfw_subset()[:N_FACES], dtype=np.float32)
    x = torch.from_numpy(faces).clamp(0, 1)[:, None]
    if size != x.shape[-1]:
        x = images.resize(x, size, size)
    part = {"train": slice(0, N_TRAIN), "eval": slice(N_TRAIN, N_FACES), "all": slice(None)}
    return x[part[split]].contiguous()


def load_digits(split: str = "train", size: int = 8) -> Tensor:
    """Digits as (N, 1, size, size) float32 in [0, 1] (their 8x8 pixels, Lanczos resize
    otherwise). ``split``: "train" (1,497), "eval" (the 300 held out) or "all" (1,797)."""
    if split not in SPLITS:
        raise LipError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if size < 4:
        raise LipError(f"size must be at least 4 pixels, got {size}")
    from sklearn.datasets import load_digits as sklearn_digits

    digits = np.asarray(sklearn_digits().images, dtype=np.float32) / 16.0
    x = torch.from_numpy(digits).clamp(0, 1)[:, None]
    if size != x.shape[-1]:
        x = images.resize(x, size, size)
    part = {"train": slice(0, N_DIGITS_TRAIN), "eval": slice(N_DIGITS_TRAIN, N_DIGITS),
            "all": slice(None)}
    return x[part[split]].contiguous()


def load_dataset(name: str, split: str = "train", size: int = 32) -> Tensor:
    """The bundled ``faces`` or ``digits`` (see :func:`load_faces`, :func:`load_digits`)."""
    if name not in DATASETS:
        raise LipError(f"dataset must be one of {', '.join(DATASETS)}, got {name!r}")
    return (load_faces if name == "faces" else load_digits)(split, size)

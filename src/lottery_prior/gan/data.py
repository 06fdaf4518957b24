"""Offline face data for the small GAN: the LFW crops bundled with scikit-image.

``skimage.data.lfw_subset()`` holds 100 gray 25x25 face crops followed by 100 non-faces; only
the faces are used. Faces 0-79 are the training (fine-tuning) split, faces 80-99 the held-out
evaluation split, never used to train or fine-tune.
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

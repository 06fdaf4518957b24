"""Shared fixtures: small deterministic test images, a seeded generator, the shared data folder."""

import os
import tempfile
from pathlib import Path

import pytest
import torch

from lottery_prior.images import data_root

# The test networks are tiny: one thread is as fast as two and never oversubscribes the CPU.
torch.set_num_threads(1)
# precision auto measures once per machine and caches its choice: the tests keep their own
# cache (so they never read or write the user's, and each session measures afresh)
os.environ["LIP_CACHE"] = tempfile.mkdtemp(prefix="lip-cache-")

HEIGHT, WIDTH = 48, 80  # not square, H and W divisible by 2, 4, 8 and 16 (not by 32)


def make_image(channels: int, height: int = HEIGHT, width: int = WIDTH, seed: int = 0):
    """A deterministic (C,H,W) float32 image in [0.05, 0.95]: smooth waves plus fine texture."""
    yy, xx = torch.meshgrid(
        torch.linspace(0, 1, height), torch.linspace(0, 1, width), indexing="ij"
    )
    g = torch.Generator().manual_seed(seed)
    waves = torch.stack([torch.sin(7 * xx + 5 * yy + 2 * c) for c in range(channels)])
    texture = torch.rand((channels, height, width), generator=g) - 0.5
    return (0.5 + 0.3 * waves + 0.2 * texture).clamp(0.05, 0.95).float()


@pytest.fixture
def rgb_image() -> torch.Tensor:
    """(3, 48, 80) RGB test image."""
    return make_image(3)


@pytest.fixture
def gray_image() -> torch.Tensor:
    """(1, 48, 80) grayscale test image."""
    return make_image(1)


@pytest.fixture
def generator() -> torch.Generator:
    """A CPU generator seeded with 0."""
    return torch.Generator().manual_seed(0)


def require_shared_data() -> Path | None:
    """The shared test-image folder, or None (skip) when it is absent; in CI (``CI`` set to a
    non-empty value) a missing folder fails the test instead, so it is never hidden."""
    root = data_root()
    if root is None and os.environ.get("CI"):
        pytest.fail("CI is set but the shared test images are missing: put them in "
                    "../shared/data or set LIP_DATA", pytrace=False)
    return root


@pytest.fixture
def shared_data() -> Path:
    """The shared test-image folder; skips the test when it is absent (fails in CI)."""
    root = require_shared_data()
    if root is None:
        pytest.skip("shared test images not available (set LIP_DATA)")
    return root

"""Shared fixtures: small deterministic test images, a seeded generator, the shared data folder."""

from pathlib import Path

import pytest
import torch

from lottery_prior.images import data_root

# The test networks are tiny: one thread is as fast as two and never oversubscribes the CPU.
torch.set_num_threads(1)

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


@pytest.fixture
def shared_data() -> Path:
    """The shared test-image folder; skips the test when it is absent."""
    root = data_root()
    if root is None:
        pytest.skip("shared test images not available (set LIP_DATA)")
    return root

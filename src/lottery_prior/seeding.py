"""Independent, named random streams derived from one user seed.

Every random draw of the library (observation noise, Bernoulli masks, network init, the input
code z, the input perturbation, random baseline masks, data batches, GAN latents, CS
matrices) takes its generator from :func:`generator` with its own *purpose*, so no two streams
share a seed. Seeding two generators alike couples them: ``torch.rand`` and ``torch.randn``
of one seed read the same uniform stream, and a deep image prior fits whatever leaks from the
noise into its input. Optional *context* (e.g. an image's content hash) separates streams of
the same purpose, so two images never get the same noise field.

>>> a, b = generator(0, "z"), generator(0, "observation")
>>> bool((torch.rand(4, generator=a) != torch.rand(4, generator=b)).all())
True
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator

import numpy as np
import torch

from lottery_prior.checks import SEED_LIMIT
from lottery_prior.errors import LipError


def derive_seed(seed: int, purpose: str, *context: object) -> int:
    """A 63-bit seed for ``purpose`` (and ``context``), unrelated to any other purpose's."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) \
            or not 0 <= seed < SEED_LIMIT:
        raise LipError(f"seed must be a whole number from 0 to 2**63 - 1, got {seed!r}")
    if not purpose:
        raise LipError("a random stream needs a purpose name")
    text = "\x1f".join(["lottery_prior", str(int(seed)), purpose, *map(str, context)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def generator(seed: int, purpose: str, *context: object,
              device: str | torch.device = "cpu") -> torch.Generator:
    """A torch generator of its own named stream: ``derive_seed(seed, purpose, *context)``."""
    return torch.Generator(device=device).manual_seed(derive_seed(seed, purpose, *context))


def numpy_rng(seed: int, purpose: str, *context: object) -> np.random.Generator:
    """A NumPy generator of its own named stream."""
    return np.random.default_rng(derive_seed(seed, purpose, *context))


@contextlib.contextmanager
def seeded_global(seed: int, purpose: str, *context: object) -> Iterator[None]:
    """Run a block (e.g. a model's default init) on torch's global CPU generator seeded from a
    named stream, and restore the caller's global random state afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, purpose, *context))
        yield

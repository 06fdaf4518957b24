"""Random streams: z, the observation, init and the input perturbation never share a stream."""

import pytest
import torch

from lottery_prior.fit import perturbation_generator
from lottery_prior.problem import build_prior, make_problem
from lottery_prior.seeding import derive_seed, generator

SMALL = {"width": 8, "skip": 2, "scales": 2}


def corr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson correlation of the first n values of two tensors (stream positions aligned)."""
    n = min(a.numel(), b.numel())
    a, b = a.flatten()[:n].double(), b.flatten()[:n].double()
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()))


def observation_draw(task: str, noise_seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """z of network seed ``noise_seed`` and the observation's random field at that noise seed."""
    problem = make_problem("builtin:astronaut", task, size=128, noise_seed=noise_seed)
    _, z = build_prior("dip", SMALL, problem, seed=noise_seed)
    if task == "denoise":
        inside = (problem.observation > 0) & (problem.observation < 1)  # unclipped pixels
        field = torch.where(inside, problem.observation - problem.clean, 0.0)
    elif task == "inpaint":
        field = problem.operator.mask
    else:  # super-resolution draws nothing: the observation is the same for every seed
        other = make_problem("builtin:astronaut", task, size=128, noise_seed=noise_seed + 1)
        assert torch.equal(problem.observation, other.observation)
        field = torch.randn(z.shape, generator=generator(noise_seed, "observation", "sr"))
    return z, field


def test_the_old_coupling_is_what_this_test_detects():
    """z and noise drawn from generators seeded alike correlate strongly (r ~ -0.35)."""
    z = torch.rand((1, 32, 128, 128), generator=torch.Generator().manual_seed(0))
    noise = torch.randn((1, 3, 128, 128), generator=torch.Generator().manual_seed(0))
    assert abs(corr(z, noise)) > 0.1


@pytest.mark.parametrize("task", ["denoise", "inpaint", "sr"])
@pytest.mark.parametrize("seed", range(5))
def test_z_is_uncorrelated_with_the_observation(task, seed):
    z, field = observation_draw(task, seed)
    assert abs(corr(z, field)) < 0.02


@pytest.mark.parametrize("seed", range(3))
def test_the_input_perturbation_is_its_own_stream(seed):
    problem = make_problem("builtin:astronaut", size=128, noise_seed=seed)
    _, z = build_prior("dip", SMALL, problem, seed=seed)
    eta = torch.empty(z.shape).normal_(generator=perturbation_generator(seed, torch.device("cpu")))
    noise = problem.observation - problem.clean
    assert abs(corr(eta, z)) < 0.02 and abs(corr(eta, noise)) < 0.02


def test_two_images_at_one_noise_seed_get_different_noise():
    a = make_problem("builtin:astronaut", size=64, noise_seed=0)
    b = make_problem("builtin:coffee", size=64, noise_seed=0)
    noise_a, noise_b = a.observation - a.clean, b.observation - b.clean
    assert abs(corr(noise_a, noise_b)) < 0.05
    masks = [make_problem(i, "inpaint", size=64, noise_seed=0).operator.mask
             for i in ("builtin:astronaut", "builtin:coffee")]
    assert not torch.equal(*masks)


def test_the_observation_depends_on_the_noise_seed_only():
    a = make_problem("builtin:astronaut", size=64, noise_seed=0)
    again = make_problem("builtin:astronaut", size=64, noise_seed=0)
    other = make_problem("builtin:astronaut", size=64, noise_seed=1)
    assert torch.equal(a.observation, again.observation)
    assert not torch.equal(a.observation, other.observation)


def test_network_seed_sets_init_and_z_and_leaves_global_state_alone():
    problem = make_problem("builtin:astronaut", size=64)
    state = torch.get_rng_state()
    (m0, z0), (m0b, z0b), (m1, z1) = (build_prior("dip", SMALL, problem, seed=s)
                                      for s in (0, 0, 1))
    assert torch.equal(torch.get_rng_state(), state)
    w = "body.deeper.0.0.weight"
    assert torch.equal(z0, z0b) and not torch.equal(z0, z1)
    assert torch.equal(m0.state_dict()[w], m0b.state_dict()[w])
    assert not torch.equal(m0.state_dict()[w], m1.state_dict()[w])


def test_named_streams_differ_and_are_reproducible():
    seeds = {derive_seed(0, p) for p in ("observation", "z", "init", "perturbation")}
    assert len(seeds) == 4
    assert derive_seed(3, "z") == derive_seed(3, "z") != derive_seed(3, "z", "other")
    assert derive_seed(0, "z") != derive_seed(1, "z")

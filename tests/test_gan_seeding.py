"""Random streams of the GAN code: every draw from its own named stream of the user's seed
(lottery_prior.seeding), none from torch's global generator, which is left as it was."""

import pytest
import torch

from lottery_prior import seeding
from lottery_prior.gan import GaussianMeasurement, load_faces, prune_gan, train_gan
from lottery_prior.gan.experiments import Solver, cs_experiment, inpaint_experiment
from lottery_prior.gan.recovery import initial_latents

TINY = {"latent_dim": 8, "depths": (8, 4), "steps_per_scale": 3, "fade_steps": 1,
        "batch_size": 4}


@pytest.fixture
def streams(monkeypatch):
    """Every (seed, purpose, context) drawn from, with its derived seed."""
    seen = []
    original = seeding.derive_seed

    def recording(seed, purpose, *context):
        derived = original(seed, purpose, *context)
        seen.append((seed, purpose, context, derived))
        return derived

    monkeypatch.setattr(seeding, "derive_seed", recording)
    return seen


def global_state():
    return (torch.get_rng_state(), torch.backends.cuda.matmul.allow_tf32,
            torch.backends.cudnn.allow_tf32, torch.get_float32_matmul_precision())


def assert_unchanged(before):
    after = global_state()
    assert torch.equal(before[0], after[0]), "torch's global random state changed"
    assert before[1:] == after[1:]


def test_training_pruning_and_recovery_draw_from_named_streams(streams):
    faces = load_faces("train", 8)[:8]
    torch.manual_seed(1234)
    before = global_state()
    models = train_gan(faces, seed=7, **TINY)
    prune_gan(models.average, models.discriminator, faces, rounds=1, steps=2, batch_size=4,
              method="random", seed=7)
    images = [("a", faces[0]), ("b", faces[1])]
    solver = Solver(steps=2, restarts=2)
    cs_experiment(models.average, images, [6], outliers=2, robust=True, batches=2,
                  solver=solver, seed=7)
    inpaint_experiment(models.average, images, keep=[0.5], solver=solver, seed=7)
    assert_unchanged(before)
    purposes = {purpose for _, purpose, _, _ in streams}
    assert {"gan-init", "gan-train-batches", "gan-train-augment", "gan-train-latents",
            "gan-train-gp", "recovery-latents", "gan-random-mask", "cs-matrix", "cs-noise",
            "cs-outliers", "mom-shuffle", "mom-order", "gan-inpaint-mask"} <= purposes
    assert {seed for seed, *_ in streams} == {7}
    named = {(purpose, context): derived for _, purpose, context, derived in streams}
    assert len(set(named.values())) == len(named)  # distinct streams never share a seed
    # generator and critic, each scale, initialised from a stream of its own
    inits = {context for _, purpose, context, _ in streams if purpose == "gan-init"}
    assert inits == {("generator", 0), ("critic", 0), ("generator", 1), ("critic", 1)}
    # two images never share a noise field, a matrix or starting codes
    for purpose in ("cs-noise", "cs-matrix", "recovery-latents", "gan-inpaint-mask"):
        contexts = {context[0] for _, p, context, _ in streams if p == purpose}
        assert len(contexts) >= 2, purpose


def test_cs_matrix_noise_and_latents_of_one_seed_are_unrelated():
    a = GaussianMeasurement(256, 64, seed=0)
    row = a.rows(0, 1)[0] * 64**0.5  # N(0, 1) entries
    z = initial_latents(256, 1, seed=0)[0]
    x = torch.zeros(256)
    noise = a.observe(x, 1.0, seed=0)
    for u, v in ((row, z), (row[:64], noise), (z[:64], noise)):
        assert not torch.allclose(u, v)
        assert abs(torch.corrcoef(torch.stack([u, v]))[0, 1]) < 0.35
    same = torch.Generator().manual_seed(0)
    assert not torch.allclose(z, torch.randn(256, generator=same))  # not the bare seed
    torch.testing.assert_close(initial_latents(256, 1, seed=0)[0], z, rtol=0, atol=0)


def test_observe_is_seeded_and_leaves_the_global_generator_alone():
    a = GaussianMeasurement(64, 20, seed=0, outliers=3)
    x = torch.rand(64)
    before = global_state()
    y1 = a.observe(x, 0.1, seed=1)
    assert_unchanged(before)
    torch.manual_seed(99)
    y2 = a.observe(x, 0.1, seed=1)
    torch.testing.assert_close(y1, y2, rtol=0, atol=0)
    assert not torch.equal(a.observe(x, 0.1, seed=2), y1)
    assert not torch.equal(a.observe(x, 0.1, seed=1, context=("other image",)), y1)


def test_training_is_reproducible_whatever_the_global_seed():
    faces = load_faces("train", 8)[:8]
    torch.manual_seed(0)
    one = train_gan(faces, seed=3, **TINY).average.state_dict()
    torch.manual_seed(1)
    two = train_gan(faces, seed=3, **TINY).average.state_dict()
    assert all(torch.equal(one[k], two[k]) for k in one)

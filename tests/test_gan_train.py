"""GAN data splits, progressive training, masked fine-tuning and IMP on a tiny GAN."""

import pytest
import torch

from lottery_prior.errors import LipError
from lottery_prior.gan import (
    WganLoss,
    finetune_gan,
    load_checkpoint,
    load_faces,
    prune_gan,
    save_checkpoint,
    train_gan,
)
from lottery_prior.masks import Mask
from lottery_prior.pruning import random_mask

TINY = {"latent_dim": 8, "depths": (8, 4), "steps_per_scale": 6, "fade_steps": 3,
        "batch_size": 4}


@pytest.fixture(scope="module")
def faces8():
    return load_faces("train", 8)[:16]


@pytest.fixture(scope="module")
def tiny_gan(faces8):
    return train_gan(faces8, seed=0, **TINY)


def test_face_splits_are_fixed_and_disjoint():
    train, held_out = load_faces("train"), load_faces("eval")
    assert train.shape == (80, 1, 32, 32) and held_out.shape == (20, 1, 32, 32)
    assert train.dtype == torch.float32 and 0 <= train.min() and train.max() <= 1
    distances = torch.cdist(train.flatten(1), held_out.flatten(1))
    assert distances.min() > 1.0
    assert torch.equal(load_faces("all", 16)[80:], load_faces("eval", 16))
    with pytest.raises(LipError, match="split"):
        load_faces("test")


def test_training_is_progressive_seeded_and_saved(faces8, tiny_gan, tmp_path):
    seen = []
    again = train_gan(faces8, seed=0, callback=seen.append, **TINY)
    for a, b in zip(tiny_gan.average.state_dict().values(), again.average.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)
    assert [(i["resolution"], i["step"]) for i in seen][::3] == [(4, 1), (4, 4), (8, 1), (8, 4)]
    alphas = [i["alpha"] for i in seen if i["resolution"] == 8]
    assert alphas == pytest.approx([1.0, 2 / 3, 1 / 3, 0, 0, 0])
    assert tiny_gan.generator.resolution == tiny_gan.discriminator.resolution == 8
    assert tiny_gan.generator.alpha == 0
    path = tmp_path / "tiny.pt"
    save_checkpoint(path, tiny_gan.generator, tiny_gan.discriminator, tiny_gan.average)
    g, d, _ = load_checkpoint(path)
    z = torch.randn(3, 8)
    assert torch.equal(g(z), tiny_gan.average(z))


def test_masked_finetuning_keeps_pruned_weights_zero(faces8, tiny_gan):
    g, d = tiny_gan.average, tiny_gan.discriminator
    rng = torch.Generator().manual_seed(0)
    mask_g = random_mask(Mask.ones(g), 0.5, rng)
    mask_d = random_mask(Mask.ones(d), 0.5, rng)
    before = {k: v.clone() for k, v in g.state_dict().items()}
    tuned = finetune_gan(g, d, faces8, steps=3, batch_size=4, generator_mask=mask_g,
                         discriminator_mask=mask_d)
    for net, mask in ((tuned.generator, mask_g), (tuned.average, mask_g),
                      (tuned.discriminator, mask_d)):
        params = dict(net.named_parameters())
        for name, keep in mask.items():
            assert torch.all(params[name][~keep] == 0)
            assert torch.any(params[name][keep] != 0)
    moved = tuned.generator.scaleLayers[0][0].module.weight
    assert not torch.equal(moved, before["scaleLayers.0.0.module.weight"] * mask_g[
        "scaleLayers.0.0.module.weight"])
    assert all(torch.equal(v, before[k]) for k, v in g.state_dict().items())


@pytest.mark.parametrize("method", ["magnitude", "random"])
def test_imp_rounds_reach_the_counted_sparsities(faces8, tiny_gan, method):
    tickets = prune_gan(tiny_gan.average, tiny_gan.discriminator, faces8, rounds=2, steps=2,
                        batch_size=4, method=method)
    assert [t.round for t in tickets] == [0, 1, 2]
    total = tickets[0].generator_mask.total
    for t, density in zip(tickets, (1.0, 0.8, 0.64), strict=True):
        assert t.generator_mask.kept == total - round((1 - density) * total)
        assert t.discriminator_mask.sparsity == pytest.approx(1 - density, abs=0.01)
        assert not any(n.startswith("toRGB") for n in t.generator_mask)
        params = dict(t.models.average.named_parameters())
        assert all(torch.all(params[n][~m] == 0) for n, m in t.generator_mask.items())
    if method == "magnitude":
        first, second = tickets[1].generator_mask, tickets[2].generator_mask
        assert all(torch.all(first[n] | ~second[n]) for n in first)  # nested masks


def test_bad_training_inputs(faces8, tiny_gan):
    with pytest.raises(LipError, match=r"\(N, 1, 16, 16\)"):
        train_gan(faces8, depths=(8, 4, 4), steps_per_scale=1, fade_steps=0)
    with pytest.raises(LipError, match="fade_steps"):
        train_gan(faces8, depths=(8, 4), steps_per_scale=2, fade_steps=3)
    with pytest.raises(LipError, match="method"):
        prune_gan(tiny_gan.average, tiny_gan.discriminator, faces8, method="snip")
    with pytest.raises(LipError, match="reduction"):
        WganLoss(reduction="max")

"""The classification experiment: the hourglass classifier, its data, IMP with rewinding,
mask overlap against the exact chance value, and the classification mask on the prior."""

import itertools
import json
import logging
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from lottery_prior import seeding
from lottery_prior.classify.crossuse import classification_mask_for_prior, cross_use_tickets
from lottery_prior.classify.data import CIFAR_FILES, digits, load_dataset
from lottery_prior.classify.imp import ClassifierImpRun
from lottery_prior.classify.model import create_classifier, input_layers
from lottery_prior.classify.overlap import (
    chance_global_iou,
    chance_iou,
    iou,
    overlap_rows,
    same_init_layers,
    shared_layers,
)
from lottery_prior.classify.ticket import ClassifierTicket
from lottery_prior.classify.train import TrainConfig, evaluate, train
from lottery_prior.errors import LipError
from lottery_prior.files import RunLock
from lottery_prior.lottery import ImpConfig
from lottery_prior.masks import Mask, prunable_names
from lottery_prior.models import create_model
from lottery_prior.pruning import random_mask
from lottery_prior.seeding import generator
from lottery_prior.tickets import Ticket

TINY = {"width": 8, "scales": 2, "skip": 2}


@pytest.fixture(scope="module")
def small_digits():
    """Digits at 16 px, 240 training and 120 test images: a few ms a step."""
    return load_dataset(size=16, train_limit=240, test_limit=120)


def make_run(data, root, **imp):
    return ClassifierImpRun(data, TINY, TrainConfig(epochs=1, batch_size=40),
                            ImpConfig(**{"rounds": 2, **imp}), root=root)


def test_conv_names_and_shapes_match_the_image_prior():
    classifier = create_classifier(10, TINY, seed=0)
    prior = create_model("dip", **TINY)
    names = prunable_names(classifier)
    assert names == [n for n in prunable_names(prior) if n != "head.0.weight"]
    shapes_c = {n: p.shape for n, p in classifier.named_parameters()}
    shapes_p = {n: p.shape for n, p in prior.named_parameters()}
    differ = [n for n in names if shapes_c[n] != shapes_p[n]]
    assert differ == input_layers(names, shapes_c, shapes_p) == [
        "body.skip.0.weight", "body.deeper.0.0.weight"]
    assert classifier(torch.rand(2, 3, 16, 16)).shape == (2, 10)  # plain logits


def test_classifier_init_is_seeded_and_leaves_the_global_stream_alone():
    state = torch.random.get_rng_state()
    a, b = create_classifier(10, TINY, seed=3), create_classifier(10, TINY, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(),
                                                 b.state_dict().values(), strict=True))
    with pytest.raises(LipError, match="sets input_depth itself"):
        create_classifier(10, {"input_depth": 32})


def test_digits_have_a_fixed_stratified_split():
    a, b = digits(16), digits(16)
    assert a.describe() == b.describe()
    assert a.train_x.shape == (1438, 3, 16, 16) and a.test_x.shape == (359, 3, 16, 16)
    assert float(a.train_x.min()) >= 0 and float(a.train_x.max()) <= 1
    counts = torch.bincount(a.test_y, minlength=10)
    assert int(counts.min()) >= 35 and int(counts.max()) <= 37


def test_a_narrow_classifier_learns_digits_in_a_few_epochs():
    data = load_dataset(size=16, train_limit=600)
    model = create_classifier(10, {"width": 16, "scales": 3}, seed=0)
    result = train(model, data.train_x, data.train_y, data.test_x, data.test_y,
                   TrainConfig(epochs=4, batch_size=32))
    assert result.test_accuracy > 0.6, result.history  # chance: 10%
    assert result.test_accuracy == evaluate(model, data.test_x, data.test_y)[0]


def test_sgd_with_momentum_and_weight_decay_never_moves_a_pruned_weight(small_digits):
    model = create_classifier(10, TINY, seed=0)
    template = Mask.ones(model)
    mask = random_mask(template, 0.7, generator(0, "test-mask"))
    d = small_digits
    train(model, d.train_x, d.train_y, d.test_x, d.test_y, TrainConfig(epochs=1, batch_size=40),
          mask=mask)
    params = dict(model.named_parameters())
    for name, m in mask.items():
        assert bool((params[name][~m] == 0).all())
        assert bool((params[name][m] != 0).all())


def test_rewinding_restores_theta0_masked_exactly(small_digits, tmp_path):
    run = make_run(small_digits, tmp_path)
    records = run.run()
    assert [r["round"] for r in records] == [0, 1, 2]
    assert [r["sparsity"] for r in records] == pytest.approx([0.0, 0.2, 0.36], abs=1e-3)
    independent = create_classifier(10, TINY, seed=0).state_dict()  # a copy made apart
    trained_first = run.ticket(0)
    for k in (1, 2):
        mask = run.ticket(k).mask
        start = run.round_start(k).state_dict()
        for name, value in independent.items():
            expected = value * mask[name] if name in mask else value
            assert torch.equal(start[name], expected), (k, name)
            assert torch.equal(run.ticket(k).rewind_weights[name], value)
        assert mask == Mask.load(run.round_dir(k - 1) / "next_mask.safetensors")
    assert trained_first.mask.sparsity == 0
    # the trained weights of round 1 moved away from theta0 (training happened)
    model = run.round_start(1)
    d = small_digits
    train(model, d.train_x, d.train_y, d.test_x, d.test_y, run.train_config,
          mask=run.ticket(1).mask)
    assert not torch.equal(model.state_dict()["body.merge.1.0.weight"],
                           independent["body.merge.1.0.weight"] * run.ticket(1).mask[
                               "body.merge.1.0.weight"])


def test_late_rewinding_restores_the_weights_after_step_k(small_digits, tmp_path):
    run = make_run(small_digits, tmp_path, rounds=1, rewind_step=3)
    run.run()
    model = create_classifier(10, TINY, seed=0)
    d = small_digits
    train(model, d.train_x, d.train_y, d.test_x, d.test_y, run.train_config,
          callbacks=[lambda info: info.step == 3])
    mask = run.ticket(1).mask
    start = run.round_start(1).state_dict()
    for name, value in model.state_dict().items():
        expected = value * mask[name] if name in mask else value
        assert torch.equal(start[name], expected), name
    with pytest.raises(LipError, match="past the end of round 0"):
        make_run(small_digits, tmp_path, rewind_step=10_000)


def test_an_interrupted_run_resumes_from_the_last_finished_round(small_digits, tmp_path,
                                                                 caplog):
    reference = make_run(small_digits, tmp_path / "a").run()
    run = make_run(small_digits, tmp_path / "b")

    def interrupt(desc):
        def callback(info):
            if desc.startswith("round 2"):
                raise KeyboardInterrupt
        return [callback]

    with pytest.raises(KeyboardInterrupt):
        run.run(progress=interrupt)
    assert not (run.folder / RunLock.NAME).exists()
    assert (run.round_dir(1) / "record.json").is_file()
    assert not (run.round_dir(2) / "record.json").exists()
    with caplog.at_level(logging.INFO, logger="lottery_prior"):
        records = run.run()
    assert "round 0/2: done earlier" in caplog.text and "round 1/2: done earlier" in caplog.text
    for a, b in zip(records, reference, strict=True):
        assert a["test_accuracy"] == b["test_accuracy"] and a["sparsity"] == b["sparsity"]
    # a damaged record is recomputed, to the same result
    (run.round_dir(1) / "record.json").write_text("{not json")
    again = make_run(small_digits, tmp_path / "b").run()
    assert json.loads((run.round_dir(1) / "record.json").read_text())["round"] == 1
    assert again[1]["test_accuracy"] == reference[1]["test_accuracy"]


def test_fit_only_imp_options_are_refused(small_digits, tmp_path):
    with pytest.raises(LipError, match="--early-bird applies to image-prior IMP"):
        make_run(small_digits, tmp_path, early_bird=0.1)


def test_ticket_round_trip_and_refusals(small_digits, tmp_path):
    run = make_run(small_digits, tmp_path, rounds=1)
    run.run()
    ticket = run.ticket(1)
    assert ticket.meta["model"] == {"name": "dip", "options": ticket.meta["model"]["options"],
                                    "classes": 10}
    copy = tmp_path / "copy.safetensors"
    ticket.save(copy)
    assert ClassifierTicket.load(copy).mask == ticket.mask
    data = bytearray(copy.read_bytes())
    data[-5] ^= 0xFF
    copy.write_bytes(bytes(data))
    with pytest.raises(LipError, match="corrupt"):
        ClassifierTicket.load(copy)


def test_iou_of_a_mask_with_itself_is_one():
    m = torch.rand(40, 30, generator=torch.Generator().manual_seed(0)) > 0.7
    assert iou(m, m) == 1.0
    rows = overlap_rows({"a": m, "b": ~m}, {"a": m, "b": ~m})
    assert [r["iou"] for r in rows] == [1.0, 1.0, 1.0]


def test_chance_iou_is_the_exact_expectation_over_all_mask_pairs():
    n, a, b = 7, 3, 4
    values = []
    for first in itertools.combinations(range(n), a):
        for second in itertools.combinations(range(n), b):
            both = len(set(first) & set(second))
            values.append(both / (a + b - both))
    mean, std = chance_iou(n, a, b)
    assert mean == pytest.approx(np.mean(values), abs=1e-12)
    assert std == pytest.approx(np.std(values), abs=1e-12)
    # two layers: the global IoU pools the counts, also exactly
    layers = [(5, 2, 3), (4, 1, 2)]
    pooled = []
    for f1, s1, f2, s2 in itertools.product(itertools.combinations(range(5), 2),
                                            itertools.combinations(range(5), 3),
                                            itertools.combinations(range(4), 1),
                                            itertools.combinations(range(4), 2)):
        both = len(set(f1) & set(s1)) + len(set(f2) & set(s2))
        pooled.append(both / (3 + 5 - both))
    assert chance_global_iou(layers)[0] == pytest.approx(np.mean(pooled), abs=1e-12)


def test_independent_random_masks_overlap_at_chance_within_sampling_error():
    shapes = {"conv1": (16, 8, 3, 3), "conv2": (8, 16, 3, 3), "conv3": (4, 8, 1, 1)}
    template = Mask({n: torch.ones(s, dtype=torch.bool) for n, s in shapes.items()})
    ratios_a = {"conv1": 0.5, "conv2": 0.8, "conv3": 0.25}
    ratios_b = {"conv1": 0.7, "conv2": 0.6, "conv3": 0.5}
    draws = 300
    rows = []
    for i in range(draws):
        a = random_mask(template, 0.5, generator(i, "test-a"), layer_sparsity=ratios_a)
        b = random_mask(template, 0.5, generator(i, "test-b"), layer_sparsity=ratios_b)
        rows.append(overlap_rows(a, b))
    for j, name in enumerate([*shapes, "global"]):
        observed = np.array([r[j]["iou"] for r in rows])
        exact, std = rows[0][j]["chance_iou"], rows[0][j]["chance_iou_std"]
        assert rows[0][j]["layer"] == name
        assert abs(observed.mean() - exact) < 4 * std / np.sqrt(draws) + 1e-4, name
        assert observed.std() == pytest.approx(std, rel=0.25)


def test_masks_of_the_two_networks_are_compared_on_shared_layers():
    classifier = Mask.ones(create_classifier(10, TINY, seed=0))
    prior = Mask.ones(create_model("dip", **TINY))
    pairs, left_out = shared_layers(classifier, prior)
    assert "body.skip.0.weight" not in pairs and "head.0.weight" in left_out
    assert "input channels differ (3 vs 32)" in left_out["body.deeper.0.0.weight"]
    pairs, left_out = shared_layers(classifier, prior, "shared")
    assert pairs["body.deeper.0.0.weight"][1].shape[1] == 3
    # the same seed: every conv built before the input convs starts from the same weights
    with seeding.seeded_global(0, "init"):
        prior_net = create_model("dip", **TINY)
    same = same_init_layers(create_classifier(10, TINY, seed=0).state_dict(),
                            prior_net.state_dict(), list(pairs))
    assert "body.deeper.2.deeper.0.0.weight" in same and "body.deeper.0.0.weight" not in same
    rows = overlap_rows(classifier, prior, same_init=same)
    assert rows[-1]["same_theta0"] == f"{len(same)} layers"
    wider = Mask.ones(create_model("dip", **{**TINY, "width": 16}))
    with pytest.raises(LipError, match="the networks differ"):
        shared_layers(classifier, wider)


def test_the_classification_mask_on_the_prior_keeps_its_theta0_and_z():
    classifier = create_classifier(10, TINY, seed=0)
    cls_mask = random_mask(Mask.ones(classifier), 0.6, generator(0, "test-cls"))
    prior = create_model("dip", **TINY)
    prior_mask = random_mask(Mask.ones(prior), 0.6, generator(0, "test-prior"))
    z = torch.rand(1, 32, 16, 16)
    prior_ticket = Ticket(prior_mask, prior.state_dict(), z, {"model": prior.spec})
    mask, how = classification_mask_for_prior(cls_mask, prior_ticket, seed=0)
    assert mask.kept == prior_mask.kept  # exactly the image-prior ticket's sparsity
    for name in mask:
        if how[name] == "classification":
            assert torch.equal(mask[name], cls_mask[name])
    assert how["body.skip.0.weight"].startswith("random (input conv)")
    assert how["head.0.weight"].startswith("random (not in the classifier)")
    tickets = cross_use_tickets(cls_mask, prior_ticket, seed=1)
    assert list(tickets) == ["image-prior ticket", "classification ticket", "random-layerwise"]
    for t in tickets.values():
        assert t.z is z and t.rewind_weights is prior_ticket.rewind_weights
    assert tickets["random-layerwise"].mask.layer_sparsity() == \
        tickets["classification ticket"].mask.layer_sparsity()
    assert tickets["random-layerwise"].mask != tickets["classification ticket"].mask


def test_cifar10_batches_load_and_missing_ones_are_named(tmp_path):
    with pytest.raises(LipError, match="data_batch_1, data_batch_2.*test_batch") as err:
        load_dataset("cifar10", tmp_path)
    assert "\n" not in str(err.value)
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in CIFAR_FILES:
        batch = {b"data": rng.integers(0, 255, (6, 3072), dtype=np.uint8),
                 b"labels": list(range(6))}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps(
        {b"label_names": [f"c{i}".encode() for i in range(10)]}))
    data = load_dataset("auto", tmp_path)
    assert data.train_x.shape == (30, 3, 32, 32) and data.test_x.shape == (6, 3, 32, 32)
    assert data.classes[3] == "c3" and data.name.startswith("cifar10")


def test_an_image_folder_loads_with_a_fixed_split(tmp_path):
    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (tmp_path / c).mkdir()
        for i in range(5):
            Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(
                tmp_path / c / f"{i}.png")
    a, b = load_dataset("auto", tmp_path, size=16), load_dataset("folder", tmp_path, size=16)
    assert a.describe() == b.describe() and a.classes == ["cat", "dog"]
    assert len(a.train_y) == 8 and len(a.test_y) == 2
    (tmp_path / "dog" / "0.png").unlink()
    with pytest.raises(LipError, match="at least 2 class sub-folders"):
        load_dataset("folder", tmp_path / "cat")


def test_the_fill_counts_add_up_exactly_within_each_layer():
    from lottery_prior.classify.crossuse import _apportion

    assert _apportion(10, {"a": 3, "b": 1}, {"a": 100, "b": 100}) == {"a": 8, "b": 2}
    assert _apportion(10, {"a": 3, "b": 1}, {"a": 4, "b": 100}) == {"a": 4, "b": 6}
    assert _apportion(0, {"a": 0}, {"a": 5}) == {"a": 0}

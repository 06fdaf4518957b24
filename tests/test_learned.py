"""Learned masks at initialisation: frozen θ₀, exact counted sparsity, seeded reproducibility,
resumable run folders, tickets that fit like any other."""

import json

import pytest
import torch

from lottery_prior.errors import LipError
from lottery_prior.fit import FitConfig
from lottery_prior.learned import (
    LearnConfig,
    LearnedRun,
    MaskLogits,
    learn_mask,
    sparsity_penalty,
    with_filter_floor,
)
from lottery_prior.masks import Mask
from lottery_prior.problem import build_prior, make_problem
from lottery_prior.pruning import keep_highest
from lottery_prior.tickets import Ticket

TINY = {"width": 8, "scales": 2, "skip": 2}


@pytest.fixture(scope="module")
def problem():
    return make_problem("builtin:chelsea", "denoise", sigma=50, size=32, noise_seed=0)


def learn(problem, config, seed=0, steps=20):
    model, z = build_prior("dip", TINY, problem, seed=seed)
    config = LearnConfig(**{"steps": steps, **config})
    return model, learn_mask(model, z, problem.operator, problem.observation, config,
                             FitConfig(steps=5, seed=seed, device="cpu"), clean=problem.clean)


def test_theta0_never_changes_while_the_mask_is_learned(problem):
    model, _ = build_prior("dip", TINY, problem, seed=0)
    before = {k: v.clone() for k, v in model.named_parameters()}
    model, (mask, summary) = learn(problem, {"sparsity": 0.8})
    assert summary["steps"] == 20
    for name, p in model.named_parameters():
        assert torch.equal(p, before[name]), name
        assert p.requires_grad  # handed back trainable


def test_mask_has_exactly_the_requested_counted_sparsity(problem):
    for sparsity in (0.5, 0.9, 0.987):
        _, (mask, _) = learn(problem, {"sparsity": sparsity}, steps=5)
        assert mask.total - mask.kept == round(sparsity * mask.total)


def test_every_filter_keeps_its_best_weight_even_where_a_layer_scores_lowest():
    scores = {"big": torch.full((4, 3, 3, 3), -5.0), "small": torch.full((2, 1, 1, 1), 5.0)}
    scores["big"][2, 1, 0, 0] = -4.0  # filter 2's best weight
    template = Mask({n: torch.ones_like(s, dtype=torch.bool) for n, s in scores.items()})
    plain = keep_highest(scores, template, sparsity=1 - 6 / 110)
    assert plain["big"].sum() == 4 and plain["small"].all()
    floored = keep_highest(with_filter_floor(scores, 1), template, sparsity=1 - 6 / 110)
    assert floored["big"].flatten(1).any(1).all() and floored["small"].all()
    assert floored["big"][2, 1, 0, 0]  # the filter's highest logit is the one kept
    assert with_filter_floor(scores, 0) is scores


def test_learned_mask_leaves_no_filter_empty(problem):
    _, (mask, _) = learn(problem, {"sparsity": 0.95})
    for name, m in mask.items():
        assert m.flatten(1).any(1).all(), name
    with pytest.raises(LipError, match="per filter"):
        learn(problem, {"sparsity": 0.999, "per_filter": 3}, steps=2)


def test_learned_mask_is_reproducible_from_its_seed(problem):
    _, (a, _) = learn(problem, {"sparsity": 0.8}, seed=3)
    _, (b, _) = learn(problem, {"sparsity": 0.8}, seed=3)
    _, (c, _) = learn(problem, {"sparsity": 0.8}, seed=4)
    assert a == b
    assert a != c


def test_logits_move_with_the_data_not_only_the_penalty(problem):
    """After learning, the kept weights are not the first entries (what ties at 0 would keep):
    the data term shaped the logits."""
    model, z = build_prior("dip", TINY, problem, seed=0)
    module = MaskLogits(model, list(Mask.ones(model)), temperature=0.2, seed=0)
    from lottery_prior.fit import fit

    fit(module, z, problem.operator, problem.observation,
        config=FitConfig(steps=15, lr=0.05, device="cpu"),
        penalty=sparsity_penalty(LearnConfig(sparsity=0.5)))
    logits = torch.cat([s.flatten() for s in module.scores().values()])
    assert logits.std() > 0.01


def test_penalty_mode_keeps_positive_logits_and_a_stronger_penalty_prunes_more(problem):
    _, (weak, _) = learn(problem, {"penalty": 1e-3, "lr": 0.05}, steps=30)
    _, (strong, _) = learn(problem, {"penalty": 1.0, "lr": 0.05}, steps=30)
    assert strong.sparsity > weak.sparsity


def test_penalty_is_the_kl_to_the_target_density():
    module = MaskLogits(torch.nn.Conv2d(1, 1, 1), ["weight"], 0.2, 0)
    with torch.no_grad():
        module.logits[0].fill_(0.0)  # keep probability 1/2, target density 0.2
    kl = 0.5 * torch.log(torch.tensor(0.5 / 0.2)) + 0.5 * torch.log(torch.tensor(0.5 / 0.8))
    value = sparsity_penalty(LearnConfig(sparsity=0.8, kl=1.0))(module)
    assert value.item() == pytest.approx(kl.item(), rel=1e-5)
    assert sparsity_penalty(LearnConfig(penalty=2.0))(module).item() == pytest.approx(1.0)


def test_default_steps_match_a_100_step_imp_search_to_the_same_sparsity():
    assert LearnConfig(sparsity=0.9).n_steps == 1100   # 0.8^11 <= 0.1 < 0.8^10
    assert LearnConfig(sparsity=0.95).n_steps == 1400
    assert LearnConfig(sparsity=0.98).n_steps == 1800
    assert LearnConfig(sparsity=0.9, steps=7).n_steps == 7


@pytest.mark.parametrize("kwargs, message", [
    ({}, "target sparsity or a penalty"),
    ({"sparsity": 0.5, "penalty": 1.0}, "target sparsity or a penalty"),
    ({"sparsity": 1.0}, "in (0, 1)"),
    ({"penalty": -1.0}, "> 0"),
    ({"sparsity": 0.5, "temperature": 0.0}, "temperature"),
    ({"sparsity": 0.5, "steps": 0}, "whole number from 1"),
])
def test_impossible_settings_are_refused(kwargs, message):
    with pytest.raises(LipError, match=message.replace("(", r"\(").replace(")", r"\)")):
        LearnConfig(**kwargs)


def test_run_saves_a_standard_ticket_resumes_and_fits_it(problem, tmp_path, caplog):
    def make_run():
        return LearnedRun(problem, "dip", dict(TINY), FitConfig(steps=10, device="cpu"),
                          LearnConfig(sparsity=0.9, steps=10), root=tmp_path)

    run = make_run()
    record = run.run()
    assert run.folder.name.startswith("learned-")
    ticket = Ticket.load(run.ticket_path)
    assert ticket.meta["finder"] == "learned"
    assert ticket.meta["learn"]["sparsity"] == 0.9
    assert record["sparsity"] == pytest.approx(0.9, abs=1e-4)  # counted from the weights
    assert record["find_steps"] == 10 and record["steps"] == 10
    assert "psnr" in record["scores"]["averaged"]
    fresh, _ = build_prior("dip", TINY, problem, seed=0)
    for name, value in fresh.state_dict().items():  # the ticket rewinds to theta0
        assert torch.equal(ticket.rewind_weights[name], value), name
    assert (run.folder / "averaged.png").is_file()

    mtime = run.ticket_path.stat().st_mtime_ns
    caplog.set_level("INFO", logger="lottery_prior")
    assert make_run().run() == json.loads((run.folder / "record.json").read_text())
    assert run.ticket_path.stat().st_mtime_ns == mtime  # nothing learned again
    assert "fitted earlier" in caplog.text

    run.ticket_path.write_bytes(b"damaged")  # a damaged ticket is learned again, the same
    again = make_run()
    again.run()
    assert Ticket.load(run.ticket_path).mask == ticket.mask

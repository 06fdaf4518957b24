"""IMP with rewinding, tickets, resumable runs, baselines."""

import json

import pytest
import torch

from lottery_prior.compare import compare_methods, fit_method
from lottery_prior.errors import LipError
from lottery_prior.finders import Match, make_finder
from lottery_prior.fit import FitConfig
from lottery_prior.lottery import ImpConfig, ImpRun, evaluate_ticket
from lottery_prior.problem import make_problem
from lottery_prior.tickets import Ticket

TINY = {"width": 8, "scales": 2, "skip": 2}
STEPS = 25


@pytest.fixture(scope="module")
def problem():
    return make_problem("builtin:chelsea", "denoise", sigma=50, size=32, noise_seed=0)


def make_run(problem, root, rounds=3, **imp):
    return ImpRun(problem, "dip", dict(TINY), FitConfig(steps=STEPS, device="cpu"),
                  ImpConfig(rounds=rounds, **imp), root=root)


@pytest.fixture(scope="module")
def finished(problem, tmp_path_factory):
    run = make_run(problem, tmp_path_factory.mktemp("runs"))
    run.run()
    return run


def test_sparsity_after_k_rounds_is_one_minus_point_eight_to_the_k(finished):
    for k, record in enumerate(finished.records):
        ticket = finished.ticket(k)
        assert record["round"] == k
        # global threshold: the count is exact up to rounding (half a weight per round)
        assert abs(ticket.mask.kept - 0.8**k * ticket.mask.total) <= k
        assert record["mask_sparsity"] == pytest.approx(1 - 0.8**k, abs=1e-3)
        # counted from the trained weights: never below the mask's sparsity
        assert record["sparsity"] >= record["mask_sparsity"] - 1e-9


def test_layerwise_imp_prunes_every_layer_alike(problem, tmp_path):
    run = make_run(problem, tmp_path, rounds=2, layerwise=True)
    run.run()
    for name, m in run.ticket(2).mask.items():  # within one weight per layer
        assert abs(int(m.sum()) - 0.8**2 * m.numel()) <= 1.0, name


def test_rewound_ticket_weights_equal_theta0_bit_for_bit(finished):
    theta0 = finished.ticket(0).rewind_weights
    ticket = finished.ticket(3)
    model = ticket.build()
    state = model.state_dict()
    for name, w in theta0.items():
        if name in ticket.mask:
            kept = ticket.mask[name]
            assert torch.equal(state[name][kept], w[kept])
            assert (state[name][~kept] == 0).all()
        else:
            assert torch.equal(state[name], w)


def test_ticket_round_trip_retrains_to_the_same_psnr(finished, problem, tmp_path):
    ticket = finished.ticket(2)
    path = ticket.save(tmp_path / "t.safetensors")
    loaded = Ticket.load(path)
    assert loaded.mask == ticket.mask and torch.equal(loaded.z, ticket.z)
    assert loaded.meta["round"] == 2 and loaded.meta["problem"]["image"] == "builtin:chelsea"
    config = FitConfig(steps=STEPS, device="cpu")
    a = evaluate_ticket(ticket, problem, config)
    b = evaluate_ticket(loaded, problem, config)
    assert a.scores["averaged"]["psnr"] == b.scores["averaged"]["psnr"]
    # the same fit as the IMP round itself
    assert a.scores["averaged"]["psnr"] == pytest.approx(
        finished.records[2]["scores"]["averaged"]["psnr"], abs=1e-6)


def test_interrupted_run_resumes_at_the_right_round(problem, tmp_path, finished):
    run = make_run(problem, tmp_path)
    calls = []

    def interrupt_in_round_2(info):
        calls.append(info.step)
        if len(calls) == 2 * STEPS + 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run.run(progress=lambda desc: [interrupt_in_round_2])
    assert (run.round_dir(1) / "record.json").exists()
    assert not (run.round_dir(2) / "record.json").exists()
    seen = []
    records = run.run(progress=lambda desc: [lambda info: seen.append(desc)])
    assert {d.split()[1] for d in seen} == {"2/3", "3/3"}  # rounds 0 and 1 not recomputed
    assert [r["sparsity"] for r in records] == [r["sparsity"] for r in finished.records]
    assert [r["scores"] for r in records] == [r["scores"] for r in finished.records]


def test_different_settings_never_share_a_folder(problem, tmp_path):
    a = make_run(problem, tmp_path)
    b = make_run(problem, tmp_path, rate=0.3)
    c = make_run(problem, tmp_path, layerwise=True)
    assert len({a.folder, b.folder, c.folder}) == 3
    assert a.folder == make_run(problem, tmp_path).folder


def test_target_sparsity_sets_the_rounds():
    assert ImpConfig(target_sparsity=0.79).n_rounds == 7  # 1 - 0.8^7 = 0.790
    assert ImpConfig(target_sparsity=0.2).n_rounds == 1


@pytest.mark.parametrize("bad", [{"rounds": 0}, {"target_sparsity": 1.0},
                                 {"target_sparsity": 0.0}, {"rate": 1.5}, {"target": "x"}])
def test_bad_imp_settings_are_refused(bad):
    with pytest.raises(LipError):
        ImpConfig(**bad)


def test_corrupt_or_foreign_ticket_files_are_refused(finished, tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a ticket at all")
    with pytest.raises(LipError, match="not a readable ticket"):
        Ticket.load(junk)
    with pytest.raises(LipError, match="not a lottery_prior ticket"):
        Ticket.load(finished.folder / "init.safetensors")
    ticket = finished.ticket(1)
    ticket.meta["model"] = {"name": "dip", "options": {**TINY, "width": 16, "out_channels": 3}}
    with pytest.raises(LipError, match="do not fit"):
        ticket.build()


@pytest.mark.parametrize("method", ["random", "random-layerwise", "magnitude", "snip", "grasp",
                                    "synflow"])
def test_baselines_match_the_tickets_sparsity(finished, problem, method):
    ticket = finished.ticket(3)
    mask = make_finder(method).find(Match.of(finished, 0.5)).ticket.mask
    assert mask.kept == ticket.mask.kept
    assert mask != ticket.mask
    if method == "random-layerwise":
        for name in mask:
            assert int(mask[name].sum()) == int(ticket.mask[name].sum())


def test_comparison_has_every_method_at_matched_sparsity(finished):
    rows = [f.row() for f in compare_methods(finished, 0.45, ["ticket", "random", "decoder",
                                                               "dense"])]
    by = {r["method"].split()[0]: r for r in rows}
    assert by["ticket"]["sparsity"] == pytest.approx(0.488, abs=1e-3)
    assert by["random"]["sparsity"] == pytest.approx(by["ticket"]["sparsity"], abs=1e-3)
    assert by["dense"]["sparsity"] == 0
    assert all("psnr_averaged" in r for r in rows)
    json.dumps(rows)


def test_early_bird_ends_rounds_early_and_keeps_exact_sparsity(problem, tmp_path):
    run = ImpRun(problem, "dip", dict(TINY), FitConfig(steps=200, device="cpu"),
                 ImpConfig(rounds=2, early_bird=0.25, early_bird_every=10), root=tmp_path)
    records = run.run()
    assert all(r["steps"] < 200 for r in records[:-1])  # the mask stabilised before the end
    assert run.ticket(2).mask.kept == round(0.8 * round(0.8 * run.ticket(0).mask.total))
    assert records[-1]["steps"] == 200  # the final ticket is fitted in full
    for r in records[:-1]:  # the checks that ended each round are on record
        assert max(d for _, d in r["early_bird_changes"][-3:]) < 0.25
        assert r["early_bird_changes"][-1][0] == r["steps"]


def test_short_search_rounds_then_one_full_fit(problem, tmp_path):
    run = ImpRun(problem, "dip", dict(TINY), FitConfig(steps=30, device="cpu"),
                 ImpConfig(rounds=2, search_steps=10), root=tmp_path)
    records = run.run()
    assert [r["steps"] for r in records] == [10, 10, 30]  # the final ticket in full
    assert run.run() == records  # resumed, not refitted


def test_comparison_refits_rounds_that_were_cut_short(problem, tmp_path):
    run = ImpRun(problem, "dip", dict(TINY), FitConfig(steps=30, device="cpu"),
                 ImpConfig(rounds=3, search_steps=10), root=tmp_path)
    records = run.run()
    rows = {f.method: f.row() for f in compare_methods(run, 0.35, ["ticket", "dense"])}
    # round 2 (36%) and round 0 were searched with 10 steps; their rows come from 30-step fits
    assert [r["steps"] for r in records] == [10, 10, 10, 30]
    want = evaluate_ticket(run.ticket(2), problem, run.fit_config).scores
    assert rows["ticket"]["psnr_final"] == pytest.approx(want["final"]["psnr"], abs=1e-3)
    assert rows["ticket"]["psnr_final"] != pytest.approx(
        records[2]["scores"]["final"]["psnr"], abs=1e-3)
    dense = evaluate_ticket(run.ticket(0), problem, run.fit_config).scores
    assert rows["dense"]["psnr_final"] == pytest.approx(dense["final"]["psnr"], abs=1e-3)


def test_one_ticket_found_on_several_images_at_once(problem, tmp_path):
    other = make_problem("builtin:astronaut", "denoise", sigma=50, size=32, noise_seed=0)
    run = ImpRun(problem, "dip", dict(TINY), FitConfig(steps=10, device="cpu"),
                 ImpConfig(rounds=2), root=tmp_path, others=(other,))
    records = run.run()
    assert run.folder != make_run(problem, tmp_path).folder
    assert len(records[1]["per_image"]) == 2
    means = [s["averaged"]["psnr"] for s in records[1]["per_image"].values()]
    assert records[1]["scores"]["averaged"]["psnr"] == pytest.approx(sum(means) / 2)
    assert run.ticket(2).mask.kept == round(0.8 * round(0.8 * run.ticket(0).mask.total))
    assert len(run.ticket(2).meta["others"]) == 1
    with pytest.raises(LipError, match="share size"):
        ImpRun(problem, "dip", dict(TINY), FitConfig(steps=10), ImpConfig(rounds=1),
               others=(make_problem("builtin:astronaut", size=64),))


def test_rounds_retrain_from_an_independently_built_theta0(finished, problem):
    """Round 2's fit equals a fit, made here from scratch, of a fresh network at the seed's
    init with round 2's mask: so the round was rewound, not trained on from round 1."""
    from lottery_prior.fit import fit
    from lottery_prior.problem import build_prior

    model, z = build_prior("dip", dict(TINY), problem, seed=0)
    ticket = finished.ticket(2)
    for name, w in model.state_dict().items():
        assert torch.equal(ticket.rewind_weights[name], w), name
    assert torch.equal(ticket.z, z)
    result = fit(model, z, problem.operator, problem.observation, clean=problem.clean,
                 config=FitConfig(steps=STEPS, device="cpu"), mask=ticket.mask)
    assert result.scores == finished.records[2]["scores"]


def test_late_rewinding_restarts_from_the_dense_fits_step_k(problem, tmp_path):
    from lottery_prior.fit import fit
    from lottery_prior.problem import build_prior

    run = make_run(problem, tmp_path, rounds=1, rewind_step=10)
    run.run()
    model, z = build_prior("dip", dict(TINY), problem, seed=0)
    fit(model, z, problem.operator, problem.observation,
        config=FitConfig(steps=10, device="cpu"))  # the first 10 steps of round 0
    ticket = run.ticket(1)
    assert ticket.rewind_step == 10
    for name, w in model.state_dict().items():
        assert torch.equal(ticket.rewind_weights[name], w), name
    theta0, _ = build_prior("dip", dict(TINY), problem, seed=0)
    assert not torch.equal(ticket.rewind_weights["head.0.weight"],
                           theta0.state_dict()["head.0.weight"])


@pytest.mark.parametrize("imp", [{"rewind_step": STEPS + 1},
                                 {"rewind_step": 20, "search_steps": 10},
                                 {"rewind_step": 30, "early_bird": 0.1, "early_bird_every": 5}])
def test_a_rewind_step_past_round_0_is_refused_before_any_work(problem, tmp_path, imp):
    with pytest.raises(LipError, match="rewind"):
        ImpRun(problem, "dip", dict(TINY), FitConfig(steps=STEPS if "early_bird" not in imp
                                                     else 100, device="cpu"),
               ImpConfig(rounds=1, **imp), root=tmp_path)
    assert not any(tmp_path.iterdir())


def test_the_observation_is_part_of_the_run_identity(problem, tmp_path):
    other_noise = make_problem("builtin:chelsea", "denoise", sigma=50, size=32, noise_seed=1)
    assert make_run(problem, tmp_path).folder != make_run(other_noise, tmp_path).folder
    masks = [make_problem("builtin:chelsea", "inpaint", size=32, noise_seed=s) for s in (0, 1)]
    assert make_run(masks[0], tmp_path).folder != make_run(masks[1], tmp_path).folder
    described = masks[0].describe()
    assert described["mask_sha256"] != masks[1].describe()["mask_sha256"]
    assert described["observation_sha256"] != masks[1].describe()["observation_sha256"]


def test_a_stopping_rule_inside_imp_records_the_stop_and_runs_every_step(problem, tmp_path):
    from lottery_prior.stopping import make_stopping_rule

    run = ImpRun(problem, "dip", dict(TINY), FitConfig(steps=STEPS, device="cpu"),
                 ImpConfig(rounds=1), root=tmp_path, stop="wmv",
                 stop_factory=lambda: make_stopping_rule("wmv", window=4, patience=3))
    records = run.run()
    assert [r["steps"] for r in records] == [STEPS, STEPS]
    for r in records:
        assert r["scores"]["stopped"]["step"] < STEPS and r["scores"]["stopped"]["fired"]
    plain = make_run(problem, tmp_path, rounds=1)
    plain.run()  # the same fits, so pruning ranked the same weights
    assert plain.ticket(1).mask == run.ticket(1).mask


def test_mask_change_is_zero_for_equal_and_one_for_disjoint_choices():
    from lottery_prior.lottery import mask_change
    from lottery_prior.masks import Mask

    mask = Mask({"w": torch.ones(1, 10, dtype=torch.bool)})  # a weight: 2-D
    a = Mask({"w": torch.tensor([[0, 0, 1, 1, 1, 1, 1, 1, 1, 1]], dtype=torch.bool)})
    b = Mask({"w": torch.tensor([[1, 1, 0, 0, 1, 1, 1, 1, 1, 1]], dtype=torch.bool)})
    c = Mask({"w": torch.tensor([[0, 1, 0, 1, 1, 1, 1, 1, 1, 1]], dtype=torch.bool)})
    assert mask_change(a, a, mask) == 0
    assert mask_change(a, b, mask) == 1
    assert mask_change(a, c, mask) == 0.5


def test_a_clean_target_search_is_reported_as_a_fit_on_the_observation(problem, tmp_path):
    """The target decides what the search fits; every reported score is a fit on the
    observation: the ticket and dense rows of a clean-target search are refitted."""
    run = make_run(problem, tmp_path, rounds=1, target="clean")
    records = run.run()
    fits = {f.method: f for f in compare_methods(run, 0.2, ["ticket", "dense"])}
    for method, k in (("ticket", 1), ("dense", 0)):
        want = evaluate_ticket(run.ticket(k), problem, run.fit_config).scores
        assert fits[method].scores["averaged"]["psnr"] == pytest.approx(
            want["averaged"]["psnr"], abs=1e-4)
        # not the search's own fit, which was to the clean image
        assert records[k]["scores"]["averaged"]["psnr"] != pytest.approx(
            want["averaged"]["psnr"], abs=1e-4)


def test_a_round_fitted_in_full_on_the_observation_is_reported_as_fitted(finished):
    fitted = fit_method(finished, "ticket", 0.45)
    assert fitted.scores == finished.records[3]["scores"]


@pytest.mark.parametrize("method", ["random", "random-layerwise"])
def test_random_baselines_are_their_own_draw_for_each_image(problem, tmp_path, method):
    """Global IMP gives every image the same counted sparsity: with the observation in the
    mask's stream context, two images (or two noise seeds) still get different masks."""
    other = make_problem("builtin:astronaut", "denoise", sigma=50, size=32, noise_seed=0)
    noise = make_problem("builtin:chelsea", "denoise", sigma=50, size=32, noise_seed=1)
    masks = []
    for p in (problem, other, noise):
        run = make_run(p, tmp_path, rounds=1)
        run.run()
        masks.append(make_finder(method).find(Match.of(run, 0.2)).ticket.mask)
    assert masks[0].kept == masks[1].kept == masks[2].kept
    assert masks[0] != masks[1] and masks[0] != masks[2]
    again = make_run(problem, tmp_path, rounds=1)
    assert make_finder(method).find(Match.of(again, 0.2)).ticket.mask == masks[0]  # seeded

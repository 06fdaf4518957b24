"""Classical baselines: each wrapper is its library called directly, a classical row has no
oracle or stop, a missing optional bm3d is a one-line skip, sweeps and claims pair classical
rows with the fits of the same observation, and Lasso recovers a sparse DCT signal."""

import logging
import math
import sys

import numpy as np
import pytest
import torch

from lottery_prior.compare import check_comparison
from lottery_prior.errors import LipError
from lottery_prior.experiments.executor import run_local
from lottery_prior.experiments.spec import parse_spec
from lottery_prior.experiments.store import Store
from lottery_prior.experiments.units import expand
from lottery_prior.finders import make_finder
from lottery_prior.finders.classical import (
    bm3d_missing,
    classical_names,
    from_array,
    to_array,
)
from lottery_prior.gan.data import N_DIGITS, N_DIGITS_TRAIN, load_digits
from lottery_prior.gan.recovery import GaussianMeasurement
from lottery_prior.gan.sparsity import Basis, lasso_cs
from lottery_prior.problem import make_problem
from lottery_prior.report.claims import claims
from lottery_prior.report.html import summary_rows
from lottery_prior.report.rows import read_results

SIZE = 32


@pytest.fixture(scope="module")
def noisy():
    return make_problem("builtin:astronaut", "denoise", sigma=25, size=SIZE)


def _direct(name: str, problem) -> np.ndarray:
    """The library call each wrapper stands for, written out."""
    from skimage import restoration as r

    y = problem.observation[0].double().permute(1, 2, 0).numpy()
    blind = name.endswith("-blind")
    sigma = (r.estimate_sigma(y, channel_axis=-1, average_sigmas=True) if blind
             else 25 / 255)
    base = name.removesuffix("-blind")
    if base == "bm3d":
        import bm3d

        return bm3d.bm3d_rgb(y, sigma)
    if base == "nl-means":
        return r.denoise_nl_means(y, h=0.8 * sigma, sigma=sigma, fast_mode=True, patch_size=5,
                                  patch_distance=6, channel_axis=-1)
    if base == "tv":
        return r.denoise_tv_chambolle(y, weight=sigma, channel_axis=-1)
    if base == "wavelet":
        return r.denoise_wavelet(y, sigma=sigma, method="BayesShrink", mode="soft",
                                 rescale_sigma=True, convert2ycbcr=True, channel_axis=-1)
    raise AssertionError(name)


@pytest.mark.parametrize("name", classical_names("denoise"))
def test_each_denoiser_is_its_library_called_directly(noisy, name):
    if name.startswith("bm3d") and bm3d_missing():
        pytest.skip(bm3d_missing())
    restored = make_finder(name).restore(noisy)
    expected = from_array(np.clip(_direct(name, noisy), 0, 1))
    if name.startswith("bm3d"):  # bm3d itself differs by ~4e-7 from one call to the next
        assert (restored.output - expected).abs().max() < 1e-5
    else:
        assert torch.equal(restored.output, expected)
    assert restored.settings["sigma_from"] == ("estimated" if name.endswith("-blind")
                                               else "given")
    # scored with the problem's own metric, one output in both columns, no oracle, no stop
    assert restored.scores["final"] == restored.scores["averaged"]
    assert restored.scores["averaged"]["psnr"] == noisy.metric(restored.output, noisy.clean)
    assert set(restored.scores) == {"final", "averaged"}


def test_biharmonic_and_upsampling_are_their_libraries():
    from skimage.restoration import inpaint_biharmonic

    from lottery_prior.images import resize

    holes = make_problem("builtin:astronaut", "inpaint", keep=0.5, size=SIZE)
    y = to_array(holes.observation)
    expected = inpaint_biharmonic(y, holes.operator.mask[0, 0].numpy() == 0, channel_axis=-1)
    assert torch.equal(make_finder("biharmonic").restore(holes).output,
                       from_array(np.clip(expected, 0, 1)))
    low = make_problem("builtin:astronaut", "sr", factor=4, size=SIZE)
    for method in ("bicubic", "lanczos"):
        expected = resize(low.observation, SIZE, SIZE, method=method)
        assert torch.equal(make_finder(method).restore(low).output, expected)
    # the SR baseline is scored on luma with the border crop, like every SR fit
    restored = make_finder("bicubic").restore(low)
    assert restored.scores["averaged"]["psnr"] == low.metric(restored.output, low.clean)


def test_a_classical_method_of_another_task_is_refused_in_one_line(noisy):
    with pytest.raises(LipError, match="restores inpaint, not denoise") as err:
        check_comparison(noisy, 0.5, ["ticket", "biharmonic"])
    assert "\n" not in str(err.value)
    with pytest.raises(LipError, match="no network to find"):
        make_finder("bm3d").find(None)


def test_a_missing_bm3d_is_a_one_line_skip(monkeypatch, caplog, tmp_path):
    monkeypatch.setitem(sys.modules, "bm3d", None)  # import bm3d now raises ImportError
    why = bm3d_missing()
    assert why and "\n" not in why and "lottery_prior[classical]" in why
    problem = make_problem("builtin:astronaut", "denoise", sigma=25, size=SIZE)
    with pytest.raises(LipError, match="bm3d is not available"):
        make_finder("bm3d").restore(problem)
    spec = parse_spec(_spec(["dense", "classical"], tasks=[{"name": "denoise", "sigma": 25}]))
    with caplog.at_level(logging.WARNING, logger="lottery_prior"):
        plan = expand(spec, tmp_path)
    methods = [u.payload["method"] for u in plan.units if u.kind == "classical"]
    assert "bm3d" not in methods and "nl-means" in methods
    assert any("bm3d left out" in r.getMessage() for r in caplog.records)


def _spec(methods, tasks=None):
    return {
        "grid": {"images": ["builtin:astronaut"], "size": SIZE, "seeds": [0, 1],
                 "sparsities": [0.5], "methods": methods},
        "task": tasks or [{"name": "denoise", "sigma": 25},
                          {"name": "inpaint", "keep": 0.5, "images": ["builtin:camera"]}],
        "model": {"options": {"width": 8, "scales": 2, "skip": 2}},
        "fit": {"steps": 8, "stop": "auto", "precision": "fp32"},
        "imp": {"search_steps": 4},
    }


def test_classical_expands_per_task_and_observation_not_per_seed(tmp_path):
    spec = parse_spec(_spec(["ticket", "dense", "classical"]))
    plan = expand(spec, tmp_path)
    searches = [u for u in plan.units if u.kind == "search"]
    assert sorted({u.payload["problem"]["image"] for u in searches
                   if u.payload["problem"]["task"] == "inpaint"}) == ["builtin:camera"]
    assert len(searches) == 4  # 2 tasks x 1 image each x 2 seeds
    classical = [u for u in plan.units if u.kind == "classical"]
    assert sorted(u.payload["method"] for u in classical) == sorted(
        [*[m for m in classical_names("denoise") if make_finder(m).available() is None],
         "biharmonic"])
    assert all(not u.deps for u in classical)
    # a classical method no task of the spec has is refused with its place
    with pytest.raises(LipError, match=r"grid.methods\[1\].*restores sr"):
        parse_spec(_spec(["dense", "bicubic"]))


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    root = tmp_path_factory.mktemp("classical-sweep")
    spec = parse_spec(_spec(["ticket", "dense", "tv", "biharmonic"]))
    plan = expand(spec, root)
    store = Store(root)
    run_local(plan, store, workers=0, show=False)
    store.write_tables([u.id for u in plan.units])
    return read_results(root)


def test_a_classical_row_marks_its_oracle_and_stop_not_applicable(swept):
    rows = [r for r in swept if r["kind"] == "classical"]
    assert sorted(r["method"] for r in rows) == ["biharmonic", "tv"]
    for r in rows:
        assert r["psnr_final"] == r["psnr_averaged"] and math.isfinite(r["psnr_averaged"])
        for column in ("psnr_peak_iterate", "psnr_peak_averaged", "psnr_stopped", "seed",
                       "requested_sparsity", "sparsity", "parameters", "imp_run"):
            assert r[column] is None or (isinstance(r[column], float)
                                         and math.isnan(r[column])), column
        assert r["library"].startswith("scikit-image ") and r["seconds"] >= 0
    summary = [s for s in summary_rows(swept) if s["method"] in ("TV (Chambolle)",
                                                                  "biharmonic inpainting")]
    assert len(summary) == 2
    for s in summary:
        oracle_or_stop = [k for k in s if "oracle" in k or "stop" in k]
        assert "peak, averaged (oracle)" in oracle_or_stop
        assert all(s[k] == "n/a" for k in oracle_or_stop)


def test_claims_pair_each_seed_with_the_classical_output_of_its_observation(swept):
    found = {(c.claim, c.scope): c for c in claims(swept)}
    ticket = found[("ticket > best classical method", "denoise")]
    assert ticket.n == 2 and ticket.pairs == 2  # two network seeds, one TV output
    tv = next(r for r in swept if r["method"] == "tv")
    tickets = [r for r in swept if r["method"] == "ticket" and r["task"] == "denoise"]
    expected = np.mean([r["psnr_averaged"] - tv["psnr_averaged"] for r in tickets])
    assert ticket.mean == pytest.approx(expected)
    assert "TV (Chambolle)" in ticket.note
    dense = found[("dense DIP > best classical method", "inpaint")]
    assert dense.n == 2 and "biharmonic" in dense.note


def test_the_best_classical_method_is_chosen_by_its_mean_in_the_scope(swept):
    from lottery_prior.report.claims import Comparisons

    rows = [dict(r) for r in swept]
    tv = next(r for r in rows if r["method"] == "tv")
    worse = dict(tv, unit="classical-worse", method="nl-means",
                 psnr_averaged=tv["psnr_averaged"] - 1, psnr_final=tv["psnr_averaged"] - 1)
    better = dict(tv, unit="classical-better", method="wavelet",
                  psnr_averaged=tv["psnr_averaged"] + 1, psnr_final=tv["psnr_averaged"] + 1)
    table = Comparisons([*rows, worse, better])
    assert table.best_classical("psnr_averaged", "denoise") == "wavelet"
    with pytest.raises(LipError, match="ambiguous pairs"):
        Comparisons([*rows, dict(tv, unit="classical-again")])


def test_lasso_recovers_an_exactly_sparse_dct_signal():
    shape = (1, 16, 16)
    n = 256
    rng = np.random.default_rng(0)
    c = np.zeros(n)
    c[0] = 8.0  # the mean, keeps the image inside [0, 1]
    c[rng.choice(np.arange(1, n), 8, replace=False)] = rng.choice([-0.3, 0.3], 8)
    x = torch.from_numpy(Basis("dct", shape).synthesis(c)).float()
    assert 0 <= x.min() and x.max() <= 1
    a = GaussianMeasurement(n, 100, seed=0)
    y = a(x.reshape(-1))
    found = lasso_cs(a.dense(), y, shape, "dct", truth=x)
    assert found["lasso-dct-oracle"].psnr > 40 and found["lasso-dct"].psnr > 35
    # with far too few measurements it cannot
    few = GaussianMeasurement(n, 10, seed=0)
    assert lasso_cs(few.dense(), few(x.reshape(-1)), shape, "dct")["lasso-dct"].psnr is None
    assert lasso_cs(few.dense(), few(x.reshape(-1)), shape, "dct",
                    truth=x)["lasso-dct-oracle"].psnr < 30


@pytest.mark.parametrize("name", ["dct", "wavelet"])
def test_the_bases_are_orthonormal(name):
    shape = (3, 16, 16)
    basis = Basis(name, shape)
    x = np.random.default_rng(1).random(shape)
    c = basis.analysis(x)
    assert np.allclose(basis.synthesis(c), x) and np.isclose(np.linalg.norm(c),
                                                              np.linalg.norm(x))
    rows = np.random.default_rng(2).standard_normal((4, 3 * 16 * 16))
    v = np.random.default_rng(3).standard_normal(3 * 16 * 16)
    # (A Psi) c = A (Psi c): the design matrix Lasso sees is A in the basis
    assert np.allclose(basis.analysis(rows.reshape(4, *shape)) @ v,
                       rows @ basis.synthesis(v).reshape(-1))


def test_the_digits_split_is_disjoint_and_in_range():
    train, held_out = load_digits("train"), load_digits("eval")
    assert train.shape == (N_DIGITS_TRAIN, 1, 8, 8)
    assert held_out.shape == (N_DIGITS - N_DIGITS_TRAIN, 1, 8, 8)
    assert 0 <= float(train.min()) and float(train.max()) <= 1
    assert torch.equal(torch.cat([train, held_out]), load_digits("all"))


def test_lip_classical_restores_an_observed_photo(tmp_path, capsys):
    import json

    from lottery_prior.cli import main
    from lottery_prior.images import save_image

    noisy = make_problem("builtin:astronaut", "denoise", sigma=25, size=SIZE)
    photo = tmp_path / "photo.png"
    save_image(noisy.observation, photo)
    code = main(["classical", str(photo), "--observed", "--method", "wavelet-blind",
                 "--out", str(tmp_path / "out")])
    assert code == 0
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["settings"]["sigma_from"] == "estimated"
    assert metrics["library"].startswith("scikit-image") and "psnr" not in metrics[
        "scores"]["averaged"]  # no truth, no score
    assert (tmp_path / "out" / "restored.png").is_file()
    assert main(["classical", "builtin:astronaut", "--method", "bicubic"]) == 2
    assert "restores sr, not denoise" in capsys.readouterr().err

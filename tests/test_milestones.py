"""Scores at milestones: one fit scored at several steps on its way, the fit itself unchanged."""

import pytest
import torch

from lottery_prior.errors import LipError
from lottery_prior.fit import FitConfig, fit
from lottery_prior.problem import build_prior, make_problem
from lottery_prior.stopping import make_stopping_rule


@pytest.fixture(scope="module")
def problem():
    return make_problem("builtin:astronaut", "denoise", sigma=25, size=32)


def _fit(problem, steps, score_at=(), stop=None):
    model, z = build_prior("dip", {"width": 8, "scales": 2}, problem, seed=0)
    return fit(model, z, problem.operator, problem.observation, clean=problem.clean,
               config=FitConfig(steps=steps, precision="fp32", score_at=score_at), stop=stop,
               metric=problem.metric, run_past_stop=True)


def test_the_last_milestone_is_exactly_a_plain_fit(problem):
    plain = _fit(problem, 30)
    scored = _fit(problem, 30, score_at=[10, 20, 30])
    assert sorted(scored.milestones) == [10, 20, 30]
    assert scored.milestones[30] == plain.scores == scored.scores
    assert torch.equal(scored.averaged, plain.averaged)


def test_an_earlier_milestone_is_a_shorter_fit(problem):
    short = _fit(problem, 10)
    at = _fit(problem, 30, score_at=[10]).milestones[10]
    for label in ("final", "averaged", "peak", "peak_averaged"):
        assert at[label] == short.scores[label], label


def test_the_stop_is_reported_only_from_the_milestone_at_which_it_fired(problem):
    rule = make_stopping_rule("fixed", step=15)
    scored = _fit(problem, 30, score_at=[10, 20, 30], stop=rule)
    assert "stopped" not in scored.milestones[10]
    for step in (20, 30):
        stopped = scored.milestones[step]["stopped"]
        assert stopped["fired"] and stopped["stop_step"] == 15 and stopped["step"] == 15
    assert scored.milestones[20]["stopped"] == scored.scores["stopped"]


def test_milestones_are_checked_and_do_not_rename_runs():
    with pytest.raises(LipError, match="score_at step"):
        FitConfig(steps=100, score_at=[50, 200])
    assert FitConfig(steps=100, score_at=[100, 50, 50]).score_at == (50, 100)
    assert "score_at" not in FitConfig().identity()
    assert FitConfig(score_at=[1000]).identity()["score_at"] == (1000,)


def test_lip_fit_writes_and_prints_its_milestones(tmp_path, capsys):
    import json

    from lottery_prior.cli import main

    out = tmp_path / "fit"
    code = main(["fit", "builtin:astronaut", "--size", "32", "--model-opt", "width=8",
                 "--model-opt", "scales=2", "--steps", "12", "--score-at", "6", "12",
                 "--precision", "fp32", "--quiet", "--out", str(out)])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    milestones = metrics["milestones"]
    assert sorted(milestones) == ["12", "6"]
    assert "at step 6: final iterate" in capsys.readouterr().out


def test_searching_rounds_shorter_than_a_milestone_skip_it(problem, tmp_path):
    from lottery_prior.lottery import ImpConfig, ImpRun

    run = ImpRun(problem, "dip", {"width": 8, "scales": 2},
                 FitConfig(steps=12, precision="fp32", score_at=[12]),
                 ImpConfig(rounds=2, search_steps=4), root=tmp_path)
    run.run()
    assert run.finished() is not None


def _milestone_sweep(root, imp: dict) -> list[dict]:
    """The rows of a tiny sweep (2 images, ticket and dense at 50%, 12-step fits scored at
    steps 6 and 12) with these IMP settings."""
    from lottery_prior.experiments.executor import run_local
    from lottery_prior.experiments.spec import parse_spec
    from lottery_prior.experiments.store import Store
    from lottery_prior.experiments.units import expand
    from lottery_prior.report.rows import read_results

    plan = expand(parse_spec({
        "grid": {"images": ["builtin:astronaut", "builtin:coffee"], "size": 32, "seeds": [0],
                 "sparsities": [0.5], "methods": ["ticket", "dense"]},
        "task": [{"name": "denoise", "sigma": 25}],
        "model": {"options": {"width": 8, "scales": 2, "skip": 2}},
        "fit": {"steps": 12, "score_at": [6, 12], "precision": "fp32"},
        "imp": imp,
    }), root)
    store = Store(root)
    run_local(plan, store, workers=0, show=False)
    store.write_tables([u.id for u in plan.units])
    return read_results(root)


def test_a_sweep_with_milestones_has_a_row_per_milestone_and_reports_either(tmp_path):
    from lottery_prior.report.claims import claims
    from lottery_prior.report.html import write_report
    from lottery_prior.report.rows import milestones, rows_at

    rows = _milestone_sweep(tmp_path, {"search_steps": 4})
    assert milestones(rows) == [6, 12] and len(rows) == 2 * 2 * 2  # images x methods x steps
    early, late = rows_at(rows, 6), rows_at(rows)
    assert {r["step"] for r in early} == {6} and {r["step"] for r in late} == {12}
    assert all(r["steps"] == 12 for r in rows)
    # the same fits, scored at two lengths: the claims differ
    at_6 = {c.claim: c.mean for c in claims(rows, at=6)}
    at_12 = {c.claim: c.mean for c in claims(rows)}
    key = next(k for k in at_12 if k.startswith("ticket ≥ dense"))
    assert at_6[key] != at_12[key]
    paths = write_report(tmp_path, tmp_path / "report-6", at=6)
    text = paths["markdown"].read_text()  # every score labelled with its step
    assert "PSNR, averaged output, at step 6" in text and "at step 12" not in text.split(
        "## Claims at each milestone")[0]
    with pytest.raises(LipError, match="no scores at step 7"):
        write_report(tmp_path, tmp_path / "report-7", at=7)


def test_the_search_target_is_a_grid_factor(tmp_path):
    from lottery_prior.experiments.spec import parse_spec
    from lottery_prior.experiments.units import expand

    data = {
        "grid": {"images": ["builtin:astronaut"], "size": 32, "seeds": [0, 1],
                 "sparsities": [0.5], "methods": ["ticket", "dense"]},
        "task": [{"name": "denoise", "sigma": 25}],
        "model": {"options": {"width": 8, "scales": 2, "skip": 2}},
        "fit": {"steps": 8, "precision": "fp32"},
        "imp": {"search_steps": 4, "target": ["observation", "clean"]},
    }
    plan = expand(parse_spec(data), tmp_path)
    searches = [u for u in plan.units if u.kind == "search"]
    assert sorted(u.payload["imp"]["target"] for u in searches) == [
        "clean", "clean", "observation", "observation"]
    assert len({u.id for u in searches}) == 4
    fits = [u for u in plan.units if u.kind == "fit"]
    assert len(fits) == 2 * 2 * 2 and len({u.id for u in fits}) == 8
    # one target is the single setting it always was: the same search ids
    single = expand(parse_spec({**data, "imp": {"search_steps": 4}}), tmp_path / "one")
    assert {u.id for u in single.units if u.kind == "search"} == {
        u.id for u in searches if u.payload["imp"]["target"] == "observation"}
    with pytest.raises(LipError, match=r"imp.target"):
        parse_spec({**data, "imp": {"target": ["clean", "clean"]}})


def test_the_protocol_table_pairs_each_setting_by_hand(tmp_path, monkeypatch):
    """benchmarks/protocol.py's cells against paired differences computed here: one factor
    changed at a time (target, step), and only comparisons of that setting in each."""
    import importlib.util
    import statistics
    from pathlib import Path

    path = Path(__file__).parents[1] / "benchmarks" / "protocol.py"
    module_spec = importlib.util.spec_from_file_location("protocol_bench", path)
    bench = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(bench)
    monkeypatch.setattr(bench, "OURS", bench.OURS | {"step": 6, "width": 8})
    rows = _milestone_sweep(tmp_path, {"search_steps": 4, "target": ["observation", "clean"]})

    def by_hand(target, step, score="psnr_averaged"):
        of = {(r["imp_run"], r["method"]): r[score] for r in rows
              if r["search_target"] == target and r["step"] == step}
        runs = {run for run, _ in of}
        assert len(runs) == 2  # one comparison per image
        return statistics.fmean(of[(run, "ticket")] - of[(run, "dense")] for run in runs)

    settings = [("ours", bench.OURS), ("clean", bench.OURS | {"target": "clean"}),
                ("late", bench.OURS | {"step": 12}),
                ("peak", bench.OURS | {"step": 12, "score": bench.PEAK})]
    lines = bench.table(rows, settings, [0.5]).splitlines()[2:]
    cells = {line.split(" | ")[0].lstrip("| "): line.split(" | ")[1] for line in lines}
    want = {"ours": by_hand("observation", 6), "clean": by_hand("clean", 6),
            "late": by_hand("observation", 12),
            "peak": by_hand("observation", 12, "psnr_peak_averaged")}
    for name, mean in want.items():
        assert cells[name].startswith(f"{mean:+.2f}".replace("-", "−")), name
        assert cells[name].endswith("(2 · 2)"), name
    # the settings differ (the peak is the averaged output while a 12-step fit still rises)
    assert len({want["ours"], want["clean"], want["late"]}) == 3
    assert "width 8" in bench.label(bench.OURS)

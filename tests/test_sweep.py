"""Sweeps: specs are checked key by key, units are content-addressed, a killed sweep resumes
without recomputing what finished, and worker processes give the same table."""

import copy
import json
import re
from pathlib import Path

import pytest
import torch

import lottery_prior.lottery as lottery_module
from lottery_prior.cli import main
from lottery_prior.errors import LipError
from lottery_prior.experiments.executor import run_local
from lottery_prior.experiments.spec import load_spec, parse_spec
from lottery_prior.experiments.store import Store
from lottery_prior.experiments.units import expand
from lottery_prior.finders import method_title
from lottery_prior.learned import LearnConfig
from lottery_prior.report.rows import read_results

TINY = {
    "grid": {"images": ["builtin:astronaut", "builtin:coffee"], "size": 32, "seeds": [0],
             "sparsities": [0.2, 0.5], "methods": ["ticket", "random", "decoder", "dense"]},
    "task": [{"name": "denoise", "sigma": 25}, {"name": "inpaint", "keep": 0.5}],
    "model": {"options": {"width": 8, "scales": 2, "skip": 2}},
    "fit": {"steps": 12},
    "imp": {"search_steps": 4},
    "transfer": {"sparsities": [0.5], "across_images": True,
                 "across_tasks": [["denoise", "inpaint"]]},
}
SCORES = ("psnr_final", "psnr_averaged", "psnr_peak_iterate", "psnr_peak_averaged", "sparsity",
          "parameters")


def spec_with(**changes):
    data = copy.deepcopy(TINY)
    for path, value in changes.items():
        *parents, key = path.split("__")
        table = data
        for p in parents:
            table = table[p]
        table[key] = value
    return data


@pytest.mark.parametrize(("changes", "key"), [
    ({"grid__imagez": ["x"]}, "grid.imagez"),
    ({"grid__sparsities": [0.2, 1.5]}, "grid.sparsities[1]"),
    ({"grid__methods": ["ticket", "lasso"]}, "grid.methods[1]"),
    ({"grid__seeds": [-1]}, "grid.seeds[0]"),
    ({"fit__steps": 0}, "fit.steps"),
    ({"fit__stop": "early"}, "fit.stop"),
    ({"imp__rate": 2.0}, "imp.rate"),
    ({"model__options": {"wdth": 8}}, "model.options.wdth"),
    ({"model__options": {"width": 8}}, "grid.size"),  # 5 scales need 64 px, the grid has 32
    ({"transfer__across_tasks": [["denoise", "sr"]]}, "transfer.across_tasks[0]"),
    ({"transfer__methods": ["ticket", "decoder"]}, "transfer.methods[1]"),
    ({"learned": {"stepz": 5}}, "learned.stepz"),
    ({"learned": {"temperature": 0}}, "learned.temperature"),
    ({"bogus": 1}, "bogus"),
])
def test_a_bad_spec_is_refused_with_the_keys_name(changes, key):
    with pytest.raises(LipError, match="^" + re.escape(key) + ": "):
        parse_spec(spec_with(**changes))


def test_a_bad_task_is_refused_with_its_place():
    data = spec_with(task=[{"name": "denoise", "sigma": 25}, {"name": "sr", "factor": 3}])
    with pytest.raises(LipError, match=r"^task\[1\]\.factor: "):
        parse_spec(data)
    with pytest.raises(LipError, match=r"^task\[0\]\.keep: unknown key"):
        parse_spec(spec_with(task=[{"name": "denoise", "keep": 0.5}]))


def test_a_spec_file_error_names_the_file(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("[grid\nimages = 1")
    with pytest.raises(LipError, match="broken.toml is not valid TOML"):
        load_spec(path)


def test_units_are_addressed_by_their_settings(tmp_path):
    plan = expand(parse_spec(TINY), tmp_path)
    kinds = [u.kind for u in plan.units]
    # 2 images x 2 tasks x 1 seed searches; per search: 3 methods x 2 sparsities + dense
    assert kinds.count("search") == 4 and kinds.count("fit") == 4 * 7
    # across images (2 per task, 2 tasks) and denoise -> inpaint (2 images), at one sparsity
    assert kinds.count("transfer") == 6
    assert len({u.id for u in plan.units}) == len(plan.units)
    again = expand(parse_spec(TINY), tmp_path)
    assert [u.id for u in again.units] == [u.id for u in plan.units]
    other = expand(parse_spec(spec_with(grid__seeds=[1])), tmp_path)
    assert not {u.id for u in other.units} & {u.id for u in plan.units}
    searches = {u.id for u in plan.units if u.kind == "search"}
    assert all(u.deps and set(u.deps) <= searches for u in plan.units if u.kind != "search")


def count_fits(monkeypatch) -> list[int]:
    calls = [0]
    original = lottery_module.fit

    def counted(*args, **kwargs):
        calls[0] += 1
        return original(*args, **kwargs)
    monkeypatch.setattr(lottery_module, "fit", counted)
    return calls


def test_a_killed_sweep_resumes_without_rerunning_finished_units(tmp_path, monkeypatch):
    calls = count_fits(monkeypatch)
    full = expand(parse_spec(TINY), tmp_path / "full")
    run_local(full, Store(tmp_path / "full"), workers=0, show=False)
    uninterrupted = calls[0]

    calls[0] = 0
    plan = expand(parse_spec(TINY), tmp_path / "killed")
    store = Store(tmp_path / "killed")
    finished = []

    def kill_after_ten(unit):
        finished.append(unit.id)
        if len(finished) == 10:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        run_local(plan, store, workers=0, show=False, on_finish=kill_after_ten)
    assert len(read_results(tmp_path / "killed")) > 0  # the table is there mid-way
    ran = run_local(plan, store, workers=0, show=False)
    assert ran == len(plan.units) - 10
    assert calls[0] == uninterrupted  # no fit was done twice
    assert run_local(plan, store, workers=0, show=False) == 0

    rows = {r["unit"]: r for r in read_results(tmp_path / "killed")}
    want = {r["unit"]: r for r in read_results(tmp_path / "full")}
    assert rows.keys() == want.keys()
    for unit, row in rows.items():
        assert {k: row[k] for k in SCORES} == {k: want[unit][k] for k in SCORES}


def test_rows_label_every_setting_and_score(tmp_path):
    plan = expand(parse_spec(spec_with(transfer={}, task=[{"name": "denoise", "sigma": 25}])),
                  tmp_path)
    run_local(plan, Store(tmp_path), workers=0, show=False)
    rows = read_results(tmp_path)
    assert {r["method"] for r in rows} == {"ticket", "random", "decoder", "dense"}
    for r in rows:
        assert r["psnr_averaged"] > 0 and r["psnr_peak_averaged"] >= r["psnr_averaged"] - 1e-9
        assert (tmp_path / r["output"]).is_file() and (tmp_path / r["clean"]).is_file()
        assert r["noise_seed"] == 0 and r["sigma"] == 25 and r["steps"] == 12
        assert r["precision"] == "fp32" and r["device"]  # what ran, and on what
    ticket = [r for r in rows if r["method"] == "ticket"]
    assert sorted(r["requested_sparsity"] for r in ticket) == [0.2, 0.2, 0.5, 0.5]
    assert all(abs(r["sparsity"] - r["requested_sparsity"]) < 0.02 for r in ticket)


def test_worker_processes_give_the_same_table(tmp_path):
    data = spec_with(transfer={}, task=[{"name": "denoise", "sigma": 25}],
                     grid__methods=["ticket", "random"], grid__sparsities=[0.2])
    for workers, folder in ((0, "inline"), (2, "pool")):
        run_local(expand(parse_spec(data), tmp_path / folder), Store(tmp_path / folder),
                  workers=workers, show=False)
    inline = {r["unit"]: r for r in read_results(tmp_path / "inline")}
    pool = {r["unit"]: r for r in read_results(tmp_path / "pool")}
    assert inline.keys() == pool.keys() and len(inline) == 4
    for unit, row in pool.items():
        assert {k: row[k] for k in SCORES} == {k: inline[unit][k] for k in SCORES}


def test_dry_run_lists_units_and_their_cost(tmp_path, capsys):
    spec = tmp_path / "tiny.toml"
    spec.write_text('[grid]\nimages = ["builtin:astronaut"]\nsize = 32\nsparsities = [0.5]\n'
                    'methods = ["ticket", "dense"]\n[[task]]\nname = "denoise"\n'
                    '[model]\noptions = { width = 8, scales = 2, skip = 2 }\n[fit]\nsteps = 5\n')
    assert main(["sweep", str(spec), "--out", str(tmp_path / "res"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.count("todo") == 3 and "3 of 3 units left" in out and "CPU-thread hours" in out
    assert not (tmp_path / "res" / "units").exists()


@pytest.mark.parametrize("load", [None, 4.0])
def test_dry_run_costs_units_from_the_measured_ms_and_says_when_they_run_high(
        tmp_path, capsys, monkeypatch, load):
    """5-step fits and 2 searches of 5 + 2 x 5 steps at a measured 1200 ms a step: the
    estimate is their steps x 1.2 s; a timing measured on a busy machine is flagged."""
    from lottery_prior.precision import cache_key

    monkeypatch.setenv("LIP_CACHE", str(tmp_path / "cache"))
    options = {"width": 8, "scales": 2, "skip": 2}
    key = cache_key(torch.device("cpu"), "dip", options, (32, 32))
    busy = {} if load is None else {"load": load, "cpus": 2, "threads": 1}
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "precision.json").write_text(json.dumps({"format": 1, "entries": {
        key: {"choice": "fp32", "ms": {"fp32": 1200.0}, **busy}}}))
    spec = tmp_path / "tiny.toml"
    spec.write_text('[grid]\nimages = ["builtin:astronaut"]\nsize = 32\nsparsities = [0.5]\n'
                    'methods = ["ticket", "dense"]\n[[task]]\nname = "denoise"\n'
                    '[model]\noptions = { width = 8, scales = 2, skip = 2 }\n'
                    '[fit]\nsteps = 5\nprecision = "fp32"\n[imp]\nrate = 0.5\n')
    assert main(["sweep", str(spec), "--out", str(tmp_path / "res"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    plan = expand(load_spec(spec), tmp_path / "res")
    steps = sum(u.cost for u in plan.units) / 1.2
    assert steps == pytest.approx(5 + 5 + 5 * (1 + plan.runs[plan.units[0].id].imp.n_rounds))
    assert "from the ms per step measured here" in out
    assert ("busy (load 4.0 on 2 cores): an overestimate" in out) == (load is not None)


def test_learned_masks_are_units_shared_by_their_fits_and_transfers(tmp_path):
    data = spec_with(task=[{"name": "denoise", "sigma": 25}], learned={"steps": 6},
                     grid__methods=["ticket", "learned", "random-layerwise"],
                     grid__sparsities=[0.5],
                     transfer={"sparsities": [0.5], "across_images": True,
                               "methods": ["ticket", "learned", "random-layerwise"]})
    plan = expand(parse_spec(data), tmp_path)
    units = plan.by_id()
    learns = [u for u in plan.units if u.kind == "learn"]
    # every learned setting is in the payload, resolved: another default is another unit
    assert learns[0].payload["learned"]["steps"] == 6
    assert learns[0].payload["learned"]["temperature"] == LearnConfig.temperature
    assert len(learns) == 2  # one per search and sparsity
    for u in plan.units:
        if u.payload.get("method") == "learned":
            assert any(units[d].kind == "learn" for d in u.deps)
    run_local(plan, Store(tmp_path), workers=0, show=False)
    rows = read_results(tmp_path)
    fits = {(r["image"], r["method"]): r for r in rows if r["kind"] == "fit"}
    for image in ("astronaut", "coffee"):
        ticket, learned = fits[(f"builtin:{image}", "ticket")], fits[(f"builtin:{image}",
                                                                       "learned")]
        assert learned["sparsity"] == ticket["sparsity"]  # counted, at the IMP round's
        assert learned["find_seconds"] > 0 and ticket["find_seconds"] > 0
    transfers = [r for r in rows if r["kind"] == "transfer"]
    assert sorted(r["method"] for r in transfers) == sorted(
        ["ticket", "learned", "random-layerwise"] * 2)
    assert all(r["source_image"] != r["image"] for r in transfers)
    # the learned masks were learned once each, for the fit and the transfer alike
    assert len(list((tmp_path / "runs").glob("learned-*/ticket.safetensors"))) == 2


def test_the_committed_small_denoise_results_are_found_again(shared_data, monkeypatch):
    """The committed small denoising rows carry the ids the spec expands to today (fits,
    transfers and the searches they were matched to), so a rerun of the spec recomputes
    nothing, and their comparisons pair them."""
    import lottery_prior.problem as problem_module

    monkeypatch.setenv("LIP_DATA", str(shared_data))
    # they ran where precision auto is bf16 (native): resolve it so here too
    monkeypatch.setattr(problem_module, "resolve", lambda *args, **kwargs: "bf16")
    root = Path(__file__).parent.parent
    rows = read_results(root / "benchmarks/results/paper_small/denoise/results.csv")
    plan = expand(load_spec(root / "experiments/paper/small/denoise.toml"), root / "unused")
    ids = {u.id for u in plan.units}
    assert {r["unit"] for r in rows} <= ids and {r["imp_run"] for r in rows} <= ids
    assert {r["target_run"] for r in rows} <= ids


EXPERIMENTS = Path(__file__).parent.parent / "experiments"
SPECS = sorted(EXPERIMENTS.rglob("*.toml"))


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_the_shipped_specs_are_valid(path, shared_data, monkeypatch):
    monkeypatch.setenv("LIP_DATA", str(shared_data))
    spec = load_spec(path)
    assert spec.images and all(not i.endswith("_mask") for i in spec.images)
    if path.parent.name == "small" and path.stem in ("denoise", "inpaint", "sr"):
        # every claim answered: >= 3 images x >= 2 seeds
        assert len(spec.images) >= 3 and len(spec.seeds) >= 2
        assert {"ticket", "random", "random-layerwise", "decoder", "dense"} <= set(spec.methods)
        assert spec.transfer_sparsities and spec.size == 128


def test_the_paper_specs_exist():
    names = {p.relative_to(EXPERIMENTS).as_posix() for p in SPECS}
    for task in ("denoise", "inpaint", "sr"):
        assert f"paper/{task}.toml" in names and f"paper/small/{task}.toml" in names


# --- the seams between runs, finders and sweeps -------------------------------------------

DENOISE = [{"name": "denoise", "sigma": 25}]


def write_images(folder: Path, names=("a", "b"), masks=False) -> list[Path]:
    """Small PNG files (and ``<name>_mask.png`` inpainting masks) a spec can glob."""
    from lottery_prior.images import load_image, save_image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, builtin in zip(names, ("astronaut", "coffee", "chelsea"), strict=False):
        save_image(load_image(f"builtin:{builtin}", size=32), folder / f"{name}.png")
        paths.append(folder / f"{name}.png")
        if masks:
            save_image(torch.rand(1, 32, 32) > 0.5, folder / f"{name}_mask.png")
    return paths


def transfer_ids(plan) -> dict[str, str]:
    return {u.label: u.id for u in plan.units if u.kind == "transfer"}


def test_a_transfer_is_named_by_its_targets_content(tmp_path):
    """Overwriting the target image (or its inpainting mask) in place gives the transfer a
    new id: its old row is never reused nor paired with the new own-ticket row."""
    a, b = write_images(tmp_path / "photos", masks=True)
    for task in (DENOISE, [{"name": "inpaint", "mask": "{image}_mask"}]):
        data = spec_with(task=task, grid__images=[str(tmp_path / "photos" / "*.png")],
                         grid__methods=["ticket"], transfer={"sparsities": [0.5],
                                                             "across_images": True})
        before = transfer_ids(expand(parse_spec(data), tmp_path / "out"))
        changed = b.with_name("b_mask.png") if task[0]["name"] == "inpaint" else b
        original = changed.read_bytes()
        write_images(tmp_path / "other", names=("b",), masks=True)
        source = tmp_path / "other" / changed.name
        changed.write_bytes(source.read_bytes())
        after = transfer_ids(expand(parse_spec(data), tmp_path / "out"))
        to_b = [k for k in before if k.split(" -> ")[1].startswith(str(b))]
        assert to_b and all(before[k] != after[k] for k in to_b)
        changed.write_bytes(original)


def test_unit_ids_hold_every_resolved_setting_and_no_device(tmp_path, monkeypatch):
    import lottery_prior.learned as learned_module

    data = spec_with(task=DENOISE, transfer={}, learned={}, grid__methods=["ticket", "learned"],
                     grid__sparsities=[0.5])
    ids = [u.id for u in expand(parse_spec(data), tmp_path).units]
    on_cpu = [u.id for u in expand(parse_spec(spec_with(
        task=DENOISE, transfer={}, learned={}, grid__methods=["ticket", "learned"],
        grid__sparsities=[0.5], fit={"steps": 12, "device": "cpu"})), tmp_path).units]
    assert on_cpu == ids  # where a unit runs is not part of its id
    monkeypatch.setattr(learned_module, "SEARCH_STEPS_PER_ROUND", 50)  # another default
    again = [u.id for u in expand(parse_spec(data), tmp_path).units]
    changed = {a for a, b in zip(ids, again, strict=True) if a != b}
    assert changed and all(i.startswith(("learn-", "fit-")) for i in changed)


def test_a_sweep_resumed_on_another_device_reruns_nothing(tmp_path):
    data = spec_with(task=DENOISE, transfer={}, grid__methods=["ticket", "dense"],
                     grid__sparsities=[0.5], grid__images=["builtin:astronaut"])
    plan = expand(parse_spec(data), tmp_path)
    assert run_local(plan, Store(tmp_path), workers=0, show=False) == len(plan.units)
    assert run_local(expand(parse_spec(data), tmp_path), Store(tmp_path), workers=0,
                     show=False, device="cpu") == 0


def test_learned_fits_and_transfers_read_the_mask_without_its_lock(tmp_path):
    """A fit or transfer of a learned mask only reads the finished ticket: it never waits
    for (or is refused by) the learned run's lock, held here as a running fit would."""
    from lottery_prior.files import RunLock

    data = spec_with(task=DENOISE, learned={"steps": 4}, grid__methods=["learned"],
                     grid__sparsities=[0.5],
                     transfer={"sparsities": [0.5], "across_images": True,
                               "methods": ["learned"]})
    plan = expand(parse_spec(data), tmp_path)
    store = Store(tmp_path)
    run_local(plan, store, workers=0, show=False)
    users = [u for u in plan.units if u.kind in ("fit", "transfer")]
    for unit in users:
        store.path(unit.id).unlink()
    locks = [RunLock(f).acquire() for f in (tmp_path / "runs").glob("learned-*")]
    try:
        assert run_local(expand(parse_spec(data), tmp_path), Store(tmp_path), workers=0,
                         show=False) == len(users)
    finally:
        for lock in locks:
            lock.release()


def test_channel_methods_need_a_channel_search(tmp_path):
    with pytest.raises(LipError, match=r"^grid\.methods\[1\]: 'narrow': matched to channels"):
        parse_spec(spec_with(grid__methods=["ticket", "narrow"]))
    with pytest.raises(LipError, match=r"^transfer\.methods\[0\]: 'decoder': not a mask"):
        parse_spec(spec_with(transfer__methods=["decoder"]))
    data = spec_with(task=DENOISE, transfer={}, grid__images=["builtin:astronaut"],
                     grid__methods=["ticket", "random-channels", "narrow", "dense"],
                     grid__sparsities=[0.4], imp={"structure": "channels", "search_steps": 4})
    with pytest.raises(LipError, match=r"^grid\.methods\[1\]: 'learned'"):
        parse_spec({**data, "grid": {**data["grid"], "methods": ["ticket", "learned"]}})
    plan = expand(parse_spec(data), tmp_path)
    run_local(plan, Store(tmp_path), workers=0, show=False)
    rows = {r["method"]: r for r in read_results(tmp_path)}
    assert set(rows) == {"ticket", "random-channels", "narrow", "dense"}
    assert rows["narrow"]["method_label"].startswith("narrow (width=")
    assert rows["random-channels"]["gflop_step"] == rows["ticket"]["gflop_step"]


def test_the_readmes_inpainting_spec_with_mask_files(tmp_path, monkeypatch):
    """``images = ["photos/*.png"]`` with ``mask = "{image}_mask"``: the masks are not images,
    and each image finds its own mask file, extension and all."""
    write_images(tmp_path / "photos", masks=True)
    monkeypatch.chdir(tmp_path)
    spec = parse_spec(spec_with(grid__images=["photos/*.png"], transfer={},
                                task=[{"name": "inpaint", "mask": "{image}_mask"}]))
    assert spec.images == ["photos/a.png", "photos/b.png"]
    assert spec.tasks[0].for_image("photos/a.png")["mask"] == "photos/a_mask.png"
    plan = expand(spec, tmp_path / "out")
    assert sum(u.kind == "search" for u in plan.units) == 2


def test_a_deleted_or_damaged_run_folder_is_computed_again(tmp_path):
    """The search's "done" is its run folder, finished and readable: deleting or damaging it
    makes the sweep compute it again instead of failing for good."""
    import shutil

    data = spec_with(task=DENOISE, transfer={}, grid__methods=["ticket", "random"],
                     grid__sparsities=[0.5])
    plan = expand(parse_spec(data), tmp_path)
    run_local(plan, Store(tmp_path), workers=0, show=False)
    searches = [u for u in plan.units if u.kind == "search"]
    shutil.rmtree(tmp_path / "runs" / searches[0].id)
    (tmp_path / "runs" / searches[1].id / "round-01" / "record.json").write_text("{")
    fit = next(u for u in plan.units if u.kind == "fit" and u.deps == (searches[0].id,))
    Store(tmp_path).path(fit.id).unlink()
    again = expand(parse_spec(data), tmp_path)
    assert run_local(again, Store(tmp_path), workers=0, show=False) == 3
    assert len(read_results(tmp_path)) == 4


def test_tables_are_not_rebuilt_from_every_unit_file_after_each_unit(tmp_path, monkeypatch):
    reads = []
    original = Store._read
    monkeypatch.setattr(Store, "_read", lambda self, u: reads.append(u) or original(self, u))
    plan = expand(parse_spec(spec_with(task=DENOISE, transfer={})), tmp_path)
    run_local(plan, Store(tmp_path), workers=0, show=False)
    assert len(reads) == len(set(reads)) <= len(plan.units)  # each unit file read once at most


FAILING = "fit-that-fails"


def fake_work(unit, root, device):
    """A unit's work in a worker process (importable): the unit named FAILING fails at once,
    the others take a moment and return one row."""
    import time as _time

    if unit.id == FAILING:
        raise LipError("boom")
    _time.sleep(1.5)
    return [{"unit": unit.id, "output": "missing.png"}]


def test_a_failing_unit_keeps_the_rows_that_finished_meanwhile(tmp_path):
    from lottery_prior.experiments.units import Plan, Unit

    units = [Unit(FAILING, "fit", {}, label="the failing fit"),
             Unit("fit-slow", "fit", {}, label="a slow fit"),
             Unit("fit-later", "fit", {}, label="a fit never started")]
    store = Store(tmp_path)
    with pytest.raises(LipError, match="^unit the failing fit failed: boom$"):
        run_local(Plan(None, tmp_path, units), store, workers=2, show=False, work=fake_work)
    assert Store(tmp_path).rows("fit-slow") is not None  # finished meanwhile: kept
    assert Store(tmp_path).rows("fit-later") is None  # no new unit after the failure


def dying_work(unit, root, device):
    """A worker killed by the system, as the OOM killer would."""
    import os as _os
    import signal

    _os.kill(_os.getpid(), signal.SIGKILL)


def test_a_killed_worker_ends_the_sweep_with_one_line(tmp_path):
    from lottery_prior.experiments.units import Plan, Unit

    units = [Unit("fit-a", "fit", {}, label="the killed fit")]
    with pytest.raises(LipError) as info:
        run_local(Plan(None, tmp_path, units), Store(tmp_path), workers=1, show=False,
                  work=dying_work)
    message = str(info.value)
    assert "\n" not in message and "worker process died" in message
    assert "the killed fit" in message and "rerun the same command to resume" in message


def test_one_sweep_at_a_time_and_its_own_temporaries_cleaned(tmp_path):
    from lottery_prior.experiments.sweep import Sweep
    from lottery_prior.files import RunLock

    sweep = Sweep(parse_spec(spec_with(task=DENOISE, transfer={}, grid__methods=["dense"],
                                       grid__images=["builtin:astronaut"])), tmp_path)
    leftovers = [tmp_path / ".results.parquet.123.abcd.tmp",
                 tmp_path / "units" / ".fit-x.json.123.abcd.tmp",
                 tmp_path / "images" / "problem-x" / ".clean.png.1.ab.tmp"]
    for path in leftovers:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("half")
    with RunLock(tmp_path), pytest.raises(LipError, match="in use by process"):
        sweep.run(workers=0, show=False)
    assert all(p.exists() for p in leftovers)  # nothing touched while another sweep holds it
    assert sweep.run(workers=0, show=False) == 2
    assert not any(p.exists() for p in leftovers)


def test_an_expensive_sweep_asks_first(tmp_path, monkeypatch, capsys):
    import io

    spec = tmp_path / "tiny.toml"
    spec.write_text('[grid]\nimages = ["builtin:astronaut"]\nsize = 32\nsparsities = [0.5]\n'
                    'methods = ["dense"]\n[[task]]\nname = "denoise"\n'
                    '[model]\noptions = { width = 8, scales = 2, skip = 2 }\n[fit]\nsteps = 5\n')
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # not a terminal: no one to ask
    args = ["sweep", str(spec), "--out", str(tmp_path / "res"), "--quiet", "--workers", "0"]
    assert main([*args, "--confirm-hours", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert "CPU-thread hours" in err and "add --yes" in err
    assert not (tmp_path / "res" / "units").exists()
    assert main([*args, "--confirm-hours", "0", "--yes"]) == 0
    assert main(args) == 0  # under the threshold: no question


def test_rows_and_reports_say_where_the_stop_fired(tmp_path):
    """Each row holds the step the automatic stop fired at (or none), whether it fired, the
    rule's settings; the IMP records hold them too; the report shows the median stop step
    and the worst loss against the averaged output's oracle peak, per method."""
    from lottery_prior.report.html import summary_rows

    spec = spec_with(grid__images=["builtin:coffee"], grid__sparsities=[0.2],
                     grid__methods=["ticket", "dense"], fit__stop="wmv", fit__steps=110)
    spec["task"] = [TINY["task"][0]]  # 110 steps: one check of the window of 100
    del spec["transfer"]
    plan = expand(parse_spec(spec), tmp_path)
    run_local(plan, Store(tmp_path), workers=0, show=False)
    rows = read_results(tmp_path)
    assert rows and all(r["stop_rule"] == "wmv(window=100, patience=200, keep=mean)"
                        and r["stop_fired"] is False and r["stop_step"] is None
                        and 100 <= r["step_stopped"] <= 110 for r in rows)
    record = next((tmp_path / "runs").glob("imp-*/round-01/record.json"))
    assert {"stop_step", "fired", "rule"} <= set(json.loads(record.read_text())
                                                 ["scores"]["stopped"])
    fired = [r | {"stop_fired": True, "stop_step": 300 + 100 * i,
                  "psnr_peak_averaged": r["psnr_stopped"] + i} for i, r in enumerate(rows)]
    table = {r["method"]: r for r in summary_rows(fired)}
    for i, row in enumerate(fired):
        cells = table[method_title(row["method"])]
        assert cells["stop step, median (fired)"] == f"{300 + 100 * i} (1 of 1)"
        worst = cells["loss at the stop vs peak, averaged (median / worst, dB)"]
        assert worst == f"{i:.2f} / {i:.2f}"

"""The Ray executor: a tiny sweep on a local Ray gives the same table as the local executor,
a finished sweep reruns nothing, a failing unit stops the sweep naming it, and GPUs are asked
for by image size. Ray is an optional extra: these tests skip without it, except in CI (``CI``
set), which installs it and must not hide a missing Ray."""

import copy
import dataclasses
import os
import sys

import pytest

from lottery_prior.errors import LipError
from lottery_prior.experiments.executor import run_local
from lottery_prior.experiments.ray_executor import MISSING, run_ray, task_gpus
from lottery_prior.experiments.spec import parse_spec
from lottery_prior.experiments.store import Store
from lottery_prior.experiments.units import Plan, expand
from lottery_prior.report.rows import read_results

TINY = {
    "grid": {"images": ["builtin:astronaut", "builtin:coffee"], "size": 32, "seeds": [0],
             "sparsities": [0.2, 0.5], "methods": ["ticket", "random", "dense"]},
    "task": [{"name": "denoise", "sigma": 25}],
    "model": {"options": {"width": 8, "scales": 2, "skip": 2}},
    "fit": {"steps": 20},
    "imp": {"search_steps": 5},
    "transfer": {"sparsities": [0.5], "across_images": True},
}
VARYING = {"seconds", "find_seconds", "ms_step"}  # timings; every other column must match


def _ray():
    """The ray module; skip without it (fail in CI, which installs the extra)."""
    try:
        import ray
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("CI is set but Ray is not installed: pip install -e '.[ray]'",
                        pytrace=False)
        pytest.skip("Ray is not installed (pip install 'lottery_prior[ray]')")
    return ray


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray of 2 CPUs and one GPU for this module's tests, shut down after them. The
    GPU is real where CUDA is, else a stand-in that Ray schedules but torch cannot use: the
    tests that must run on a CPU say so (``--device cpu``: tasks ask for no GPU)."""
    ray = _ray()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # no token written in the home folder
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, configure_logging=False)
    yield ray
    ray.shutdown()


def test_ray_gives_the_local_table_and_reruns_nothing(local_ray, tmp_path):
    spec = parse_spec(copy.deepcopy(TINY))
    local, remote = tmp_path / "local", tmp_path / "ray"
    # on the CPU in both, though the cluster has a GPU: --device cpu asks for none (and a
    # GPU would not give numbers identical to the CPU's)
    local_plan, ray_plan = expand(spec, local), expand(spec, remote)
    assert [u.id for u in local_plan.units] == [u.id for u in ray_plan.units]
    n = len(ray_plan.units)  # 2 searches, 2 x 5 fits, 2 transfers
    assert n == 14

    assert run_local(local_plan, Store(local), workers=0, show=False, device="cpu") == n
    assert run_ray(ray_plan, Store(remote), show=False, device="cpu") == n

    expected = {r["unit"]: r for r in read_results(local)}
    got = {r["unit"]: r for r in read_results(remote)}
    assert set(got) == set(expected) and len(got) == 12  # one row per fit and transfer
    for unit, row in got.items():
        assert set(row) == set(expected[unit])
        for column in set(row) - VARYING:
            assert row[column] == expected[unit][column], (column, row["method_label"])
        assert row["psnr_final"] is not None and row["psnr_averaged"] is not None
    assert (remote / "results.csv").is_file()
    assert all((remote / r["output"]).is_file() for r in got.values())

    # finished: nothing runs again (not even Ray is needed for that)
    assert run_ray(ray_plan, Store(remote), show=False, device="cpu") == 0
    assert run_ray(expand(spec, remote), Store(remote), show=False) == 0  # any device


def test_a_failing_unit_stops_the_sweep_naming_it(local_ray, tmp_path):
    plan = expand(parse_spec(copy.deepcopy(TINY)), tmp_path)
    search = plan.units[0]
    fit = next(u for u in plan.units if u.kind == "fit" and u.deps == (search.id,))
    # a fit without its search: the worker refuses (the IMP run has no rounds)
    orphan = dataclasses.replace(fit, deps=())
    with pytest.raises(LipError) as info:
        run_ray(Plan(plan.spec, plan.root, [orphan], plan.runs), Store(tmp_path), show=False,
                device="cpu")
    message = str(info.value)
    assert "\n" not in message and fit.label in message and "has not finished" in message

    # a failing search: its fit never runs, and the error names the search, not the fit
    bad = {**search.payload, "problem": {**search.payload["problem"], "image": "builtin:nope"}}
    broken = dataclasses.replace(search, payload=bad, label="search of a missing image")
    dependent = dataclasses.replace(fit, deps=(broken.id,))
    with pytest.raises(LipError, match="search of a missing image") as info:
        run_ray(Plan(plan.spec, plan.root, [broken, dependent], plan.runs), Store(tmp_path),
                show=False, device="cpu")
    assert "\n" not in str(info.value)
    assert Store(tmp_path).rows(dependent.id) is None


def test_a_failure_lets_the_running_units_finish_and_keeps_their_work(local_ray, tmp_path):
    """As with the local executor: a unit failing beside a running one stops no running work
    (it finishes and is stored) and starts nothing new; the error names the failed unit."""
    plan = expand(parse_spec(copy.deepcopy(TINY)), tmp_path)
    first, search = [u for u in plan.units if u.kind == "search"]  # astronaut, coffee
    bad = {**first.payload, "problem": {**first.payload["problem"], "image": "builtin:nope"}}
    broken = dataclasses.replace(first, payload=bad, label="search of a missing image")
    after = next(u for u in plan.units if u.kind == "fit" and u.deps == (search.id,))
    with pytest.raises(LipError, match="search of a missing image"):
        run_ray(Plan(plan.spec, plan.root, [broken, search, after], plan.runs),
                Store(tmp_path), show=False, device="cpu")
    assert search.id in plan.done(Store(tmp_path))  # ran beside the failure, kept
    assert Store(tmp_path).rows(after.id) is None  # not started after the failure


def test_gpus_are_asked_for_by_image_size(tmp_path):
    plan = expand(parse_spec(copy.deepcopy(TINY)), tmp_path)
    unit = plan.units[1]
    search = unit.payload["search"]
    large = dataclasses.replace(unit, payload={
        **unit.payload, "search": {**search, "problem": {**search["problem"], "size": 512}}})
    assert task_gpus(unit, 0) == 0  # a CPU-only cluster
    assert task_gpus(unit, 4) == 0.25  # 32x32 pixels: a quarter of a GPU
    assert task_gpus(large, 4) == 1.0
    assert task_gpus(unit, 4, gpu_per_fit=0.5) == 0.5
    assert task_gpus(unit, 4, device="cpu") == 0  # lip sweep --device cpu
    transfer = next(u for u in plan.units if u.kind == "transfer")
    assert task_gpus(transfer, 1) == 0.25  # by the target image
    with pytest.raises(LipError, match="gpu_per_fit"):
        run_ray(plan, Store(tmp_path), gpu_per_fit=1.5, show=False)


def test_without_ray_a_one_line_error(monkeypatch, tmp_path):
    plan = expand(parse_spec(copy.deepcopy(TINY)), tmp_path)
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(LipError) as info:
        run_ray(plan, Store(tmp_path), show=False)
    assert str(info.value) == MISSING == "Ray is not installed: pip install 'lottery_prior[ray]'"


def test_on_a_cluster_with_a_gpu_fits_run_on_it(local_ray, tmp_path):
    import torch

    plan = expand(parse_spec(copy.deepcopy(TINY)), tmp_path)  # device: CUDA if available
    with pytest.raises(LipError, match="asks for 2 GPUs but the cluster has 1"):
        run_ray(plan, Store(tmp_path), gpu_per_fit=2, show=False)  # refused before any task
    if torch.cuda.is_available():
        assert run_ray(plan, Store(tmp_path), show=False) == len(plan.units)
        assert all("no GPU" not in r["machine"] for r in read_results(tmp_path))
    else:  # the search was given the stand-in GPU (a quarter of it): its fits asked for CUDA
        with pytest.raises(LipError, match="CUDA was requested"):
            run_ray(Plan(plan.spec, plan.root, plan.units[:1], plan.runs), Store(tmp_path),
                    show=False)

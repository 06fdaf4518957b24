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
from lottery_prior.experiments.store import Store, read_results
from lottery_prior.experiments.units import Plan, expand

TINY = {
    "grid": {"images": ["builtin:astronaut", "builtin:coffee"], "size": 32, "seeds": [0],
             "sparsities": [0.2, 0.5], "methods": ["ticket", "random", "dense"]},
    "task": [{"name": "denoise", "sigma": 25}],
    "model": {"options": {"width": 8, "scales": 2, "skip": 2}},
    "fit": {"steps": 20},
    "imp": {"search_steps": 5},
    "transfer": {"sparsities": [0.5], "across_images": True},
}
VARYING = {"seconds"}  # every other column must match: same seeds, same numbers


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
    """A local Ray of 2 CPUs for this module's tests, shut down after them."""
    ray = _ray()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False)
    yield ray
    ray.shutdown()


def test_ray_gives_the_local_table_and_reruns_nothing(local_ray, tmp_path):
    spec = parse_spec(copy.deepcopy(TINY))
    local, remote = tmp_path / "local", tmp_path / "ray"
    local_plan, ray_plan = expand(spec, local), expand(spec, remote)
    assert [u.id for u in local_plan.units] == [u.id for u in ray_plan.units]
    n = len(ray_plan.units)  # 2 searches, 2 x 5 fits, 2 transfers
    assert n == 14

    assert run_local(local_plan, Store(local), workers=0, show=False) == n
    assert run_ray(ray_plan, Store(remote), show=False) == n

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
    assert run_ray(ray_plan, Store(remote), show=False) == 0
    assert run_ray(expand(spec, remote), Store(remote), show=False) == 0


def test_a_failing_unit_stops_the_sweep_naming_it(local_ray, tmp_path):
    plan = expand(parse_spec(copy.deepcopy(TINY)), tmp_path)
    search = plan.units[0]
    fit = next(u for u in plan.units if u.kind == "fit" and u.deps == (search.id,))
    # a fit without its search: the worker refuses (the IMP run has no rounds)
    orphan = dataclasses.replace(fit, deps=())
    with pytest.raises(LipError) as info:
        run_ray(Plan(plan.spec, [orphan]), Store(tmp_path), show=False)
    message = str(info.value)
    assert "\n" not in message and fit.label in message and "has not finished round 0" in message

    # a failing search: its fit never runs, and the error names the search, not the fit
    bad = {**search.payload, "problem": {**search.payload["problem"], "image": "builtin:nope"}}
    broken = dataclasses.replace(search, payload=bad, label="search of a missing image")
    dependent = dataclasses.replace(fit, deps=(broken.id,))
    with pytest.raises(LipError, match="search of a missing image") as info:
        run_ray(Plan(plan.spec, [broken, dependent]), Store(tmp_path), show=False)
    assert "\n" not in str(info.value)
    assert Store(tmp_path).done([broken.id, dependent.id]) == set()


def test_gpus_are_asked_for_by_image_size(tmp_path):
    plan = expand(parse_spec(copy.deepcopy(TINY)), tmp_path)
    unit = plan.units[1]
    large = dataclasses.replace(unit, payload={
        **unit.payload, "problem": {**unit.payload["problem"], "size": 512}})
    on_cpu = dataclasses.replace(unit, payload={
        **unit.payload, "fit": {**unit.payload["fit"], "device": "cpu"}})
    assert task_gpus(unit, 0) == 0  # a CPU-only cluster
    assert task_gpus(unit, 4) == 0.25  # 32x32 pixels: a quarter of a GPU
    assert task_gpus(large, 4) == 1.0
    assert task_gpus(unit, 4, gpu_per_fit=0.5) == 0.5
    assert task_gpus(on_cpu, 4) == 0  # lip sweep --device cpu
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

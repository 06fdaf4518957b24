"""Precision chosen by measuring: the rule auto applies to timings, the cache (atomic,
refused when damaged, per torch and device), what runs and what is recorded."""

import json
import logging

import pytest
import torch

import lottery_prior.precision as precision
from lottery_prior.cli import main
from lottery_prior.errors import LipError
from lottery_prior.fit import FitConfig
from lottery_prior.lottery import ImpConfig, ImpRun
from lottery_prior.precision import PREFER, choose, resolve
from lottery_prior.problem import build_prior, make_problem

TINY = {"width": 8, "scales": 2, "skip": 2}
CPU = torch.device("cpu")


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LIP_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "precision.json"


@pytest.fixture(scope="module")
def problem():
    return make_problem("builtin:astronaut", "denoise", size=32)


def faked(timings):
    """A measurement that returns ``timings`` and counts its calls."""
    calls = []

    def measure(model, z, name):
        calls.append(name)
        return timings[name]
    return measure, calls


def probe(problem):
    return lambda: build_prior("dip", TINY, problem)


@pytest.mark.parametrize(("machine", "timings", "chosen"), [
    # AVX2 only: bf16 emulated, ~5x slower (the measurement: 100 vs 457 ms)
    ("avx2", {"fp32": 100.0, "fp32-cl": 112.0, "bf16": 457.0}, "fp32"),
    # AVX2, where channels_last happens to be faster
    ("avx2-cl", {"fp32": 120.0, "fp32-cl": 100.0, "bf16": 480.0}, "fp32-cl"),
    # AMX or AVX-512 BF16: bf16 2.5x faster
    ("amx", {"fp32": 458.0, "fp32-cl": 440.0, "bf16": 179.0}, "bf16"),
    # bf16 only 3% faster: not worth changing the numbers
    ("close", {"fp32": 103.0, "fp32-cl": 110.0, "bf16": 100.0}, "fp32"),
    # a GPU without fast bf16: fp16 with loss scaling
    ("t4", {"fp32": 40.0, "fp32-cl": 38.0, "fp16": 12.0}, "fp16"),
])
def test_auto_takes_the_fastest_and_never_loses_to_fp32(machine, timings, chosen):
    choice = choose(timings)
    assert choice == chosen, machine
    assert timings[choice] <= PREFER * min(timings.values())  # no slower than 1.05x the best
    assert timings[choice] <= timings["fp32"]  # never slower than fp32


def test_auto_measures_once_per_machine_and_caches_atomically(problem, cache):
    measure, calls = faked({"fp32": 100.0, "fp32-cl": 112.0, "bf16": 457.0})
    shape = tuple(problem.shape[1:])
    assert resolve("auto", CPU, "dip", TINY, probe(problem), shape, measure=measure) == "fp32"
    assert sorted(calls) == ["bf16", "fp32", "fp32-cl"]
    assert not list(cache.parent.glob(".*.tmp"))  # written through a temporary, renamed
    entry = next(iter(json.loads(cache.read_text())["entries"].values()))
    assert entry["choice"] == "fp32" and entry["ms"]["bf16"] == 457.0
    calls.clear()
    assert resolve("auto", CPU, "dip", TINY, probe(problem), shape, measure=measure) == "fp32"
    assert calls == []  # from the cache
    other = {**TINY, "width": 16}  # another network (or size) is measured on its own
    resolve("auto", CPU, "dip", other, probe(problem), shape, measure=measure)
    assert len(calls) == 3


def test_the_cache_is_refused_when_damaged_and_invalidated_by_torch_or_device(
        problem, cache, monkeypatch, caplog):
    measure, calls = faked({"fp32": 100.0, "fp32-cl": 112.0, "bf16": 40.0})
    shape = tuple(problem.shape[1:])
    resolve("auto", CPU, "dip", TINY, probe(problem), shape, measure=measure)
    cache.write_text('{"format": 1, "entries": {"x": {"choice": "int8"}}}')
    with caplog.at_level(logging.WARNING, logger="lottery_prior"):
        assert resolve("auto", CPU, "dip", TINY, probe(problem), shape, measure=measure) == "bf16"
    assert any("ignoring the precision cache" in m for m in caplog.messages)
    assert len(calls) == 6  # measured again, and the cache rewritten whole
    assert json.loads(cache.read_text())["format"] == 1
    monkeypatch.setattr(torch, "__version__", "9.9.9")  # another torch
    resolve("auto", CPU, "dip", TINY, probe(problem), shape, measure=measure)
    assert len(calls) == 9
    monkeypatch.setattr(precision, "device_name", lambda device: "another CPU")
    resolve("auto", CPU, "dip", TINY, probe(problem), shape, measure=measure)
    assert len(calls) == 12


def test_bf16_on_a_cpu_without_it_warns_once(problem, monkeypatch, caplog):
    monkeypatch.setenv("LIP_CPU_BF16", "0")  # as on an AVX2-only CPU
    precision._warn_emulated.cache_clear()
    with caplog.at_level(logging.WARNING, logger="lottery_prior"):
        for _ in range(3):
            assert precision.mode("bf16", CPU).dtype == torch.bfloat16
    warnings = [m for m in caplog.messages if "emulated" in m]
    assert len(warnings) == 1 and "use --precision auto or fp32" in warnings[0]
    monkeypatch.setenv("LIP_CPU_BF16", "1")
    precision._warn_emulated.cache_clear()
    caplog.clear()
    precision.mode("bf16", CPU)
    assert not [m for m in caplog.messages if "emulated" in m]


def test_fp16_is_for_cuda_and_unknown_precisions_are_refused():
    with pytest.raises(LipError, match="does not run on cpu"):
        precision.mode("fp16", CPU)
    with pytest.raises(LipError, match="unknown precision 'fp8'"):
        FitConfig(precision="fp8")


def test_an_imp_run_holds_the_precision_that_runs(problem, cache, monkeypatch, tmp_path):
    """auto is resolved before the run is named: the identity holds what will run, and the
    records say what ran and where (fp32 and bf16 keep the names of 0.2's fast = false/true)."""
    monkeypatch.setattr(precision, "step_ms", lambda model, z, name: {
        "fp32": 100.0, "fp32-cl": 112.0, "bf16": 30.0}[name])
    run = ImpRun(problem, "dip", dict(TINY), FitConfig(steps=4, precision="auto"),
                 ImpConfig(rounds=1), root=tmp_path)
    assert run.fit_config.precision == "bf16"
    assert run.identity()["fit"]["fast"] is True and "precision" not in run.identity()["fit"]
    explicit = ImpRun(problem, "dip", dict(TINY), FitConfig(steps=4, precision="bf16"),
                      ImpConfig(rounds=1), root=tmp_path)
    assert explicit.name == run.name  # auto resolved to bf16 is the bf16 run
    other = ImpRun(problem, "dip", dict(TINY), FitConfig(steps=4, precision="fp32-cl"),
                   ImpConfig(rounds=1), root=tmp_path)
    assert other.identity()["fit"]["precision"] == "fp32-cl" and other.name != run.name
    records = run.run()
    assert {r["precision"] for r in records} == {"bf16"}
    assert all(r["device"] for r in records)


def test_every_result_says_what_ran(tmp_path, capsys):
    out = tmp_path / "fit"
    assert main(["fit", "builtin:astronaut", "--size", "32", "--model-opt", "width=8",
                 "--model-opt", "scales=2", "--steps", "3", "--precision", "fp32-cl",
                 "--quiet", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["precision"] == "fp32-cl" and metrics["device"]
    assert "ran in fp32-cl on" in capsys.readouterr().out
    assert main(["fit", "builtin:astronaut", "--size", "64", "--precision", "fp16",
                 "--quiet", "--out", str(tmp_path / "f16")]) == 2
    assert "fp16 does not run on cpu" in capsys.readouterr().err


def test_fast_is_an_alias_of_auto_in_specs_and_on_the_command_line():
    from lottery_prior.cli import build_parser
    from lottery_prior.experiments.spec import parse_spec

    args = build_parser().parse_args(["fit", "builtin:astronaut", "--fast"])
    assert args.precision == "auto"
    base = {"grid": {"images": ["builtin:astronaut"], "size": 32, "sparsities": [0.5],
                     "methods": ["ticket"]}, "task": [{"name": "denoise"}],
            "model": {"options": TINY}}
    assert parse_spec({**base, "fit": {"fast": True}}).fit == {"precision": "auto"}
    assert parse_spec({**base, "fit": {"fast": False}}).fit == {"precision": "fp32"}
    with pytest.raises(LipError, match="^fit.fast: give precision or fast"):
        parse_spec({**base, "fit": {"fast": True, "precision": "bf16"}})
    with pytest.raises(LipError, match="^fit.precision: must be auto or fp32"):
        parse_spec({**base, "fit": {"precision": "half"}})


@pytest.mark.parametrize(("load", "flagged"), [(0.3, False), (1.2, False), (2.0, True)])
def test_a_measurement_on_a_busy_machine_says_so_where_its_timings_are_used(
        problem, cache, monkeypatch, caplog, tmp_path, capsys, load, flagged):
    """2 cores, one measuring thread: one other busy core leaves it a core; two do not."""
    monkeypatch.setattr(precision, "machine_load", lambda: (load, 2))
    measure, _ = faked({"fp32": 100.0, "fp32-cl": 112.0, "bf16": 457.0})
    with caplog.at_level(logging.WARNING, logger="lottery_prior"):
        resolve("auto", CPU, "dip", TINY, probe(problem), tuple(problem.shape[1:]),
                measure=measure)
    entry = next(iter(json.loads(cache.read_text())["entries"].values()))
    assert (entry["load"], entry["cpus"]) == (load, 2)
    assert any("busy" in m for m in caplog.messages) == flagged
    assert ("busy (load 2.0 on 2 cores)" in precision.busy(entry)) == flagged
    main(["doctor"])
    assert ("measured while the machine was busy" in capsys.readouterr().out) == flagged

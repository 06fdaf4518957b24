"""Resuming IMP runs: damaged rounds are recomputed, one process at a time per run folder."""

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from lottery_prior.errors import LipError
from lottery_prior.files import RunLock
from lottery_prior.fit import FitConfig
from lottery_prior.lottery import ImpConfig, ImpRun
from lottery_prior.masks import Mask
from lottery_prior.problem import make_problem

TINY = {"width": 8, "scales": 2, "skip": 2}
STEPS = 10
ROUNDS = 2


@pytest.fixture(scope="module")
def problem():
    return make_problem("builtin:chelsea", "denoise", sigma=50, size=32)


def make_run(problem, root, **imp):
    return ImpRun(problem, "dip", dict(TINY), FitConfig(steps=STEPS, device="cpu"),
                  ImpConfig(rounds=ROUNDS, **imp), root=Path(root))


@pytest.fixture(scope="module")
def reference(problem, tmp_path_factory):
    run = make_run(problem, tmp_path_factory.mktemp("reference"))
    run.run()
    return run


@pytest.fixture
def finished(problem, reference, tmp_path):
    """A finished run of its own (a copy of the reference's folder)."""
    run = make_run(problem, tmp_path)
    subprocess.run(["cp", "-r", str(reference.folder), str(tmp_path)], check=True)
    return run


def rerun(run):
    """Run again; returns the records and the rounds that were computed."""
    computed = []
    records = run.run(progress=lambda desc: [lambda info: computed.append(desc.split()[1])])
    return records, sorted(set(computed))


def same_results(records, reference):
    return ([r["scores"] for r in records] == [r["scores"] for r in reference.records]
            and [r["sparsity"] for r in records] == [r["sparsity"] for r in reference.records])


def test_an_intact_run_is_not_recomputed(finished, reference):
    records, computed = rerun(finished)
    assert computed == [] and same_results(records, reference)


def test_a_corrupt_record_is_recomputed_with_a_warning(finished, reference, caplog):
    record_file = finished.round_dir(1) / "record.json"
    record_file.write_text('{"round": 1, "sparsi')  # half a file
    with caplog.at_level(logging.WARNING, logger="lottery_prior"):
        records, computed = rerun(finished)
    assert computed == ["1/2"]  # round 2 still fits what round 1 left: kept
    assert any(str(record_file) in m and "recomputing" in m for m in caplog.messages)
    assert same_results(records, reference)
    assert json.loads(record_file.read_text())["round"] == 1


@pytest.mark.parametrize("damage", ["missing", "truncated", "flipped"])
def test_a_missing_or_corrupt_ticket_is_recomputed(finished, reference, damage, caplog):
    ticket_file = finished.ticket_path(2)
    if damage == "missing":
        ticket_file.unlink()
    elif damage == "truncated":
        ticket_file.write_bytes(ticket_file.read_bytes()[:100])
    else:
        data = bytearray(ticket_file.read_bytes())
        data[-5] ^= 0x10
        ticket_file.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="lottery_prior"):
        records, computed = rerun(finished)
    assert computed == ["2/2"]
    assert any(str(ticket_file) in m for m in caplog.messages)
    assert same_results(records, reference)
    assert finished.ticket(2).mask == reference.ticket(2).mask


def test_a_missing_next_mask_recomputes_its_round(finished, reference):
    (finished.round_dir(0) / "next_mask.safetensors").unlink()
    records, computed = rerun(finished)
    assert computed == ["0/2"]
    assert same_results(records, reference)


def test_a_round_built_on_another_mask_than_its_predecessor_left_is_recomputed(finished):
    planted = Mask({n: torch.ones_like(m) for n, m in finished.ticket(1).mask.items()})
    planted.save(finished.round_dir(1) / "next_mask.safetensors")  # as if round 1 was redone
    records, computed = rerun(finished)
    assert computed == ["2/2"]
    assert finished.ticket(2).mask == planted


def test_a_damaged_init_is_drawn_again_identically(finished, reference):
    init = finished.folder / "init.safetensors"
    init.write_bytes(b"garbage")
    (finished.round_dir(0) / "record.json").unlink()
    records, computed = rerun(finished)
    assert computed == ["0/2"] and same_results(records, reference)


def test_a_second_run_in_the_same_folder_is_refused_at_once(finished):
    with RunLock(finished.folder), pytest.raises(
            LipError, match=rf"run folder .* is in use by process {os.getpid()}; wait for it"):
        finished.run()
    assert not (finished.folder / RunLock.NAME).exists()


def test_the_lock_is_released_when_a_run_is_interrupted(problem, tmp_path):
    run = make_run(problem, tmp_path)

    def interrupt(info):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run.run(progress=lambda desc: [interrupt])
    assert not (run.folder / RunLock.NAME).exists()
    assert not [p for p in run.folder.rglob("*") if p.name.endswith(".tmp")]


SCRIPT = textwrap.dedent("""
    import sys
    from pathlib import Path
    from lottery_prior.fit import FitConfig
    from lottery_prior.lottery import ImpConfig, ImpRun
    from lottery_prior.problem import make_problem
    problem = make_problem("builtin:chelsea", "denoise", sigma=50, size=32)
    run = ImpRun(problem, "dip", {tiny!r}, FitConfig(steps={steps}, device="cpu"),
                 ImpConfig(rounds={rounds}), root=Path(sys.argv[1]))
    print(run.folder, flush=True)
    run.run(progress=lambda desc: [lambda info: __import__("time").sleep(0.02)])
""").format(tiny=TINY, steps=STEPS, rounds=ROUNDS)


def test_a_killed_run_leaves_a_lock_that_the_next_run_takes_over(problem, reference, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen([sys.executable, "-c", SCRIPT, str(tmp_path)], env=env,
                             stdout=subprocess.PIPE, text=True)
    folder = Path(child.stdout.readline().strip())
    deadline = time.monotonic() + 60
    while not (folder / "round-00" / "record.json").exists():  # killed during round 1
        assert child.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.1)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert (folder / RunLock.NAME).exists()  # left behind by the dead process
    run = make_run(problem, tmp_path)
    assert run.folder == folder
    records, computed = rerun(run)
    assert "0/2" not in computed  # the finished round was kept
    assert same_results(records, reference)
    assert not (folder / RunLock.NAME).exists()


def test_a_run_folder_of_the_earlier_schema_is_renamed_not_recomputed(finished, reference,
                                                                       caplog):
    """Identities now carry the schema version: a folder named by the schema-1 hash (the
    same settings hashed without it) is renamed to the new name once, with a message."""
    from lottery_prior.runs import SETTINGS, digest, read_json

    legacy = finished.root / f"imp-{digest(finished.identity())}"
    finished.folder.rename(legacy)
    (legacy / SETTINGS).write_text(json.dumps(finished.identity()))  # as schema 1 wrote it
    with caplog.at_level(logging.WARNING, logger="lottery_prior"):
        records, computed = rerun(finished)
    assert computed == [] and same_results(records, reference)
    assert finished.folder.is_dir() and not legacy.exists()
    assert read_json(finished.folder / SETTINGS)["schema"] == 2
    assert any("renamed" in m and legacy.name in m for m in caplog.messages)

"""`lip classify find|eval|compare`: outputs, resuming, and one-line errors."""

import csv
import logging
import pickle

import numpy as np
import pytest
from PIL import Image

from lottery_prior.cli import main

TINY = ["--model-opt", "width=8", "--model-opt", "scales=2", "--model-opt", "skip=2"]
DATA = ["--size", 16, "--train-limit", 160, "--test-limit", 80, "--epochs", 1,
        "--batch-size", 40]


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def png(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "img.png"
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(path)
    return path


def test_find_eval_and_compare_with_an_image_prior_ticket(png, tmp_path, capsys, caplog):
    caplog.set_level(logging.INFO, logger="lottery_prior")
    runs = tmp_path / "runs"
    argv = ["classify", "find", *DATA, *TINY, "--rounds", 2, "--quiet", "--out", runs]
    code, stdout, err = run(argv, capsys)
    assert code == 0, err
    assert "test_accuracy" in stdout and "\n| 2 | 0.36" in stdout.replace("0.3599", "0.36")
    (folder,) = runs.iterdir()
    for name in ("accuracy.csv", "accuracy.md", "accuracy_vs_sparsity.png", "settings.json"):
        assert (folder / name).is_file(), name
    caplog.clear()
    code, _, err = run(argv, capsys)  # the same command again: every round done earlier
    assert code == 0 and caplog.text.count("done earlier") == 3

    ticket = folder / "round-02" / "ticket.safetensors"
    code, stdout, err = run(["classify", "eval", ticket, *DATA, "--quiet",
                             "--methods", "ticket", "dense", "--out", tmp_path / "eval"], capsys)
    assert code == 0, err
    assert "test_accuracy_mean" in stdout
    assert (tmp_path / "eval" / "accuracy_per_epoch.png").is_file()

    prior_runs = tmp_path / "prior"
    code, _, err = run(["find", png, "--steps", 5, "--rounds", 2, "--quiet", "--out",
                        prior_runs, *TINY], capsys)
    assert code == 0, err
    (prior_folder,) = prior_runs.iterdir()
    prior = prior_folder / "round-02" / "ticket.safetensors"
    out = tmp_path / "cmp"
    caplog.clear()
    code, stdout, err = run(["classify", "compare", folder, prior, "--images", png,
                             "--steps", 5, "--seeds", 0, 1, "--quiet", "--out", out], capsys)
    assert code == 0, err
    assert "global IoU" in stdout and "input channels differ (3 vs 32)" in stdout
    assert "start from the same theta0 in both tickets" in stdout  # both of seed 0
    assert "round-02" in caplog.text  # the run's round closest to the prior ticket's sparsity
    for name in ("overlap.csv", "overlap.png", "cross_use.csv", "cross_use_summary.md",
                 "cross_use.png"):
        assert (out / name).is_file(), name
    with (out / "cross_use.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert {r["method"] for r in rows} == {"image-prior ticket", "classification ticket",
                                           "random-layerwise"}
    assert len(rows) == 6 and {"psnr_averaged", "psnr_peak_averaged"} <= set(rows[0])

    # the arguments swapped: one line
    code, _, err = run(["classify", "compare", prior, prior, "--quiet", "--out",
                        tmp_path / "x"], capsys)
    assert code == 2 and "not a classification ticket (it is an image-prior ticket" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["find", "--dataset", "cifar10", "--data", "EMPTY"],
         "expected data_batch_1, data_batch_2, data_batch_3, data_batch_4, data_batch_5, "
         "test_batch"),
        (["find", "--dataset", "cifar10"], "--dataset cifar10 needs --data DIR"),
        (["find", "--data", "EMPTY"], "needs at least 2 class sub-folders"),
        (["find", "--dataset", "digits", "--data", "EMPTY"], "drop --data"),
        (["find", "--data", "BADCIFAR"], "is not a CIFAR-10 python batch"),
        (["find", "--size", 8], "do not fit a hourglass with 4 scales"),
        (["find", "--model-opt", "input_depth=32"], "sets input_depth itself"),
        (["find", "--rate", 1.5], "pruning rate must be finite and in (0, 1)"),
        (["find", "--keep-dense", "nothing.*", *TINY], "matches no conv weight"),
        (["find", "--epochs", 0], "epochs must be a whole number from 1"),
        (["find", "--rewind-step", 100000, "--epochs", 1, *TINY],
         "past the end of round 0"),
        (["eval", "NOFILE"], "does not exist"),
        (["eval", "EMPTY"], "is a folder"),
    ],
)
def test_bad_input_gets_one_line_and_exit_2(argv, message, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    bad = tmp_path / "badcifar"
    bad.mkdir()
    for name in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4",
                 "data_batch_5", "test_batch"):
        (bad / name).write_bytes(pickle.dumps({"nothing": 1}))
    subst = {"EMPTY": empty, "BADCIFAR": bad, "NOFILE": tmp_path / "none.safetensors"}
    argv = ["classify", *[str(subst.get(a, a)) for a in argv], "--quiet",
            "--out", str(tmp_path / "o")]
    code, _, err = run(argv, capsys)
    lines = [line for line in err.splitlines() if line.startswith("lip: error")]
    assert code == 2
    assert len(lines) == 1 and message in lines[0], err
    assert "Traceback" not in err
    assert not list(tmp_path.glob("o/**/*.safetensors"))

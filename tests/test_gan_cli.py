"""`lip gan`: cs, inpaint and prune on a tiny generator write images, tables and plots; bad
input gets one line and exit 2; output folders never mix runs."""

import csv
import json
import math

import pytest
import torch

from lottery_prior import cli
from lottery_prior.gan import Discriminator, Generator, load_faces, save_checkpoint
from lottery_prior.gan.experiments import FACES_DATASET
from lottery_prior.images import save_image
from lottery_prior.masks import Mask

FAST = ["--faces", "2", "--steps", "3", "--restarts", "1", "--quiet", "--threads", "1",
        "--device", "cpu"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A random 8x8 gray GAN (latent 8) in zoo format: nothing trained, but recorded as
    trained on the bundled faces (as `lip gan train` records it)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("gan") / "tiny.pth"
    save_checkpoint(path, Generator(8, (16, 8), 1), Discriminator((16, 8), 1),
                    dataset=FACES_DATASET)
    return path


@pytest.fixture(scope="module")
def foreign_checkpoint(tmp_path_factory):
    """The same kind of GAN without a record of its training data (like a zoo file)."""
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("gan") / "zoo.pth"
    save_checkpoint(path, Generator(8, (16, 8), 3), Discriminator((16, 8), 3))
    return path


def lip(argv, capsys):
    code = cli.main(["gan", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def read_rows(path):
    with path.open() as f:
        return list(csv.DictReader(f))


def test_train_then_cs_with_the_default_checkpoint(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, _, err = lip(["cs", "--quiet"], capsys)
    assert code == 2 and "run `lip gan train` first" in err
    code, stdout, err = lip(["train", "--size", 8, "--steps-per-scale", 2, "--batch-size", 2,
                             "--quiet"], capsys)
    assert code == 0, err
    (trained,) = (tmp_path / "lip-out/gan").glob("train-*")
    for name in ("gan.pth", "samples.png", "losses.png", "results.csv", "settings.json"):
        assert (trained / name).is_file(), name
    assert len(read_rows(trained / "results.csv")) == 2  # scales 4 and 8 px
    code, _, err = lip(["cs", "-m", 8, *FAST], capsys)
    assert code == 0, err
    (cs,) = (tmp_path / "lip-out/gan").glob("cs-*")
    assert (cs / "images/face80-m8.png").is_file()
    # the trained checkpoint records its data: prune fine-tunes on the faces without asking
    code, _, err = lip(["prune", "--rounds", 1, "--finetune-steps", 1, "--batch-size", 2,
                        "--methods", "random", "-m", 8, *FAST], capsys)
    assert code == 0, err
    code, _, err = lip(["train", "--size", 4, "--steps-per-scale", 2, "--batch-size", 2,
                        "--quiet"], capsys)
    assert code == 0, err
    code, _, err = lip(["cs", "-m", 8, *FAST], capsys)
    assert code == 2 and "2 trained GANs" in err and "-c" in err


def test_cs_writes_images_tables_and_plots(checkpoint, tmp_path, capsys):
    out = tmp_path / "cs"
    code, stdout, err = lip(["cs", "-c", checkpoint, "-m", 10, 20, "--least-norm", "--out", out,
                             *FAST], capsys)
    assert code == 0, err
    rows = read_rows(out / "results.csv")
    assert len(rows) == 2 * 2 * 2  # faces x m x (gan, least-norm)
    assert {r["image"] for r in rows} == {"face80", "face81"}
    assert all(float(r["psnr"]) > 0 and float(r["mse"]) > 0 and float(r["residual"]) >= 0
               for r in rows)
    for name in ("face80-truth", "face80-m10", "face81-m20", "face81-m20-least-norm"):
        assert (out / "images" / f"{name}.png").is_file(), name
    for name in ("montage.png", "summary.md", "psnr_vs_m.png", "mse_vs_m.png",
                 "settings.json"):
        assert (out / name).is_file(), name
    assert "| m | ratio | method |" in stdout and str(out) in stdout


def test_cs_baselines_recover_from_the_same_measurements(checkpoint, tmp_path, capsys):
    out = tmp_path / "cs-lasso"
    code, _, err = lip(["cs", "-c", checkpoint, "-m", 30, "--baselines", "lasso-dct",
                        "lasso-wavelet", "--out", out, *FAST], capsys)
    assert code == 0, err
    rows = read_rows(out / "results.csv")
    methods = {r["method"] for r in rows}
    assert methods == {"gan", "lasso-dct", "lasso-dct-oracle", "lasso-wavelet",
                       "lasso-wavelet-oracle"}
    for face in ("face80", "face81"):
        by = {r["method"]: float(r["psnr"]) for r in rows if r["image"] == face}
        # α chosen by the truth is at least as good as α chosen without it
        assert by["lasso-dct-oracle"] >= by["lasso-dct"] - 1e-9
        assert by["lasso-wavelet-oracle"] >= by["lasso-wavelet"] - 1e-9
    assert (out / "images" / "face81-m30-lasso-wavelet-oracle.png").is_file()
    with pytest.raises(SystemExit) as exit_:
        lip(["cs", "-c", checkpoint, "-m", 30, "--baselines", "lasso", *FAST], capsys)
    assert exit_.value.code == 2 and "invalid choice: 'lasso'" in capsys.readouterr().err


def test_inpaint_with_keep_ratios_and_a_block(checkpoint, tmp_path, capsys):
    out = tmp_path / "inpaint"
    code, stdout, err = lip(["inpaint", "-c", checkpoint, "--keep", 0.5, 1, "--mask", "block",
                             "--out", out, *FAST], capsys)
    assert code == 0, err
    rows = read_rows(out / "results.csv")
    assert [r["mask"] for r in rows[:3]] == ["keep0.5", "keep1", "block"]
    assert float(rows[1]["observed"]) == 1.0 and 0 < float(rows[0]["observed"]) < 1
    assert all(r["psnr"] and r["mse"] and r["residual"] for r in rows)
    for name in ("face80-block-observed", "face80-block", "face81-keep0.5", "face81-truth"):
        assert (out / "images" / f"{name}.png").is_file(), name
    assert (out / "psnr_vs_observed.png").is_file() and (out / "mse_vs_observed.png").is_file()


def test_prune_writes_masks_of_the_counted_sparsity_and_plots(checkpoint, tmp_path, capsys):
    out = tmp_path / "prune"
    code, stdout, err = lip(["prune", "-c", checkpoint, "--rounds", 2, "--finetune-steps", 2,
                             "--batch-size", 4, "-m", 16, "--eval", "cs", "inpaint",
                             "--out", out, *FAST], capsys)
    assert code == 0, err
    summary = read_rows(out / "summary.csv")
    assert [(r["method"], r["round"]) for r in summary if r["task"] == "cs m=16"] == [
        ("dense", "0"), ("magnitude", "1"), ("magnitude", "2"), ("random", "1"),
        ("random", "2")]
    for method in ("magnitude", "random"):
        for k in (1, 2):
            mask = Mask.load(out / "masks" / f"{method}-round{k}.safetensors")
            assert mask.sparsity == pytest.approx(1 - 0.8**k, abs=0.01)
            listed = {float(r["sparsity"]) for r in summary
                      if (r["method"], r["round"]) == (method, str(k))}
            assert listed == {round(mask.sparsity, 4)}
    for task in ("cs", "inpaint"):
        for key in ("psnr", "mse"):
            assert (out / f"{task}_{key}_vs_sparsity.png").is_file()
    assert "magnitude" in stdout


def test_colour_images_are_converted_and_named_apart(checkpoint, tmp_path, capsys):
    out = tmp_path / "mine"
    code, _, err = lip(["inpaint", "-c", checkpoint, "--images", "builtin:astronaut",
                        "builtin:astronaut", "--keep", 0.5, "--out", out, *FAST], capsys)
    assert code == 0, err
    assert [r["image"] for r in read_rows(out / "results.csv")] == ["astronaut", "astronaut-2"]
    assert (out / "images" / "astronaut-2-keep0.5.png").is_file()


def test_prune_refuses_a_fine_tuning_face(checkpoint, tmp_path, capsys):
    face = tmp_path / "face3.png"
    save_image(load_faces("train", 8)[3], face)
    code, _, err = lip(["prune", "-c", checkpoint, "--images", face, "--rounds", 1, *FAST], capsys)
    assert code == 2 and "face3 is one of the fine-tuning images" in err


def test_a_pruning_mask_is_applied_in_cs(checkpoint, tmp_path, capsys):
    generator = Generator(8, (16, 8), 1)
    mask_path = tmp_path / "mask.safetensors"
    Mask.ones(generator).save(mask_path)
    code, _, err = lip(["cs", "-c", checkpoint, "-m", 10, "--weight-mask", mask_path,
                        "--out", tmp_path / "cs", *FAST], capsys)
    assert code == 0, err
    Mask.ones(Generator(8, (8,), 1)).save(mask_path)
    code, _, err = lip(["cs", "-c", checkpoint, "-m", 10, "--weight-mask", mask_path,
                        "--out", tmp_path / "cs2", *FAST], capsys)
    assert code == 2 and "another model" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["cs", "-c", "MISSING"], "no such checkpoint file"),
        (["cs", "-c", "NOTCKPT"], "not a torch checkpoint"),
        (["cs", "-c", "CKPT", "-m", "0"], "positive integer"),
        (["cs", "-c", "CKPT", "-m", "10", "-5"], "positive integer"),
        (["cs", "-c", "CKPT", "-m", "10", "--outliers", "-1"], "outlier rows"),
        (["cs", "-c", "CKPT", "-m", "10", "--outliers", "2", "--robust", "--batches", "13"],
         "batches <= 12"),
        (["cs", "-c", "CKPT", "--steps", "0"], "steps >= 1"),
        (["cs", "-c", "CKPT", "--faces", "21"], "held-out faces"),
        (["inpaint", "-c", "CKPT", "--keep", "0"], "keep must be in (0, 1]"),
        (["inpaint", "-c", "CKPT", "--keep", "1.5"], "keep must be in (0, 1]"),
        (["inpaint", "-c", "CKPT", "--mask", "MISSING"], "no such image file"),
        (["prune", "-c", "CKPT", "-m", "0"], "positive integer"),
        (["prune", "-c", "CKPT", "--eval", "inpaint", "--keep", "2"], "keep must be in (0, 1]"),
        (["train", "--size", "24"], "size must be one of"),
    ],
)
def test_bad_input_is_one_line(argv, message, checkpoint, tmp_path, capsys):
    not_checkpoint = tmp_path / "notes.pth"
    not_checkpoint.write_text("not a checkpoint")
    swap = {"MISSING": tmp_path / "missing.pth", "NOTCKPT": not_checkpoint, "CKPT": checkpoint}
    argv = [swap.get(a, a) for a in argv]
    code, stdout, err = lip([*argv, "--out", tmp_path / "out", "--quiet"], capsys)
    lines = [line for line in err.splitlines() if line.startswith("lip: error")]
    assert code == 2
    assert len(lines) == 1 and message in lines[0], err
    assert "Traceback" not in err


def test_default_output_folders_never_mix_runs(checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, _, err = lip(["cs", "-c", checkpoint, "-m", 8, *FAST], capsys)
    assert code == 0, err
    (first,) = (tmp_path / "lip-out/gan").iterdir()
    code, _, err = lip(["cs", "-c", checkpoint, "-m", 9, *FAST], capsys)
    assert code == 0, err
    folders = sorted((tmp_path / "lip-out/gan").iterdir())
    assert len(folders) == 2 and all(f.name.startswith("cs-") for f in folders)
    (second,) = [f for f in folders if f != first]
    assert (first / "images/face80-m8.png").is_file()
    assert not (second / "images/face80-m8.png").exists()  # no stale image of the first run
    assert (second / "images/face80-m9.png").is_file()
    assert json.loads((second / "settings.json").read_text())["measurements"] == [9]
    code, _, err = lip(["cs", "-c", checkpoint, "-m", 9, *FAST], capsys)  # same settings
    assert code == 0, err
    assert sorted((tmp_path / "lip-out/gan").iterdir()) == folders
    # a folder holding another run's outputs is refused before any work, and left alone
    before = sorted(p.name for p in second.rglob("*"))
    code, _, err = lip(["cs", "-c", checkpoint, "-m", 8, "--out", second, *FAST], capsys)
    assert code == 2 and "holds the outputs of another run" in err
    assert sorted(p.name for p in second.rglob("*")) == before


def test_a_failed_run_leaves_no_folder(checkpoint, tmp_path, capsys):
    out = tmp_path / "never"
    code, _, err = lip(["cs", "-c", checkpoint, "-m", 8, "--outliers", -1, "--out", out,
                        *FAST], capsys)
    assert code == 2 and "outlier" in err
    assert not out.exists()


def test_prune_needs_training_images_for_a_foreign_checkpoint(foreign_checkpoint, tmp_path,
                                                              capsys):
    common = ["prune", "-c", foreign_checkpoint, "--rounds", 1, "--finetune-steps", 1,
              "--batch-size", 2, "--methods", "random", "-m", 8, *FAST]
    out = tmp_path / "out"
    code, _, err = lip([*common, "--out", out], capsys)
    assert code == 2 and "--train-images DIR" in err and len(err.strip().splitlines()) == 1
    assert not out.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.png").write_text("not an image")
    (junk / "notes.txt").write_text("text")
    for folder, message in ((tmp_path / "missing", "no such folder"),
                            (empty, "holds no image files"), (junk, "no readable image")):
        code, _, err = lip([*common, "--train-images", folder, "--out", out], capsys)
        lines = [line for line in err.splitlines() if line.startswith("lip: error")]
        assert code == 2 and len(lines) == 1 and message in lines[0], err
        assert not out.exists()
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, size in enumerate((40, 23, 16)):
        save_image(torch.rand(3, size, size + i), photos / f"p{i}.png")
    (photos / "readme.txt").write_text("ignored")
    code, _, err = lip([*common, "--train-images", photos, "--out", out], capsys)
    assert code == 0, err
    assert read_rows(out / "summary.csv")


@pytest.mark.parametrize("content", ["hello world\n", "# notes\n", "", "PK\x03\x04junk"])
def test_text_given_as_a_checkpoint_is_one_line(content, tmp_path, capsys):
    path = tmp_path / "ckpt.pth"
    path.write_text(content)
    out = tmp_path / "out"
    code, _, err = lip(["cs", "-c", path, "--out", out, *FAST], capsys)
    lines = [line for line in err.splitlines() if line.startswith("lip: error")]
    assert code == 2 and len(lines) == 1 and "not a torch checkpoint" in lines[0], err
    assert "Traceback" not in err and not out.exists()


@pytest.mark.parametrize(("key", "bad"), [("avgG", math.nan), ("netD", math.inf)])
def test_non_finite_weights_are_refused(key, bad, tmp_path, capsys):
    torch.manual_seed(0)
    g, d = Generator(8, (16, 8), 1), Discriminator((16, 8), 1)
    target = g if key == "avgG" else d
    with torch.no_grad():
        target.scaleLayers[0][1].module.weight[0, 0, 0, 0] = bad
    path = tmp_path / "broken.pth"
    save_checkpoint(path, Generator(8, (16, 8), 1), d, g if key == "avgG" else None,
                    dataset=FACES_DATASET)
    out = tmp_path / "out"
    command = "cs" if key == "avgG" else "prune"
    code, _, err = lip([command, "-c", path, "--out", out, *FAST], capsys)
    lines = [line for line in err.splitlines() if line.startswith("lip: error")]
    assert code == 2 and len(lines) == 1, err
    assert lines[0] == (f"lip: error: checkpoint {path} has non-finite weights in "
                        f"{key}.scaleLayers.0.1.module.weight")
    assert not out.exists()

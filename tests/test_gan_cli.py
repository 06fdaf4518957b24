"""`lip gan`: cs, inpaint and prune on a tiny generator write images, tables and plots; bad
input gets one line and exit 2."""

import csv

import pytest
import torch

from lottery_prior import cli
from lottery_prior.gan import Discriminator, Generator, load_faces, save_checkpoint
from lottery_prior.images import save_image
from lottery_prior.masks import Mask

FAST = ["--faces", "2", "--steps", "3", "--restarts", "1", "--quiet", "--threads", "1",
        "--device", "cpu"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A random 8x8 gray GAN (latent 8) in zoo format: nothing trained."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("gan") / "tiny.pth"
    save_checkpoint(path, Generator(8, (16, 8), 1), Discriminator((16, 8), 1))
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
    trained = tmp_path / "lip-out/gan/train"
    for name in ("gan.pth", "samples.png", "losses.png", "results.csv", "settings.json"):
        assert (trained / name).is_file(), name
    assert len(read_rows(trained / "results.csv")) == 2  # scales 4 and 8 px
    code, _, err = lip(["cs", "-m", 8, *FAST], capsys)
    assert code == 0, err
    assert (tmp_path / "lip-out/gan/cs/images/face80-m8.png").is_file()


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
                        "--out", tmp_path / "cs", *FAST], capsys)
    assert code == 2 and "another model" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["cs", "-c", "MISSING"], "no such checkpoint file"),
        (["cs", "-c", "NOTCKPT"], "not a torch checkpoint"),
        (["cs", "-c", "CKPT", "-m", "0"], "positive integer"),
        (["cs", "-c", "CKPT", "-m", "10", "-5"], "positive integer"),
        (["cs", "-c", "CKPT", "-m", "10", "--outliers", "11"], "outliers"),
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

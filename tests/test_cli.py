"""The `lip` command: outputs land where it says, bad input gets one line and exit 2."""

import ast
import csv
import importlib.util
import json
import pkgutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import lottery_prior
import lottery_prior.cli
from lottery_prior.cli import main

TINY = ["--model-opt", "width=8", "--model-opt", "scales=2", "--model-opt", "skip=2"]


@pytest.fixture
def png(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "img.png"
    Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(path)
    return path


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_fit_writes_images_metrics_and_plot(png, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, _ = run(["fit", png, "--steps", 12, "--quiet", "--out", out, *TINY,
                           "--stop-window", 4], capsys)
    assert code == 0
    for name in ("restored.png", "observation.png", "clean.png", "final.png", "psnr.png",
                 "metrics.json"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["problem"]["shape"] == [3, 32, 32]  # cropped to a multiple of 32
    assert {"final", "averaged", "peak", "stopped"} <= set(metrics["scores"])
    assert metrics["scores"]["stopped"]["rule"]["rule"] == "discrepancy"  # auto, denoising
    assert "PSNR" in stdout and "averaged" in stdout
    code, _, err = run(["fit", png, "--steps", 12, "--quiet", "--out", tmp_path / "o2", *TINY,
                        "--stop-patience", 3], capsys)
    assert code == 2 and "--stop-patience is not a setting of the discrepancy rule" in err


def test_observed_image_has_no_ground_truth(png, tmp_path, capsys):
    out = tmp_path / "obs"
    code, _, _ = run(["fit", png, "--observed", "--steps", 5, "--quiet", "--out", out, *TINY],
                     capsys)
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["problem"]["observed"] and "psnr" not in metrics["scores"]["final"]
    assert (out / "loss.png").is_file() and not (out / "clean.png").exists()


def test_find_then_eval_a_ticket(png, tmp_path, capsys):
    runs = tmp_path / "runs"
    code, stdout, _ = run(["find", png, "--steps", 5, "--rounds", 2, "--quiet", "--out", runs,
                           *TINY], capsys)
    assert code == 0 and "| 0.36" in stdout
    (folder,) = runs.iterdir()
    assert (folder / "results.csv").is_file() and (folder / "psnr_vs_sparsity.png").is_file()
    ticket = folder / "round-02" / "ticket.safetensors"
    code, _, err = run(["eval", ticket, "builtin:camera", "--size", 64, "--steps", 5,
                        "--quiet", "--out", tmp_path / "eval"], capsys)
    assert code == 2 and "channels" in err  # a colour ticket refuses a gray image

    code, _, err = run(["eval", ticket, png, "--task", "inpaint", "--steps", 5, "--quiet",
                        "--out", tmp_path / "eval"], capsys)
    assert code == 0, err
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    origin = metrics["settings"]["ticket"]
    assert origin["path"] == str(ticket) and origin["round"] == 2 and origin["run"] == folder.name
    assert len(origin["sha256"]) == 64 and origin["z"] == "the ticket's own"

    code, _, err = run(["eval", ticket, "builtin:astronaut", "--size", 64, "--steps", 5,
                        "--quiet", "--out", tmp_path / "eval64"], capsys)
    assert code == 0, err
    metrics = json.loads((tmp_path / "eval64" / "metrics.json").read_text())
    assert metrics["settings"]["ticket"]["z"].startswith("redrawn")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["fit", "missing.png"], "no such image file"),
        (["fit", "NOTIMAGE"], "as an image"),
        (["fit", "IMG", "--task", "deblur"], "unknown task"),
        (["fit", "IMG", "--model", "unet"], "unknown model"),
        (["fit", "IMG", "--sigma", "0"], "sigma"),
        (["fit", "IMG", "--task", "sr", "--factor", "3"], "factor"),
        (["fit", "IMG", "--task", "inpaint", "--mask", "MASK"], "does not match"),
        (["fit", "IMG"], "too small"),
        (["fit", "IMG", "--steps", "0"], "steps"),
        (["eval", "NOTIMAGE", "IMG"], "not a readable ticket"),
        (["find", "IMG", "--rounds", "0"], "rounds"),
        (["find", "IMG", "--target-sparsity", "1.5"], "sparsity"),
        (["compare", "IMG", "--sparsity", "0"], "sparsity"),
        (["compare", "IMG", "--sparsity", "0.5", "--observed"], "observed"),
        (["compare", "IMG", "--sparsity", "0.5", "--methods", "ticket", "lasso"], "lasso"),
        (["find", "IMG", "--steps", "5", "--rewind-step", "6"], "rewind"),
        (["fit", "IMG", "--lr", "nan"], "learning rate"),
        (["fit", "IMG", "--out", "IMG"], "is a file"),
        (["find", "IMG", "--finder", "learned"], "--target-sparsity S"),
        (["find", "IMG", "--finder", "learned", "--target-sparsity", "0.5", "--penalty", "1"],
         "target sparsity or a penalty"),
        (["find", "IMG", "--finder", "learned", "--penalty", "1", "--temperature", "0"],
         "temperature"),
        (["find", "IMG", "--penalty", "1"], "--finder learned"),
        (["find", "IMG", "IMG", "--finder", "learned", "--target-sparsity", "0.5"], "one IMAGE"),
        (["compare", "IMG", "--sparsity", "0.5", "--penalty", "1"], "drop --penalty"),
    ],
)
def test_bad_input_gets_one_line_and_exit_2(argv, message, png, tmp_path, capsys):
    junk = tmp_path / "junk.png"
    junk.write_text("this is not an image")
    mask = tmp_path / "mask.png"
    Image.fromarray(np.full((20, 20), 255, np.uint8)).save(mask)
    subst = {"IMG": png, "NOTIMAGE": junk, "MASK": mask}
    argv = [str(subst.get(a, a)) for a in argv] + ["--quiet"]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "o")]
    code, _, err = run(argv, capsys)
    lines = [line for line in err.splitlines() if line.startswith("lip: error")]
    assert code == 2
    assert len(lines) == 1 and message in lines[0], err
    assert "Traceback" not in err
    assert not list(tmp_path.glob("o/**/*.safetensors"))  # refused before any work


def test_default_output_folders_never_mix_runs(png, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for sigma in (25, 50, 25):
        assert run(["fit", png, "--steps", 3, "--quiet", "--sigma", sigma, *TINY], capsys)[0] == 0
    folders = sorted((tmp_path / "lip-out" / "fit").iterdir())
    assert len(folders) == 2 and all(f.name.startswith("img-denoise-") for f in folders)
    code, _, err = run(["fit", png, "--steps", 3, "--quiet", "--sigma", 40, "--out", folders[0],
                        *TINY], capsys)
    assert code == 2 and "another run" in err  # an explicit folder of another run is refused


def test_transfer_names_tickets_by_run_and_checks_every_pair_first(png, tmp_path, capsys):
    runs = tmp_path / "runs"
    for seed in (0, 1):
        run(["find", png, "--steps", 4, "--rounds", 1, "--seed", seed, "--quiet", "--out", runs,
             *TINY], capsys)
    tickets = sorted(runs.glob("imp-*/round-01/ticket.safetensors"))
    assert len(tickets) == 2
    out = tmp_path / "transfer"
    code, _, err = run(["transfer", "--tickets", *tickets, "--images", png, "builtin:astronaut",
                        "--size", 32, "--steps", 3, "--quiet", "--out", out], capsys)
    assert code == 0, err
    rows = (out / "transfer.csv").read_text().splitlines()[1:]
    names = {r.split(",")[0] for r in rows}
    assert names == {f"{t.parent.parent.name}/round-01" for t in tickets}
    assert len(rows) == 4  # 2 tickets x 2 images: no cell overwrote another

    code, _, err = run(["transfer", "--tickets", *tickets, "--images", "builtin:astronaut",
                        "builtin:camera", "--size", 32, "--steps", 3, "--quiet", "--out",
                        tmp_path / "t2"], capsys)
    assert code == 2 and "cannot be retrained on camera" in err
    assert not (tmp_path / "t2" / "transfer.csv").exists()


def test_compare_keeps_one_observation_over_network_seeds(png, tmp_path, capsys):
    out = tmp_path / "cmp"
    code, _, err = run(["compare", png, "--sparsity", 0.2, "--rounds", 1, "--steps", 4,
                        "--methods", "ticket", "dense", "--seeds", 0, 1, "--quiet", "--out", out,
                        *TINY], capsys)
    assert code == 0, err
    settings = [json.loads(p.read_text()) for p in sorted(out.glob("runs/imp-*/settings.json"))]
    assert len(settings) == 2
    assert settings[0]["problem"]["observation_sha256"] == \
        settings[1]["problem"]["observation_sha256"]
    assert {s["fit"]["seed"] for s in settings} == {0, 1}
    header = (out / "comparison.md").read_text().splitlines()[0]
    assert "peak, iterate (oracle)" in header and "peak, averaged (oracle)" in header


def test_compare_scores_every_method_at_each_milestone(png, tmp_path, capsys):
    """--score-at: a row per method and milestone; the last milestone's scores are exactly
    those of the comparison without milestones."""
    base = ["compare", png, "--sparsity", 0.2, "--rounds", 1, "--steps", 4, "--methods",
            "ticket", "dense", "--quiet", *TINY]
    assert run([*base, "--out", tmp_path / "plain"], capsys)[0] == 0
    code, out, err = run([*base, "--score-at", 2, 4, "--out", tmp_path / "at"], capsys)
    assert code == 0, err
    rows = list(csv.DictReader((tmp_path / "at" / "comparison.csv").open()))
    plain = {r["method"]: r for r in csv.DictReader((tmp_path / "plain" / "comparison.csv").open())}
    assert sorted((r["method"], r["step"]) for r in rows) == sorted(
        (m, s) for m in plain for s in ("2", "4"))
    for r in rows:
        same = r["psnr_averaged"] == plain[r["method"]]["psnr_averaged"]
        assert same == (r["step"] == "4"), r
    summary = list(csv.DictReader((tmp_path / "at" / "summary.csv").open()))
    assert sorted(r["step"] for r in summary) == ["2", "2", "4", "4"]
    assert "| step |" in out


def test_a_mask_file_follows_the_images_resize(tmp_path):
    from lottery_prior.problem import make_problem

    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)).save(tmp_path / "i.png")
    keep = np.full((96, 96), 255, np.uint8)
    keep[:, :48] = 0  # the left half is missing
    Image.fromarray(keep).save(tmp_path / "m.png")
    problem = make_problem(str(tmp_path / "i.png"), "inpaint", mask=str(tmp_path / "m.png"),
                           size=32)
    mask = problem.operator.mask[0, 0]
    assert mask.shape == (32, 32)
    assert mask[:, :15].sum() == 0 and mask[:, 17:].min() == 1


def test_demo_runs_compare_with_short_search_and_full_final_fits(tmp_path, capsys):
    """The demo is `lip compare` on a built-in image; at a tiny scale (its arguments with a
    smaller net and fewer steps) every method is compared and the ticket gets a full fit."""
    from lottery_prior.cli.tickets import DEMO

    small = list(DEMO)
    small[small.index("--steps") + 1] = "60"
    small[small.index("--search-steps") + 1] = "20"
    small[small.index("width=32")] = "width=8"
    out = tmp_path / "demo"
    code, _, _ = run(["compare", *small, "--model-opt", "scales=2", "--quiet", "--out", out],
                     capsys)
    assert code == 0
    table = (out / "comparison.md").read_text()
    for method in ("ticket", "random", "random-layerwise", "decoder", "dense"):
        assert f"| {method}" in table
    records = [json.loads(p.read_text())
               for p in sorted(out.glob("runs/imp-*/round-*/record.json"))]
    assert len(records) == 6 and records[-1]["steps"] == 60  # the ticket: a full fit
    settings = json.loads(next(out.glob("runs/imp-*/settings.json")).read_text())
    assert settings["imp"]["search_steps"] == 20
    assert [r["steps"] for r in records] == [20] * 5 + [60]


def test_find_learned_writes_a_ticket_that_eval_and_compare_use(png, tmp_path, capsys):
    runs = tmp_path / "runs"
    code, stdout, err = run(["find", png, "--finder", "learned", "--target-sparsity", 0.8,
                             "--learn-steps", 6, "--steps", 5, "--quiet", "--out", runs, *TINY],
                            capsys)
    assert code == 0, err
    (folder,) = runs.iterdir()
    assert folder.name.startswith("learned-") and "| learned | 0.8" in stdout
    assert "finder seconds" in (folder / "results.md").read_text()
    code, _, err = run(["eval", folder / "ticket.safetensors", png, "--steps", 5, "--quiet",
                        "--out", tmp_path / "eval"], capsys)
    assert code == 0, err

    out = tmp_path / "cmp"
    code, _, err = run(["compare", png, "--sparsity", 0.2, "--rounds", 1, "--steps", 4,
                        "--methods", "ticket", "learned", "--learn-steps", 3, "--quiet",
                        "--out", out, *TINY], capsys)
    assert code == 0, err
    rows = (out / "comparison.csv").read_text().splitlines()
    ticket, learned = (dict(zip(rows[0].split(","), r.split(","), strict=True))
                       for r in rows[1:3])
    assert learned["method"] == "learned" and learned["sparsity"] == ticket["sparsity"]


ARGS = "lottery_prior.cli.args"


def command_line_modules() -> list[str]:
    """Every module of the command line but its entry points (the package's ``__init__`` and
    ``__main__``): the modules of ``lottery_prior.cli``, and any ``lottery_prior.cli_*`` beside
    it (where the gan and classify commands lived before ``cli`` was a package)."""
    found = [f"lottery_prior.{m.name}" for m in pkgutil.iter_modules(lottery_prior.__path__)
             if m.name.startswith("cli_")]
    package = getattr(lottery_prior.cli, "__path__", [])
    return found + [f"lottery_prior.cli.{m.name}" for m in pkgutil.iter_modules(package)
                    if m.name != "__main__"]


def cli_imports(module: str) -> set[str]:
    """The command-line modules that ``module`` imports anywhere in its source (inside functions
    too), relative imports resolved; ``lottery_prior.cli`` is the package (or old module)."""
    known = {"lottery_prior.cli", *command_line_modules()}
    source = importlib.util.find_spec(module).origin
    package = module.rpartition(".")[0]
    imported = set()
    for node in ast.walk(ast.parse(open(source).read(), source)):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                prefix = ".".join(parts[:len(parts) - node.level + 1])
                base = f"{prefix}.{base}" if base else prefix
            modules = {f"{base}.{alias.name}" for alias in node.names} & known
            imported |= modules if len(modules) == len(node.names) else modules | {base}
    return {name for name in imported if name == "lottery_prior.cli"
            or name.startswith(("lottery_prior.cli.", "lottery_prior.cli_"))}


def test_the_command_groups_are_modules_of_the_cli_package():
    assert {ARGS, "lottery_prior.cli.gan", "lottery_prior.cli.classify"} <= set(
        command_line_modules())


@pytest.mark.parametrize("module", command_line_modules())
def test_a_command_module_takes_only_the_shared_options_from_the_cli(module):
    """No import circle: a command module imports ``cli.args`` and the library, never the
    ``cli`` package (which imports every command module) nor another command module; ``args``
    imports nothing of the command line."""
    allowed = set() if module == ARGS else {ARGS}
    assert cli_imports(module) <= allowed, f"{module} imports {cli_imports(module) - allowed}"


@pytest.mark.parametrize("module", command_line_modules())
def test_every_cli_module_imports_on_its_own(module):
    done = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr


def test_python_m_runs_the_lip_command():
    done = subprocess.run([sys.executable, "-m", "lottery_prior.cli", "--help"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: lip ")

"""The public API: every name in ``lottery_prior.__all__`` works at tiny sizes (32 px, width
8, 2 scales, a few steps), and ``import lottery_prior`` stays cheap."""

import pkgutil
import subprocess
import sys

import pytest
import torch

import lottery_prior as lp

TINY = {"width": 8, "scales": 2, "skip": 2}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    problem = lp.make_problem("builtin:astronaut", "denoise", sigma=25, size=32)
    run = lp.find_ticket(problem, model_options=TINY, config=lp.FitConfig(steps=8),
                         imp=lp.ImpConfig(rounds=2), root=tmp_path_factory.mktemp("runs"))
    return problem, run


def test_all_lists_importable_documented_names():
    assert len(set(lp.__all__)) == len(lp.__all__)
    assert set(lp.__all__) == {"__version__", *lp._PUBLIC}
    for name in lp.__all__:
        value = getattr(lp, name)
        if name != "__version__":
            assert value.__doc__ and value.__doc__.strip(), f"{name} has no docstring"
    assert set(dir(lp)) >= set(lp.__all__)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        lp.nothing  # noqa: B018


def test_no_public_name_is_a_module_name():
    """``import lottery_prior.fit`` sets the package's attribute ``fit`` to the module: a
    public function of that name would be hidden by any such import."""
    modules = {m.name for m in pkgutil.iter_modules(lp.__path__)}
    assert not modules & set(lp.__all__)
    import lottery_prior.compare  # noqa: F401
    import lottery_prior.fit  # noqa: F401
    import lottery_prior.report  # noqa: F401

    assert callable(lp.fit_prior) and callable(lp.compare_methods) and callable(lp.write_report)


def test_import_is_cheap():
    code = "import sys, lottery_prior; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "False"


def test_problem_prior_and_fit():
    problem = lp.make_problem("builtin:astronaut", "denoise", sigma=25, size=32)
    assert isinstance(problem, lp.Problem) and problem.observation.shape == (1, 3, 32, 32)
    model, z = lp.build_prior("dip", TINY, problem, seed=0)
    config = lp.FitConfig.for_task("denoise", steps=5)
    assert config.input_noise == pytest.approx(1 / 30)
    result = lp.fit_prior(model, z, problem.operator, problem.observation,
                          clean=problem.clean, config=config)
    assert isinstance(result, lp.FitResult) and result.restored.shape == (1, 3, 32, 32)
    assert result.scores["averaged"]["psnr"] == pytest.approx(
        lp.psnr(result.averaged, problem.clean), abs=1e-4)
    assert isinstance(lp.create_model("decoder", k=8), torch.nn.Module)


def test_images_round_trip(tmp_path):
    image = lp.load_image("builtin:camera", size=32)
    lp.save_image(image, tmp_path / "camera.png")
    again = lp.load_image(str(tmp_path / "camera.png"))
    assert again.shape == image.shape and (again - image).abs().max() < 1 / 255 + 1e-6


def test_find_load_evaluate_and_transfer(tiny_run, tmp_path):
    problem, run = tiny_run
    assert isinstance(run, lp.ImpRun) and len(run.records) == 3
    assert [round(r["sparsity"], 2) for r in run.records] == [0.0, 0.2, 0.36]
    ticket = lp.load_ticket(run.ticket_path(2))
    assert isinstance(ticket, lp.Ticket) and ticket.sparsity == pytest.approx(0.36, abs=0.01)
    assert isinstance(ticket.mask, lp.Mask)
    other = lp.make_problem("builtin:coffee", "inpaint", keep=0.5, size=32)
    result = lp.evaluate_ticket(ticket, other, lp.FitConfig(steps=4))
    assert result.averaged.shape == (1, 3, 32, 32)
    moved = lp.transfer(run, 0.36, other, config=lp.FitConfig(steps=4))
    assert isinstance(moved, lp.MethodFit) and moved.sparsity == pytest.approx(ticket.sparsity)
    # the same call finds the finished run again
    again = lp.find_ticket(problem, model_options=TINY, config=lp.FitConfig(steps=8),
                           imp=lp.ImpConfig(rounds=2), root=run.root)
    assert again.folder == run.folder and again.records == run.records


def test_compare_methods(tiny_run):
    _, run = tiny_run
    fits = lp.compare_methods(run, 0.36, ["ticket", "random", "dense"])
    rows = [f.row() for f in fits]
    assert [r["method"] for r in rows] == ["ticket", "random", "dense"]
    assert rows[0]["sparsity"] == rows[1]["sparsity"] and rows[2]["sparsity"] == 0
    assert "ticket" in lp.finder_names() and issubclass(lp.MaskFinder, object)
    assert lp.FinderOptions().learn is None and callable(lp.register_finder)


def test_learn_config_and_errors():
    assert lp.LearnConfig(sparsity=0.9).lr == 0.1
    with pytest.raises(lp.LipError, match="target sparsity or a penalty"):
        lp.LearnConfig()
    with pytest.raises(lp.LipError, match="unknown task"):
        lp.FitConfig.for_task("deblur")
    with pytest.raises(lp.LipError, match="unknown fit setting"):
        lp.FitConfig.for_task("denoise", stepz=3)


def test_run_sweep_and_report(tmp_path):
    spec = tmp_path / "tiny.toml"
    spec.write_text('name = "tiny"\n[grid]\nimages = ["builtin:astronaut"]\nsize = 32\n'
                    'sparsities = [0.2]\nmethods = ["ticket", "random", "dense"]\n'
                    '[[task]]\nname = "denoise"\n'
                    '[model]\noptions = { width = 8, scales = 2, skip = 2 }\n'
                    '[fit]\nsteps = 4\n')
    sweep = lp.run_sweep(spec, tmp_path / "out", workers=0)
    assert (sweep.out / "results.parquet").is_file() and not sweep.hours_left()
    paths = lp.write_report(sweep.out, tmp_path / "report")
    assert paths["html"].is_file() and paths["markdown"].is_file()
    assert torch.is_tensor(lp.load_image("builtin:astronaut", size=32))

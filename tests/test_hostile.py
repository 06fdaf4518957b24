"""Hostile input, round two: files that try to run code or escape their folder, outputs that
must never be half-written, numbers past sane bounds, and reports that must not hide bad rows.

Each test is named after the item of the issue it covers."""

from __future__ import annotations

import os
import pickle
import subprocess

import numpy as np
import pytest

from lottery_prior.classify.data import CIFAR_FILES, load_dataset
from lottery_prior.cli import main
from lottery_prior.errors import LipError


def run_cli(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str) -> str:
    """The one ``lip: error`` line of a command's stderr (and no traceback)."""
    lines = [line for line in err.splitlines() if line.startswith("lip: error")]
    assert len(lines) == 1, err
    assert "Traceback" not in err, err
    return lines[0]


# --- 1. A CIFAR-10 batch file runs code -----------------------------------------------------

def fake_cifar_batch(n: int, seed: int = 0) -> dict:
    """A small CIFAR-10 python batch as the real files hold it (bytes keys, a uint8 array
    n x 3072, a list of int labels, a bytes batch label, bytes file names)."""
    rng = np.random.default_rng(seed)
    return {b"batch_label": b"training batch 1 of 5",
            b"labels": [int(v) for v in rng.integers(0, 10, n)],
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            b"filenames": [f"img_{i}.png".encode() for i in range(n)]}


def write_cifar(folder, batches=None, meta=None, protocol: int = 2):
    """A ``cifar-10-batches-py`` folder of small batches, pickled like the real ones
    (protocol 2); ``batches`` maps a file name to the object to pickle in its place."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(CIFAR_FILES):
        obj = (batches or {}).get(name, fake_cifar_batch(6, seed=i))
        (folder / name).write_bytes(pickle.dumps(obj, protocol=protocol))
    if meta is None:
        meta = {b"label_names": [f"c{i}".encode() for i in range(10)],
                b"num_cases_per_batch": 6, b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=protocol))
    return folder


class Payload:
    """Unpickles as ``function(*args)``."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def payloads(marker) -> dict[str, Payload]:
    import builtins

    from numpy.testing._private import utils as np_utils

    return {
        "os.system": Payload(os.system, f"touch {marker}"),
        "builtins.eval": Payload(builtins.eval, f"open({str(marker)!r}, 'w').close()"),
        "builtins.exec": Payload(builtins.exec, f"open({str(marker)!r}, 'w').close()"),
        "subprocess.check_call": Payload(subprocess.check_call, ["touch", str(marker)]),
        "subprocess.Popen": Payload(subprocess.Popen, ["touch", str(marker)]),
        "numpy.save": Payload(np.save, str(marker), np.zeros(1)),
        "numpy runstring": Payload(np_utils.runstring,
                                   f"open({str(marker)!r}, 'w').close()", {}),
        "numpy.load": Payload(np.load, str(marker)),
    }


def test_cifar_batch_loads_through_the_restricted_unpickler(tmp_path):
    for protocol in (2, 4, 5):
        folder = write_cifar(tmp_path / f"p{protocol}" / "cifar-10-batches-py",
                             protocol=protocol)
        data = load_dataset("cifar10", folder.parent)
        assert data.train_x.shape == (30, 3, 32, 32) and data.test_x.shape == (6, 3, 32, 32)
        assert data.classes == [f"c{i}" for i in range(10)]
        first = fake_cifar_batch(6, seed=0)
        expected = first[b"data"].reshape(6, 3, 32, 32) / 255.0
        assert np.allclose(data.train_x[:6].numpy(), expected)
        assert data.train_y[:6].tolist() == first[b"labels"]


@pytest.mark.parametrize("name", list(payloads("x")))
@pytest.mark.parametrize("where", ["data_batch_1", "batches.meta"])
def test_cifar_batch_runs_no_code(name, where, tmp_path, capsys):
    marker = tmp_path / "pwned"
    payload = payloads(marker)[name]
    if where == "batches.meta":
        folder = write_cifar(tmp_path / "cifar", meta={b"label_names": payload})
    else:
        batch = fake_cifar_batch(6)
        batch[b"labels"] = payload  # hidden inside an otherwise faithful batch
        folder = write_cifar(tmp_path / "cifar", {where: batch})
    with pytest.raises(LipError) as err:
        load_dataset("cifar10", folder)
    assert not marker.exists(), f"{name} in {where} ran"
    message = str(err.value)
    assert "\n" not in message and "refusing to load" in message and where in message
    # through the command too: one line, exit 2, nothing run
    code, _, err_text = run_cli(["classify", "find", "--data", folder, "--quiet",
                                 "--out", tmp_path / "out"], capsys)
    assert code == 2 and "refusing to load" in one_line_error(err_text)
    assert not marker.exists()


def test_cifar_batch_runs_no_code_a_bare_payload(tmp_path, capsys):
    marker = tmp_path / "pwned"
    folder = write_cifar(tmp_path / "cifar",
                         {"data_batch_1": Payload(os.system, f"touch {marker}")})
    code, _, err = run_cli(["classify", "find", "--data", folder, "--quiet",
                            "--out", tmp_path / "out"], capsys)
    assert code == 2 and not marker.exists()
    assert "posix.system" in one_line_error(err)


def test_cifar_batch_labels_outside_the_ten_classes_are_refused(tmp_path):
    batch = fake_cifar_batch(6)
    batch[b"labels"][2] = 10**6
    folder = write_cifar(tmp_path / "cifar", {"test_batch": batch})
    with pytest.raises(LipError, match="labels outside 0-9"):
        load_dataset("cifar10", folder)


# --- 3. data: paths leave the data folder ---------------------------------------------------

@pytest.fixture
def data_folder(tmp_path, monkeypatch):
    """A data folder (LIP_DATA) with one image, beside a folder of private images."""
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    root = tmp_path / "data"
    (root / "set").mkdir(parents=True)
    Image.fromarray(pixels).save(root / "set" / "inside.png")
    private = tmp_path / "private"
    private.mkdir()
    Image.fromarray(pixels).save(private / "secret.png")
    (root / "set" / "link.png").symlink_to(private / "secret.png")
    (root / "outlink").symlink_to(private, target_is_directory=True)
    monkeypatch.setenv("LIP_DATA", str(root))
    return root


@pytest.mark.parametrize("spec", ["data:../private/secret", "data:../private/secret.png",
                                  "data:set/../../private/secret", "data:PRIVATE/secret.png",
                                  "data:set/link", "data:outlink/secret"])
def test_data_paths_stay_inside_the_data_folder(spec, data_folder):
    from lottery_prior.images import image_size, load_image, load_mask

    spec = spec.replace("PRIVATE", str(data_folder.parent / "private"))
    for load in (lambda: load_image(spec), lambda: image_size(spec),
                 lambda: load_mask(spec, (32, 32))):
        with pytest.raises(LipError) as err:
            load()
        assert "\n" not in str(err.value) and "data folder" in str(err.value)
    assert load_image("data:set/inside").shape == (3, 32, 32)  # inside: fine
    assert load_image("data:set/../set/inside").shape == (3, 32, 32)


@pytest.mark.parametrize("pattern", ["data:../private/*", "data:PRIVATE/*", "data:outlink/*",
                                     "data:set/*", "data:**/*.png"])
def test_data_paths_stay_inside_the_data_folder_in_spec_globs(pattern, data_folder):
    from lottery_prior.experiments.spec import parse_spec

    pattern = pattern.replace("PRIVATE", str(data_folder.parent / "private"))
    data = base_spec()
    data["grid"]["images"] = [pattern]
    with pytest.raises(LipError) as err:
        parse_spec(data)
    message = str(err.value)
    assert "\n" not in message and message.startswith("grid.images[0]:"), message
    assert "data folder" in message or "matches no image" in message


def test_data_paths_stay_inside_the_data_folder_in_spec_globs_inside_is_fine(data_folder):
    from lottery_prior.experiments.spec import parse_spec

    (data_folder / "set" / "link.png").unlink()
    (data_folder / "outlink").unlink()
    data = base_spec()
    data["grid"]["images"] = ["data:set/*", "data:**/*.png"]
    assert parse_spec(data).images == ["data:set/inside"]


def base_spec() -> dict:
    """A small valid spec (parsed TOML) on a builtin image."""
    return {"name": "tiny",
            "grid": {"images": ["builtin:camera"], "size": 32, "seeds": [0],
                     "noise_seeds": [0], "sparsities": [0.5],
                     "methods": ["ticket", "dense"]},
            "task": [{"name": "denoise", "sigma": 25}],
            "model": {"name": "dip", "options": {"width": 8, "scales": 2}},
            "fit": {"steps": 10}}

"""Image and mask loading, cropping, resizing, saving and built-in masks."""

import logging

import numpy as np
import pytest
import torch
from PIL import Image

from lottery_prior import images
from lottery_prior.errors import LipError
from lottery_prior.images import (
    bernoulli_mask,
    center_crop,
    data_root,
    image_size,
    list_builtin,
    load_image,
    load_mask,
    resize,
    save_image,
    text_mask,
)


def write(path, arr):
    Image.fromarray(arr).save(path)
    return str(path)


@pytest.fixture
def rgb_u8():
    return np.random.default_rng(0).integers(0, 256, (37, 70, 3), dtype=np.uint8)


@pytest.mark.parametrize("ext", ["png", "bmp", "tiff", "jpg"])
def test_load_rgb_formats(tmp_path, rgb_u8, ext):
    img = load_image(write(tmp_path / f"a.{ext}", rgb_u8), multiple=1)
    assert img.shape == (3, 37, 70) and img.dtype == torch.float32
    assert 0 <= img.min() and img.max() <= 1
    if ext != "jpg":
        assert torch.equal(img, torch.from_numpy(rgb_u8).permute(2, 0, 1).float() / 255)


def test_gray_stays_one_channel(tmp_path, rgb_u8):
    img = load_image(write(tmp_path / "g.png", rgb_u8[..., 0]), multiple=1)
    assert img.shape == (1, 37, 70)
    assert torch.equal(img[0], torch.from_numpy(rgb_u8[..., 0]).float() / 255)


def test_alpha_dropped_with_notice(tmp_path, rgb_u8, caplog):
    rgba = np.concatenate([rgb_u8, np.full((37, 70, 1), 7, np.uint8)], axis=2)
    la = rgba[..., [0, 3]]
    with caplog.at_level(logging.INFO, logger="lottery_prior"):
        assert load_image(write(tmp_path / "a.png", rgba), multiple=1).shape == (3, 37, 70)
        assert load_image(write(tmp_path / "b.png", la), multiple=1).shape == (1, 37, 70)
    assert sum("alpha" in r.message for r in caplog.records) == 2


def test_palette_and_16bit(tmp_path, rgb_u8):
    Image.fromarray(rgb_u8).convert("P").save(tmp_path / "p.png")
    assert load_image(str(tmp_path / "p.png"), multiple=1).shape == (3, 37, 70)
    deep = np.full((37, 70), 65535, np.uint16)
    deep[0, 0] = 0
    Image.fromarray(deep).save(tmp_path / "d.png")
    img = load_image(str(tmp_path / "d.png"), multiple=1)
    assert img.shape == (1, 37, 70) and img.max() == 1 and img[0, 0, 0] == 0


def test_crop_to_multiple_with_notice(tmp_path, caplog):
    path = write(tmp_path / "a.png", np.zeros((321, 481, 3), np.uint8))
    with caplog.at_level(logging.INFO, logger="lottery_prior"):
        assert load_image(path).shape == (3, 320, 480)
    assert "cropped 321x481 to 320x480 (multiple of 32)" in caplog.text
    assert load_image(path, multiple=1).shape == (3, 321, 481)
    with pytest.raises(LipError, match="multiple"):
        load_image(path, multiple=500)


def test_too_small_for_the_multiple_names_real_options(tmp_path):
    path = write(tmp_path / "a.png", np.zeros((20, 40, 3), np.uint8))
    with pytest.raises(LipError) as e:
        load_image(path)
    message = str(e.value)
    assert "20x40" in message and "\n" not in message
    assert "--size 32" in message and "--model-opt scales=N" in message
    assert load_image(path, size=32).shape == (3, 32, 32)  # the advice works


def test_huge_size_is_refused_before_allocating(monkeypatch):
    def no_resize(*args, **kwargs):
        raise AssertionError("resized before checking the memory")

    monkeypatch.setattr(images, "resize", no_resize)
    with pytest.raises(LipError, match="--size 1000000 would need about") as e:
        load_image("builtin:camera", size=1_000_000)
    assert "\n" not in str(e.value) and "smaller --size" in str(e.value)
    monkeypatch.setattr(images, "memory_bytes", lambda: 64 * 64 * 3 * 4)  # one image's bytes
    with pytest.raises(LipError, match="--size 64 would need"):
        load_image("builtin:camera", size=64)


def test_memory_estimate():
    have = images.memory_bytes()
    assert have is None or have > 2**20
    if have is not None:
        side = int((have / (3 * 4)) ** 0.5) + 1  # 3 float32 channels alone exceed memory
        with pytest.raises(LipError, match="memory"):
            images.check_size_fits_memory(side)
        images.check_size_fits_memory(64)


def test_center_crop_is_central():
    t = torch.arange(30.0).reshape(1, 5, 6)
    assert torch.equal(center_crop(t, 3, 2), t[:, 1:4, 2:4])
    with pytest.raises(LipError):
        center_crop(t, 6, 2)


@pytest.mark.parametrize(("size", "word"), [(64, "downscaled"), (200, "upscaled")])
def test_size_square_resize(tmp_path, rgb_u8, caplog, size, word):
    big = np.asarray(Image.fromarray(rgb_u8).resize((150, 100)))
    with caplog.at_level(logging.INFO, logger="lottery_prior"):
        img = load_image(write(tmp_path / "a.png", big), size=size)
    assert img.shape == (3, size // 32 * 32, size // 32 * 32)
    square = center_crop(torch.from_numpy(big.copy()).permute(2, 0, 1).float() / 255, 100, 100)
    expected = center_crop(resize(square, size, size), img.shape[1], img.shape[2])
    assert torch.equal(img, expected)  # the centre square, resized, then cropped
    assert word in caplog.text
    with pytest.raises(LipError, match="size"):
        load_image(str(tmp_path / "a.png"), size=0)


def test_resize_matches_pillow_and_keeps_constants(gray_image):
    flat = torch.full((2, 3, 40, 60), 0.25)
    assert torch.allclose(resize(flat, 10, 15), torch.full((2, 3, 10, 15), 0.25), atol=1e-6)
    u8 = (gray_image[0] * 255).round().to(torch.uint8).numpy()
    ours = resize(torch.from_numpy(u8).float()[None] / 255, 24, 40)[0].numpy() * 255
    pil = np.asarray(Image.fromarray(u8).resize((40, 24), Image.Resampling.LANCZOS), np.float32)
    assert np.abs(ours - pil).max() <= 1.0  # Pillow rounds to 8 bits, ours stays float
    with pytest.raises(LipError, match="resize"):
        resize(flat, 10, 15, method="nearest")


@pytest.mark.parametrize("name", list_builtin())
def test_builtin_images_load_offline(name):
    img = load_image(f"builtin:{name}")
    assert img.shape[0] in (1, 3) and img.shape[1] % 32 == 0 and img.shape[2] % 32 == 0
    assert 0 <= img.min() and img.max() <= 1


def test_builtin_gray_and_rgb():
    assert load_image("builtin:camera").shape == (1, 512, 512)
    assert load_image("builtin:astronaut", size=64).shape == (3, 64, 64)


def test_data_images(shared_data):
    assert load_image("data:set5/baby").shape == (3, 512, 512)
    assert load_image("data:inpainting/kate.png").shape == (3, 512, 512)
    mask = load_mask("data:inpainting/kate_mask", (512, 512))
    assert mask.shape == (1, 512, 512) and set(mask.unique().tolist()) == {0.0, 1.0}


def test_data_root_from_env(tmp_path, monkeypatch, rgb_u8):
    (tmp_path / "set").mkdir()
    write(tmp_path / "set" / "x.bmp", rgb_u8)
    monkeypatch.setenv("LIP_DATA", str(tmp_path))
    assert data_root() == tmp_path
    assert load_image("data:set/x", multiple=1).shape == (3, 37, 70)
    monkeypatch.setenv("LIP_DATA", str(tmp_path / "nowhere"))
    assert data_root() is None
    with pytest.raises(LipError, match="LIP_DATA"):
        load_image("data:set/x")


def test_data_root_search_parents(tmp_path, monkeypatch):
    monkeypatch.delenv("LIP_DATA", raising=False)
    (tmp_path / "shared" / "data").mkdir(parents=True)
    (tmp_path / "repo" / "sub").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "repo" / "sub")
    assert data_root() == (tmp_path / "shared" / "data").resolve()


def test_load_errors(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not an image")
    good = write(tmp_path / "good.png", np.zeros((64, 64, 3), np.uint8))
    (tmp_path / "cut.png").write_bytes(open(good, "rb").read()[:60])
    with pytest.raises(LipError, match="no such"):
        load_image(str(tmp_path / "missing.png"))
    for name in ("bad.png", "cut.png"):
        with pytest.raises(LipError, match="cannot read"):
            load_image(str(tmp_path / name))
    with pytest.raises(LipError, match="astronaut"):
        load_image("builtin:lena")


def test_data_missing_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("LIP_DATA", str(tmp_path))
    with pytest.raises(LipError, match="no image"):
        load_image("data:set5/nothing")
    monkeypatch.delenv("LIP_DATA")
    monkeypatch.chdir(tmp_path)
    if data_root() is None:
        with pytest.raises(LipError, match="shared/data"):
            load_image("data:set5/baby")


def test_load_mask(tmp_path, caplog):
    arr = np.full((70, 100), 255, np.uint8)
    arr[10:20, 10:20] = 127
    arr[30, 30] = 128
    path = write(tmp_path / "m.png", arr)
    mask = load_mask(path, (70, 100))
    assert mask.shape == (1, 70, 100) and mask.dtype == torch.float32
    assert mask.sum() == 70 * 100 - 100 and mask[0, 30, 30] == 1
    rgb = write(tmp_path / "rgb.png", np.repeat(arr[..., None], 3, axis=2))
    assert torch.equal(load_mask(rgb, (70, 100)), mask)
    with caplog.at_level(logging.INFO, logger="lottery_prior"):
        cropped = load_mask(path, (64, 96))
    assert torch.equal(cropped, center_crop(mask, 64, 96)) and "cropped 70x100" in caplog.text
    with pytest.raises(LipError, match="mask 70x100 does not match image 32x32"):
        load_mask(path, (32, 32))


def halves_mask(tmp_path, h, w, name="m.png"):
    """A mask file h x w whose left half is missing (0) and right half observed (255)."""
    arr = np.full((h, w), 255, np.uint8)
    arr[:, : w // 2] = 0
    return write(tmp_path / name, arr)


def test_mask_of_the_images_original_size_follows_size(tmp_path):
    path = halves_mask(tmp_path, 96, 96)
    mask = load_mask(path, (32, 32), size=32, source_hw=(96, 96))
    assert mask.shape == (1, 32, 32)
    assert mask[0, :, :15].sum() == 0 and mask[0, :, 17:].min() == 1
    # not square: the same centre square and resize as the image
    wide = halves_mask(tmp_path, 60, 150, "wide.png")
    mask = load_mask(wide, (32, 32), size=32, source_hw=(60, 150))
    expected = (load_image(wide, size=32).mean(0, keepdim=True) >= 0.5).float()
    assert torch.equal(mask, expected) and 0 < mask.mean() < 1


def test_mask_of_the_loaded_size_is_taken_as_is_with_size(tmp_path):
    path = halves_mask(tmp_path, 64, 64)
    mask = load_mask(path, (64, 64), size=64, source_hw=(512, 512))
    assert mask[0, :, :32].sum() == 0 and mask[0, :, 32:].min() == 1
    assert torch.equal(load_mask(halves_mask(tmp_path, 70, 70, "c.png"), (64, 64), size=64,
                                 source_hw=(512, 512)), center_crop(mask, 64, 64))


@pytest.mark.parametrize("source_hw", [(512, 512), None])
def test_mask_of_another_size_is_refused_not_resized(tmp_path, source_hw):
    """A 10x10 mask on a 512x512 image loaded with --size 64 used to be stretched to 64x64."""
    path = halves_mask(tmp_path, 10, 10)
    with pytest.raises(LipError) as e:
        load_mask(path, (64, 64), size=64, source_hw=source_hw)
    message = str(e.value)
    assert message.startswith("mask 10x10 does not match image ") and "\n" not in message
    assert "64x64" in message and "give a mask of" in message
    if source_hw:
        assert "image 512x512 (64x64 after --size 64)" in message
    with pytest.raises(LipError, match="mask 10x10 does not match image 64x64; give"):
        load_mask(path, (64, 64))


def test_image_size_is_the_stored_upright_size(tmp_path, rgb_u8):
    assert image_size(write(tmp_path / "a.png", rgb_u8)) == (37, 70)
    assert image_size("builtin:astronaut") == (512, 512)
    turned = Image.fromarray(rgb_u8)
    exif = turned.getexif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    turned.save(tmp_path / "t.jpg", exif=exif)
    assert image_size(str(tmp_path / "t.jpg")) == (70, 37)
    assert load_image(str(tmp_path / "t.jpg"), multiple=1).shape[1:] == (70, 37)
    with pytest.raises(LipError, match="no such"):
        image_size(str(tmp_path / "missing.png"))


def test_save_roundtrip(tmp_path, rgb_image, gray_image):
    path = tmp_path / "out" / "deep" / "x.png"
    save_image(rgb_image[None], path)
    back = load_image(str(path), multiple=1)
    assert back.shape == rgb_image.shape
    assert (back - rgb_image).abs().max() <= 0.5 / 255 + 1e-6
    save_image(torch.full((1, 4, 4), 2.0), tmp_path / "g.png")
    assert np.asarray(Image.open(tmp_path / "g.png")).min() == 255
    save_image(gray_image, tmp_path / "gray.png")
    assert Image.open(tmp_path / "gray.png").mode == "L"
    with pytest.raises(LipError):
        save_image(torch.zeros(2, 3, 4, 4), tmp_path / "bad.png")


@pytest.mark.parametrize(("h", "w"), [(48, 80), (256, 256), (512, 384)])
def test_text_mask(h, w):
    mask = text_mask(h, w)
    assert mask.shape == (1, h, w) and set(mask.unique().tolist()) == {0.0, 1.0}
    assert 0.10 <= 1 - mask.mean().item() <= 0.20
    assert torch.equal(mask, text_mask(h, w))
    assert not torch.equal(mask, text_mask(h, w, seed=1))


def test_bernoulli_mask(generator):
    mask = bernoulli_mask(200, 300, 0.3, generator)
    assert mask.shape == (1, 200, 300)
    assert abs(mask.mean().item() - 0.3) < 0.01
    assert torch.equal(mask, bernoulli_mask(200, 300, 0.3, torch.Generator().manual_seed(0)))
    assert bernoulli_mask(5, 5, 1.0, generator).min() == 1
    for keep in (0.0, -0.1, 1.5):
        with pytest.raises(LipError, match="keep"):
            bernoulli_mask(5, 5, keep, generator)


@pytest.mark.parametrize(("ci", "outcome"), [("true", pytest.fail.Exception),
                                             ("", pytest.skip.Exception)])
def test_shared_data_fixture_fails_in_ci_when_the_folder_is_missing(
    tmp_path, monkeypatch, request, ci, outcome
):
    monkeypatch.setenv("LIP_DATA", str(tmp_path / "nowhere"))
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="shared test images"):
        request.getfixturevalue("shared_data")

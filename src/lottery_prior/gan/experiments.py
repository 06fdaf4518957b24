"""GAN-prior experiments shared by ``lip gan`` and the benchmarks: training, compressive
sensing, inpainting and IMP on the generator, each scored on held-out images.

An experiment returns :class:`Results` (a row per image and setting, their means) and, given
``out``, writes there the recovered images, ``results``/``summary`` tables (CSV + Markdown)
and plots of the recovery error. The default images are the 20 held-out LFW faces
(:func:`held_out_faces`), never used to train or fine-tune. Measurement matrices, noise,
outliers, random pixel masks and the restarts' starting codes each have their own named
stream of the seed (:mod:`lottery_prior.seeding`) with the image's content hash as context:
two images never share a noise field, and every m, keep ratio, round and pruning method sees
the same observations of an image.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from lottery_prior import images as imageio
from lottery_prior import seeding
from lottery_prior.errors import LipError
from lottery_prior.files import save_figure
from lottery_prior.finders.classical import library_version
from lottery_prior.gan.checkpoint import save_checkpoint
from lottery_prior.gan.data import N_DIGITS_TRAIN, N_TRAIN, load_dataset, load_faces
from lottery_prior.gan.networks import Discriminator, Generator
from lottery_prior.gan.prune import PRUNE_METHODS, GanTicket, prune_gan
from lottery_prior.gan.recovery import GaussianMeasurement, Recovery, recover_cs, recover_inpaint
from lottery_prior.gan.sparsity import CS_BASELINES, lasso_cs
from lottery_prior.gan.train import train_gan
from lottery_prior.masks import Mask
from lottery_prior.problem import content_hash
from lottery_prior.report.plots import plot_sparsity_curves
from lottery_prior.report.tables import write_table

log = logging.getLogger("lottery_prior")

CHECKPOINT_NAME = "gan.pth"
# What `lip gan train` records as the checkpoint's training data (config key "dataset"):
# a checkpoint saying so can be fine-tuned on the bundled faces without --train-images.
FACES_DATASET = f"skimage lfw_subset faces 0-{N_TRAIN - 1}"
DIGITS_DATASET = f"sklearn digits 0-{N_DIGITS_TRAIN - 1}"
DATASET_NAMES = {"faces": FACES_DATASET, "digits": DIGITS_DATASET}  # as checkpoints say
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".ppm", ".pgm")
DEPTHS = (64, 64, 32, 16, 16)  # widths at 4, 8, 16, 32, 64 px: the small face GAN
NamedImages = list[tuple[str, Tensor]]
StepCallback = Callable[[dict], None]


@dataclass(frozen=True)
class Solver:
    """Adam over the latent code: steps, restarts optimised together, learning rate."""

    steps: int = 1500
    restarts: int = 5
    lr: float = 1e-2

    def __post_init__(self) -> None:
        if self.steps < 1 or self.restarts < 1 or not self.lr > 0:
            raise LipError(f"need steps >= 1, restarts >= 1 and lr > 0; got {self.steps}, "
                           f"{self.restarts}, {self.lr}")


@dataclass
class Results:
    """Rows (one per image and setting), their means over the images, the files written."""

    rows: list[dict]
    summary: list[dict]
    files: list[Path] = field(default_factory=list)


@contextlib.contextmanager
def _steps(desc: str, total: int, show: bool) -> Iterator[StepCallback]:
    """A per-step callback drawing a transient tqdm bar on stderr (a no-op unless ``show``)."""
    if not show:
        yield lambda info: None
        return
    with tqdm(total=total, desc=desc, leave=False, file=sys.stderr, dynamic_ncols=True,
              mininterval=0.5) as bar:
        yield lambda info: bar.update(1)


# ---------------------------------------------------------------------------------- images

def _to_channels(x: Tensor, channels: int, name: str) -> Tensor:
    """(..., C, H, W) as ``channels`` channels: RGB -> gray by luminance, gray -> RGB."""
    c = x.shape[-3]
    if c == channels:
        return x
    if c == 3 and channels == 1:
        weights = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype).view(3, 1, 1)
        return (x * weights).sum(dim=-3, keepdim=True)
    if c == 1 and channels == 3:
        return x.expand(*x.shape[:-3], 3, *x.shape[-2:]).contiguous()
    raise LipError(f"{name} has {c} channels and the generator makes {channels}; only gray "
                   "and RGB convert into each other")


def held_out_faces(generator: Generator, count: int = 4) -> NamedImages:
    """The first ``count`` of the 20 held-out faces, sized and coloured as the generator's."""
    faces = load_faces("eval", generator.resolution)
    if not 1 <= count <= len(faces):
        raise LipError(f"there are {len(faces)} held-out faces; ask for 1 to {len(faces)}, "
                       f"got {count}")
    faces = _to_channels(faces[:count], generator.out_channels, "the faces")
    return [(f"face{N_TRAIN + i}", x) for i, x in enumerate(faces)]


def held_out_images(generator: Generator, config: Mapping[str, object],
                    count: int = 4) -> NamedImages:
    """The first ``count`` held-out images of the data the checkpoint was trained on (its
    config's ``dataset``): digits for `lip gan train --data digits`, else faces."""
    if config.get("dataset") != DIGITS_DATASET:
        return held_out_faces(generator, count)
    digits = load_dataset("digits", "eval", generator.resolution)
    if not 1 <= count <= len(digits):
        raise LipError(f"there are {len(digits)} held-out digits; ask for 1 to {len(digits)}, "
                       f"got {count}")
    digits = _to_channels(digits[:count], generator.out_channels, "the digits")
    return [(f"digit{N_DIGITS_TRAIN + i}", x) for i, x in enumerate(digits)]


def training_faces(generator: Generator) -> Tensor:
    """The 80 fine-tuning faces (N, C, R, R), sized and coloured as the generator's."""
    return _to_channels(load_faces("train", generator.resolution), generator.out_channels,
                        "the faces")


def trained_on_faces(config: Mapping[str, object]) -> bool:
    """Whether a checkpoint's config records `lip gan train`'s bundled training faces."""
    return config.get("dataset") == FACES_DATASET


def load_image_folder(folder: str | os.PathLike, generator: Generator) -> Tensor:
    """Every image file directly in ``folder`` (sorted by name; PNG/JPEG/TIFF/BMP/WebP/PPM),
    centre square resized to the generator's side and converted to its channels:
    (N, C, R, R) in [0, 1], all held in memory. Files that cannot be read are skipped with a
    warning; a missing folder, or one without two readable images, is a LipError."""
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise LipError(f"no such folder of training images: {folder}")
    files = sorted(f for f in path.iterdir()
                   if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise LipError(f"{folder} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
    loaded, skipped = [], []
    side, channels = generator.resolution, generator.out_channels
    for f in files:
        try:
            x = imageio.load_image(str(f), size=side, multiple=1)
        except LipError:
            skipped.append(f.name)
            continue
        loaded.append(_to_channels(x, channels, f.name))
    if skipped:
        log.warning("%s: skipped %d unreadable file(s): %s", folder, len(skipped),
                    ", ".join(skipped[:5]) + (" ..." if len(skipped) > 5 else ""))
    if not loaded:
        raise LipError(f"{folder} holds no readable image ({len(files)} file(s) tried)")
    if len(loaded) < 2:
        raise LipError(f"{folder} holds one readable image; fine-tuning needs at least 2")
    return torch.stack(loaded)


def load_images(specs: Sequence[str], generator: Generator, names: Sequence[str]) -> NamedImages:
    """Images from specs (file, ``builtin:NAME``, ``data:REL``): centre square resized to the
    generator's side, converted to its channels; repeated names get a ``-2``... suffix."""
    out: NamedImages = []
    seen: dict[str, int] = {}
    for spec, name in zip(specs, names, strict=True):
        x = imageio.load_image(spec, size=generator.resolution, multiple=1)
        seen[name] = seen.get(name, 0) + 1
        unique = name if seen[name] == 1 else f"{name}-{seen[name]}"
        out.append((unique, _to_channels(x, generator.out_channels, spec)))
    return out


def block_mask(side: int) -> Tensor:
    """(1, side, side) pixel mask, 0 on a centre block (rows 5/16-11/16, columns 1/4-3/4)."""
    keep = torch.ones(1, side, side)
    keep[:, round(5 * side / 16):round(11 * side / 16), side // 4:3 * side // 4] = 0
    return keep


def pixel_mask(spec: str, side: int) -> Tensor:
    """An inpainting mask (1, side, side), 1 = observed: ``block``, ``text`` or a mask file
    (white = observed) of the generator's size."""
    if spec == "block":
        return block_mask(side)
    if spec == "text":
        return imageio.text_mask(side, side)
    return imageio.load_mask(spec, (side, side), multiple=1)


def image_grid(tiles: Sequence[Tensor], columns: int, pad: int = 1) -> Tensor:
    """Equal-shaped (C, H, W) tiles laid out row by row on white, ``pad`` pixels apart."""
    c, h, w = tiles[0].shape
    rows = math.ceil(len(tiles) / columns)
    grid = torch.ones(c, pad + rows * (h + pad), pad + columns * (w + pad))
    for k, tile in enumerate(tiles):
        r, q = divmod(k, columns)
        grid[:, pad + r * (h + pad):(r + 1) * (h + pad), pad + q * (w + pad):(q + 1) * (w + pad)] \
            = tile
    return grid


# ---------------------------------------------------------------------------- tables, plots

def summarize(rows: Sequence[dict], by: Sequence[str],
              keys: Sequence[str] = ("psnr", "mse", "residual")) -> list[dict]:
    """Means of ``keys`` (PSNR also std and min) and of ``seconds`` over the rows sharing the
    values of ``by``, in order of first appearance."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in by), []).append(r)
    out = []
    for key, group in groups.items():
        row: dict = {**dict(zip(by, key, strict=True)), "images": len(group)}
        for k in keys:
            values = [g[k] for g in group]
            row[k] = statistics.fmean(values)
            if k == "psnr":
                row["psnr_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
                row["psnr_min"] = min(values)
        row["seconds"] = statistics.fmean(g["seconds"] for g in group)
        out.append(row)
    return out


def _plot_lines(series: Mapping[str, tuple[Sequence[float], Sequence[float]]], path: Path, *,
                xlabel: str, ylabel: str, title: str = "", logx: bool = False,
                logy: bool = False) -> Path:
    """One line per labelled (x, y) series; one PNG."""
    import matplotlib.pyplot as plt  # the Agg backend is set by report.plots
    from matplotlib.ticker import NullLocator

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    for label, (x, y) in series.items():
        ax.plot(x, y, marker="o" if len(x) < 50 else None, ms=3.5, lw=1.2, label=label)
    if logx:
        ticks = sorted({v for x, _ in series.values() for v in x})
        ax.set_xscale("log")
        ax.set_xticks(ticks, [f"{v:g}" for v in ticks])
        ax.xaxis.set_minor_locator(NullLocator())
    ax.set_yscale("log" if logy else "linear")
    ax.set(xlabel=xlabel, ylabel=ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return path


def _plot_error_vs(summary: Sequence[dict], x_key: str, out: Path, stem: str, *, xlabel: str,
                   title: str, logx: bool = False) -> list[Path]:
    """``psnr_vs_<stem>.png`` and ``mse_vs_<stem>.png``: mean error against ``x_key``, one
    line per method."""
    paths = []
    for key, ylabel, logy in (("psnr", "PSNR (dB)", False), ("mse", "per-pixel MSE", True)):
        series: dict[str, tuple[list[float], list[float]]] = {}
        for r in sorted(summary, key=lambda r: r[x_key]):
            xs, ys = series.setdefault(r.get("method", "GAN prior"), ([], []))
            xs.append(r[x_key])
            ys.append(r[key])
        paths.append(_plot_lines(series, out / f"{key}_vs_{stem}.png", xlabel=xlabel,
                                 ylabel=ylabel, title=title, logx=logx, logy=logy))
    return paths


def _save_images(out: Path, images: Mapping[str, Tensor], tiles: Sequence[Tensor],
                 columns: int) -> list[Path]:
    """``images/<stem>.png`` for each image, and the tiles as ``montage.png``."""
    for stem, image in images.items():
        imageio.save_image(image, out / "images" / f"{stem}.png")
    imageio.save_image(image_grid(tiles, columns), out / "montage.png")
    return [out / "images", out / "montage.png"]


def _write_tables(out: Path, rows: list[dict], summary: list[dict]) -> list[Path]:
    return [*write_table(rows, out / "results"), *write_table(summary, out / "summary")]


def _row(name: str, result: Recovery, seconds: float, **setting: object) -> dict:
    return {"image": name, **setting, "psnr": result.psnr, "mse": result.mse,
            "residual": result.residual, "seconds": round(seconds, 3)}


# ------------------------------------------------------------------------------- training

def depths_for(size: int) -> tuple[int, ...]:
    """Scale widths of the small face GAN making ``size`` x ``size`` images."""
    sides = [4 * 2**k for k in range(len(DEPTHS))]
    if size not in sides:
        raise LipError(f"size must be one of {', '.join(map(str, sides))}, got {size}")
    return DEPTHS[:sides.index(size) + 1]


def train_and_save(out: Path, *, size: int = 32, steps_per_scale: int = 800,
                   fade_steps: int | None = None, batch_size: int = 16, lr: float = 1e-3,
                   seed: int = 0, device: str | torch.device = "cpu",
                   progress: bool = False, data: str = "faces") -> Results:
    """Train the small GAN on the 80 training faces (``data="digits"``: the 1,497 training
    digits); write ``gan.pth`` (zoo format, the
    moving-average generator as ``avgG``), ``samples.png`` (64 samples), a table of the final
    losses per scale (``results``) and ``losses.png``. Rows: one per scale."""
    depths = depths_for(size)
    fade = steps_per_scale // 2 if fade_steps is None else fade_steps
    history: list[dict] = []
    rows: list[dict] = []
    start = last = time.perf_counter()
    with _steps("train", steps_per_scale * len(depths), progress) as bar:
        def record(info: dict) -> None:
            nonlocal last
            history.append(info)
            bar(info)
            if info["step"] == info["steps"]:
                tail = history[-max(1, info["steps"] // 10):]
                rows.append({"scale": info["scale"], "resolution": info["resolution"],
                             "steps": info["steps"],
                             "loss_d": statistics.fmean(h["loss_d"] for h in tail),
                             "loss_g": statistics.fmean(h["loss_g"] for h in tail),
                             "seconds": round(time.perf_counter() - last, 1)})
                last = time.perf_counter()
                log.info("scale %d (%d px) trained in %.0f s", info["scale"],
                         info["resolution"], rows[-1]["seconds"])

        models = train_gan(load_dataset(data, "train", size), depths=depths,
                           steps_per_scale=steps_per_scale, fade_steps=fade,
                           batch_size=batch_size, lr=lr, seed=seed, device=device,
                           callback=record)
    minutes = (time.perf_counter() - start) / 60
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = out / CHECKPOINT_NAME
    save_checkpoint(checkpoint, models.generator, models.discriminator, models.average,
                    dataset=DATASET_NAMES[data],
                    steps_per_scale=steps_per_scale, fade_steps=fade, seed=seed,
                    train_minutes=round(minutes, 2))
    net = models.average.eval()
    with torch.no_grad():
        z = torch.randn(64, net.latent_dim, generator=seeding.generator(seed, "gan-samples"))
        z = z.to(next(net.parameters()))
        samples = ((net(z) + 1) / 2).clamp(0, 1).cpu()
    imageio.save_image(image_grid(list(samples), 8), out / "samples.png")
    smooth = max(1, len(history) // 100)
    steps = list(range(1, len(history) + 1))[smooth - 1:]
    curves = {f"{label} loss": (steps, np.convolve([h[key] for h in history],
                                                   np.ones(smooth) / smooth, "valid").tolist())
              for label, key in (("critic", "loss_d"), ("generator", "loss_g"))}
    plot = _plot_lines(curves, out / "losses.png", xlabel="iteration (all scales)",
                       ylabel="WGAN-GP loss", title=f"training, {steps_per_scale} steps/scale")
    files = [checkpoint, out / "samples.png", *write_table(rows, out / "results"), plot]
    return Results(rows, rows, files)


# ---------------------------------------------------------------------- compressive sensing

def _check_cs(measurements: Sequence[int], noise: float, outliers: int, robust: bool,
              batches: int) -> None:
    if not measurements:
        raise LipError("give at least one number of measurements m")
    for m in measurements:
        if isinstance(m, bool) or not isinstance(m, int) or m < 1:
            raise LipError(f"the number of measurements m must be a positive integer, got {m!r}")
    if not noise >= 0:
        raise LipError(f"the noise std must be >= 0, got {noise}")
    if isinstance(outliers, bool) or not isinstance(outliers, int) or outliers < 0:
        raise LipError(f"the number of outlier rows must be an integer >= 0, got {outliers!r}")
    rows = min(measurements) + outliers
    if robust and not 1 <= batches <= rows:
        raise LipError(f"robust recovery needs 1 <= batches <= {rows} (the fewest rows: m + "
                       f"outliers), got {batches}")


def _least_norm(a: GaussianMeasurement, y: Tensor, x: Tensor) -> Recovery:
    """The prior-free reference A^+ y (clamped to [0, 1]), scored like a recovery."""
    dense = a.dense()
    estimate = torch.linalg.lstsq(dense, y[:, None]).solution[:, 0]
    image = estimate.reshape(x.shape).clamp(0, 1)
    residual = (dense @ image.flatten() - y).pow(2).mean().item()
    mse = (image - x).pow(2).mean().item()
    return Recovery(image=image, z=torch.empty(0), objective=residual, residual=residual,
                    objectives=[residual], psnr=10 * math.log10(1 / mse) if mse else math.inf,
                    mse=mse)


def cs_experiment(generator: Generator, images: NamedImages, measurements: Sequence[int], *,
                  noise: float = 0.01, outliers: int = 0, robust: bool = False,
                  batches: int = 50, baselines: Sequence[str] = (), solver: Solver = Solver(),
                  mask: Mask | None = None, seed: int = 0, out: Path | None = None,
                  progress: bool = False) -> Results:
    """Compressive sensing y = A x + e of each image for each m (CSGM; ``robust``: median of
    ``batches`` means). ``outliers`` corrupted rows are added to the m measurements (the
    paper's protocol: 20), so y has m + outliers values, its first m those without outliers.

    Rows per image, m and method: ``gan``, and each of ``baselines`` on the same A and y:
    ``least-norm`` (A^+ y, no prior), ``lasso-dct`` and ``lasso-wavelet`` (a sparsity prior,
    :mod:`lottery_prior.gan.sparsity`: α by cross-validation, and ``-oracle`` rows with α
    chosen by the truth): PSNR, per-pixel MSE, mean squared measurement residual, seconds.
    ``mask`` prunes the generator.
    With ``out``: ``images/<image>-truth.png``, ``images/<image>-m<m>[-<baseline>].png``,
    ``montage.png`` (a row per image: truth, then each m), tables, ``psnr_vs_m.png`` and
    ``mse_vs_m.png``.
    """
    _check_cs(measurements, noise, outliers, robust, batches)
    unknown = [b for b in baselines if b not in CS_BASELINES]
    if unknown:
        raise LipError(f"unknown CS baseline {unknown[0]!r}; choose from "
                       f"{', '.join(CS_BASELINES)}")
    n = generator.out_channels * generator.resolution ** 2
    shape = (generator.out_channels, generator.resolution, generator.resolution)
    rows: list[dict] = []
    tiles: list[Tensor] = []
    saved: dict[str, Tensor] = {}
    for name, x in images:
        tiles.append(x)
        saved[f"{name}-truth"] = x
        streams = {"seed": seed, "context": (content_hash(x),)}
        for m in measurements:
            a = GaussianMeasurement(n, m, outliers=outliers, **streams)
            y = a.observe(x, noise, **streams)
            start = time.perf_counter()
            with _steps(f"{name} m={m}", solver.steps, progress) as bar:
                result = recover_cs(generator, y, a, truth=x, steps=solver.steps,
                                    restarts=solver.restarts, lr=solver.lr, robust=robust,
                                    batches=batches, mask=mask, **streams, callback=bar)
            seconds = time.perf_counter() - start
            rows.append(_row(name, result, seconds, m=m, ratio=round(m / n, 4), method="gan"))
            log.info("cs %s m=%d: %.2f dB (%.1f s)", name, m, result.psnr, seconds)
            tiles.append(result.image)
            saved[f"{name}-m{m}"] = result.image
            for baseline in dict.fromkeys(baselines):
                start = time.perf_counter()
                if baseline == "least-norm":
                    found = {baseline: _least_norm(a, y, x)}
                else:
                    found = lasso_cs(a.dense(), y, shape, baseline.removeprefix("lasso-"),
                                     truth=x, seed=seed)
                seconds = (time.perf_counter() - start) / len(found)
                library = library_version("scikit-learn") if baseline != "least-norm" else None
                for method, reference in found.items():
                    rows.append(_row(name, reference, seconds, m=m, ratio=round(m / n, 4),
                                     method=method, library=library))
                    saved[f"{name}-m{m}-{method}"] = reference.image
                    log.info("cs %s m=%d %s: %.2f dB", name, m, method, reference.psnr)
    summary = summarize(rows, ("m", "ratio", "method"))
    files: list[Path] = []
    if out is not None:
        title = (f"CS, n = {n}, noise {noise:g}"
                 + (f", {outliers} outlier rows added" if outliers else "")
                 + (", median of means" if robust else "")
                 + f", {len(images)} image(s)")
        files = [*_save_images(out, saved, tiles, 1 + len(measurements)),
                 *_write_tables(out, rows, summary),
                 *_plot_error_vs(summary, "m", out, "m", xlabel="measurements m",
                                 title=title, logx=True)]
    return Results(rows, summary, files)


# ---------------------------------------------------------------------------- inpainting

def _check_keep(keep: Sequence[float]) -> None:
    for k in keep:
        if not 0 < k <= 1:
            raise LipError(f"keep must be in (0, 1], got {k}")


def inpaint_experiment(generator: Generator, images: NamedImages, *,
                       keep: Sequence[float] = (0.5,),
                       pixel_masks: Mapping[str, Tensor] | None = None,
                       solver: Solver = Solver(), mask: Mask | None = None, seed: int = 0,
                       out: Path | None = None, progress: bool = False) -> Results:
    """Inpainting of each image: pixels kept at random with each ratio in ``keep`` (a fresh
    draw per image, nested across ratios), and each named fixed mask (1, R, R), 1 = observed.

    Rows per image and mask: observed fraction, PSNR, per-pixel MSE, mean squared residual on
    the observed pixels, seconds. ``mask`` prunes the generator. With ``out``:
    ``images/<image>-truth.png``, ``images/<image>-<mask>-observed.png`` (missing = black),
    ``images/<image>-<mask>.png``, ``montage.png``, tables, ``psnr_vs_observed.png`` and
    ``mse_vs_observed.png``.
    """
    _check_keep(keep)
    side = generator.resolution
    fixed = dict(pixel_masks or {})
    for label, m in fixed.items():
        if m.shape != (1, side, side) or not ((m == 0) | (m == 1)).all() or not m.any():
            raise LipError(f"pixel mask {label!r} must be 0/1 of shape (1, {side}, {side}) "
                           f"with some pixels observed, got {tuple(m.shape)}")
    settings: list[tuple[str, float | Tensor]] = [(f"keep{k:g}", k) for k in keep]
    settings += fixed.items()
    if not settings:
        raise LipError("give a keep ratio or a pixel mask to inpaint with")
    rows: list[dict] = []
    tiles: list[Tensor] = []
    saved: dict[str, Tensor] = {}
    for name, x in images:
        tiles.append(x)
        saved[f"{name}-truth"] = x
        streams = {"seed": seed, "context": (content_hash(x),)}
        for label, k in settings:
            observed = k if isinstance(k, Tensor) else imageio.bernoulli_mask(
                side, side, k, generator=seeding.generator(seed, "gan-inpaint-mask", *streams[
                    "context"]))
            start = time.perf_counter()
            with _steps(f"{name} {label}", solver.steps, progress) as bar:
                result = recover_inpaint(generator, x * observed, observed, truth=x,
                                         steps=solver.steps, restarts=solver.restarts,
                                         lr=solver.lr, mask=mask, **streams,
                                         callback=bar)
            seconds = time.perf_counter() - start
            rows.append(_row(name, result, seconds, mask=label,
                             observed=round(observed.mean().item(), 4)))
            log.info("inpaint %s %s: %.2f dB (%.1f s)", name, label, result.psnr, seconds)
            tiles += [x * observed, result.image]
            saved[f"{name}-{label}-observed"] = x * observed
            saved[f"{name}-{label}"] = result.image
    summary = summarize(rows, ("mask",), ("observed", "psnr", "mse", "residual"))
    files: list[Path] = []
    if out is not None:
        files = [*_save_images(out, saved, tiles, 1 + 2 * len(settings)),
                 *_write_tables(out, rows, summary),
                 *_plot_error_vs(summary, "observed", out, "observed",
                                 xlabel="fraction of pixels observed",
                                 title=f"inpainting, {len(images)} image(s)")]
    return Results(rows, summary, files)


# ------------------------------------------------------------------------------- pruning

def _check_held_out(train_images: Tensor, images: NamedImages) -> None:
    """Refuse an evaluation image equal to a fine-tuning image (up to 8-bit rounding)."""
    flat = train_images.flatten(1)
    for name, x in images:
        if x.numel() == flat.shape[1] and (flat - x.flatten()).abs().amax(dim=1).min() <= 1 / 255:
            raise LipError(f"{name} is one of the fine-tuning images; evaluate on held-out "
                           "images only")


def prune_experiment(generator: Generator, discriminator: Discriminator, train_images: Tensor,
                     images: NamedImages, *, rounds: int = 6, rate: float = 0.2,
                     methods: Sequence[str] = PRUNE_METHODS, finetune_steps: int = 200,
                     finetune_lr: float = 2e-4, batch_size: int = 16,
                     measurements: int | None = 100, noise: float = 0.01,
                     keep: float | None = None, solver: Solver = Solver(), seed: int = 0,
                     out: Path | None = None, save_checkpoints: bool = False,
                     progress: bool = False) -> Results:
    """IMP with rewinding on the GAN (:func:`prune_gan`) for each method, every round's
    averaged generator evaluated on ``images`` by CS with ``measurements`` and/or by
    inpainting with ``keep``. ``train_images`` (fine-tuning) must not contain ``images``.

    Rows per image, method, round and task; round 0 (dense, fine-tuned alike) is evaluated once,
    as method ``dense``. Summary: means per task, method and round, with the counted sparsity
    of the generator's mask. With ``out``: ``masks/<method>-round<k>.safetensors`` (generator
    masks), ``checkpoints/<method>-round<k>.pth`` with ``save_checkpoints``, tables, and per
    task ``<task>_psnr_vs_sparsity.png`` and ``<task>_mse_vs_sparsity.png`` (dense as a line).
    """
    methods = list(dict.fromkeys(methods))
    if not methods or any(m not in PRUNE_METHODS for m in methods):
        raise LipError(f"methods must be among {', '.join(PRUNE_METHODS)}, got {methods}")
    if measurements is None and keep is None:
        raise LipError("evaluate by CS (measurements) or inpainting (keep), or both")
    if measurements is not None:
        _check_cs([measurements], noise, 0, False, 1)
    if keep is not None:
        _check_keep([keep])
    _check_held_out(train_images, images)
    tasks = ([] if measurements is None else [("cs", f"cs m={measurements}")]) \
        + ([] if keep is None else [("inpaint", f"inpaint keep={keep:g}")])
    rows: list[dict] = []
    files: list[Path] = []

    def evaluate(method: str, ticket: GanTicket) -> None:
        label = "dense" if ticket.round == 0 else method
        if ticket.round == 0 and method != methods[0]:
            return  # the same dense fine-tuning as the first method's round 0
        net, common = ticket.models.average, {"solver": solver, "mask": ticket.generator_mask,
                                              "seed": seed, "progress": progress}
        for task, name in tasks:
            result = (cs_experiment(net, images, [measurements], noise=noise, **common)
                      if task == "cs" else inpaint_experiment(net, images, keep=[keep], **common))
            rows.extend({"task": name, "method": label, "round": ticket.round,
                         "sparsity": round(ticket.sparsity, 4),
                         **{k: r[k] for k in ("image", "psnr", "mse", "residual", "seconds")}}
                        for r in result.rows)
            log.info("%s round %d (sparsity %.1f%%), %s: %.2f dB", label, ticket.round,
                     100 * ticket.sparsity, name, result.summary[0]["psnr"])
        if out is not None and ticket.round:
            stem = f"{method}-round{ticket.round}"
            meta = {"method": method, "round": str(ticket.round),
                    "sparsity": f"{ticket.sparsity:.6f}"}
            (out / "masks").mkdir(parents=True, exist_ok=True)
            ticket.generator_mask.save(out / "masks" / f"{stem}.safetensors", meta)
            files.append(out / "masks" / f"{stem}.safetensors")
            if save_checkpoints:
                models = ticket.models
                save_checkpoint(out / "checkpoints" / f"{stem}.pth", models.generator,
                                models.discriminator, models.average, **meta)
                files.append(out / "checkpoints" / f"{stem}.pth")

    for method in methods:
        with _steps(f"fine-tune ({method})", (rounds + 1) * finetune_steps, progress) as bar:
            prune_gan(generator, discriminator, train_images, rounds=rounds, rate=rate,
                      method=method, steps=finetune_steps, lr=finetune_lr,
                      batch_size=batch_size, seed=seed, callback=bar,
                      on_round=lambda t, method=method: evaluate(method, t))
    order = [name for _, name in tasks]
    summary = sorted(summarize(rows, ("task", "method", "round", "sparsity")),
                     key=lambda r: order.index(r["task"]))
    if out is not None:
        files += _write_tables(out, rows, summary)
        for task, name in tasks:
            mine = [r for r in summary if r["task"] == name]
            dense = next(r for r in mine if r["method"] == "dense")
            for key, ylabel in (("psnr", "PSNR (dB)"), ("mse", "per-pixel MSE")):
                series = {m: ([r["sparsity"] for r in mine if r["method"] == m],
                              [r[key] for r in mine if r["method"] == m]) for m in methods}
                files.append(plot_sparsity_curves(
                    series, out / f"{task}_{key}_vs_sparsity.png", dense=dense[key],
                    ylabel=ylabel, title=f"GAN IMP, {name}, {len(images)} held-out image(s)"))
    return Results(rows, summary, files)

"""Deep priors against classical methods, in one Markdown page.

Reads the results of the sweep ``experiments/classical.toml`` (dense DIP, the 80% ticket and
the Deep Decoder beside every classical method, on Set5 and the DIP inpainting images) and the
tables of ``lip gan cs --baselines lasso-dct lasso-wavelet least-norm`` runs, and writes:

* per task, each method's PSNR (averaged output; a classical method's one output), its
  oracle peak where it has one, and its seconds per fit;
* per task, each deep prior minus the best classical method (σ given, and σ estimated),
  paired on the observation: mean and 95% t-interval over image x seed units;
* per GAN data set and m, the generator against Lasso (α by cross-validation, and by the
  truth: an upper bound), with the paired difference over the held-out images.

    lip sweep experiments/classical.toml
    lip gan train --out runs/gan-faces && lip gan train --data digits --size 8 --out runs/gan-digits
    lip gan cs -c runs/gan-faces/gan.pth -m 50 100 200 --held-out 20 \\
        --baselines lasso-dct lasso-wavelet least-norm --out runs/cs-faces
    lip gan cs -c runs/gan-digits/gan.pth -m 10 20 40 60 --held-out 20 \\
        --baselines lasso-dct lasso-wavelet least-norm --out runs/cs-digits
    python benchmarks/classical.py lip-out/sweeps/classical --cs faces=runs/cs-faces \\
        digits=runs/cs-digits --out benchmarks/results/classical/classical.md
"""

from __future__ import annotations

import argparse
import csv
import statistics
from collections import defaultdict
from pathlib import Path

from lottery_prior.finders import method_rank, method_title
from lottery_prior.report.rows import image_name, read_results, value
from lottery_prior.stats import t_interval

DEEP = ("dense", "ticket", "decoder")
TASKS = {"denoise": "denoising, σ = 25", "sr": "super-resolution ×4", "inpaint": "inpainting"}


def _mean_std(values: list[float]) -> str:
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.fmean(values):.2f} ± {statistics.stdev(values):.2f}"


def _interval(diffs: list[float]) -> str:
    mean, low, high = t_interval(diffs)
    if mean is None:
        return "—"
    return f"{mean:+.2f}" + ("" if low is None else f" [{low:+.2f}, {high:+.2f}]")


def sweep_tables(rows: list[dict]) -> list[str]:
    lines: list[str] = []
    for task, title in TASKS.items():
        fits = [r for r in rows if r["task"] == task and r["kind"] in ("fit", "classical")]
        if not fits:
            continue
        images = sorted({image_name(r["image"]) for r in fits})
        lines += [f"### {title} ({len(images)} images: {', '.join(images)})", "",
                  "| method | PSNR, averaged output (one output: classical) | peak, averaged "
                  "(oracle) | seconds per fit | fits |", "|---|---|---|---|---|"]
        by_method: dict[str, list[dict]] = defaultdict(list)
        for r in fits:
            by_method[r["method"]].append(r)
        for method in sorted(by_method, key=method_rank):
            rs = by_method[method]
            scores = [v for v in (value(r, "psnr_averaged") for r in rs) if v is not None]
            peaks = [v for v in (value(r, "psnr_peak_averaged") for r in rs) if v is not None]
            seconds = [v for v in (value(r, "seconds") for r in rs) if v is not None]
            label = method_title(method) + (" (80%)" if method == "ticket" else "")
            lines.append(f"| {label} | {_mean_std(scores)} | "
                         f"{_mean_std(peaks) if peaks else 'n/a'} | "
                         f"{_seconds(statistics.fmean(seconds))} | {len(rs)} |")
        lines += ["", *paired_table(fits), "", *per_image(fits), ""]
    return lines


def _seconds(s: float) -> str:
    return f"{s:,.1f}" if s >= 1 else f"{s:.2f}"


def per_image(fits: list[dict]) -> list[str]:
    """Each image: the deep priors (mean over seeds) and the best classical method there."""
    best = _best([r for r in fits if r["kind"] == "classical"], blind=False)
    if best is None:
        return []
    lines = [f"| image | {' | '.join(method_title(m) for m in DEEP)} | {method_title(best)} |",
             "|---|" + "---|" * (len(DEEP) + 1)]
    for image in sorted({r["image"] for r in fits}, key=image_name):
        cells = []
        for method in (*DEEP, best):
            values = [r["psnr_averaged"] for r in fits
                      if r["image"] == image and r["method"] == method]
            cells.append(f"{statistics.fmean(values):.2f}" if values else "—")
        lines.append(f"| {image_name(image)} | {' | '.join(cells)} |")
    return lines


def _best(classical: list[dict], blind: bool) -> str | None:
    means: dict[str, list[float]] = defaultdict(list)
    for r in classical:
        if r["method"].endswith("-blind") == blind or r["task"] != "denoise" and not blind:
            means[r["method"]].append(r["psnr_averaged"])
    return max(means, key=lambda m: statistics.fmean(means[m])) if means else None


def paired_table(fits: list[dict]) -> list[str]:
    classical = [r for r in fits if r["kind"] == "classical"]
    restored = {(r["observation"], r["method"]): r for r in classical}
    lines = ["| deep prior − best classical (paired per observation, 95% t over image × seed) "
             "| averaged output | peak, averaged (oracle) | units · images |", "|---|---|---|---|"]
    for blind in (False, True):
        best = _best(classical, blind)
        if best is None:
            continue
        for method in DEEP:
            diffs, peaks, images = [], [], set()
            for r in fits:
                other = restored.get((r["observation"], best))
                if r["method"] != method or other is None:
                    continue
                diffs.append(r["psnr_averaged"] - other["psnr_averaged"])
                peaks.append(r["psnr_peak_averaged"] - other["psnr_averaged"])
                images.add(r["image"])
            if diffs:
                lines.append(f"| {method_title(method)} − {method_title(best)} | "
                             f"{_interval(diffs)} | {_interval(peaks)} | "
                             f"{len(diffs)} · {len(images)} |")
    return lines


def cs_tables(name: str, folder: Path) -> list[str]:
    with (folder / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    by: dict[tuple[int, str], dict[str, float]] = defaultdict(dict)
    for r in rows:
        by[(int(r["m"]), r["method"])][r["image"]] = float(r["psnr"])
    largest = max(rows, key=lambda r: int(r["m"]))  # the ratio m / n, rounded, is best there
    n = round(int(largest["m"]) / float(largest["ratio"]))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    ms = sorted({m for m, _ in by})
    images = len({r["image"] for r in rows})
    lines = [f"### {name}: n = {n}, {images} held-out images, noise 0.01", "",
             "| m | " + " | ".join(methods) + " | GAN − best Lasso (oracle α), 95% t |",
             "|---|" + "---|" * (len(methods) + 1)]
    for m in ms:
        cells = [_mean_std(list(by[(m, method)].values())) for method in methods]
        oracles = [k for k in methods if k.endswith("-oracle")]
        best = max(oracles, key=lambda k: statistics.fmean(by[(m, k)].values()))
        diffs = [by[(m, "gan")][i] - by[(m, best)][i] for i in by[(m, "gan")]]
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {_interval(diffs)} ({best}) |")
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep", type=Path, help="results folder of experiments/classical.toml")
    parser.add_argument("--cs", nargs="*", default=[], metavar="NAME=DIR",
                        help="lip gan cs output folders, by data set")
    parser.add_argument("--out", type=Path, help="write the page here (else print it)")
    args = parser.parse_args()
    rows = read_results(args.sweep)
    ran = sorted({f"{r['device']}, {r['precision']}" for r in rows
                  if r.get("kind") == "fit" and r.get("device")})
    lines = ["# Deep priors against classical methods", "",
             f"Sweep `experiments/classical.toml` ({len(rows)} rows; every fit and classical "
             f"method timed in that one run, fits on {'; '.join(ran)}). "
             "PSNR in dB (super-resolution: PSNR-Y, border 4); mean ± std over images × "
             "network seeds (a classical method: over images). Seconds: one fit on one CPU "
             "thread (the ticket's excludes its search).", "", *sweep_tables(rows)]
    if args.cs:
        lines += ["## Compressive sensing: the generator against Lasso", "",
                  "PSNR (dB) of the recovered image, mean ± std over held-out images; Lasso "
                  "with α by 5-fold cross-validation, and `-oracle` with α chosen by the "
                  "truth (an upper bound for that baseline).", ""]
        for item in args.cs:
            name, _, folder = item.partition("=")
            lines += cs_tables(name, Path(folder))
    text = "\n".join(lines) + "\n"
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()

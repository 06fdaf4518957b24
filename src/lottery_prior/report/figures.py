"""The report's figures from a results table (PNG files, matplotlib headless): PSNR against
sparsity per image and task, transfer heat maps, and image grids in the style of the paper's
Fig. 2. Each function returns ``Figure`` records (file, title, caption) in display order."""

from __future__ import annotations

import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from lottery_prior.files import save_figure  # noqa: E402
from lottery_prior.finders import method_rank, method_title  # noqa: E402
from lottery_prior.report.rows import (  # noqa: E402
    at_step,
    decoder_k,
    describe_fit,
    diverged,
    image_name,
    metric_label,
    scope_labeller,
    sparsity_key,
    value,
)
from lottery_prior.report.tables import HEADINGS  # noqa: E402

DPI = 100
# Curve styles: the ticket stands out, baselines are thinner; pruning at init dashed.
STYLE = {"ticket": dict(color="tab:red", lw=2.0, marker="o", zorder=5),
         "learned": dict(color="tab:orange", lw=1.8, marker="*", zorder=4),
         "random": dict(color="tab:blue", lw=1.3, marker="s"),
         "random-layerwise": dict(color="tab:cyan", lw=1.3, marker="D"),
         "magnitude": dict(color="tab:olive", lw=1.0, marker="^", ls="--"),
         "snip": dict(color="tab:purple", lw=1.0, marker="v", ls="--"),
         "grasp": dict(color="tab:brown", lw=1.0, marker="<", ls="--"),
         "synflow": dict(color="tab:pink", lw=1.0, marker=">", ls="--")}


@dataclass(frozen=True)
class Figure:
    path: Path
    title: str
    caption: str


def score_words(score: str) -> str:
    """``psnr_averaged`` -> ``PSNR, averaged output`` (oracle scores say so)."""
    return HEADINGS.get(score, score)


def _slug(*parts: object) -> str:
    return "-".join(re.sub(r"[^A-Za-z0-9]+", "-", str(p)).strip("-").lower() for p in parts)


def _save(fig, path: Path) -> Path:
    try:
        save_figure(fig, path, metadata={"Software": None})
    finally:
        plt.close(fig)
    return path


def _fits(rows: Sequence[dict]) -> list[dict]:
    return [r for r in rows if r.get("kind", "fit") != "transfer"]


def _groups(rows: Sequence[dict], label) -> dict[tuple[str, str], list[dict]]:
    """Fit rows by (image, task scope), in first-seen order."""
    out: dict[tuple[str, str], list[dict]] = {}
    for r in _fits(rows):
        out.setdefault((r["image"], label(r)), []).append(r)
    return out


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def sparsity_curves(rows: Sequence[dict], out_dir: str | Path,
                    score: str = "psnr_averaged") -> list[Figure]:
    """One plot per image and task: ``score`` (mean ± std over seeds and noise seeds) against
    the counted sparsity for the ticket and every pruning baseline, dense as a horizontal
    line with its band, the Deep Decoder as points at 1 − its parameters / dense parameters
    (labelled with k)."""
    out_dir = Path(out_dir)
    label = scope_labeller(rows)
    figures = []
    for (image, scope), group in _groups(rows, label).items():
        metric = metric_label(group)
        fig, ax = plt.subplots(figsize=(8.4, 4.2), dpi=DPI)
        seeds = {(r.get("seed"), r.get("noise_seed")) for r in group}
        dense = [value(r, score) for r in group if r["method"] == "dense"]
        dense = [v for v in dense if v is not None]
        dense_params = [r["parameters"] for r in group if r["method"] == "dense"
                        and r.get("parameters")]
        if dense:
            m, sd = _mean_std(dense)
            ax.axhline(m, color="black", ls="--", lw=1.2, label=f"dense ({m:.2f} dB)")
            ax.axhspan(m - sd, m + sd, color="black", alpha=0.08, lw=0)
        methods = sorted({r["method"] for r in group} - {"dense", "decoder"}, key=method_rank)
        for method in methods:
            by_s: dict[float, list[dict]] = {}
            for r in group:
                if r["method"] == method and value(r, score) is not None:
                    by_s.setdefault(sparsity_key(r["requested_sparsity"]), []).append(r)
            if not by_s:
                continue
            xs, ms, sds = [], [], []
            for s in sorted(by_s):
                counted = [value(r, "sparsity") for r in by_s[s]]
                counted = [c for c in counted if c is not None] or [s]
                xs.append(100 * statistics.fmean(counted))
                m, sd = _mean_std([value(r, score) for r in by_s[s]])
                ms.append(m)
                sds.append(sd)
            style = STYLE.get(method, dict(lw=1.0, marker="x"))
            line, = ax.plot(xs, ms, ms=4, label=method_title(method), **style)
            ax.fill_between(xs, np.subtract(ms, sds), np.add(ms, sds),
                            color=line.get_color(), alpha=0.15, lw=0)
        decoders: dict[object, list[dict]] = {}
        for r in group:
            if r["method"] == "decoder" and value(r, score) is not None:
                decoders.setdefault(r.get("parameters"), []).append(r)
        first = True
        for params, rs in sorted(decoders.items(), key=lambda kv: kv[0] or 0):
            m, sd = _mean_std([value(r, score) for r in rs])
            if dense_params and params:
                x = 100 * (1 - params / statistics.fmean(dense_params))
            else:  # no dense row: place it at the sparsity of the ticket it was sized to
                x = 100 * statistics.fmean(r["requested_sparsity"] or 0 for r in rs)
            ax.errorbar([x], [m], yerr=[sd], fmt="*", ms=11, color="tab:green", capsize=3,
                        zorder=6, label="Deep Decoder (equal size)" if first else None)
            k = decoder_k(rs[0])
            ax.annotate(f"k={k}" if k is not None else f"{params or '?'}", (x, m), fontsize=8,
                        xytext=(5, 5), textcoords="offset points", color="tab:green")
            first = False
        ax.set_xlabel("sparsity (%), counted from the weights")
        ax.set_ylabel(f"{metric} (dB)")
        ax.set_title(f"{image_name(image)} · {scope} — {score_words(score)}{at_step(group)}\n"
                     f"mean ± std over {len(seeds)} seed(s)", fontsize=10)
        ax.grid(alpha=0.3)
        ax.margins(x=0.08)
        ax.legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        fig.tight_layout()
        path = _save(fig, out_dir / f"curves-{_slug(image, scope, score)}.png")
        bad = diverged(group, score)
        figures.append(Figure(path, f"{image_name(image)} · {scope}",
                              f"{score_words(score)}{at_step(group)} against sparsity, {image} "
                              f"({scope}); "
                              f"mean ± std over {len(seeds)} network/noise seed(s)."
                              + _not_drawn(bad)))
    return figures


def _not_drawn(bad: Sequence[dict]) -> str:
    """A caption's note on the diverged fits a figure leaves out (none: nothing)."""
    if not bad:
        return ""
    named = "; ".join(describe_fit(r) for r in bad[:10]) + (" …" if len(bad) > 10 else "")
    return f" {len(bad)} diverged fit(s) (non-finite score) not drawn: {named}."


def transfer_heatmaps(rows: Sequence[dict], out_dir: str | Path,
                      score: str = "psnr_averaged") -> list[Figure]:
    """One heat map per requested sparsity with transfer rows: ticket source (image · task)
    → target (image · task), the mean ``score`` over seeds; the diagonal is the target's own
    ticket, empty cells were not run."""
    out_dir = Path(out_dir)
    transfers = [r for r in rows if r.get("kind") == "transfer" and value(r, score) is not None
                 and r.get("method", "ticket") == "ticket"]
    metric = metric_label(rows)
    figures = []
    for s in sorted({sparsity_key(r["requested_sparsity"]) for r in transfers}):
        cells: dict[tuple[str, str], list[float]] = {}
        for r in transfers:
            if sparsity_key(r["requested_sparsity"]) == s:
                source = f"{image_name(r.get('source_image') or r['image'])} · " \
                         f"{r.get('source_task') or r['task']}"
                cells.setdefault((source, f"{image_name(r['image'])} · {r['task']}"),
                                 []).append(value(r, score))
        targets = sorted({t for _, t in cells})
        sources = sorted({src for src, _ in cells} | set(targets))
        for r in _fits(rows):
            name = f"{image_name(r['image'])} · {r['task']}"
            if (r["method"] == "ticket" and name in targets and value(r, score) is not None
                    and sparsity_key(r["requested_sparsity"]) == s):
                cells.setdefault((name, name), []).append(value(r, score))
        data = np.array([[statistics.fmean(cells[(a, b)]) if (a, b) in cells else np.nan
                          for b in targets] for a in sources])
        fig, ax = plt.subplots(figsize=(2.2 + 1.2 * len(targets), 1.6 + 0.45 * len(sources)),
                               dpi=DPI)
        im = ax.imshow(np.ma.masked_invalid(data), cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(targets)), targets, rotation=30, ha="right", fontsize=8)
        ax.set_yticks(range(len(sources)), sources, fontsize=8)
        ax.set_xlabel("target (image · task)", fontsize=8)
        ax.set_ylabel("ticket found on", fontsize=8)
        finite = data[np.isfinite(data)]
        mid = float(finite.mean()) if finite.size else 0.0
        for i, j in np.ndindex(*data.shape):
            text = "—" if not np.isfinite(data[i, j]) else f"{data[i, j]:.2f}"
            bold = sources[i] == targets[j]
            ax.text(j, i, text, ha="center", va="center", fontsize=8,
                    fontweight="bold" if bold else "normal",
                    color="black" if np.isfinite(data[i, j]) and data[i, j] > mid else "white"
                    if np.isfinite(data[i, j]) else "gray")
        fig.colorbar(im, ax=ax, label=f"{metric} (dB)")
        ax.set_title(f"ticket transfer at {100 * s:g}% — {score_words(score)}", fontsize=9)
        fig.tight_layout()
        path = _save(fig, out_dir / f"transfer-{_slug(f'{100 * s:g}', score)}.png")
        bad = diverged([r for r in rows if r.get("kind") == "transfer"
                        and r.get("method", "ticket") == "ticket"
                        and sparsity_key(r["requested_sparsity"]) == s], score)
        figures.append(Figure(path, f"transfer at {100 * s:g}% sparsity",
                              f"Tickets at {100 * s:g}% requested sparsity retrained on other "
                              f"images and tasks: mean {score_words(score)} over seeds "
                              "(diagonal, bold: the target's own ticket; — not run)."
                              + _not_drawn(bad)))
    return figures


def _pick(levels: Sequence[float], most: int) -> list[float]:
    if len(levels) <= most:
        return list(levels)
    idx = np.linspace(0, len(levels) - 1, most).round().astype(int)
    return [levels[i] for i in dict.fromkeys(idx.tolist())]


def _weights(row: dict) -> str:
    n = row.get("parameters")
    return f"{n:,} weights" if isinstance(n, int) else "? weights"


def _load(results_dir: Path, rel: object):
    """An image of the results as 8-bit pixels (H, W) or (H, W, 3), or None if unreadable
    (read by the library's one loader: a 16-bit image keeps its range)."""
    from lottery_prior.errors import LipError
    from lottery_prior.images import read_image

    if not rel:
        return None
    try:
        x = read_image(results_dir / str(rel))
    except (LipError, OSError, ValueError):
        return None
    pixels = (x.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    return pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0)


def image_grids(rows: Sequence[dict], results_dir: str | Path, out_dir: str | Path, *,
                sparsities: Sequence[float] | None = None, most: int = 4,
                missing: list[str] | None = None) -> list[Figure]:
    """Per image and task, one row of images like the paper's Fig. 2: clean, observation,
    dense, tickets at ``sparsities`` (default: up to ``most`` spread over those run), the
    Deep Decoder (the one sized like the sparsest ticket shown), each titled with the PSNR
    of the image shown (the averaged output after the last step: the ``output`` PNG); for the
    lowest network and noise seed. A grid with an image that cannot be read (a report
    remade from a results table without its ``images/`` folder) is left out, never drawn
    with a blank: its image and task are appended to ``missing``, if given."""
    results_dir, out_dir = Path(results_dir), Path(out_dir)
    label = scope_labeller(rows)
    figures = []
    score = "psnr_averaged"  # the PSNR of the ``output`` image itself
    words = score_words(score).removeprefix("PSNR, ")
    for (image, scope), group in _groups(rows, label).items():
        metric = metric_label(group)
        seeds = sorted({(r.get("noise_seed") or 0, r.get("seed") or 0) for r in group})
        noise_seed, seed = seeds[0]
        chosen = [r for r in group if (r.get("noise_seed") or 0, r.get("seed") or 0)
                  == (noise_seed, seed)]
        ticket = {sparsity_key(r["requested_sparsity"]): r for r in chosen
                  if r["method"] == "ticket"}
        levels = sorted(s for s in ticket if s)
        if sparsities:
            levels = [s for s in levels if any(abs(s - w) < 1e-6 for w in sparsities)]
        else:
            levels = _pick(levels, most)

        def psnr(r: dict) -> str:
            v = value(r, score)
            if v is None and diverged([r], score):
                return f"diverged ({r[score]} dB)"
            return f"{v:.2f} dB, averaged" if v is not None else "— dB, averaged"

        any_row = chosen[0]
        panels = []
        if any_row.get("clean"):
            panels.append(("clean", any_row.get("clean")))
        panels.append(("observation", any_row.get("observation")))
        dense = next((r for r in chosen if r["method"] == "dense"), None)
        if dense:
            panels.append((f"dense\n{_weights(dense)}\n{psnr(dense)}",
                           dense.get("output")))
        for s in levels:
            r = ticket[s]
            counted = 100 * (value(r, "sparsity") or s)
            panels.append((f"ticket {counted:.1f}%\n{_weights(r)}\n{psnr(r)}",
                           r.get("output")))
        decoders = {sparsity_key(r["requested_sparsity"]): r for r in chosen
                    if r["method"] == "decoder"}
        match = [s for s in levels if s in decoders] or sorted(decoders)
        if match:
            r = decoders[match[-1]]
            k = decoder_k(r)
            name = f"Deep Decoder k={k}" if k is not None else "Deep Decoder"
            panels.append((f"{name}\n{_weights(r)}\n{psnr(r)}", r.get("output")))
        loaded = [_load(results_dir, rel) for _, rel in panels]
        if any(pixels is None for pixels in loaded):
            if missing is not None:
                missing.append(f"{image_name(image)} · {scope}")
            continue
        fig, axes = plt.subplots(1, len(panels), figsize=(1.55 * len(panels), 2.3), dpi=DPI,
                                 squeeze=False)
        for ax, (title, _), pixels in zip(axes[0], panels, loaded, strict=True):
            ax.imshow(pixels, cmap="gray" if pixels.ndim == 2 else None,
                      vmin=0, vmax=255, interpolation="nearest")
            ax.set_title(title, fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
        fig.suptitle(f"{image_name(image)} · {scope} — seed {seed}, noise seed {noise_seed} "
                     f"({metric}, {words})", fontsize=9)
        fig.tight_layout()
        path = _save(fig, out_dir / f"images-{_slug(image, scope)}.png")
        figures.append(Figure(path, f"{image_name(image)} · {scope}",
                              f"Outputs after the last step (averaged), {image} ({scope}), "
                              f"network seed {seed}, noise seed {noise_seed}; titles give "
                              f"the {metric}, {words}."))
    return figures

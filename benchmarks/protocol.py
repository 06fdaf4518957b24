"""The paper's protocol, factor by factor: which setting brings its claims back.

Reads the results of ``experiments/paper/small/protocol.toml`` (and ``protocol-wide.toml``
for the width factor) and prints, for each factor, the paired differences ticket − dense and
ticket − random with the ticket's layer-wise ratios at each requested sparsity, with their
95% t-interval over image × seed units and the number of images, under each setting of that
factor while the others stay at this project's protocol (search on the observation, the
averaged output at step 1000, width 32):

* search target: the observation, or the clean image (the reference code's);
* score: the averaged output at the step, or its best over the fit (the paper's oracle);
* fit length: step 1000 or step 3000 of the same fits (``[fit] score_at``);
* width: 32, or the paper's 128 (where protocol-wide.toml was run);
* and the paper's protocol as a whole (clean target, oracle peak, step 3000) at each width;

then every combination the results hold.

    lip sweep experiments/paper/small/protocol.toml
    lip sweep experiments/paper/small/protocol-wide.toml
    python benchmarks/protocol.py lip-out/sweeps/paper-small-protocol \\
        lip-out/sweeps/paper-small-protocol-wide \\
        --out benchmarks/results/paper_small/protocol/factors.md
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from lottery_prior.report.claims import by_sparsity
from lottery_prior.report.rows import read_results, rows_at

AVERAGED, PEAK = "psnr_averaged", "psnr_peak_averaged"
BASELINES = (("dense", "ticket − dense"), ("random-layerwise", "ticket − layer-wise random"))
OURS = {"target": "observation", "score": AVERAGED, "step": 1000, "width": 32}


def width(row: dict) -> int | None:
    options = row.get("model_options")
    try:
        return json.loads(options).get("width") if isinstance(options, str) else None
    except ValueError:
        return None


def select(rows: list[dict], target: str, step: int, wide: int) -> list[dict]:
    """The fits of one setting: search target, milestone step, width of the searched net
    (the Deep Decoder of a comparison is kept with its ticket through ``imp_run``)."""
    searched = {r["imp_run"] for r in rows if r.get("method") == "ticket"
                and r.get("search_target", "observation") == target and width(r) == wide}
    chosen = [r for r in rows if r.get("imp_run") in searched]
    steps = {r.get("step") for r in chosen}
    if step not in steps:
        return []
    return rows_at(chosen, step)


def differences(rows: list[dict], score: str) -> dict[tuple[str, float], str]:
    """``(baseline, sparsity) -> "mean [low, high] (units · images)"`` for dense and
    layer-wise random."""
    out = {}
    for c in by_sparsity(rows, score):
        if c.scope and c.sparsity is not None:
            baseline = "dense" if "dense" in c.claim else (
                "random-layerwise" if "layer-wise" in c.claim else None)
            if baseline and c.mean is not None:
                interval = "" if c.low is None else f" [{c.low:+.2f}, {c.high:+.2f}]"
                text = f"{c.mean:+.2f}{interval} ({c.n} · {c.images})"
                out[(baseline, c.sparsity)] = text.replace("-", "−")
    return out


def table(rows: list[dict], settings: list[tuple[str, dict]], sparsities: list[float]) -> str:
    """One Markdown row per setting: its paired differences at each sparsity."""
    header = ["setting"] + [f"{title} at {100 * s:g}%" for _, title in BASELINES
                            for s in sparsities]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, setting in settings:
        chosen = select(rows, setting["target"], setting["step"], setting["width"])
        found = differences(chosen, setting["score"]) if chosen else {}
        if not found:
            continue  # a setting these results do not hold (e.g. width 128 on the clean image)
        cells = [found.get((b, s), "—") for b, _ in BASELINES for s in sparsities]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def means(rows: list[dict], settings: list[tuple[str, dict]], sparsities: list[float]) -> str:
    """Mean PSNR (dB) over the units of each setting: dense, and the ticket at each
    sparsity (what the differences are differences of)."""
    header = ["setting", "dense"] + [f"ticket {100 * s:g}%" for s in sparsities]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, setting in settings:
        chosen = select(rows, setting["target"], setting["step"], setting["width"])
        cells = []
        for method, sparsity in [("dense", 0.0)] + [("ticket", s) for s in sparsities]:
            values = [r[setting["score"]] for r in chosen if r.get("method") == method
                      and r.get("kind") == "fit"
                      and abs(r.get("requested_sparsity", 0.0) - sparsity) < 1e-9]
            cells.append(f"{statistics.fmean(values):.2f} ({len(values)})" if values else "—")
        if any(c != "—" for c in cells):
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def label(setting: dict) -> str:
    score = "oracle peak" if setting["score"] == PEAK else "averaged output"
    return (f"{setting['target']}, {score}, step {setting['step']}, width {setting['width']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", type=Path, help="results folders or tables")
    parser.add_argument("--sparsities", type=float, nargs="+", default=[0.8, 0.95])
    parser.add_argument("--out", type=Path, help="write the tables here (else print them)")
    args = parser.parse_args()
    rows = [r for path in args.results for r in read_results(path)]
    widths = sorted({w for w in map(width, rows) if w is not None})
    steps = sorted({r["step"] for r in rows if r.get("step") is not None})
    paper = {"target": "clean", "score": PEAK, "step": max(steps, default=1000)}
    factors = [("this project's protocol", OURS),
               ("search target: clean", OURS | {"target": "clean"}),
               ("score: best over the fit (oracle)", OURS | {"score": PEAK})]
    factors += [(f"fit length: step {s}", OURS | {"step": s}) for s in steps if s != OURS["step"]]
    factors += [(f"width: {w}", OURS | {"width": w}) for w in widths if w != OURS["width"]]
    factors += [(f"the paper's protocol (clean, oracle, step {paper['step']}), width {w}",
                 paper | {"width": w}) for w in widths]
    every = [(label(s), s) for s in (
        {"target": t, "score": score, "step": step, "width": w}
        for w in widths for step in steps for t in ("observation", "clean")
        for score in (AVERAGED, PEAK))]
    text = ("Paired differences (dB), mean [95% t over image × seed units] (units · images).\n\n"
            "One factor at a time (the others at this project's protocol: search on the "
            f"observation, averaged output at step {OURS['step']}, width {OURS['width']}):\n\n"
            + table(rows, factors, args.sparsities)
            + "\nEvery setting these results hold (search target, score, step, width):\n\n"
            + table(rows, every, args.sparsities)
            + "\nMean PSNR (dB) of the fits compared (units):\n\n"
            + means(rows, every, args.sparsities))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()

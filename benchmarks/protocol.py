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
* and the paper's protocol as a whole (clean target, oracle peak, step 3000, widest width).

    lip sweep experiments/paper/small/protocol.toml
    lip sweep experiments/paper/small/protocol-wide.toml
    python benchmarks/protocol.py lip-out/sweeps/paper-small-protocol \\
        lip-out/sweeps/paper-small-protocol-wide \\
        --out benchmarks/results/paper_small/protocol/factors.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lottery_prior.report.claims import by_sparsity
from lottery_prior.report.rows import read_results, rows_at

AVERAGED, PEAK = "psnr_averaged", "psnr_peak_averaged"
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
    """``(baseline, sparsity) -> "mean [low, high] (n images)"`` for dense and layer-wise
    random."""
    out = {}
    for c in by_sparsity(rows, score):
        if c.scope and c.sparsity is not None:
            baseline = "dense" if "dense" in c.claim else (
                "random-layerwise" if "layer-wise" in c.claim else None)
            if baseline and c.mean is not None:
                interval = "" if c.low is None else f" [{c.low:+.2f}, {c.high:+.2f}]"
                out[(baseline, c.sparsity)] = f"{c.mean:+.2f}{interval} ({c.images})"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", type=Path, help="results folders or tables")
    parser.add_argument("--sparsities", type=float, nargs="+", default=[0.8, 0.95])
    parser.add_argument("--out", type=Path, help="write the table here (else print it)")
    args = parser.parse_args()
    rows = [r for path in args.results for r in read_results(path)]
    widths = sorted({w for w in map(width, rows) if w is not None})
    steps = sorted({r["step"] for r in rows if r.get("step") is not None})
    settings = [("this project's protocol", OURS)]
    settings += [(f"search target: {t}", OURS | {"target": t}) for t in ("clean",)]
    settings += [("score: best over the fit (oracle)", OURS | {"score": PEAK})]
    settings += [(f"fit length: step {s}", OURS | {"step": s}) for s in steps
                 if s != OURS["step"]]
    settings += [(f"width: {w}", OURS | {"width": w}) for w in widths if w != OURS["width"]]
    settings += [("the paper's protocol (clean, oracle, last step, widest)",
                  {"target": "clean", "score": PEAK, "step": max(steps, default=1000),
                   "width": max(widths, default=32)})]
    baselines = (("dense", "ticket − dense"), ("random-layerwise", "ticket − layer-wise random"))
    header = ["setting"] + [f"{title} at {100 * s:g}%" for _, title in baselines
                            for s in args.sparsities]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, setting in settings:
        chosen = select(rows, setting["target"], setting["step"], setting["width"])
        found = differences(chosen, setting["score"]) if chosen else {}
        cells = [found.get((b, s), "—") for b, _ in baselines for s in args.sparsities]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    text = ("Paired differences (dB), mean [95% t over image × seed units] (images); each "
            "row changes one factor of this project's protocol (search on the observation, "
            "averaged output at step 1000, width 32).\n\n" + "\n".join(lines) + "\n")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()

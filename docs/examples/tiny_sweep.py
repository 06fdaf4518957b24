"""A tiny sweep and its report

An experiment spec names a grid (images x tasks x methods x sparsities x seeds); a sweep
runs every unit of it that is not done yet, on one worker process per core, and the report
reads the results table: the claims' verdicts, PSNR-vs-sparsity curves, image grids. Run it
again and nothing is recomputed. (Worker processes import the script that started them, so
a script that runs a sweep does it under `if __name__ == "__main__":`.)
"""

import os
from pathlib import Path

import lottery_prior as lp

TINY = os.environ.get("LIP_EXAMPLE_TINY") == "1"
OUT = Path(os.environ.get("LIP_EXAMPLE_OUT", "lip-out/examples/tiny_sweep"))

SPEC = f"""
name = "tiny"
[grid]
images = ["builtin:astronaut", "builtin:coffee"]
size = {32 if TINY else 64}
seeds = [0, 1]
sparsities = [0.5]
methods = ["ticket", "random-layerwise", "decoder", "dense"]
[[task]]
name = "denoise"
sigma = 25
[model]
options = {{ width = {8 if TINY else 16}, scales = {2 if TINY else 4} }}
[fit]
steps = {10 if TINY else 500}
[imp]
search_steps = {5 if TINY else 100}
[transfer]
sparsities = [0.5]
across_images = true
"""


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    spec = OUT / "tiny.toml"
    spec.write_text(SPEC)
    sweep = lp.run_sweep(spec, OUT / "results", workers=0 if TINY else None)
    paths = lp.write_report(sweep.out)
    print(f"{len(sweep.plan.units)} units; report: {paths['html']}")


if __name__ == "__main__":
    main()

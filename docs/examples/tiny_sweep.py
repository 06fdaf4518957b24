"""A tiny sweep and its report

An experiment spec names a grid (images x tasks x methods x sparsities x seeds); a sweep
runs every unit of it that is not done yet, and the report reads the results table:
PSNR-vs-sparsity curves, image grids and the paper's claims with paired intervals. Run it
again and nothing is recomputed.
"""

import os
from pathlib import Path

import lottery_prior as lp

tiny = os.environ.get("LIP_EXAMPLE_TINY") == "1"
out = Path(os.environ.get("LIP_EXAMPLE_OUT", "lip-out/examples/tiny_sweep"))
out.mkdir(parents=True, exist_ok=True)

spec = out / "tiny.toml"
spec.write_text(f"""
name = "tiny"
[grid]
images = ["builtin:astronaut", "builtin:coffee"]
size = {32 if tiny else 64}
seeds = [0, 1]
sparsities = [0.5]
methods = ["ticket", "random-layerwise", "decoder", "dense"]
[[task]]
name = "denoise"
sigma = 25
[model]
options = {{ width = {8 if tiny else 16}, scales = {2 if tiny else 4} }}
[fit]
steps = {10 if tiny else 500}
[imp]
search_steps = {5 if tiny else 100}
[transfer]
sparsities = [0.5]
across_images = true
""")

sweep = lp.run_sweep(spec, out / "results", workers=0 if tiny else None)
paths = lp.write_report(sweep.out)
print(f"{len(sweep.plan.units)} units; report: {paths['html']}")

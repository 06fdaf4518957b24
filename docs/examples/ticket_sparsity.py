"""Find a ticket and plot PSNR against sparsity

IMP with rewinding on one noisy image: each round prunes 20% of the remaining weights,
rewinds the survivors to theta0 and fits again. The run is resumable: run the script again
and it reads the finished rounds back instead of recomputing them.
"""

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import lottery_prior as lp  # noqa: E402

tiny = os.environ.get("LIP_EXAMPLE_TINY") == "1"
size, options, steps, search, rounds = (
    (32, {"width": 8, "scales": 2}, 20, 10, 3) if tiny
    else (64, {"width": 32}, 1000, 100, 8))
out = Path(os.environ.get("LIP_EXAMPLE_OUT", "lip-out/examples/ticket_sparsity"))
out.mkdir(parents=True, exist_ok=True)

problem = lp.make_problem("builtin:astronaut", "denoise", sigma=25, size=size)
run = lp.find_ticket(
    problem, "dip", options,
    config=lp.FitConfig.for_task("denoise", steps=steps),
    imp=lp.ImpConfig(rounds=rounds, search_steps=search),  # short searching rounds
    root=out / "runs")

# Searching rounds are shorter than the last one; refit each round's ticket in full.
sparsity, psnr = [], []
for k, record in enumerate(run.records):
    if run.fitted_in_full(k):
        scores = record["scores"]
    else:
        scores = lp.evaluate_ticket(run.ticket(k), problem, run.fit_config).scores
    sparsity.append(100 * record["sparsity"])
    psnr.append(scores["averaged"]["psnr"])
    print(f"round {k}: {sparsity[-1]:5.1f}% sparse, {psnr[-1]:.2f} dB")

fig, ax = plt.subplots(figsize=(5, 3.2))
ax.plot(sparsity, psnr, "o-")
ax.set(xlabel="sparsity (%)", ylabel="PSNR, averaged output (dB)",
       title="a lottery image prior, round by round")
fig.tight_layout()
fig.savefig(out / "psnr_vs_sparsity.png", dpi=120)
print(f"wrote {out / 'psnr_vs_sparsity.png'}")

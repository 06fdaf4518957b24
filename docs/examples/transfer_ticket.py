"""Transfer a ticket to another image and task

A ticket is a mask, the weights it is retrained from and its input code z. Found by
denoising one image, it is retrained here to inpaint another one, beside a random mask of
the same sparsity with the ticket's per-layer ratios (every method fitted the same way).
"""

import os
from pathlib import Path

import lottery_prior as lp

tiny = os.environ.get("LIP_EXAMPLE_TINY") == "1"
size, options, steps, rounds = ((32, {"width": 8, "scales": 2}, 10, 2) if tiny
                                else (64, {"width": 32}, 1000, 5))
out = Path(os.environ.get("LIP_EXAMPLE_OUT", "lip-out/examples/transfer_ticket"))

source = lp.make_problem("builtin:astronaut", "denoise", sigma=25, size=size)
run = lp.find_ticket(source, "dip", options,
                     config=lp.FitConfig.for_task("denoise", steps=steps),
                     imp=lp.ImpConfig(rounds=rounds, search_steps=max(steps // 10, 1)),
                     root=out / "runs")

# The ticket file can be shared: anyone can load it and retrain it.
ticket = lp.load_ticket(run.ticket_path(rounds))
print(f"ticket: {ticket.sparsity:.1%} sparse, found on {ticket.meta['problem']['image']}")

target = lp.make_problem("builtin:coffee", "inpaint", keep=0.5, size=size)
config = lp.FitConfig.for_task("inpaint", steps=steps)
for method in ("ticket", "random-layerwise"):
    fitted = lp.transfer(run, ticket.sparsity, target, method=method, config=config)
    row = fitted.row()
    print(f"{row['method']:>38}: {row['psnr_averaged']:.2f} dB at {row['sparsity']:.1%}")

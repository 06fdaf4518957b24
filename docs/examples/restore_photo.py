"""Restore a photo without its ground truth

A noisy photo is all a user has: no clean image to score against, so the fit ends at the
automatic stop (ES-WMV, which looks only at the outputs). Here the "photo" is made from a
built-in image so that the example needs no file, and the clean image is used at the very
end only to show how close the restoration came.
"""

import os
from pathlib import Path

import torch

import lottery_prior as lp

tiny = os.environ.get("LIP_EXAMPLE_TINY") == "1"  # the test suite runs every example small
size, width, steps = (32, 8, 30) if tiny else (128, 32, 1500)
out = Path(os.environ.get("LIP_EXAMPLE_OUT", "lip-out/examples/restore_photo"))
out.mkdir(parents=True, exist_ok=True)

# A noisy photo on disk (sigma 25 in 0-255 units), as a camera would give it.
clean = lp.load_image("builtin:chelsea", size=size).unsqueeze(0)
noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(0)) * 25 / 255
lp.save_image((clean + noise).clamp(0, 1), out / "noisy.png")

# The photo is the observation itself: nothing to simulate, nothing to score.
problem = lp.make_problem(str(out / "noisy.png"), "denoise", observed=True, sigma=25)
model, z = lp.build_prior("dip", {"width": width, "scales": 3 if tiny else 5}, problem)
stop = lp.make_stopping_rule("wmv")  # ES-WMV: the variance of the recent outputs
result = lp.fit_prior(model, z, problem.operator, problem.observation,
                      config=lp.FitConfig.for_task("denoise", steps=steps), stop=stop)
lp.save_image(result.restored, out / "restored.png")

print(f"ran {result.steps} of {steps} steps; output kept from step {stop.best_step}")
print(f"noisy {lp.psnr(problem.observation, clean):.2f} dB -> "
      f"restored {lp.psnr(result.restored, clean):.2f} dB (scored after the fact)")
print(f"wrote {out / 'restored.png'}")

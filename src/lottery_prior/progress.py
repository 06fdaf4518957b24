"""Progress display for long fits: a tqdm bar that shows the loss and current PSNR."""

from __future__ import annotations

import sys

from tqdm.auto import tqdm

from lottery_prior.fit import StepInfo


class ProgressBar:
    """A fit callback; ``every`` steps it refreshes the bar's loss and PSNR."""

    def __init__(self, desc: str = "fit", every: int = 10, leave: bool = True) -> None:
        self.desc, self.every, self.leave = desc, every, leave
        self.bar: tqdm | None = None

    def __call__(self, info: StepInfo) -> None:
        if self.bar is None:
            self.bar = tqdm(
                total=info.steps, desc=self.desc, leave=self.leave, file=sys.stderr,
                dynamic_ncols=True, mininterval=0.5,
            )
        self.bar.update(1)
        if info.step % self.every == 0 or info.step == info.steps:
            post = {"loss": f"{info.loss:.2e}"}
            if info.psnr is not None:
                post["psnr"] = f"{info.psnr:.2f}"
                post["avg"] = f"{info.psnr_averaged:.2f}"
            self.bar.set_postfix(post, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

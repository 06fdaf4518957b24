"""Training and testing the classifier: SGD on cross-entropy over plain logits.

The defaults are the paper's optimiser (SGD, lr 0.01, momentum 0.9, weight decay 2e-4); the
epochs are few by default (the paper's 182 a round are a GPU job). A mask keeps pruned weights
at exactly zero: their gradients are zeroed before each step (so neither momentum nor weight
decay moves them) and the weights are masked again after it. Mini-batches are drawn from the
seed's ``data-order`` stream (one permutation per epoch), never torch's global generator.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lottery_prior.checks import check_float, check_int, check_seed
from lottery_prior.errors import LipError
from lottery_prior.fit import Callback, StepInfo, select_device
from lottery_prior.masks import Mask, masked_step
from lottery_prior.seeding import generator

MAX_EPOCHS = 100_000
MAX_BATCH = 1_000_000


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run (one IMP round)."""

    epochs: int = 10
    batch_size: int = 64
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 2e-4
    seed: int = 0
    device: str | None = None

    def __post_init__(self) -> None:
        check_int("epochs", self.epochs, 1, MAX_EPOCHS)
        check_int("batch size", self.batch_size, 1, MAX_BATCH)
        check_float("learning rate", self.lr, 0, low_open=True)
        check_float("momentum", self.momentum, 0, 1, high_open=True)
        check_float("weight decay", self.weight_decay, 0)
        check_seed("seed", self.seed)

    def steps(self, n_train: int) -> int:
        """SGD steps of a run on ``n_train`` examples (the last batch may be smaller)."""
        return self.epochs * math.ceil(n_train / self.batch_size)


@dataclass
class TrainResult:
    """Test accuracy after the last epoch, and the history per epoch."""

    test_accuracy: float
    test_loss: float
    train_accuracy: float
    steps: int
    seconds: float
    history: dict[str, list[float]] = field(default_factory=dict)


def train(model: nn.Module, train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor,
          config: TrainConfig, *, mask: Mask | None = None,
          callbacks: Sequence[Callback] = ()) -> TrainResult:
    """Train ``model`` in place; ``callbacks`` see a :class:`StepInfo` after each step
    (``psnr`` None; a callback returning True ends training after that step)."""
    device = select_device(config.device)
    model.to(device).train()
    if mask is not None:
        mask.check(model)
        mask = mask.to(device)
        mask.apply_(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    order = generator(config.seed, "data-order")
    n = len(train_y)
    steps, step = config.steps(n), 0
    history: dict[str, list[float]] = {"epoch": [], "train_loss": [], "test_accuracy": []}
    start = time.perf_counter()
    halt = False
    for epoch in range(1, config.epochs + 1):
        model.train()
        perm = torch.randperm(n, generator=order)
        total = 0.0
        for i in range(0, n, config.batch_size):
            idx = perm[i: i + config.batch_size]
            x, y = train_x[idx].to(device), train_y[idx].to(device)
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            masked_step(optimizer, model, mask)
            step += 1
            value = loss.item()
            if not math.isfinite(value):
                raise LipError(f"training diverged at step {step} (loss {value}); lower --lr")
            total += value * len(idx)
            info = StepInfo(step, steps, value, None, None, model, torch.empty(0))
            halt = any([bool(cb(info)) for cb in callbacks])
            if halt:
                break
        history["epoch"].append(epoch)
        history["train_loss"].append(total / n)
        history["test_accuracy"].append(evaluate(model, test_x, test_y, device=device)[0])
        if halt:
            break
    seconds = time.perf_counter() - start
    test_acc, test_loss = evaluate(model, test_x, test_y, device=device)
    train_acc, _ = evaluate(model, train_x, train_y, device=device)
    model.cpu()
    return TrainResult(test_acc, test_loss, train_acc, step, seconds, history)


@torch.no_grad()
def evaluate(model: nn.Module, x: Tensor, y: Tensor, *, batch_size: int = 500,
             device: torch.device | str | None = None) -> tuple[float, float]:
    """Accuracy and mean cross-entropy on ``(x, y)``, in eval mode (BatchNorm running
    statistics); the model's mode is restored afterwards."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    correct, loss = 0, 0.0
    for i in range(0, len(y), batch_size):
        xb, yb = x[i: i + batch_size].to(device), y[i: i + batch_size].to(device)
        logits = model(xb)
        loss += float(F.cross_entropy(logits, yb, reduction="sum"))
        correct += int((logits.argmax(1) == yb).sum())
    model.train(was_training)
    return correct / len(y), loss / len(y)

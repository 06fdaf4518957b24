"""Retraining a classification ticket (and baselines at its counted sparsity) on a data set.

* ``ticket``: its mask and rewind weights;
* ``random-layerwise``: random masks with the ticket's per-layer sparsities;
* ``random``: a global random mask at the ticket's sparsity;
* ``dense``: the rewind weights without a mask.

All start from the ticket's rewind weights; the random masks come from the seed's
``baseline-mask`` stream, the data order from its ``data-order`` stream.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import torch

from lottery_prior.classify.data import Dataset
from lottery_prior.classify.ticket import ClassifierTicket
from lottery_prior.classify.train import TrainConfig, TrainResult, train
from lottery_prior.errors import LipError
from lottery_prior.fit import Callback
from lottery_prior.masks import Mask
from lottery_prior.pruning import random_mask
from lottery_prior.seeding import generator
from lottery_prior.tickets import parameter_count

METHODS = ("ticket", "random-layerwise", "random", "dense")


def method_mask(ticket: ClassifierTicket, method: str, seed: int) -> Mask | None:
    """The mask a method trains with (None: dense)."""
    if method not in METHODS:
        raise LipError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    if method == "ticket":
        return ticket.mask
    if method == "dense":
        return None
    template = Mask({n: torch.ones_like(m) for n, m in ticket.mask.items()})
    rng = generator(seed, "baseline-mask", method)
    if ticket.sparsity == 0:
        return template
    layers = ticket.mask.layer_sparsity() if method == "random-layerwise" else None
    return random_mask(template, ticket.sparsity, rng, layer_sparsity=layers)


def check_data(ticket: ClassifierTicket, data: Dataset) -> None:
    """Refuse a data set whose number of classes or image size the ticket cannot take."""
    classes = ticket.model_spec["classes"]
    if len(data.classes) != classes:
        raise LipError(f"the ticket's classifier has {classes} classes, the data set "
                       f"{data.name} has {len(data.classes)}")


def retrain(ticket: ClassifierTicket, data: Dataset, config: TrainConfig, method: str = "ticket",
            *, callbacks: Sequence[Callback] = ()) -> tuple[TrainResult, dict]:
    """Train one method from the ticket's rewind weights; the result and a table row."""
    check_data(ticket, data)
    model = ticket.build()
    model.load_state_dict(ticket.rewind_weights)
    mask = method_mask(ticket, method, config.seed)
    result = train(model, data.train_x, data.train_y, data.test_x, data.test_y, config,
                   mask=mask, callbacks=callbacks)
    row = {"method": method, "seed": config.seed,
           "sparsity": round(mask.sparsity if mask is not None else 0.0, 4),
           "parameters": parameter_count(model, mask),
           "test_accuracy": round(100 * result.test_accuracy, 2),
           "train_accuracy": round(100 * result.train_accuracy, 2),
           "test_loss": round(result.test_loss, 4), "train_seconds": round(result.seconds, 2)}
    return result, row


def retrain_methods(ticket: ClassifierTicket, data: Dataset, config: TrainConfig,
                    methods: Sequence[str], seeds: Sequence[int], *,
                    progress: Callable[[str], Sequence[Callback]] | None = None
                    ) -> tuple[list[dict], dict[str, list[float]]]:
    """Every method for every seed: table rows, and test accuracy per epoch (first seed)."""
    for m in methods:
        if m not in METHODS:
            raise LipError(f"unknown method {m!r}; choose from {', '.join(METHODS)}")
    rows, curves = [], {}
    for seed in seeds:
        for method in methods:
            bars = list(progress(f"{method} · seed {seed}")) if progress else []
            try:
                result, row = retrain(ticket, data, replace(config, seed=seed), method,
                                      callbacks=bars)
            finally:
                for b in bars:
                    getattr(b, "close", lambda: None)()
            rows.append(row)
            curves.setdefault(method, result.history["test_accuracy"])
    return rows, curves

"""Baselines of channel tickets (IMP over whole output channels): random channels with the
ticket's counts, the uniformly narrow hourglass of equal FLOPs, and the weight-level IMP
ticket with the same parameter count."""

from __future__ import annotations

from dataclasses import replace

from lottery_prior.channels import channel_mask, kept_channels, random_channels
from lottery_prior.cost import step_flops
from lottery_prior.finders.at_init import mask_stream
from lottery_prior.finders.base import Found, MaskFinder, Match, Progress, register_finder
from lottery_prior.lottery import AVERAGED_PNG, ImpRun
from lottery_prior.masks import Mask
from lottery_prior.models import create_model
from lottery_prior.problem import build_prior
from lottery_prior.tickets import Ticket, parameter_count


@register_finder
class RandomChannels(MaskFinder):
    """Random output channels, as many in every layer as the channel ticket keeps."""

    name = "random-channels"
    order = 10
    title = "random channels (ticket's counts)"
    random = True
    structure = "channels"

    def find(self, match: Match, *, progress: Progress | None = None) -> Found:
        ticket = match.ticket
        full = ticket.build()
        kept = random_channels(kept_channels(ticket.mask, full), mask_stream(match, self.name))
        return Found(Ticket(channel_mask(full, kept), ticket.rewind_weights, ticket.z,
                            {**ticket.meta, "method": self.name}), self.name)


@register_finder
class Narrow(MaskFinder):
    """The uniformly narrower hourglass whose step FLOPs are closest to the channel ticket's,
    from its own theta0 (its skip channels as they are)."""

    name = "narrow"
    order = 11
    title = "uniformly narrow (equal FLOPs)"
    structure = "channels"
    transferable = False

    def find(self, match: Match, *, progress: Progress | None = None) -> Found:
        run = match.run
        width = narrow_width(run, match.record["flops"])
        model, z = build_prior(run.model_name, {**run.model_options, "width": width},
                               run.problem, seed=match.seed)
        ticket = Ticket(Mask.ones(model), model.state_dict(), z,
                        {"model": model.spec, "method": self.name, "seed": match.seed})
        return Found(ticket, f"{self.name} (width={width})")


def narrow_width(run: ImpRun, flops: int) -> int:
    """The uniform width of the run's hourglass whose step FLOPs are closest to ``flops``."""
    dense = run.ticket(0)
    spec = dense.model_spec

    def cost(width: int) -> int:
        return step_flops(create_model(spec["name"], **{**spec["options"], "width": width}),
                          dense.z)

    low, high = 1, int(spec["options"]["width"])  # FLOPs grow with the width: bisect
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if cost(middle) <= flops else (low, middle)
    return min((low, high), key=lambda w: abs(cost(w) - flops))


@register_finder
class Unstructured(MaskFinder):
    """Weight-level IMP to the channel ticket's parameter count: as many rounds as the
    channel ticket's, at the rate that removes the same number of parameters."""

    name = "unstructured"
    order = 12
    title = "unstructured IMP (equal parameters)"
    structure = "channels"

    def find(self, match: Match, *, progress: Progress | None = None) -> Found:
        weights = unstructured_run(match.run, match.record)
        records = weights.run(progress)
        k = len(records) - 1
        own = records[k] if weights.fitted_as_reported(k) and \
            (weights.round_dir(k) / AVERAGED_PNG).is_file() else None
        return Found(weights.ticket(k), self.name,
                     round(sum(r["seconds"] for r in records[:k]), 2), own)


def unstructured_run(run: ImpRun, record: dict) -> ImpRun:
    """The weight-level IMP run matched to a channel round's parameter count."""
    rounds = max(int(record["round"]), 1)
    model = run.ticket(0).build()
    removed = parameter_count(model) - record["parameters"]
    density = 1 - removed / Mask.ones(model).total
    imp = replace(run.imp, structure="weights", rounds=rounds, target_sparsity=None,
                  rate=1 - density ** (1 / rounds), channel_score="l1")
    return ImpRun(run.problem, run.model_name, run.model_options, run.fit_config, imp,
                  root=run.root, stop=run.stop, stop_factory=run.stop_factory)

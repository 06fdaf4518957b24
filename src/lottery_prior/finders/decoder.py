"""The Deep Decoder (Heckel & Hand) whose parameter count is closest to the ticket's: the
under-parameterised prior at equal size, fitted with its own defaults (no input
perturbation, as its authors do: with it, its small 1/32-scale code is swamped)."""

from __future__ import annotations

from dataclasses import replace

from lottery_prior.finders.base import Found, MaskFinder, Match, Progress, register_finder
from lottery_prior.fit import FitConfig
from lottery_prior.masks import Mask
from lottery_prior.models import decoder_width_for_params, model_fit_defaults
from lottery_prior.problem import build_prior
from lottery_prior.tickets import Ticket


@register_finder
class DeepDecoder(MaskFinder):
    """A dense Deep Decoder of about the ticket's parameter count."""

    name = "decoder"
    order = 9
    title = "Deep Decoder"
    structure = "any"
    transferable = False

    def find(self, match: Match, *, progress: Progress | None = None) -> Found:
        channels = match.problem.shape[0]
        k = decoder_width_for_params(match.record["parameters"], out_channels=channels)
        model, z = build_prior("decoder", {"k": k}, match.problem, seed=match.seed)
        ticket = Ticket(Mask.ones(model), model.state_dict(), z,
                        {"model": model.spec, "method": self.name, "seed": match.seed})
        return Found(ticket, f"{self.name} (k={k})")

    def fit_config(self, config: FitConfig) -> FitConfig:
        return replace(config, **model_fit_defaults("decoder"))

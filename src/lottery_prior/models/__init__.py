"""Model zoo: ``create_model("dip")`` (DIP skip hourglass), ``create_model("decoder")``."""

from lottery_prior.models.decoder import (
    DeepDecoder,
    decoder_param_count,
    decoder_width_for_params,
)
from lottery_prior.models.registry import (
    PriorNet,
    create_model,
    list_models,
    model_fit_defaults,
    register_model,
)
from lottery_prior.models.skip import SkipHourglass

__all__ = [
    "DeepDecoder",
    "PriorNet",
    "SkipHourglass",
    "create_model",
    "decoder_param_count",
    "decoder_width_for_params",
    "list_models",
    "model_fit_defaults",
    "register_model",
]

"""GAN priors: progressive GAN (pytorch_GAN_zoo layout), training, latent recovery, pruning."""

from lottery_prior.gan.checkpoint import load_checkpoint, save_checkpoint
from lottery_prior.gan.data import load_faces
from lottery_prior.gan.networks import Discriminator, Generator
from lottery_prior.gan.prune import GanTicket, prune_gan
from lottery_prior.gan.recovery import GaussianMeasurement, Recovery, recover_cs, recover_inpaint
from lottery_prior.gan.train import GanModels, WganLoss, finetune_gan, train_gan

__all__ = [
    "Discriminator",
    "GanModels",
    "GanTicket",
    "GaussianMeasurement",
    "Generator",
    "Recovery",
    "WganLoss",
    "finetune_gan",
    "load_checkpoint",
    "load_faces",
    "prune_gan",
    "recover_cs",
    "recover_inpaint",
    "save_checkpoint",
    "train_gan",
]

"""GAN priors: progressive GAN (pytorch_GAN_zoo layout), training, latent recovery, pruning."""

from lottery_prior.gan.checkpoint import load_checkpoint, save_checkpoint
from lottery_prior.gan.data import load_faces
from lottery_prior.gan.networks import Discriminator, Generator
from lottery_prior.gan.train import GanModels, WganLoss, finetune_gan, train_gan

__all__ = [
    "Discriminator",
    "GanModels",
    "Generator",
    "WganLoss",
    "finetune_gan",
    "load_checkpoint",
    "load_faces",
    "save_checkpoint",
    "train_gan",
]

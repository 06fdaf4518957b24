"""Zoo-format checkpoints: loading public-layout files safely, refusing others, round trips."""

import builtins
import sys
import types

import pytest
import torch

from lottery_prior.errors import LipError
from lottery_prior.gan import Discriminator, Generator, load_checkpoint, save_checkpoint

DEPTHS = (8, 8, 4)


@pytest.fixture
def zoo_config_class(monkeypatch):
    """A class importable as ``models.utils.config.BaseConfig``, like the zoo's."""
    cls = type("BaseConfig", (), {"__module__": "models.utils.config"})
    for name in ("models", "models.utils", "models.utils.config"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    sys.modules["models.utils.config"].BaseConfig = cls
    return cls


def zoo_file(path, config, seed=0, legacy_keys=False, zipfile=True):
    """Write a checkpoint the way pytorch_GAN_zoo does; returns (netG, avgG, netD)."""
    torch.manual_seed(seed)
    net_g, avg_g = Generator(16, DEPTHS, 3), Generator(16, DEPTHS, 3)
    net_d = Discriminator(DEPTHS, 3, minibatch_std=True)

    def state(net):
        sd = net.state_dict()
        return {k.replace(".module.", "."): v for k, v in sd.items()} if legacy_keys else sd

    torch.save({"config": config, "netG": state(net_g), "netD": state(net_d),
                "avgG": state(avg_g)}, path, _use_new_zipfile_serialization=zipfile)
    return net_g, avg_g, net_d


def zoo_config(cls):
    config = cls()
    config.__dict__.update(
        noiseVectorDim=16, latentVectorDim=16, depthScale0=8, depthOtherScales=[8, 4],
        dimOutput=3, leakyReluLeak=0.2, perChannelNormalization=True, miniBatchStdDev=True,
        equalizedlR=True, initBiasToZero=True, alpha=0.0, lossCriterion="WGANGP",
        attribKeysOrder=None, categoryVectorDim=0, learningRate=0.001, lambdaGP=10.0,
        epsilonD=0.001, kInnerD=1, kInnerG=1, weightConditionD=0.0, weightConditionG=0.0,
    )
    return config


@pytest.mark.parametrize(("legacy_keys", "zipfile"), [(False, True), (True, False)])
def test_zoo_checkpoint_loads_and_reproduces_outputs(tmp_path, zoo_config_class, legacy_keys,
                                                     zipfile):
    path = tmp_path / "celebaHQ_s2_i100.pt"
    net_g, avg_g, net_d = zoo_file(path, zoo_config(zoo_config_class), legacy_keys=legacy_keys,
                                   zipfile=zipfile)
    g, d, config = load_checkpoint(path)
    assert config["depthOtherScales"] == [8, 4] and config["lossCriterion"] == "WGANGP"
    assert (g.latent_dim, g.depths, g.out_channels, g.resolution) == (16, [8, 8, 4], 3, 16)
    z = torch.randn(4, 16)
    torch.testing.assert_close(g(z), avg_g(z), rtol=0, atol=0)  # the averaged G by default
    assert not torch.equal(g(z), net_g(z))
    x = torch.randn(4, 3, 16, 16)
    assert d.minibatch_std
    torch.testing.assert_close(d(x), net_d(x), rtol=0, atol=0)
    plain, _, _ = load_checkpoint(path, generator="netG")
    torch.testing.assert_close(plain(z), net_g(z), rtol=0, atol=0)


def test_config_as_dict_and_tanh_output(tmp_path):
    path = tmp_path / "dcgan_loss.pt"
    zoo_file(path, {"lossCriterion": "DCGAN", "alpha": 0.25})
    g, _, config = load_checkpoint(path)
    assert g.output_activation == "tanh" and g.alpha == 0.25
    assert g(torch.randn(2, 16)).abs().max() <= 1


def test_inconsistent_config_is_reported(tmp_path):
    path = tmp_path / "bad.pt"
    zoo_file(path, {"depthScale0": 8, "depthOtherScales": [8, 8]})
    with pytest.raises(LipError, match="inconsistent"):
        load_checkpoint(path)
    zoo_file(path, {"leakyReluLeak": "steep"})
    with pytest.raises(LipError, match="malformed"):
        load_checkpoint(path)


class Payload:
    """Unpickling this would call ``func(*args)``."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize("make", [
    lambda marker: Payload(builtins.open, str(marker), "w"),
    lambda marker: Payload(builtins.eval, f"open({str(marker)!r}, 'w')"),
    lambda marker: Payload(__import__("os").system, f"touch {marker}"),
])
def test_unexpected_classes_are_refused_without_running(tmp_path, make):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    sd = Generator(16, DEPTHS, 3).state_dict()
    torch.save({"config": make(marker), "netG": sd, "avgG": sd}, path)
    with pytest.raises(LipError, match="refusing to load"):
        load_checkpoint(path)
    assert not marker.exists()


def test_non_checkpoints_are_rejected(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint\n")
    with pytest.raises(LipError, match="not a torch checkpoint"):
        load_checkpoint(text)
    tensor = tmp_path / "tensor.pt"
    torch.save(torch.zeros(3), tensor)
    with pytest.raises(LipError, match="not a progressive-GAN checkpoint"):
        load_checkpoint(tensor)
    other = tmp_path / "other.pt"
    torch.save({"netG": {"conv.weight": torch.zeros(1)}}, other)
    with pytest.raises(LipError, match="formatLayer"):
        load_checkpoint(other)
    with pytest.raises(LipError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(LipError, match="avgG"):
        load_checkpoint(tensor, generator="ema")


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(3)
    g, avg = Generator(16, DEPTHS, 1), Generator(16, DEPTHS, 1)
    d = Discriminator(DEPTHS, 1, minibatch_std=False)
    path = tmp_path / "sub" / "ours.pt"
    save_checkpoint(path, g, d, avg, dataset="lfw", steps=[1, 2])
    g2, d2, config = load_checkpoint(path)
    assert config["dataset"] == "lfw" and config["depthOtherScales"] == [8, 4]
    z, x = torch.randn(3, 16), torch.randn(3, 1, 16, 16)
    assert torch.equal(g2(z), avg(z)) and torch.equal(d2(x), d(x))
    assert not d2.minibatch_std

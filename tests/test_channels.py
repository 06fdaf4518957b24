"""Channel tickets: couplings, compaction (compact output = masked output), channel IMP,
compact tickets, channel baselines, FLOPs."""

import pytest
import torch
from torch import nn

from lottery_prior.channels import (
    all_channels,
    channel_mask,
    channel_sparsity,
    compact,
    compact_ticket,
    expand_into,
    kept_channels,
    layout,
    prune_channels,
    random_channels,
)
from lottery_prior.cli import main
from lottery_prior.compare import check_comparison, fit_method
from lottery_prior.cost import step_flops
from lottery_prior.errors import LipError
from lottery_prior.finders import Match, make_finder
from lottery_prior.fit import FitConfig, fit
from lottery_prior.lottery import ImpConfig, ImpRun, evaluate_ticket
from lottery_prior.masks import Mask
from lottery_prior.models import create_model
from lottery_prior.precision import step_ms
from lottery_prior.problem import make_problem
from lottery_prior.tickets import Ticket, parameter_count

TINY = {"width": 8, "scales": 2, "skip": 2}
SIDE = 32


def hourglass(seed: int = 0, **options) -> nn.Module:
    """A small hourglass whose BatchNorm scales and shifts are not the trivial 1 and 0."""
    torch.manual_seed(seed)
    model = create_model("dip", **({"width": 6, "scales": 3, "skip": 3} | options))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    return model.train()


def random_kept(model: nn.Module, seed: int = 0, keep: float = 0.6) -> dict:
    g = torch.Generator().manual_seed(seed)
    kept = {}
    for name, k in all_channels(model).items():
        choice = torch.rand(k.numel(), generator=g) < keep
        choice[torch.randint(k.numel(), (1,), generator=g)] = True  # never empty
        kept[name] = choice
    return kept


def z_for(model: nn.Module) -> torch.Tensor:
    return model.make_input(SIDE, SIDE, generator=torch.Generator().manual_seed(3))


def test_layout_names_every_conv_once_and_its_couplings():
    model = hourglass()
    sites = layout(model)
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    assert sorted(s.conv for s in sites) == sorted(convs)
    assert [s.conv for s in sites if not s.prunable] == ["head.0"]
    merges = [s for s in sites if s.norm is not None]  # a 3x3 conv after each concatenation
    assert len(merges) == 3 and all(len(s.inputs) == 2 for s in merges)


@pytest.mark.parametrize("options", [{}, {"skip": 0}, {"scales": 2, "upsample": "nearest"}])
def test_each_layer_pruned_alone_gives_the_compact_networks_output(options):
    """Every coupling on its own: the skip 1x1 conv (into a concatenation), the strided and
    plain 3x3 convs of the down pair, the deepest level's output (upsampled into the merge),
    the merge 3x3 conv, the level's 1x1 output conv (into the parent's merge or the head)."""
    model = hourglass(**options)
    z = z_for(model)
    for i, site in enumerate(s for s in layout(model) if s.prunable):
        kept = all_channels(model)
        k = kept[site.conv]
        k[torch.randperm(k.numel(), generator=torch.Generator().manual_seed(i))[: k.numel() // 2]
          ] = False
        masked = hourglass(**options)
        channel_mask(masked, kept).apply_(masked)
        small = compact(masked, kept)
        assert sum(p.numel() for p in small.parameters()) < \
            sum(p.numel() for p in masked.parameters())
        torch.testing.assert_close(small(z), masked(z), atol=1e-5, rtol=1e-5,
                                   msg=f"pruning {site.conv} alone")


def test_compact_equals_masked_at_rewind_and_after_training():
    model = hourglass()
    z = z_for(model)
    kept = random_kept(model)
    mask = channel_mask(model, kept)
    mask.apply_(model)
    small = compact(model, kept)
    torch.testing.assert_close(small(z), model(z), atol=1e-5, rtol=1e-5)

    y = torch.rand(1, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(1))
    config = FitConfig(steps=8, lr=0.01, seed=0)  # the same perturbation stream for both
    fit(model, z, nn.Identity(), y, config=config, mask=mask)
    fit(small, z, nn.Identity(), y, config=config)
    torch.testing.assert_close(small(z), model(z), atol=1e-4, rtol=1e-4)
    # the trained compact conv weights sit at the kept positions of the masked network. (Not
    # the conv biases: before a train-mode BN their true gradient is 0, so Adam turns float
    # noise into steps of either sign; they change nothing downstream.)
    back = hourglass(seed=5)
    mask.apply_(back)
    expand_into(back, small, kept)
    mask.apply_(back)
    trained = dict(model.named_parameters())
    for name, p in back.named_parameters():
        if p.dim() > 1:
            torch.testing.assert_close(p, trained[name], atol=1e-4, rtol=1e-3, msg=name)


def test_removed_channels_stay_exactly_zero_through_adam():
    model = hourglass()
    z = z_for(model)
    kept = random_kept(model, seed=2)
    mask = channel_mask(model, kept)
    y = torch.rand(1, 3, SIDE, SIDE)
    fit(model, z, nn.Identity(), y, config=FitConfig(steps=100, lr=0.01))
    fit(model, z, nn.Identity(), y, config=FitConfig(steps=100, lr=0.01), mask=mask)
    params = dict(model.named_parameters())
    for name, m in mask.items():
        assert bool((params[name][~m] == 0).all()), name
    outputs = {}
    for site in layout(model):
        if site.prunable:
            act = dict(model.named_modules())[site.bn]
            act.register_forward_hook(lambda mod, i, o, n=site.conv: outputs.update({n: o}))
    model(z)
    for name, k in kept.items():  # a removed channel's BN output is exactly 0
        assert bool((outputs[name][:, ~k] == 0).all()), name


def test_channel_mask_zeroes_the_couplings_and_counts_weights_only():
    model = hourglass()
    kept = random_kept(model)
    mask = channel_mask(model, kept)
    modules = dict(model.named_modules())
    for site in layout(model):
        w = mask[f"{site.conv}.weight"]
        if site.prunable:
            assert torch.equal(w.flatten(1).any(1), kept[site.conv])
            assert torch.equal(mask[f"{site.bn}.bias"], kept[site.conv])
        if site.norm is not None:  # the BN over a concatenation follows its parts
            parts = torch.cat([kept[s] for s in site.inputs])
            assert torch.equal(mask[f"{site.norm}.weight"], parts)
            assert torch.equal(w.flatten(2).any(2).any(0), parts)
    convs = sum(m.weight.numel() for m in modules.values() if isinstance(m, nn.Conv2d))
    assert mask.total == convs  # BN and bias entries are applied, not counted
    small = compact(model, kept)
    assert parameter_count(model, mask) == sum(p.numel() for p in small.parameters())
    assert 0 < channel_sparsity(kept) < 1


def test_prune_channels_counts_floor_and_scores():
    model = hourglass()
    mask = channel_mask(model, all_channels(model))
    total = sum(k.numel() for k in all_channels(model).values())
    once = prune_channels(model, mask, 0.25)
    kept = kept_channels(once, model)
    assert sum(int(k.sum()) for k in kept.values()) == total - round(0.25 * total)
    layer = prune_channels(model, mask, 0.5, layerwise=True)
    for name, k in kept_channels(layer, model).items():
        n = k.numel()
        assert int(k.sum()) == n - min(round(0.5 * n), n - 1), name
    for _ in range(12):  # a layer never loses its last channel
        mask = prune_channels(model, mask, 0.6)
    assert all(int(k.sum()) >= 1 for k in kept_channels(mask, model).values())
    # |gamma| ranks: a channel with a tiny BN scale goes first
    model = hourglass()
    site = next(s for s in layout(model) if s.prunable)
    with torch.no_grad():
        dict(model.named_modules())[site.bn].weight[2] = 1e-4
    bn = prune_channels(model, channel_mask(model, all_channels(model)), 0.02, score="bn")
    assert not bool(kept_channels(bn, model)[site.conv][2])
    with pytest.raises(LipError, match="channel score"):
        prune_channels(model, bn, 0.2, score="l3")


def test_random_channels_keep_each_layers_count():
    model = hourglass()
    kept = random_kept(model)
    other = random_channels(kept, torch.Generator().manual_seed(9))
    assert {n: int(k.sum()) for n, k in other.items()} == {n: int(k.sum())
                                                           for n, k in kept.items()}
    assert any(not torch.equal(other[n], kept[n]) for n in kept)
    assert all(torch.equal(a, b) for a, b in zip(
        random_channels(kept, torch.Generator().manual_seed(9)).values(), other.values(),
        strict=True))


def test_a_weight_mask_is_refused_as_a_channel_mask():
    model = hourglass()
    with pytest.raises(LipError, match="not a channel mask"):
        kept_channels(Mask.ones(model), model)
    with pytest.raises(LipError, match="keep no channel"):
        channel_mask(model, {n: torch.zeros_like(k) for n, k in all_channels(model).items()})
    with pytest.raises(LipError, match="skip hourglass"):
        layout(create_model("decoder", k=8))


def test_step_flops_counts_convs_and_shrinks_with_channels():
    conv = nn.Sequential(nn.Conv2d(4, 6, 3, padding=1))
    assert step_flops(conv, torch.zeros(1, 4, 10, 10)) == 3 * 2 * 6 * 100 * 4 * 9
    model = hourglass()
    z = z_for(model)
    small = compact(model, random_kept(model))
    assert step_flops(small, z) < step_flops(model, z)
    assert step_ms(small, z, "fp32", steps=2, warmup=1) > 0


def test_per_conv_widths_build_and_are_checked():
    model = create_model("dip", width=8, scales=2, channels_down_first=[3, 5],
                         channels_up_first=[7, 2])
    assert model.body.deeper[0][0].out_channels == 3
    assert model.body.deeper[2].deeper[0][0].out_channels == 5
    assert model.body.merge[1][0].out_channels == 7 and model.body.merge[2][0].in_channels == 7
    assert model(model.make_input(16, 16)).shape == (1, 3, 16, 16)
    with pytest.raises(LipError, match="channels_down_first"):
        create_model("dip", scales=2, channels_down_first=[3])


# --- channel IMP runs, compact tickets, baselines ----------------------------------------

@pytest.fixture(scope="module")
def problem():
    return make_problem("builtin:chelsea", "denoise", sigma=50, size=SIDE, noise_seed=0)


@pytest.fixture(scope="module")
def channel_run(problem, tmp_path_factory):
    run = ImpRun(problem, "dip", dict(TINY), FitConfig(steps=20, device="cpu"),
                 ImpConfig(rounds=2, rate=0.3, structure="channels"),
                 root=tmp_path_factory.mktemp("runs"))
    run.run()
    return run


def test_channel_imp_prunes_channels_and_counts(channel_run):
    model = channel_run.ticket(0).build()
    total = sum(k.numel() for k in all_channels(model).values())
    left = total
    for k, record in enumerate(channel_run.records):
        ticket = channel_run.ticket(k)
        kept = kept_channels(ticket.mask, model)
        assert sum(int(v.sum()) for v in kept.values()) == left
        assert record["channel_sparsity"] == pytest.approx(1 - left / total)
        assert record["sparsity"] == pytest.approx(ticket.sparsity)  # counted, conv weights
        assert record["channels"] == {n: int(v.sum()) for n, v in kept.items()}
        left -= round(0.3 * left)
    flops = [r["flops"] for r in channel_run.records]
    assert flops == sorted(flops, reverse=True) and flops[-1] < flops[0]
    # the rewound ticket is theta0 with the removed channels' parameters at zero
    theta0 = channel_run.ticket(0).rewind_weights
    built = channel_run.ticket(2).build().state_dict()
    mask = channel_run.ticket(2).mask
    for name, w in theta0.items():
        expected = w * mask[name] if name in mask else w
        assert torch.equal(built[name], expected), name


def test_compact_ticket_is_small_and_fits_like_the_masked_one(channel_run, problem):
    ticket = channel_run.ticket(2)
    small = Ticket.load(channel_run.round_dir(2) / "compact.safetensors")
    assert small.structure == "channels" and small.meta["parent"] == ticket.model_spec
    assert small.sparsity == pytest.approx(ticket.sparsity)
    assert parameter_count(small.build()) == channel_run.records[2]["parameters"]
    assert (channel_run.round_dir(2) / "compact.safetensors").stat().st_size < \
        (channel_run.ticket_path(2)).stat().st_size
    assert compact_ticket(ticket).meta["channels"] == small.meta["channels"]
    config = FitConfig(steps=10, device="cpu")
    a = evaluate_ticket(ticket, problem, config)  # the masked ticket is fitted compact
    b = evaluate_ticket(small, problem, config)
    assert a.scores["averaged"]["psnr"] == pytest.approx(b.scores["averaged"]["psnr"], abs=1e-3)


def test_channel_run_resumes_and_weight_runs_keep_their_names(channel_run):
    again = ImpRun(channel_run.problem, "dip", dict(TINY), channel_run.fit_config,
                   channel_run.imp, root=channel_run.root)
    assert again.run() == channel_run.records  # every round read back, none refitted
    assert "structure" not in ImpConfig().hashed()  # weight runs hash as before
    assert ImpConfig(structure="channels").hashed()["structure"] == "channels"
    with pytest.raises(LipError, match="keep-dense"):
        ImpConfig(structure="channels", keep_dense=("head.*",))
    with pytest.raises(LipError, match="early-bird"):
        ImpConfig(structure="channels", early_bird=0.05)


def test_channel_baselines(channel_run):
    run = channel_run
    ticket = run.ticket(2)
    model = ticket.build()
    rand = make_finder("random-channels").find(Match.of(run, 0.5)).ticket
    a, b = kept_channels(ticket.mask, model), kept_channels(rand.mask, model)
    assert {n: int(k.sum()) for n, k in a.items()} == {n: int(k.sum()) for n, k in b.items()}
    assert any(not torch.equal(a[n], b[n]) for n in a)
    rows = {r["method"].split(" (")[0]: r for r in (
        fit_method(run, m, 0.5).row() for m in ("ticket", "random-channels", "narrow",
                                                "unstructured", "dense"))}
    assert rows["random-channels"]["gflop_step"] == rows["ticket"]["gflop_step"]
    assert rows["dense"]["gflop_step"] > rows["ticket"]["gflop_step"]
    # unstructured: the weight-level IMP ticket of (almost exactly) the same size
    assert abs(rows["unstructured"]["parameters"] - rows["ticket"]["parameters"]) <= 2
    assert rows["unstructured"]["gflop_step"] == rows["dense"]["gflop_step"]
    narrow = fit_method(run, "narrow", 0.5).row()
    width = int(narrow["method"].split("width=")[1].rstrip(")"))
    assert 1 <= width < TINY["width"]
    for w in (width - 1, width + 1):  # no other width is closer in FLOPs
        if 1 <= w <= TINY["width"]:
            other = step_flops(create_model("dip", **(TINY | {"width": w})), ticket.z)
            assert abs(other / 1e9 - rows["ticket"]["gflop_step"]) >= \
                abs(narrow["gflop_step"] - rows["ticket"]["gflop_step"]) - 1e-3
    with pytest.raises(LipError, match="--structured channels"):
        check_comparison(run.problem, 0.5, ["narrow"])


def test_cli_find_and_compare_structured_channels(tmp_path, capsys):
    find = ["find", "builtin:chelsea", "--size", "32", "--model-opt", "width=8", "--model-opt",
            "scales=2", "--steps", "5", "--rounds", "1", "--structured", "channels",
            "--channel-score", "bn", "--quiet", "--out", str(tmp_path)]
    assert main(find) == 0
    out = capsys.readouterr().out
    assert "channel sparsity" in out and "GFLOP per step" in out
    assert "| body.deeper.0.0 | 8 |" in out  # channels kept per conv, per round
    assert list(tmp_path.glob("imp-*/round-01/compact.safetensors"))
    assert main([*find, "--finder", "learned", "--target-sparsity", "0.5"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert "drop --structured channels" in err[-1] and len(err[-1]) < 200

    compare = ["compare", "builtin:chelsea", "--size", "32", "--model-opt", "width=8",
               "--model-opt", "scales=2", "--steps", "5", "--structured", "channels",
               "--sparsity", "0.3", "--quiet", "--methods", "ticket", "narrow",
               "--out", str(tmp_path / "compare")]
    assert main(compare) == 0
    out = capsys.readouterr().out
    assert "narrow (width=" in out and "ms per step" in out
    assert main([a for a in compare if a not in ("--structured", "channels")]) != 0
    assert "add --structured channels" in capsys.readouterr().err

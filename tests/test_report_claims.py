"""The claims checker on constructed rows whose answer is known."""

import math

import pytest

from lottery_prior.errors import LipError
from lottery_prior.report.claims import by_sparsity, claim_rows, claims, claims_by_score
from lottery_prior.stats import t_interval, verdict

IMAGES = ("data:set5/baby", "data:set5/bird", "data:set5/head")
SEEDS = (0, 1)


def comparison(image, task, seed, noise_seed, model="dip"):
    """The IMP search a fit is matched to (its name hashes all of these in a real sweep)."""
    return f"imp-{model}-{image}-{task}-{seed}-{noise_seed}"


def row(method, image=IMAGES[0], *, task="denoise", seed=0, noise_seed=0, s=0.5, psnr=30.0,
        kind="fit", source_image=None, source_task=None, model="dip", **extra):
    source = comparison(source_image or image, source_task or task, seed, noise_seed, model)
    target = comparison(image, task, seed, noise_seed, model)
    unit = f"{kind}-{method}-{source}-{target}-{s}"
    return {"unit": unit, "kind": kind, "image": image, "task": task,
            "sigma": 25.0 if task == "denoise" else None, "mask": None, "keep": None,
            "factor": 4 if task == "sr" else None, "size": 64, "noise_seed": noise_seed,
            "model": model, "model_options": "{}", "steps": 100, "lr": 0.01,
            "input_noise": 0.03, "precision": "bf16", "imp": "{}", "imp_run": source,
            "target_run": target, "seed": seed,
            "method": method, "requested_sparsity": 0.0 if method == "dense" else s,
            "sparsity": 0.0 if method == "dense" else s, "parameters": 1000,
            "source_image": source_image or image, "source_task": source_task or task,
            "psnr_final": psnr, "psnr_averaged": psnr, "psnr_peak_iterate": psnr,
            "psnr_peak_averaged": psnr, "psnr_stopped": None, "metric": "PSNR", **extra}


def grid(method, offsets, *, sparsities=(0.5,), task="denoise", base=30.0, **kw):
    """Rows of ``method`` over IMAGES × SEEDS × sparsities; ``offsets`` gives the PSNR above
    ``base`` per (image index, seed, sparsity)."""
    out = []
    for i, image in enumerate(IMAGES):
        for seed in SEEDS:
            for s in sparsities:
                psnr = base + i + 0.3 * seed + offsets(i, seed, s)
                out.append(row(method, image, seed=seed, s=s, psnr=psnr, task=task, **kw))
    return out


def find(items, claim_start, scope="denoise"):
    hits = [c for c in items if c.claim.startswith(claim_start) and c.scope == scope]
    assert len(hits) == 1, (claim_start, scope, items)
    return hits[0]


def test_t_interval_and_verdict():
    mean, low, high = t_interval([1.0, 2.0, 3.0])
    half = 4.302652729911275 / math.sqrt(3)  # t(0.975, 2) × sd 1 / √3
    assert mean == pytest.approx(2.0)
    assert (low, high) == pytest.approx((2 - half, 2 + half))
    assert t_interval([1.5]) == (1.5, None, None)
    assert t_interval([]) == (None, None, None)
    assert verdict(3, 0.1, 0.5) == "holds"
    assert verdict(3, -0.5, -0.1) == "contradicted"
    assert verdict(3, -0.1, 0.5) == "not shown"
    assert verdict(1, None, None) == "not shown (n=1)"
    assert verdict(5, -0.09, 0.2, threshold=-0.1) == "holds"


def jitter(i, seed):
    return 0.02 * ((i + 2 * seed) % 3 - 1)  # small, known spread across units


def test_ticket_beats_random_holds_and_decoder_contradicted():
    ticket = grid("ticket", lambda i, seed, s: 0.0, sparsities=(0.5, 0.8))
    random = grid("random", lambda i, seed, s: -0.5 + jitter(i, seed), sparsities=(0.5, 0.8))
    decoder = grid("decoder", lambda i, seed, s: 0.4 + jitter(i, seed), sparsities=(0.5, 0.8))
    layer = grid("random-layerwise", lambda i, seed, s: 0.3 * (-1) ** (i + seed),
                 sparsities=(0.5, 0.8))
    result = claims(ticket + random + decoder + layer)
    c = find(result, "ticket > random pruning (global)")
    assert c.verdict == "holds"
    assert c.n == 6 and c.pairs == 12  # units: 3 images × 2 seeds; pairs also × 2 sparsities
    assert c.mean == pytest.approx(0.5, abs=0.02) and c.low > 0
    d = find(result, "ticket > Deep Decoder")
    assert d.verdict == "contradicted" and d.high < 0
    assert d.mean == pytest.approx(-0.4, abs=0.02)
    lw = find(result, "ticket > random pruning (ticket's")
    assert lw.verdict == "not shown" and lw.low < 0 < lw.high


def test_one_unit_is_not_shown_with_n():
    rows = [row("ticket", psnr=31.0), row("random", psnr=30.0)]
    c = find(claims(rows), "ticket > random pruning (global)")
    assert c.verdict == "not shown (n=1)" and c.n == 1 and c.mean == pytest.approx(1.0)
    assert c.low is None


def test_pairs_match_on_noise_seed_seed_and_sparsity():
    rows = [row("ticket", seed=0, psnr=31.0), row("random", seed=1, psnr=30.0),
            row("ticket", IMAGES[1], noise_seed=1, psnr=31.0), row("random", IMAGES[1], psnr=0),
            row("ticket", IMAGES[2], s=0.8, psnr=31.0), row("random", IMAGES[2], s=0.5, psnr=0)]
    c = find(claims(rows), "ticket > random pruning (global)")
    assert c.n == 0 and c.verdict == "not shown (n=0)"


def test_dense_non_inferiority_up_to_s():
    # Ticket a little below dense (−0.05 dB ± 0.02) up to 80%, far below at 95%.
    def offset(i, seed, s):
        return (-1.0 if s > 0.9 else -0.05) + jitter(i, seed)

    rows = grid("dense", lambda i, seed, s: 0.0) + grid(
        "ticket", offset, sparsities=(0.2, 0.5, 0.8, 0.95))
    c = find(claims(rows), "ticket ≥ dense")
    assert c.sparsity == pytest.approx(0.8)
    assert c.verdict == "holds" and c.threshold == pytest.approx(-0.1)
    assert c.mean == pytest.approx(-0.05, abs=0.02) and c.low > -0.1 and c.high < 0
    assert "80%" in c.note
    # The same numbers against a 0 dB threshold ("better than dense") would be contradicted:
    detail = [d for d in by_sparsity(rows) if d.claim.startswith("ticket ≥ dense")]
    assert [d.sparsity for d in detail] == [0.2, 0.5, 0.8, 0.95]
    assert [d.verdict for d in detail] == ["holds"] * 3 + ["contradicted"]
    strict = claims(rows, delta=0.0)
    assert find(strict, "ticket ≥ dense").sparsity is None
    assert find(strict, "ticket ≥ dense").verdict == "contradicted"


def test_dense_claim_s_is_not_shown_when_interval_straddles():
    rows = grid("dense", lambda i, seed, s: 0.0) + grid(
        "ticket", lambda i, seed, s: 0.5 * (-1) ** (i + seed), sparsities=(0.5, 0.8))
    c = find(claims(rows), "ticket ≥ dense")
    assert c.sparsity is None and c.verdict == "not shown"
    assert c.note.startswith("no S")


def test_dense_claim_s_never_grows_with_wider_intervals():
    """S is where the claim is shown (every interval up to S above −δ): noisier data can
    only shrink it. The old rule (not significantly below −δ) gave noise the larger S."""
    def ticket(spread):
        return grid("ticket", lambda i, seed, s: (-0.05 if s < 0.7 else -0.4)
                    + spread * (-1) ** (i + seed), sparsities=(0.2, 0.5, 0.8))

    dense = grid("dense", lambda i, seed, s: 0.0)
    precise = find(claims(dense + ticket(0.01)), "ticket ≥ dense")
    noisy = find(claims(dense + ticket(1.0)), "ticket ≥ dense")
    assert precise.sparsity == pytest.approx(0.5) and precise.verdict == "holds"
    assert noisy.sparsity is None and noisy.verdict == "not shown"


def test_dense_claim_without_enough_units():
    rows = [row("dense", psnr=30.0), row("ticket", psnr=30.5)]
    c = find(claims(rows), "ticket ≥ dense")
    assert c.sparsity is None and c.verdict == "not shown (n=1)"


def test_transfer_across_images_and_tasks():
    own = grid("ticket", lambda i, seed, s: 0.0)
    across_images = grid("ticket", lambda i, seed, s: -0.02 + jitter(i, seed), kind="transfer",
                         source_image="data:set5/woman")
    across_tasks = grid("ticket", lambda i, seed, s: -1.0 + jitter(i, seed), kind="transfer",
                        source_task="inpaint")
    result = claims(own + across_images + across_tasks)
    images = find(result, "transfer across images")
    assert images.verdict == "holds" and images.n == 6
    assert images.mean == pytest.approx(-0.02, abs=0.02)
    tasks = find(result, "transfer across tasks")
    assert tasks.verdict == "contradicted" and tasks.mean == pytest.approx(-1.0, abs=0.02)
    # Without transfer rows there is nothing to claim (as for a baseline without fits).
    assert not [c for c in claims(own) if c.claim.startswith("transfer")]


def test_tasks_are_scoped_and_pooled():
    rows = []
    for task in ("denoise", "sr"):
        rows += grid("ticket", lambda i, seed, s: 0.0, task=task)
        rows += grid("random", lambda i, seed, s: -0.2 + jitter(i, seed), task=task)
    result = claims(rows)
    assert find(result, "ticket > random pruning (global)", "denoise").n == 6
    assert find(result, "ticket > random pruning (global)", "sr").n == 6
    pooled = find(result, "ticket > random pruning (global)", "all tasks")
    assert pooled.n == 12 and pooled.verdict == "holds"


def test_scores_and_tables():
    rows = grid("ticket", lambda i, seed, s: 0.0) + grid("random", lambda i, seed, s: -1.0)
    tables = claims_by_score(rows)
    assert list(tables) == ["psnr_averaged", "psnr_peak_averaged"]  # no stopped scores
    for r in rows:
        r["psnr_stopped"] = r["psnr_averaged"] - 0.5
    tables = claims_by_score(rows)
    assert list(tables) == ["psnr_averaged", "psnr_peak_averaged", "psnr_stopped"]
    table = claim_rows(tables["psnr_stopped"])
    assert {len(r) for r in table} == {len(table[0])}
    assert {"claim", "task", "S (shown up to)", "units · images · draws (pairs)", "95% CI",
            "CI clustered by image", "verdict"} <= set(table[0])


def test_claims_count_images_and_independent_draws():
    """Six units on three images, but one random mask per seed shared by every image: the
    claim says 2 independent draws, and the interval clustered by image is over 3."""
    ticket = grid("ticket", lambda i, seed, s: 0.0)
    random = grid("random", lambda i, seed, s: -0.5 + jitter(i, seed))
    for r in random:
        r["mask_sha256"] = f"mask-of-seed-{r['seed']}"
    c = find(claims(ticket + random), "ticket > random pruning (global)")
    assert (c.n, c.images, c.draws, c.pairs) == (6, 3, 2, 6)
    assert c.image_low is not None and c.image_high - c.image_low > 0
    table = claim_rows([c])
    assert table[0]["units · images · draws (pairs)"] == "6 · 3 · 2 (6)"
    for r in random:
        r["mask_sha256"] = f"mask-{r['image']}-{r['seed']}"
    assert find(claims(ticket + random), "ticket > random pruning (global)").draws == 6


def test_only_random_baselines_count_draws():
    ticket = grid("ticket", lambda i, seed, s: 0.0)
    decoder = grid("decoder", lambda i, seed, s: -1.0, mask_sha256="ones")
    assert find(claims(ticket + decoder), "ticket > Deep Decoder").draws is None


def test_a_decoder_fitted_with_its_own_settings_pairs_by_comparison():
    """The Deep Decoder row carries the settings it was fitted with (no input noise); it
    still pairs with its ticket: pairs are keyed by the comparison, not by setting columns."""
    ticket = grid("ticket", lambda i, seed, s: 0.0)
    decoder = grid("decoder", lambda i, seed, s: -0.6 + jitter(i, seed))
    for r in decoder:
        r |= {"model": "decoder", "input_noise": 0.0, "model_options": '{"k": 11}'}
    c = find(claims(ticket + decoder), "ticket > Deep Decoder")
    assert c.n == 6 and c.verdict == "holds"
    scopes = {c.scope for c in claims(ticket + decoder)}
    assert scopes == {"denoise"}  # the decoder's settings open no scope of their own
    # baselines the table has no fit of (random pruning here) make no claim
    assert [c.claim for c in claims(ticket + decoder) if c.claim.startswith("ticket >")] == [
        "ticket > Deep Decoder at equal size"]


def test_fits_of_other_networks_are_never_averaged_together():
    """A table concatenated from two sweeps of other networks: ticket rows of one network
    are not paired with random rows of the other (the comparison key holds the model)."""
    small = grid("ticket", lambda i, seed, s: 0.0) + grid("random", lambda i, seed, s: -1.0)
    wide = grid("random", lambda i, seed, s: +5.0, model="wide")
    c = find(claims(small + wide), "ticket > random pruning (global)")
    assert c.pairs == 6 and c.mean == pytest.approx(1.0)


def test_an_ambiguous_table_is_refused():
    rows = grid("ticket", lambda i, seed, s: 0.0) + grid("random", lambda i, seed, s: -1.0)
    twin = dict(rows[-1], unit="another-unit", psnr_averaged=12.0)
    with pytest.raises(LipError, match="ambiguous pairs"):
        claims(rows + [twin])
    same = dict(rows[-1])
    assert find(claims(rows + [same]), "ticket > random pruning (global)").pairs == 6
    with pytest.raises(LipError, match="appears twice with different values"):
        claims(rows + [dict(rows[-1], psnr_averaged=0.0)])
    with pytest.raises(LipError, match="lacks imp_run"):
        claims([dict(r, imp_run=None) for r in rows])


def test_unpaired_and_non_finite_fits_are_said():
    rows = grid("ticket", lambda i, seed, s: 0.0) + grid("random", lambda i, seed, s: -1.0)
    rows[-1]["psnr_averaged"] = float("nan")
    del rows[-2]
    c = find(claims(rows), "ticket > random pruning (global)")
    assert c.pairs == 4
    assert "1 fit(s) without a random (global) partner" in c.note
    assert "1 pair(s) with a non-finite or missing score" in c.note


def test_a_diverged_ticket_keeps_its_claim_from_holding():
    """A ticket fit whose score is NaN is a failure of the ticket, not a missing value: the
    claim it would weaken cannot hold while it is left out, and the note says so."""
    rows = grid("ticket", lambda i, seed, s: 0.0) + grid("random", lambda i, seed, s: -1.0)
    assert find(claims(rows), "ticket > random pruning (global)").verdict == "holds"
    rows[0]["psnr_averaged"] = float("nan")
    c = find(claims(rows), "ticket > random pruning (global)")
    assert c.verdict == "not shown" and c.pairs == 5
    assert "1 fit(s) of the first side diverged" in c.note

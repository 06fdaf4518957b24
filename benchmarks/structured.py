"""Channel tickets on the clock: do they restore as well as the dense network, faster?

For each image x network seed: one channel-IMP search on the paper's hourglass (``--rounds``
rounds, ``--rate`` of the remaining channels a round, L1 filter norms, global with per-layer
normalisation, rewinding to theta0; every round fitted in full, as a compact network), then,
at the channel tickets of ``--baseline-rounds``: random channels with the ticket's count in
every layer, and the uniformly narrow hourglass with the FLOPs closest to the ticket's (its own
theta0); and, for the first seed only (it fits at the dense network's speed), the unstructured
IMP ticket with the parameter count of the sparsest ticket (as many rounds, each searching
round ``--search-steps`` long, the last in full). Every method is fitted with the
same settings (``--steps`` Adam steps in fast mode, bf16 + channels_last) on the same
observation and scored on the averaged output after the last step; the oracle peak of the
averaged output is given beside it, labelled.

Speed is measured after the fits, in this process on one thread, every network in turn (fp32
and fast mode, median of 10 steps after 3 warm-up steps), so the ratios come from one run on
one CPU. Resumable: finished units are kept in ``--out`` (rerun to continue).

    python benchmarks/structured.py                     # ~1 h on 2 cores (3 Set5 images)
    python benchmarks/structured.py --images builtin:astronaut builtin:coffee --seeds 0 \\
        --size 64 --steps 100 --width 16 --rounds 2 --baseline-rounds 2 \\
        --out lip-out/structured-smoke --results lip-out/structured-smoke/results
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

from lottery_prior.stats import t_interval

IMAGES = ["data:set5/baby", "data:set5/bird", "data:set5/woman"]
NAMES = {"dense": "dense", "ticket": "channel ticket", "ticket-l2": "channel ticket, L2 score",
         "ticket-bn": "channel ticket, BN-γ score", "random-channels": "random channels",
         "narrow": "uniformly narrow", "unstructured": "unstructured IMP ticket"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", nargs="+", default=IMAGES)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--width", type=int, default=128, help="the dense network's width")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--sigma", type=float, default=25)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--rate", type=float, default=0.25)
    ap.add_argument("--baseline-rounds", type=int, nargs="+", default=[2, 3])
    ap.add_argument("--search-steps", type=int, default=200,
                    help="steps of the unstructured IMP search's rounds before its last")
    ap.add_argument("--scores", nargs="+", default=["l1"], choices=("l1", "l2", "bn"),
                    help="channel scores; the baselines go with L1, the others give their "
                    "tickets only")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--summarise-only", action="store_true")
    ap.add_argument("--out", type=Path, default=Path("lip-out/bench-structured"))
    ap.add_argument("--results", type=Path, default=Path("benchmarks/results/structured"))
    args = ap.parse_args()

    units = [(image, seed, score) for score in args.scores for seed in args.seeds
             for image in args.images]
    if not args.summarise_only:
        todo = [u for u in units if not _unit_file(args.out, *u).exists()]
        with ProcessPoolExecutor(max_workers=args.workers) as pool:
            for done in pool.map(_run_unit, [(args, *u) for u in todo]):
                print(f"done: {done}", flush=True)
    rows = [r for u in units if _unit_file(args.out, *u).exists()
            for r in json.loads(_unit_file(args.out, *u).read_text())]
    if not rows:
        raise SystemExit("no finished units to summarise")
    columns = list(dict.fromkeys(k for r in rows for k in r))
    rows = [{k: r.get(k) for k in columns} for r in rows]
    speed = measure_speed(args, rows)
    table = summarise(rows, speed, args.steps)
    differences = paired_differences(rows)

    from lottery_prior.report.tables import markdown_table, write_table

    args.results.mkdir(parents=True, exist_ok=True)
    write_table(rows, args.results / "results")
    write_table(table, args.results / "structured")
    write_table(differences, args.results / "differences")
    write_table(speed, args.results / "speed")
    plot(table, rows, args.results / "psnr_vs_ms.png")
    for t in (table, differences):
        print(markdown_table(t))
        print()
    print(f"CPU: {_cpu()}; one thread; tables and plot in {args.results}/")


def _unit_file(out: Path, image: str, seed: int, score: str = "l1") -> Path:
    suffix = "" if score == "l1" else f"-{score}"
    return out / "units" / f"{image.replace(':', '_').replace('/', '_')}-seed{seed}{suffix}.json"


def _problem(args: argparse.Namespace, image: str):
    from lottery_prior.problem import make_problem

    return make_problem(image, "denoise", sigma=args.sigma, size=args.size)


def _run_unit(job: tuple) -> str:
    """One image x seed: the channel search, its baselines; rows written to a JSON file."""
    args, image, seed, score = job
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
    from lottery_prior.compare import fit_method
    from lottery_prior.finders.channel_baselines import unstructured_run
    from lottery_prior.fit import FitConfig
    from lottery_prior.lottery import ImpConfig, ImpRun
    from lottery_prior.scores import score_columns

    run = ImpRun(_problem(args, image), "dip", {"width": args.width},
                 FitConfig(steps=args.steps, precision="bf16", seed=seed),
                 ImpConfig(rounds=args.rounds, rate=args.rate, structure="channels",
                           channel_score=score),
                 root=args.out / "runs")
    records = run.run()
    rows = []
    for record in records:
        method = "dense" if record["round"] == 0 else "ticket"
        row_ = _row(fit_method(run, method, record["sparsity"] or 0.5).row(), record, image,
                    seed)
        if score != "l1":
            row_["method"] = f"ticket-{score}"
        if score == "l1" or method == "ticket":
            rows.append(row_)
    if score != "l1":  # the baselines go with the L1 tickets
        return _write_unit(args, image, seed, score, rows)
    for k in args.baseline_rounds:
        record = records[k]
        for method in ("random-channels", "narrow"):
            rows.append(_row(fit_method(run, method, record["sparsity"]).row(), record, image,
                             seed))
    if seed == args.seeds[0]:  # weight IMP to the sparsest ticket's parameter count
        record = records[max(args.baseline_rounds)]
        weights = unstructured_run(run, record)
        weights = replace(weights, imp=replace(weights.imp, search_steps=args.search_steps))
        found = weights.run()[-1]
        rows.append(_row({"method": "unstructured", "sparsity": round(found["sparsity"], 4),
                          "parameters": found["parameters"], **score_columns(found["scores"]),
                          "seconds": found["seconds"],
                          "ms_step": round(1000 * found["seconds"] / found["steps"], 1)},
                         record, image, seed))
    return _write_unit(args, image, seed, score, rows)


def _write_unit(args: argparse.Namespace, image: str, seed: int, score: str,
                rows: list[dict]) -> str:
    path = _unit_file(args.out, image, seed, score)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=1))
    return f"{image} seed {seed} ({score})"


def _row(row: dict, record: dict, image: str, seed: int) -> dict:
    method = row["method"].split(" (")[0]
    width = row["method"].split("width=")[1].rstrip(")") if "width=" in row["method"] else None
    return {"image": image, "seed": seed, "round": record["round"],
            "channel_sparsity": round(record.get("channel_sparsity", 0.0), 4),
            "method": method, "width": width, **{k: v for k, v in row.items() if k != "method"}}


def measure_speed(args: argparse.Namespace, rows: list[dict]) -> list[dict]:
    """ms per step, fp32 and fast, of every network fitted: the dense one, each unit's L1
    channel tickets (random channels with the same counts have the same shapes), each narrow
    width; one after the other in this process, on one thread."""
    import torch

    torch.set_num_threads(1)
    from lottery_prior.channels import compact, kept_channels
    from lottery_prior.cost import step_flops
    from lottery_prior.fit import FitConfig
    from lottery_prior.lottery import ImpConfig, ImpRun
    from lottery_prior.models import create_model
    from lottery_prior.precision import step_ms

    nets = {}
    for image, seed in dict.fromkeys((r["image"], r["seed"]) for r in rows
                                     if r["method"] == "ticket"):
        run = ImpRun(_problem(args, image), "dip", {"width": args.width},
                     FitConfig(steps=args.steps, precision="bf16", seed=seed),
                     ImpConfig(rounds=args.rounds, rate=args.rate, structure="channels"),
                     root=args.out / "runs")
        for k in range(args.rounds + 1):
            if k == 0 and nets:
                continue
            ticket = run.ticket(k)
            full = ticket.build()
            key = "dense" if k == 0 else f"ticket {image} {seed} {k}"
            nets[key] = (compact(full, kept_channels(ticket.mask, full)), ticket.z)
    z = nets["dense"][1]
    for width in sorted({int(r["width"]) for r in rows if r["width"]}, reverse=True):
        nets[f"narrow {width}"] = (create_model("dip", width=width), z)
    out = []
    for key, (net, z) in nets.items():
        fp32 = step_ms(net, z, "fp32", steps=10, warmup=3)
        fast = step_ms(net, z, "bf16", steps=10, warmup=3)
        out.append({"network": key, "gflop_step": round(step_flops(net, z) / 1e9, 2),
                    "ms_fp32": round(fp32, 1), "ms_fast": round(fast, 1)})
        print(f"speed: {key}: {fp32:.0f} ms fp32, {fast:.0f} ms fast", flush=True)
    for entry in out:
        entry["speedup_fp32"] = round(out[0]["ms_fp32"] / entry["ms_fp32"], 2)
        entry["speedup_fast"] = round(out[0]["ms_fast"] / entry["ms_fast"], 2)
    return out


def _network(row: dict) -> str | None:
    """The key of the network a row fitted in ``measure_speed``'s table."""
    if row["method"] in ("dense", "unstructured"):  # unstructured sparsity: dense kernels
        return "dense"
    if row["method"] == "narrow":
        return f"narrow {row['width']}"
    if row["method"] in ("ticket", "random-channels"):
        return f"ticket {row['image']} {row['seed']} {row['round']}"
    return None  # tickets of another channel score: not timed


def summarise(rows: list[dict], speed: list[dict], steps: int) -> list[dict]:
    """One line per method and round: PSNR mean ± std over units, and cost (FLOPs counted,
    ms per step measured, time to a restored image), averaged over the units' networks."""
    timed = {s["network"]: s for s in speed}
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["round"], r["method"]), []).append(r)
    order = list(NAMES)
    out = []
    for (k, method), group in sorted(groups.items(), key=lambda g: (g[0][0],
                                                                    order.index(g[0][1]))):
        widths = sorted({r["width"] for r in group if r["width"]}, key=int)
        nets = [timed[n] for n in map(_network, group) if n in timed]

        def mean(key: str, digits: int, nets: list[dict] = nets) -> float | str:
            return round(statistics.mean(n[key] for n in nets), digits) if nets else ""

        fast = mean("ms_fast", 1)
        out.append({
            "method": NAMES[method] + (f" (width {'/'.join(widths)})" if widths else ""),
            "round": k, "channel sparsity": group[0]["channel_sparsity"]
            if method.startswith("ticket") or method == "random-channels" else "",
            "weight sparsity": round(statistics.mean(r["sparsity"] for r in group), 3),
            "parameters": round(statistics.mean(r["parameters"] for r in group)),
            "GFLOP/step": mean("gflop_step", 2) if nets else round(statistics.mean(
                r["gflop_step"] for r in group), 2),
            "ms/step fp32": mean("ms_fp32", 1), "ms/step fast": fast,
            "speed-up (fp32)": round(timed["dense"]["ms_fp32"] / mean("ms_fp32", 1), 2)
            if fast else "",
            "speed-up (fast)": round(timed["dense"]["ms_fast"] / fast, 2) if fast else "",
            f"s to an image ({steps} fast steps)": round(steps * fast / 1000, 1) if fast else "",
            "PSNR, averaged output (dB)": _mean_std([r["psnr_averaged"] for r in group]),
            "peak, averaged (oracle) (dB)": _mean_std([r["psnr_peak_averaged"] for r in group]),
            "units": len(group)})
    return out


def paired_differences(rows: list[dict]) -> list[dict]:
    """Ticket - dense, ticket - narrow, ticket - random channels, unstructured - ticket: the
    averaged output's PSNR on the same image and seed, mean and 95% t interval."""
    by = {(r["image"], r["seed"], r["round"], r["method"]): r["psnr_averaged"] for r in rows}
    dense = {(r["image"], r["seed"]): r["psnr_averaged"] for r in rows if r["method"] == "dense"}
    out = []
    for k in sorted({r["round"] for r in rows if r["method"] == "ticket"}):
        pairs = {
            "channel ticket − dense": [(v, dense[(i, s)]) for (i, s, kk, m), v in by.items()
                                       if m == "ticket" and kk == k and (i, s) in dense],
        }
        for other in ("narrow", "random-channels", "unstructured", "ticket-l2", "ticket-bn"):
            pairs[f"channel ticket − {NAMES[other]}"] = [
                (v, by[(i, s, kk, other)]) for (i, s, kk, m), v in by.items()
                if m == "ticket" and kk == k and (i, s, kk, other) in by]
        for name, values in pairs.items():
            if len(values) < 2:
                continue
            mean, low, high = t_interval([a - b for a, b in values])
            out.append({"difference": name, "round": k, "mean (dB)": round(mean, 2),
                        "95% CI": f"[{low:+.2f}, {high:+.2f}]", "pairs": len(values)})
    return out


def plot(table: list[dict], rows: list[dict], path: Path) -> None:
    """PSNR gained over the dense network on the same image and seed (mean ± std over the
    units: image-to-image spread cancels) against the measured ms per step in fast mode."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dense = {(r["image"], r["seed"]): r["psnr_averaged"] for r in rows if r["method"] == "dense"}
    gain: dict[tuple, list[float]] = {}
    for r in rows:
        gain.setdefault((r["round"], r["method"]), []).append(
            r["psnr_averaged"] - dense[(r["image"], r["seed"])])
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=100)
    styles = {"dense": ("black", "s"), "ticket": ("tab:red", "o"),
              "random-channels": ("tab:cyan", "v"), "narrow": ("tab:green", "D"),
              "unstructured": ("tab:purple", "x")}
    for method, (color, marker) in styles.items():
        points = []
        for r in table:
            if r["method"].split(" (")[0] == NAMES[method] and r["ms/step fast"]:
                values = gain[(r["round"], method)]
                std = statistics.stdev(values) if len(values) > 1 else 0.0
                points.append((r["ms/step fast"], statistics.mean(values), std, r["round"]))
        if not points:
            continue
        x, y, e, k = zip(*sorted(points), strict=True)
        ax.errorbar(x, y, yerr=e, color=color, marker=marker, ls="-" if len(x) > 1 else "",
                    capsize=3, label=NAMES[method])
        if method == "ticket":
            for xi, yi, ki in zip(x, y, k, strict=True):
                ax.annotate(f"round {ki}", (xi, yi), textcoords="offset points",
                            xytext=(4, 4), fontsize=7)
    ax.axhline(0, color="black", lw=0.8, ls=":")
    ax.set_xlabel("ms per step, fast mode (bf16), one thread, measured in one run")
    ax.set_ylabel("PSNR − dense, averaged output after the last step (dB)")
    ax.set_title("channel tickets: denoising σ 25, 128 px (mean ± std over image × seed pairs)",
                 fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {std:.2f}"


def _parse(cell: str) -> tuple[float, float]:
    mean, std = cell.split(" ± ")
    return float(mean), float(std)


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                flags = Path("/proc/cpuinfo").read_text()
                amx = "AMX-BF16" if "amx_bf16" in flags else "no AMX"
                return f"{line.split(':', 1)[1].strip()} ({amx})"
    except OSError:
        pass
    return platform.processor() or "unknown"


if __name__ == "__main__":
    main()

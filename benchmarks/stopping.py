"""Automatic stopping across the networks a user fits: dense, tickets, random and learned masks,
the Deep Decoder of equal size and compact channel networks.

Every fit runs all its steps once and records, per step, what a stopping rule may see (the
windowed variance of the outputs, and of their moving average) beside what only the truth
gives (the PSNR of the iterate, of the moving average and of the window mean). A rule is then
replayed on the recorded variances through its own ``check`` (the same code that stops a
fit), so one set of fits scores every rule and setting. The loss of a rule on a fit is the
oracle peak of the averaged output minus the PSNR of the output the rule keeps.

Tickets (IMP, 100-step searching rounds) and the learned mask are found on denoising of
``--search-image`` (a photo outside the benchmark) for each seed and transferred to every
image and task, as a lottery image prior is used; the channel network is the compact network
of a channel-IMP round (about half the channels); the random mask takes the ticket's
layer-wise ratios. Images are split in two halves by their order: rules are chosen on the
first ("choose") and reported on the second ("report").

    python benchmarks/stopping.py fit --out lip-out/stopping --workers 2     # ~90 min, 2 cores
    python benchmarks/stopping.py analyse --out lip-out/stopping --markdown stopping.md
    python benchmarks/stopping.py fit --out lip-out/stop-smoke --size 32 --width 8 \\
        --steps 300 --images builtin:coffee builtin:chelsea --seeds 0 --tasks denoise
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

DENOISE_IMAGES = ("data:set5/baby", "data:set5/bird", "data:set5/butterfly", "data:set5/head",
                  "data:set5/woman", "data:denoising/F16", "data:denoising/snail",
                  "builtin:chelsea")
INPAINT_IMAGES = ("data:inpainting/kate", "data:inpainting/library", "data:inpainting/vase")
SR_IMAGES = ("data:set5/bird", "data:denoising/F16", "builtin:coffee")
# network kind -> (finder, IMP structure searched, requested sparsity)
KINDS = {"dense": ("dense", "weights", 0.0), "ticket 50%": ("ticket", "weights", 0.5),
         "ticket 80%": ("ticket", "weights", 0.8), "ticket 95%": ("ticket", "weights", 0.95),
         "random layer-wise 80%": ("random-layerwise", "weights", 0.8),
         "learned 80%": ("learned", "weights", 0.8),
         "Deep Decoder (= ticket 80%)": ("decoder", "weights", 0.8),
         "channel network": ("ticket", "channels", 0.75)}
OTHER_TASK_KINDS = ("dense", "ticket 80%")
SEARCH_STEPS = 1500  # the last IMP round's fit (earlier rounds search for 100 steps)


@dataclass(frozen=True)
class Setting:
    """What every fit of one benchmark shares."""

    size: int
    width: int
    steps: int
    sigma: float
    search_image: str
    window: int = 100


@dataclass(frozen=True)
class Job:
    task: str
    image: str
    seed: int
    kind: str
    width: int

    @property
    def name(self) -> str:
        image = self.image.split(":")[-1].replace("/", "-")
        kind = self.kind.split(" (")[0].replace(" ", "-").replace("%", "")
        return f"{self.task}-{image}-{kind}-w{self.width}-s{self.seed}"


def searches(setting: Setting, seed: int, root: Path, run: bool = True):
    """The seed's IMP runs (weights and channels): (weights run, channels run). ``run``: run
    them (and learn the mask at 80%) first; without, they must have finished."""
    from lottery_prior.finders import Match, make_finder
    from lottery_prior.fit import FitConfig
    from lottery_prior.lottery import ImpConfig, ImpRun
    from lottery_prior.problem import make_problem

    problem = make_problem(setting.search_image, "denoise", sigma=setting.sigma,
                           size=setting.size, noise_seed=seed)
    config = FitConfig.for_task("denoise", steps=SEARCH_STEPS, seed=seed, precision="auto")
    options = {"width": setting.width}
    runs = [ImpRun(problem, "dip", options, config, ImpConfig(rounds=14, search_steps=100),
                   root=root),
            ImpRun(problem, "dip", options, config,
                   ImpConfig(rounds=6, search_steps=100, structure="channels"), root=root)]
    if run:
        for imp_run in runs:
            imp_run.run()
        make_finder("learned").find(Match.of(runs[0], KINDS["learned 80%"][2]))
    return runs[0], runs[1]


def problem_of(job: Job, setting: Setting):
    from lottery_prior.problem import make_problem

    if job.task == "inpaint":
        return make_problem(job.image, "inpaint", mask=f"{job.image}_mask", size=setting.size,
                            noise_seed=job.seed)
    if job.task == "sr":
        return make_problem(job.image, "sr", factor=4, size=setting.size, noise_seed=job.seed)
    return make_problem(job.image, "denoise", sigma=setting.sigma, size=setting.size,
                        noise_seed=job.seed)


def fit_job(job: Job, setting: Setting, out: Path) -> str:
    """Fit one network on one problem for all its steps; write its trace."""
    import torch

    from lottery_prior.files import write_json
    from lottery_prior.finders import Match, make_finder
    from lottery_prior.fit import FitConfig, StepInfo, fit
    from lottery_prior.lottery import ticket_input
    from lottery_prior.problem import build_prior
    from lottery_prior.stopping import MAX_STEPS, WindowedVariance

    torch.set_num_threads(1)
    path = out / "traces" / f"{job.name}.json"
    if path.exists():
        return job.name
    problem = problem_of(job, setting)
    config = FitConfig.for_task(job.task, steps=setting.steps, seed=job.seed, precision="auto")
    if job.kind == "dense":  # needs no search: the network at its seed's init
        model, z = build_prior("dip", {"width": setting.width}, problem, seed=job.seed)
        mask, label, sparsity = None, "dense", 0.0
    else:
        weights, channels = searches(setting, job.seed, out / "runs", run=False)
        finder_name, structure, sparsity = KINDS[job.kind]
        run = channels if structure == "channels" else weights
        finder = make_finder(finder_name)
        if structure == "channels":
            sparsity = run.finished_records()[-1]["sparsity"]
        found = finder.find(Match.of(run, sparsity))
        config = finder.fit_config(config)
        model, mask, z, _ = ticket_input(found.ticket, problem, job.seed)
        label, sparsity = found.label, found.ticket.sparsity
    iterate = WindowedVariance(window=setting.window, patience=MAX_STEPS)
    ema = WindowedVariance(window=setting.window, patience=MAX_STEPS)
    trace: dict[str, list] = {k: [] for k in ("loss", "psnr", "psnr_averaged", "variance",
                                               "psnr_window_mean", "variance_averaged")}
    averaged = None

    def record(info: StepInfo) -> None:
        nonlocal averaged
        out_ = info.output.float()
        averaged = out_ if averaged is None else averaged * config.ema + out_ * (1 - config.ema)
        iterate.update(info.step, out_)
        ema.update(info.step, averaged)
        full = info.step >= setting.window
        window_mean = (iterate.window_mean.float().reshape(out_.shape).cpu() if full else None)
        trace["loss"].append(info.loss)
        trace["psnr"].append(info.psnr)
        trace["psnr_averaged"].append(info.psnr_averaged)
        trace["variance"].append(iterate.variances[-1] if full else None)
        trace["variance_averaged"].append(ema.variances[-1] if full else None)
        trace["psnr_window_mean"].append(
            problem.metric(window_mean, problem.clean) if full else None)

    start = time.perf_counter()
    result = fit(model, z, problem.operator, problem.observation, clean=problem.clean,
                 config=config, mask=mask, callbacks=[record], metric=problem.metric)
    write_json(path, {
        "job": job.__dict__, "setting": setting.__dict__, "label": label,
        "sparsity": sparsity, "precision": result.precision,
        "seconds": round(time.perf_counter() - start, 1),
        "trace": {k: [None if v is None else round(v, 9 if "variance" in k else 4) for v in vs]
                  for k, vs in trace.items()}})
    return job.name


def jobs_of(args: argparse.Namespace) -> list[Job]:
    jobs = []
    kinds = args.kinds or list(KINDS)
    other = [k for k in OTHER_TASK_KINDS if k in kinds]
    for seed in args.seeds:  # seed by seed: a run cut short still covers every kind
        for task, images, names in (("denoise", args.images, kinds),
                                    ("inpaint", args.inpaint_images, other),
                                    ("sr", args.sr_images, other)):
            if task in args.tasks:
                jobs += [Job(task, image, seed, kind, args.width)
                         for image in images for kind in names]
    return jobs


def run_fits(args: argparse.Namespace) -> None:
    setting = Setting(args.size, args.width, args.steps, args.sigma, args.search_image)
    out = args.out
    (out / "traces").mkdir(parents=True, exist_ok=True)
    jobs = [j for j in jobs_of(args) if not (out / "traces" / f"{j.name}.json").exists()]
    print(f"{len(jobs)} fits to run ({args.steps} steps, {args.size} px, width {args.width})",
          flush=True)
    os.environ["OMP_NUM_THREADS"] = "1"
    if any(j.kind != "dense" for j in jobs):
        with ProcessPoolExecutor(len(args.seeds)) as pool:  # the searches, a seed a worker
            list(pool.map(searches, [setting] * len(args.seeds), args.seeds,
                          [out / "runs"] * len(args.seeds)))
    start = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        futures = [pool.submit(fit_job, job, setting, out) for job in jobs]
        for i, future in enumerate(as_completed(futures), 1):
            name = future.result()
            minutes = (time.perf_counter() - start) / 60
            print(f"[{i}/{len(jobs)}] {name} ({minutes:.1f} min)", flush=True)


def load_traces(out: Path) -> list[dict]:
    """Every recorded fit, with its half (``choose`` or ``report``)."""
    lists = {"denoise": DENOISE_IMAGES, "inpaint": INPAINT_IMAGES, "sr": SR_IMAGES}
    fits = []
    for path in sorted((out / "traces").glob("*.json")):
        fit = json.loads(path.read_text())
        job = fit["job"]
        images = lists[job["task"]]
        index = images.index(job["image"]) if job["image"] in images else len(fits)
        fit["half"] = ("choose", "report")[index % 2]
        width, task = fit["setting"]["width"], job["task"]
        fit["kind"] = (job["kind"] + ("" if width == 32 else f", width {width}")
                       + ("" if task == "denoise" else f", {task}"))
        trace = fit["trace"]
        fit["peak_averaged"] = max(trace["psnr_averaged"])
        fits.append(fit)
    return fits


def replay(rule, fit: dict, horizon: int) -> tuple[int | None, float]:
    """Run ``rule`` through its own ``check`` on what it reads of a recorded fit (variances
    or losses), as if the fit had ``horizon`` steps: the step it fired at (None: never) and
    the PSNR of the window mean it keeps."""
    trace = fit["trace"]
    fired = None
    for step, value in enumerate(trace[rule.signal][:horizon], 1):
        if value is not None and rule.check(step, value):
            fired = step
            break
    return fired, trace["psnr_window_mean"][rule.best_step - 1]


@dataclass(frozen=True)
class Outcome:
    """A rule on a group of fits at one horizon."""

    losses: list[float]  # oracle peak of the averaged output minus the PSNR kept
    steps: list[int]  # where the fit ends (the horizon when the rule never fired)
    fired: int

    @property
    def median(self) -> float:
        return statistics.median(self.losses)

    @property
    def worst(self) -> float:
        return max(self.losses)


def outcome(make, fits: list[dict], horizon: int) -> Outcome | None:
    """The rule on the fits that ran at least ``horizon`` steps (None if none did)."""
    losses, steps, fired = [], [], 0
    fits = [f for f in fits if f["setting"]["steps"] >= horizon]
    if not fits:
        return None
    for fit in fits:
        rule = make(fit)
        step, psnr = replay(rule, fit, horizon)
        losses.append(max(fit["trace"]["psnr_averaged"][:horizon]) - psnr)
        steps.append(step or horizon)
        fired += step is not None
    return Outcome(losses, steps, fired)


def candidates() -> dict:
    """The rules tried, each a function of the fit it stops (what it may know: the task and
    its noise level): ES-WMV as today, with other patiences, a required rise above the
    minimum and a required drop from the first variance; and the discrepancy rule at several
    factors (on the noise estimated from the observation as the library does, or on the
    nominal σ²; or with ES-WMV for the noise-free tasks)."""
    from lottery_prior.stopping import Discrepancy, WindowedVariance

    rules = {}
    for patience in (100, 200, 500):
        for rise in (0.0, 0.05, 0.1, 0.2, 0.3, 0.5):
            for drop in (0.0, 0.5, 0.8):
                rules[f"wmv P={patience} rise={rise:g} drop={drop:g}"] = (
                    lambda fit, p=patience, r=rise, d=drop:
                    WindowedVariance(patience=p, rise=r, drop=d))
    for factor in (0.8, 0.85, 0.9, 0.95, 1.0, 1.05):
        # as the library builds it: on the noise estimated from the observation (none in
        # inpainting and SR, where it never fires)
        rules[f"discrepancy factor={factor:g}"] = (
            lambda fit, f=factor: Discrepancy(noise_variance(fit), factor=f))
        rules[f"discrepancy factor={factor:g}, ES-WMV without noise"] = (
            lambda fit, f=factor: Discrepancy(noise_variance(fit), factor=f)
            if fit["job"]["task"] == "denoise" else WindowedVariance())
        rules[f"discrepancy factor={factor:g} on the nominal σ²"] = (
            lambda fit, f=factor: Discrepancy((fit["setting"]["sigma"] / 255) ** 2
                                              if fit["job"]["task"] == "denoise" else 0.0,
                                              factor=f))
    return rules


_NOISE: dict[tuple, float] = {}


def noise_variance(fit: dict) -> float:
    """What the noise of the fit's observation adds to the loss, estimated from the
    observation as the rule does (``Problem.noise_variance``)."""
    job = Job(**{"width": fit["setting"]["width"], **fit["job"]})
    key = (job.task, job.image, job.seed)
    if key not in _NOISE:
        setting = Setting(**fit["setting"])
        _NOISE[key] = problem_of(job, setting).noise_variance
    return _NOISE[key]


TODAY = "wmv P=200 rise=0 drop=0"


def analyse(args: argparse.Namespace) -> None:
    from lottery_prior.stats import t_interval

    fits = load_traces(args.out)
    rules = candidates()
    lines = [f"{len(fits)} fits "
             f"({', '.join(sorted({f['job']['task'] for f in fits}))}); loss = oracle peak of "
             "the averaged output within the horizon minus the PSNR of the output kept (dB)", ""]
    halves = {h: [f for f in fits if f["half"] == h] for h in ("choose", "report")}
    def order(label: str) -> tuple:
        task = next((t for t in ("inpaint", "sr") if label.endswith(f", {t}")), "")
        return task, next(i for i, k in enumerate(KINDS) if label.startswith(k)), label

    kinds = sorted({f["kind"] for f in fits}, key=order)

    def score(name: str, group: list[dict]) -> tuple[float, float]:
        """Worst and median loss over kinds and horizons (the choice's criteria)."""
        worst, medians = 0.0, []
        for horizon in args.horizons:
            for kind in kinds:
                members = [f for f in group if f["kind"] == kind]
                o = outcome(rules[name], members, horizon)
                if o is not None:
                    worst, medians = max(worst, o.worst), medians + [o.median]
        return worst, max(medians)

    ranked = sorted(rules, key=lambda n: score(n, halves["choose"]))
    chosen = args.rule or ranked[0]
    lines += ["## The rules on the choosing half (worst loss, worst median over kinds and "
              "horizons)", "", "| rule | worst | worst median |", "|---|---|---|"]
    for name in [TODAY, *ranked[:12]]:
        worst, median = score(name, halves["choose"])
        lines.append(f"| {name}{' (today)' if name == TODAY else ''} | {worst:.2f} | "
                     f"{median:.2f} |")
    lines += ["", f"Chosen: {chosen}", ""]
    for half in ("choose", "report"):
        for horizon in args.horizons:
            lines += [f"## {half} half, {horizon} steps", "",
                      "| network | fits | today: median / worst loss | today: stop step "
                      "(fired) | chosen: median / worst loss | chosen: stop step (fired) |",
                      "|---|---|---|---|---|---|"]
            for kind in kinds:
                members = [f for f in halves[half] if f["kind"] == kind]
                outcomes = [outcome(rules[name], members, horizon) for name in (TODAY, chosen)]
                if outcomes[0] is None:
                    continue
                cells = []
                for o in outcomes:
                    cells += [f"{o.median:.2f} / {o.worst:.2f}",
                              f"{statistics.median(o.steps):.0f} ({o.fired}/{len(o.losses)})"]
                lines.append(f"| {kind} | {len(outcomes[0].losses)} | {' | '.join(cells)} |")
            members = [f for f in halves[half] if f["setting"]["steps"] >= horizon]
            everything = outcome(rules[chosen], members, horizon)
            if everything is not None:
                worst = members[everything.losses.index(everything.worst)]
                lines += ["", f"All {len(everything.losses)} fits, chosen rule: median / worst "
                          f"loss {everything.median:.2f} / {everything.worst:.2f} dB (the worst: "
                          f"{worst['kind']}, {worst['job']['task']} of {worst['job']['image']}, "
                          f"seed {worst['job']['seed']})."]
            dense = [f for f in halves[half] if f["job"]["kind"] == "dense"
                     and f["setting"]["steps"] >= horizon]
            if len(dense) > 1:
                today, new = (outcome(rules[n], dense, horizon) for n in (TODAY, chosen))
                mean, low, high = t_interval([a - b for a, b in
                                              zip(today.losses, new.losses, strict=True)])
                lines += ["", f"Dense, chosen against today (loss today − loss chosen, "
                          f"paired over {len(dense)} fits): {mean:+.2f} dB [{low:+.2f}, "
                          f"{high:+.2f}]"]
            lines.append("")
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        from lottery_prior.files import write_text

        write_text(args.markdown, text + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("phase", choices=("fit", "analyse"))
    ap.add_argument("--out", type=Path, default=Path("lip-out/stopping"))
    ap.add_argument("--images", nargs="+", default=list(DENOISE_IMAGES))
    ap.add_argument("--inpaint-images", nargs="+", default=list(INPAINT_IMAGES))
    ap.add_argument("--sr-images", nargs="+", default=list(SR_IMAGES))
    ap.add_argument("--tasks", nargs="+", default=["denoise", "inpaint", "sr"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--kinds", nargs="+", choices=list(KINDS),
                    help="networks to fit (default: all; inpainting and SR fit dense and the "
                    "80%% ticket of these)")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--steps", type=int, default=3000, help="steps of every fit (3000: the "
                    "default of `lip fit`; the rule must hold over the run a user makes)")
    ap.add_argument("--sigma", type=float, default=25.0)
    ap.add_argument("--search-image", default="builtin:astronaut")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--horizons", type=int, nargs="+", default=[1000, 1500, 3000],
                    help="fit lengths to score the rules at (each a prefix of every fit)")
    ap.add_argument("--rule", help="report this candidate instead of the best on the "
                    "choosing half")
    ap.add_argument("--markdown", type=Path)
    args = ap.parse_args()
    if args.phase == "fit":
        run_fits(args)
    else:
        analyse(args)


if __name__ == "__main__":
    main()

"""A spec expanded into units of work, each content-addressed by its settings.

* ``search``: one IMP run per image x task x noise seed x seed (its id is the run folder's
  name, ``imp-<hash>``, so sweeps, ``lip find`` and ``lip compare`` share runs);
* ``learn``: a mask learned at theta0 at the sparsity of the search's round closest to a
  requested one (needs the search; the mask is kept in a ``learned-<hash>`` run folder);
* ``fit``: one method at one sparsity on the search's image and task (needs the search, and
  for ``learned`` the learn unit); the dense network is one unit per search;
* ``transfer``: a mask of one search (its ticket, or a learned or baseline mask at the
  ticket's sparsity) retrained on another image or task (needs what the mask needs).

``run_unit`` does a unit's work in any process (a worker, a Ray task) from its JSON-ready
payload alone and returns its result rows; a finished unit is never run again (the store
keeps its rows).
"""

from __future__ import annotations

import json
import math
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from lottery_prior import __version__
from lottery_prior.compare import closest_round, fit_method, learned_run, method_ticket
from lottery_prior.compare import row as method_row
from lottery_prior.errors import LipError
from lottery_prior.experiments.spec import LEARNED_KEYS, Spec
from lottery_prior.fit import FitConfig
from lottery_prior.images import save_image
from lottery_prior.learned import LearnConfig
from lottery_prior.lottery import ImpConfig, ImpRun, evaluate_ticket
from lottery_prior.operators import TASK_DEFAULTS
from lottery_prior.output_folder import settings_hash
from lottery_prior.problem import content_hash, make_problem
from lottery_prior.report.tables import SCORE_COLUMNS
from lottery_prior.stopping import make_stopping_rule
from lottery_prior.tickets import parameter_count

RUNS = "runs"  # IMP run folders, below the results folder
IMAGES = "images"  # averaged outputs of fits, observations and clean images


@dataclass(frozen=True)
class Unit:
    """One piece of work: ``kind``, its settings (``payload``), the units it needs first."""

    id: str
    kind: str
    payload: dict[str, Any]
    deps: tuple[str, ...] = ()
    cost: float = 1.0  # estimated seconds on one CPU thread
    label: str = ""


@dataclass
class Plan:
    """The units of a spec, in an order where every unit comes after its dependencies."""

    spec: Spec
    units: list[Unit] = field(default_factory=list)

    def by_id(self) -> dict[str, Unit]:
        return {u.id: u for u in self.units}


def expand(spec: Spec, root: Path, device: str | None = None) -> Plan:
    """Every unit of the spec (loading each image once to address its observation)."""
    plan = Plan(spec)
    searches: dict[tuple, Unit] = {}
    learned: dict[str, dict[float, Unit]] = {}  # search id -> its learn units by sparsity
    imp = ImpConfig(**{**_imp_settings(spec), "target_sparsity": spec.max_sparsity})
    for image in spec.images:
        for task in spec.tasks:
            for noise_seed in spec.noise_seeds:
                problem_args = {"image": image, "task": task.name, "size": spec.size,
                                "noise_seed": noise_seed, **task.for_image(image)}
                for seed in spec.seeds:
                    search = _search_unit(spec, problem_args, seed, imp, root, device)
                    searches[(image, task.name, noise_seed, seed)] = search
                    plan.units.append(search)
                    learns = learned[search.id] = _learn_units(spec, search)
                    plan.units += learns.values()
                    plan.units += _fit_units(spec, search, learns)
    for (image, task, noise_seed, seed), search in searches.items():
        learns = learned[search.id]
        for target in _transfer_targets(spec, image, task):
            t_image, t_task = target
            t_search = searches[(t_image, t_task, noise_seed, seed)]
            for s in spec.transfer_sparsities:
                for method in spec.transfer_methods:
                    payload = {**_method_payload(spec, search, method, s),
                               "target": t_search.payload["problem"],
                               "target_fit": t_search.payload["fit"]}
                    plan.units.append(Unit(
                        _unit_id("transfer", payload), "transfer", payload,
                        _needs(search, learns, method, s), cost=t_search.payload["full_cost"],
                        label=f"transfer {'' if method == 'ticket' else method + ' '}"
                        f"{image}:{task} -> {t_image}:{t_task} at {s:.0%}, seed {seed}"))
    return plan


def _imp_settings(spec: Spec) -> dict[str, Any]:
    settings = dict(spec.imp)
    if "keep_dense" in settings:
        settings["keep_dense"] = tuple(settings["keep_dense"])
    return settings


def _search_unit(spec: Spec, problem_args: dict, seed: int, imp: Any, root: Path,
                 device: str | None) -> Unit:
    run = _imp_run({"problem": problem_args, "model": spec.model,
                    "model_options": spec.model_options, "fit": _fit_settings(spec, problem_args,
                                                                                seed, device),
                    "imp": imp.hashed(), "stop": spec.fit.get("stop", "none")}, root)
    payload = {"problem": problem_args, "model": spec.model, "model_options": spec.model_options,
               "fit": asdict(run.fit_config), "imp": imp.hashed(), "stop": run.stop_name or "none",
               "run": run.folder.name}
    pixels = run.problem.shape[1] * run.problem.shape[2]
    per_step = _seconds_per_step(spec, pixels)
    full = run.fit_config.steps * per_step
    search_steps = sum(run.round_steps(k) for k in range(imp.n_rounds + 1))
    payload["full_cost"] = full
    return Unit(run.folder.name, "search", payload, cost=search_steps * per_step,
                label=f"search {problem_args['image']}:{problem_args['task']} seed {seed}"
                f" (noise {problem_args['noise_seed']}), {imp.n_rounds} rounds")


def _where(search: Unit) -> str:
    problem = search.payload["problem"]
    return f"{problem['image']}:{problem['task']} seed {search.payload['fit']['seed']}"


def _method_payload(spec: Spec, search: Unit, method: str, sparsity: float) -> dict:
    """A unit's payload for a method at a sparsity (IMP's own ticket adds no key, so the ids
    of sweeps made before other transfer methods existed stay the same)."""
    payload = {**search.payload, "sparsity": sparsity}
    if method != "ticket":
        payload["method"] = method
    if method == "learned":  # every setting resolved: a changed default is another unit
        resolved = asdict(LearnConfig(sparsity=0.5, **spec.learned))
        payload["learned"] = {k: v for k, v in resolved.items() if k in LEARNED_KEYS}
    return payload


def _learn_units(spec: Spec, search: Unit) -> dict[float, Unit]:
    """One learn unit per sparsity at which a learned mask is fitted or transferred."""
    wanted = set(spec.sparsities) if "learned" in spec.methods else set()
    if "learned" in spec.transfer_methods:
        wanted |= set(spec.transfer_sparsities)
    units = {}
    for s in sorted(wanted):
        payload = _method_payload(spec, search, "learned", s)
        del payload["method"]
        steps = LearnConfig(sparsity=s, **spec.learned).n_steps
        units[s] = Unit(_unit_id("learn", payload), "learn", payload, (search.id,),
                        cost=search.payload["full_cost"] * steps / search.payload["fit"]["steps"],
                        label=f"learn a mask at {s:.0%}, {_where(search)}")
    return units


def _needs(search: Unit, learns: dict[float, Unit], method: str, sparsity: float) -> tuple:
    return (search.id, learns[sparsity].id) if method == "learned" else (search.id,)


def _fit_units(spec: Spec, search: Unit, learns: dict[float, Unit]) -> list[Unit]:
    units = []
    for method in spec.methods:
        for s in [0.0] if method == "dense" else spec.sparsities:
            payload = {**_method_payload(spec, search, method, s), "method": method}
            units.append(Unit(_unit_id("fit", payload), "fit", payload,
                              _needs(search, learns, method, s),
                              cost=search.payload["full_cost"],
                              label=f"{method} at {s:.0%}, {_where(search)}"))
    return units


def _transfer_targets(spec: Spec, image: str, task: str) -> list[tuple[str, str]]:
    targets = []
    if spec.across_images:
        targets += [(other, task) for other in spec.images if other != image]
    targets += [(image, to) for src, to in spec.across_tasks if src == task]
    return targets


def _fit_settings(spec: Spec, problem_args: dict, seed: int, device: str | None) -> dict:
    defaults = TASK_DEFAULTS[problem_args["task"]]
    fit = {"steps": defaults["steps"], "input_noise": defaults["input_noise"],
           **{k: v for k, v in spec.fit.items() if k != "stop"}, "seed": seed}
    if device is not None:
        fit["device"] = device
    return fit


def _seconds_per_step(spec: Spec, pixels: int) -> float:
    """A rough cost model: the paper network (width 128) takes ~0.25 s per 128x128 step on
    one CPU thread in fast mode, ~0.5 s in fp32; time grows with pixels and width squared."""
    width = spec.model_options.get("width", 128) if spec.model == "dip" else 64
    base = 0.25 if spec.fit.get("fast") else 0.5
    return base * pixels / 128**2 * (width / 128) ** 2


def _unit_id(kind: str, payload: dict) -> str:
    return f"{kind}-{settings_hash({k: v for k, v in payload.items() if k != 'full_cost'})}"


def _imp_run(payload: dict, root: Path):
    """The IMP run a payload names (its problem simulated again: the same, seeded)."""
    imp = dict(payload["imp"])
    imp["keep_dense"] = tuple(imp.get("keep_dense", ()))
    stop = payload.get("stop", "none")
    return ImpRun(make_problem(**payload["problem"]), payload["model"],
                  dict(payload["model_options"]), FitConfig(**payload["fit"]), ImpConfig(**imp),
                  root=root / RUNS,
                  stop_factory=(lambda: make_stopping_rule("wmv")) if stop == "wmv" else None,
                  stop_name=None if stop == "none" else stop)


def run_unit(unit: Unit, root: str | Path) -> list[dict]:
    """Do a unit's work (resuming what exists) and return its rows; any process can."""
    root = Path(root)
    run = _imp_run(unit.payload, root)
    if unit.kind == "search":
        run.run()
        return []
    run.records = finished_records(run)
    learned = unit.payload.get("learned")  # settings of a learned mask (its sparsity: IMP's)
    learn = LearnConfig(sparsity=unit.payload["sparsity"], **learned) if learned is not None \
        else None
    if unit.kind == "learn":
        learned_run(run, closest_round(run.records, unit.payload["sparsity"]), learn).find()
        return []
    (root / IMAGES).mkdir(parents=True, exist_ok=True)
    output = root / IMAGES / f"{unit.id}.png"
    if unit.kind == "fit":
        row = fit_method(run, unit.payload["method"], unit.payload["sparsity"], output=output,
                         learn=learn)
        return [_row(unit, run.problem, row, output, root, run.problem)]
    if unit.kind == "transfer":
        method = unit.payload.get("method", "ticket")
        target = make_problem(**unit.payload["target"])
        ticket = method_ticket(run, method, unit.payload["sparsity"], learn=learn)
        config = FitConfig(**unit.payload["target_fit"])  # the target task's own settings
        result = evaluate_ticket(ticket, target, config,
                                 stop=run.stop_factory() if run.stop_factory else None)
        save_image(result.averaged, output)
        row = method_row(method, ticket.sparsity, parameter_count(ticket.build(), ticket.mask),
                         result.scores, result.seconds)
        return [_row(unit, target, row, output, root, run.problem)]
    raise LipError(f"unknown unit kind {unit.kind!r}")


def finished_records(run) -> list[dict]:
    """The records of a finished IMP run, read without taking its lock (reading only)."""
    records = []
    for k in range(run.imp.n_rounds + 1):
        path = run.round_dir(k) / "record.json"
        if not path.is_file():
            raise LipError(f"IMP run {run.folder} has not finished round {k}; run its search "
                           "unit first")
        records.append(json.loads(path.read_text()))
    return records


def _problem_images(problem, root: Path) -> tuple[str, str | None]:
    """Observation and clean image PNGs of a problem (written once), relative to root."""
    folder = root / IMAGES / f"problem-{content_hash(problem.observation)}"
    observation, clean = folder / "observation.png", folder / "clean.png"
    if not observation.is_file():
        save_image(problem.observation, observation)
    if problem.clean is not None and not clean.is_file():
        save_image(problem.clean, clean)
    return (str(observation.relative_to(root)),
            str(clean.relative_to(root)) if problem.clean is not None else None)


def _row(unit: Unit, problem, row: dict, output: Path, root: Path, source) -> dict:
    """One results row: every setting a column, every labelled score, provenance."""
    p, fit = problem, unit.payload.get("target_fit", unit.payload["fit"])
    observation, clean = _problem_images(problem, root)
    settings = unit.payload["target"] if unit.kind == "transfer" else unit.payload["problem"]
    scores = {k: v for k, v in row.items() if k.startswith(("psnr_", "ssim_"))}
    return {
        "unit": unit.id, "kind": unit.kind, "image": p.image, "task": p.task,
        "sigma": settings.get("sigma"), "mask": settings.get("mask"),
        "keep": settings.get("keep"), "factor": settings.get("factor"),
        "size": settings.get("size"), "noise_seed": settings.get("noise_seed"),
        "model": unit.payload["model"], "model_options": json.dumps(unit.payload["model_options"],
                                                                    sort_keys=True),
        "steps": fit["steps"], "lr": fit["lr"], "input_noise": fit["input_noise"],
        "fast": fit["fast"], "imp": json.dumps(unit.payload["imp"], sort_keys=True),
        "imp_run": unit.payload["run"], "seed": fit["seed"],
        "method": row["method"].split(" ")[0], "method_label": row["method"],
        "requested_sparsity": unit.payload["sparsity"], "sparsity": row["sparsity"],
        "parameters": row["parameters"], "source_image": source.image,
        "source_task": source.task, **dict.fromkeys(SCORE_COLUMNS.values()),
        **scores, "metric": p.metric_name, "seconds": row.get("seconds"),
        "find_seconds": row.get("find_seconds"),
        "machine": _machine(), "version": __version__,
        "output": str(output.relative_to(root)), "observation": observation, "clean": clean,
    }


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return f"{platform.node()} ({cpu}, {gpu})"


def describe_cost(plan: Plan, done: set[str]) -> str:
    """The units left and a rough estimate of their cost on one CPU thread."""
    left = [u for u in plan.units if u.id not in done]
    seconds = sum(u.cost for u in left)
    kinds = {k: sum(1 for u in left if u.kind == k)
             for k in ("search", "learn", "fit", "transfer")}
    hours = seconds / 3600
    learned = f"{kinds['learn']} learned masks, " if kinds["learn"] else ""
    return (f"{len(left)} of {len(plan.units)} units left ({kinds['search']} searches, "
            f"{learned}{kinds['fit']} fits, {kinds['transfer']} transfers): about "
            f"{hours:.1f} CPU-thread hours ({math.ceil(seconds / 60)} min) by a rough cost model "
            "(paper network: ~0.25 s per 128x128 step per thread in fast mode); a GPU is "
            "typically 20-50x faster")

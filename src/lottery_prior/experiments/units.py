"""A spec expanded into units of work, each named by its identity (:mod:`lottery_prior.runs`).

* ``search``: one IMP run per image x task x noise seed x seed; its id is the run folder's
  name (``imp-<hash>``: the problem's content, model, fit, IMP and stop settings), so sweeps,
  ``lip find`` and ``lip compare`` share runs;
* ``learn``: a mask learned at theta0, matched to the search's round nearest a requested
  sparsity (needs the search; kept in a ``learned-<hash>`` run folder);
* ``fit``: one method at one sparsity on the search's own observation (needs the search, and
  for ``learned`` the learn unit); the dense network and the Deep Decoder are fits too;
* ``transfer``: a method's mask found on one search, retrained on another image or task
  (needs what the mask needs, and the target's search, whose ticket it is compared with);
* ``classical``: a classical method (BM3D, biharmonic, bicubic, ...) on one observation,
  run once and shared by every network seed and search target (it needs nothing; its row
  pairs with the fits of the same observation).

A fit, learn or transfer unit is named ``<kind>-<hash>`` of its identity: the search it is
matched to (content-addressed), the method and its settings with every default resolved,
the sparsity, the fit settings it runs with and, for a transfer, the target's content. Where
it runs (device, workers, Ray) is not part of any id. ``run_unit`` does a unit's work in any
process from its JSON-ready payload and returns its result rows.
"""

from __future__ import annotations

import json
import logging
import math
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from lottery_prior import __version__
from lottery_prior.compare import MethodFit, fit_method, transfer_method
from lottery_prior.errors import LipError
from lottery_prior.experiments.spec import Spec
from lottery_prior.experiments.store import Store
from lottery_prior.finders import FinderOptions, Match, make_finder
from lottery_prior.finders.classical import library_version
from lottery_prior.finders.learned import LearnedMask
from lottery_prior.fit import FitConfig
from lottery_prior.images import save_image
from lottery_prior.learned import LearnConfig
from lottery_prior.lottery import ImpConfig, ImpRun
from lottery_prior.operators import TASK_DEFAULTS
from lottery_prior.problem import content_hash, make_problem
from lottery_prior.runs import identity_hash
from lottery_prior.scores import SCORE_COLUMNS
from lottery_prior.stopping import resolve_rule

log = logging.getLogger("lottery_prior")
RUNS = "runs"  # IMP and learned-mask run folders, below the results folder
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
    root: Path
    units: list[Unit] = field(default_factory=list)
    runs: dict[str, ImpRun] = field(default_factory=dict)  # search id -> its IMP run
    rough: bool = False  # some cost comes from the rough model, not a timing measured here
    busy: str = ""  # why a timing it comes from runs high (measured on a busy machine)

    def by_id(self) -> dict[str, Unit]:
        return {u.id: u for u in self.units}

    def done(self, store: Store) -> set[str]:
        """The units whose results are there and intact: a fit's or transfer's rows and
        image; a search's or learned mask's run folder, finished and readable (a deleted or
        damaged one is computed again)."""
        return {u.id for u in self.units if (
            self._finished(u) if u.kind in ("search", "learn") else
            store.rows(u.id) is not None
            and all((store.root / r["output"]).is_file() for r in store.rows(u.id)))}

    def _finished(self, unit: Unit) -> bool:
        run = self.runs[unit.deps[0] if unit.deps else unit.id]
        records = run.finished()
        if records is None or unit.kind == "search":
            return records is not None
        run.records = records
        finder = _learned(unit.payload)
        return finder.learned_run(Match.of(run, unit.payload["sparsity"])).finished() is not None


def expand(spec: Spec, root: Path) -> Plan:
    """Every unit of the spec (loading each image once to address its observation)."""
    plan = Plan(spec, Path(root))
    searches: dict[tuple, Unit] = {}
    learned: dict[str, dict[float, Unit]] = {}  # search id -> its learn units by sparsity
    imps = [ImpConfig(**{**_imp_settings(spec), "target": target,
                         "target_sparsity": spec.max_sparsity}) for target in spec.targets]
    for task in spec.tasks:
        for image in spec.images_of(task):
            for noise_seed in spec.noise_seeds:
                problem_args = {"image": image, "task": task.name, "size": spec.size,
                                "noise_seed": noise_seed, **task.for_image(image)}
                for imp in imps:
                    for seed in spec.seeds:
                        search = _search_unit(plan, spec, problem_args, seed, imp)
                        searches[(image, task.name, noise_seed, seed, imp.target)] = search
                        plan.units.append(search)
                        learns = learned[search.id] = _learn_units(spec, search)
                        plan.units += learns.values()
                        plan.units += _fit_units(spec, search, learns)
                plan.units += _classical_units(spec, problem_args,
                                               plan.runs[search.id].problem)
    for (image, task, noise_seed, seed, imp_target), search in searches.items():
        for t_image, t_task in _transfer_targets(spec, image, task):
            target = searches[(t_image, t_task, noise_seed, seed, imp_target)]
            for s in spec.transfer_sparsities:
                for method in spec.transfer_methods:
                    plan.units.append(_transfer_unit(plan, spec, search, target, method, s,
                                                     learned[search.id]))
    return plan


def _imp_settings(spec: Spec) -> dict[str, Any]:
    settings = {k: v for k, v in spec.imp.items() if k != "target"}  # a grid factor
    if "keep_dense" in settings:
        settings["keep_dense"] = tuple(settings["keep_dense"])
    return settings


def _search_unit(plan: Plan, spec: Spec, problem_args: dict, seed: int, imp: ImpConfig) -> Unit:
    payload = {"problem": problem_args, "model": spec.model, "model_options": spec.model_options,
               "fit": _fit_settings(spec, problem_args["task"], seed), "imp": imp.hashed(),
               "stop": resolve_rule(spec.fit.get("stop")) or "none"}
    run = imp_run(payload, plan.root)  # its precision resolved here (auto: measured)
    payload["fit"] = asdict(run.fit_config) | {"device": None}
    plan.runs[run.name] = run
    pixels = run.problem.shape[1] * run.problem.shape[2]
    per_step, busy = _measured_per_step(spec, run)
    plan.busy = plan.busy or busy
    if per_step is None:
        per_step = _seconds_per_step(spec, pixels, run.fit_config.precision)
        plan.rough = True
    payload["full_cost"] = run.fit_config.steps * per_step
    search_steps = sum(run.round_steps(k) for k in range(imp.n_rounds + 1))
    return Unit(run.name, "search", payload, cost=search_steps * per_step,
                label=f"search {problem_args['image']}:{problem_args['task']} seed {seed}"
                f" (noise {problem_args['noise_seed']}), {imp.n_rounds} rounds"
                + ("" if imp.target == "observation" else f", on the {imp.target} image"))


def _where(search: Unit) -> str:
    problem = search.payload["problem"]
    return f"{problem['image']}:{problem['task']} seed {search.payload['fit']['seed']}"


def _options(spec: Spec) -> FinderOptions:
    return FinderOptions(learn=LearnConfig(sparsity=0.5, **spec.learned))


def _method_identity(spec: Spec, search: Unit, method: str, sparsity: float,
                     fit: dict) -> dict:
    """What names a method's unit: the search, the method and its resolved settings, the
    sparsity and the fit settings it runs with (never the device)."""
    finder = make_finder(method, _options(spec))
    config = finder.fit_config(FitConfig(**fit))
    return {"search": search.id, "method": method, "sparsity": sparsity,
            "finder": finder.identity(sparsity), "fit": config.identity()}


def _learn_units(spec: Spec, search: Unit) -> dict[float, Unit]:
    """One learn unit per sparsity at which a learned mask is fitted or transferred."""
    wanted = set(spec.sparsities) if "learned" in spec.methods else set()
    if "learned" in spec.transfer_methods:
        wanted |= set(spec.transfer_sparsities)
    units = {}
    for s in sorted(wanted):
        learned = LearnedMask(LearnConfig(sparsity=s, **spec.learned)).identity(s)
        identity = {"search": search.id, "sparsity": s, "learned": learned}
        payload = {"search": search.payload, "sparsity": s, "learned": learned}
        steps = learned["steps"]
        units[s] = Unit(f"learn-{identity_hash(identity)}", "learn", payload, (search.id,),
                        cost=search.payload["full_cost"] * steps / search.payload["fit"]["steps"],
                        label=f"learn a mask at {s:.0%}, {_where(search)}")
    return units


def _needs(search: Unit, learns: dict[float, Unit], method: str, sparsity: float) -> tuple:
    return (search.id, learns[sparsity].id) if method == "learned" else (search.id,)


def _fit_units(spec: Spec, search: Unit, learns: dict[float, Unit]) -> list[Unit]:
    units = []
    for method in spec.network_methods():
        for s in [0.0] if method == "dense" else spec.sparsities:
            identity = _method_identity(spec, search, method, s, search.payload["fit"])
            payload = {"search": search.payload, "method": method, "sparsity": s,
                       "learned": identity["finder"] or None}
            units.append(Unit(f"fit-{identity_hash(identity)}", "fit", payload,
                              _needs(search, learns, method, s),
                              cost=search.payload["full_cost"],
                              label=f"{method} at {s:.0%}, {_where(search)}"))
    return units


def _classical_units(spec: Spec, problem_args: dict, problem) -> list[Unit]:
    """One unit per classical method of the task on this observation (a method whose optional
    library is missing here is left out, with a one-line note)."""
    units = []
    for method in spec.classical_methods(problem_args["task"]):
        finder = make_finder(method)
        why = finder.available()
        if why:
            log.warning("%s left out: %s", method, why)
            continue
        identity = {"problem": problem.describe(), "method": method,
                    "library": library_version(finder.library)}
        units.append(Unit(f"classical-{identity_hash(identity)}", "classical",
                          {"problem": problem_args, "method": method}, cost=5.0,
                          label=f"{method} on {problem_args['image']}:{problem_args['task']}"
                          f" (noise {problem_args['noise_seed']})"))
    return units


def _transfer_unit(plan: Plan, spec: Spec, search: Unit, target: Unit, method: str,
                   sparsity: float, learns: dict[float, Unit]) -> Unit:
    identity = _method_identity(spec, search, method, sparsity, target.payload["fit"])
    identity |= {"target": plan.runs[target.id].problem.describe(), "target_search": target.id}
    payload = {"search": search.payload, "method": method, "sparsity": sparsity,
               "learned": identity["finder"] or None, "target": target.payload}
    source, dest = search.payload["problem"], target.payload["problem"]
    return Unit(f"transfer-{identity_hash(identity)}", "transfer", payload,
                _needs(search, learns, method, sparsity) + (target.id,),
                cost=target.payload["full_cost"],
                label=f"transfer {'' if method == 'ticket' else method + ' '}"
                f"{source['image']}:{source['task']} -> {dest['image']}:{dest['task']} at "
                f"{sparsity:.0%}, seed {search.payload['fit']['seed']}")


def _transfer_targets(spec: Spec, image: str, task: str) -> list[tuple[str, str]]:
    targets = []
    if spec.across_images:
        own = next(t for t in spec.tasks if t.name == task)
        targets += [(other, task) for other in spec.images_of(own) if other != image]
    targets += [(image, to) for src, to in spec.across_tasks if src == task]
    return targets


def _fit_settings(spec: Spec, task: str, seed: int) -> dict:
    """Every fit setting resolved: the task's defaults, the spec's, the seed; no device."""
    defaults = TASK_DEFAULTS[task]
    given = {k: v for k, v in spec.fit.items() if k not in ("stop", "device")}
    config = FitConfig(**{"steps": defaults["steps"], "input_noise": defaults["input_noise"],
                          **given, "seed": seed})
    return asdict(config) | {"device": None}


def _measured_per_step(spec: Spec, run: ImpRun) -> tuple[float | None, str]:
    """Seconds per step of the spec's network on this problem as ``precision auto``
    measured them here (its cache; None when nothing was measured for it), and why they run
    high ("" unless measured on a busy machine)."""
    from lottery_prior.fit import select_device
    from lottery_prior.precision import busy, cache_key, read_cache

    key = cache_key(select_device(run.fit_config.device), spec.model,
                    dict(spec.model_options), tuple(run.problem.shape[1:]))
    entry = read_cache().get(key) or {}
    ms = entry.get("ms", {}).get(run.fit_config.precision)
    return (ms / 1000, busy(entry)) if ms else (None, "")


def _seconds_per_step(spec: Spec, pixels: int, precision: str) -> float:
    """A rough cost model: the paper network (width 128) takes ~0.25 s per 128x128 step on
    one CPU thread in bf16 (where it is native), ~0.5 s in fp32; time grows with pixels and
    width squared."""
    width = spec.model_options.get("width", 128) if spec.model == "dip" else 64
    base = 0.25 if precision in ("bf16", "fp16") else 0.5
    return base * pixels / 128**2 * (width / 128) ** 2


def imp_run(payload: dict, root: Path, device: str | None = None) -> ImpRun:
    """The IMP run a search payload names (its problem simulated again: the same, seeded);
    ``device`` says where its fits run (not part of its identity)."""
    search = payload.get("search", payload)
    imp = dict(search["imp"])
    imp["keep_dense"] = tuple(imp.get("keep_dense", ()))
    stop = search.get("stop", "none")
    fit = {k: v for k, v in search["fit"].items() if k != "device"}
    return ImpRun(make_problem(**search["problem"]), search["model"],
                  dict(search["model_options"]), FitConfig(**fit, device=device),
                  ImpConfig(**imp), root=Path(root) / RUNS,
                  stop=None if stop == "none" else stop)


def _learned(payload: dict) -> LearnedMask:
    learned = payload.get("learned")
    return LearnedMask(LearnConfig(sparsity=payload["sparsity"], **learned)
                       if learned else None)


def run_unit(unit: Unit, root: str | Path, device: str | None = None) -> list[dict]:
    """Do a unit's work (resuming what exists) and return its rows; any process can.
    ``device``: where its fits run (default: CUDA if available)."""
    root = Path(root)
    if unit.kind == "classical":
        return [_classical_row(unit, root)]
    run = imp_run(unit.payload, root, device)
    if unit.kind == "search":
        run.run()
        return []
    run.finished_records()
    sparsity = unit.payload["sparsity"]
    options = FinderOptions(learn=_learned(unit.payload).learn)
    if unit.kind == "learn":
        make_finder("learned", options).find(Match.of(run, sparsity))
        return []
    output = root / IMAGES / f"{unit.id}.png"
    output.parent.mkdir(parents=True, exist_ok=True)
    method = unit.payload["method"]
    if unit.kind == "fit":
        result = fit_method(run, method, sparsity, options=options, output=output)
        return _rows(unit, run, run, result, output, root)
    if unit.kind == "transfer":
        target = imp_run(unit.payload["target"], root, device)
        result = transfer_method(run, method, sparsity, target.problem, target.fit_config,
                                 options=options, output=output)
        return _rows(unit, run, target, result, output, root)
    raise LipError(f"unknown unit kind {unit.kind!r}")


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


def _rows(unit: Unit, source: ImpRun, target: ImpRun, fit: MethodFit, output: Path,
          root: Path) -> list[dict]:
    """A fit's rows: one per milestone of its fit settings (``score_at``; the column
    ``step`` says which), else one after its last step. Long rather than wide: a table
    filtered on ``step`` is the table of one fit length, and pandas/polars pivot it."""
    return [_row(unit, source, target, scored, output, root) | {"step": step}
            for step, scored in fit.by_milestone()]


def _row(unit: Unit, source: ImpRun, target: ImpRun, fit: MethodFit, output: Path,
         root: Path) -> dict:
    """One results row: every setting the fit ran with a column, every labelled score, the
    comparison it belongs to (``imp_run``: the search its mask was matched to;
    ``target_run``: the search of the image and task it was fitted on), provenance."""
    problem = target.problem
    settings = (unit.payload.get("target") or unit.payload["search"])["problem"]
    used = fit.settings()
    observation, clean = _problem_images(problem, root)
    stopped = fit.scores.get("stopped", {})
    return {
        "unit": unit.id, "kind": unit.kind, "image": problem.image, "task": problem.task,
        "sigma": settings.get("sigma"), "mask": settings.get("mask"),
        "keep": settings.get("keep"), "factor": settings.get("factor"),
        "size": settings.get("size"), "noise_seed": settings.get("noise_seed"),
        "model": used["model"], "model_options": json.dumps(used["model_options"],
                                                            sort_keys=True),
        "steps": fit.config.steps, "lr": fit.config.lr, "input_noise": fit.config.input_noise,
        "precision": fit.precision, "device": fit.device,
        "imp": json.dumps(unit.payload["search"]["imp"], sort_keys=True),
        "imp_run": source.name, "target_run": target.name, "seed": fit.config.seed,
        "search_target": source.imp.target,
        "method": fit.method, "method_label": fit.label,
        "requested_sparsity": unit.payload["sparsity"], "sparsity": round(fit.sparsity, 4),
        "parameters": fit.parameters, "mask_sha256": used["mask_sha256"],
        "source_image": source.problem.image, "source_task": source.problem.task,
        **dict.fromkeys(SCORE_COLUMNS.values()),
        **{k: v for k, v in fit.row().items() if k not in ("method", "sparsity", "parameters")},
        "step_stopped": stopped.get("step"), "stop_fired": stopped.get("fired"),
        "stop_step": stopped.get("stop_step"), "stop_rule": _rule_text(stopped.get("rule")),
        "metric": problem.metric_name, "machine": _machine(), "version": __version__,
        "output": str(output.relative_to(root)), "observation": observation, "clean": clean,
    }


def _classical_row(unit: Unit, root: Path) -> dict:
    """A classical method's row: the columns of a fit's row, its one output in ``final`` and
    ``averaged``, the oracle peaks, the stop and every network setting empty (not
    applicable), its library and version, and its resolved settings."""
    problem = make_problem(**unit.payload["problem"])
    restored = make_finder(unit.payload["method"]).restore(problem)
    output = root / IMAGES / f"{unit.id}.png"
    output.parent.mkdir(parents=True, exist_ok=True)
    save_image(restored.output, output)
    settings = unit.payload["problem"]
    observation, clean = _problem_images(problem, root)
    return {
        "unit": unit.id, "kind": "classical", "image": problem.image, "task": problem.task,
        **{k: settings.get(k) for k in ("sigma", "mask", "keep", "factor", "size",
                                        "noise_seed")},
        "model": None, "model_options": json.dumps(restored.settings, sort_keys=True),
        **dict.fromkeys(("steps", "lr", "input_noise", "precision", "imp", "imp_run",
                         "target_run", "seed")),
        "device": "cpu", "method": restored.method, "method_label": restored.label,
        **dict.fromkeys(("requested_sparsity", "sparsity", "parameters", "mask_sha256")),
        "source_image": problem.image, "source_task": problem.task,
        **dict.fromkeys(SCORE_COLUMNS.values()),
        **{k: v for k, v in restored.row().items() if k not in ("method", "sparsity",
                                                                "parameters")},
        **dict.fromkeys(("step_stopped", "stop_fired", "stop_step", "stop_rule")),
        "metric": problem.metric_name, "machine": _machine(), "version": __version__,
        "output": str(output.relative_to(root)), "observation": observation, "clean": clean,
    }


def _rule_text(rule: dict | None) -> str | None:
    """A stopping rule's settings in one cell: ``wmv(window=100, patience=200, keep=mean)``."""
    if not rule:
        return None
    options = ", ".join(f"{k}={v}" for k, v in rule.items() if k != "rule")
    return f"{rule['rule']}({options})"


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return f"{platform.node()} ({cpu}, {gpu})"


def describe_cost(plan: Plan, done: set[str]) -> str:
    """The units left and a rough estimate of their cost on one CPU thread."""
    left = [u for u in plan.units if u.id not in done]
    kinds = {k: sum(1 for u in left if u.kind == k)
             for k in ("search", "learn", "fit", "transfer", "classical")}
    seconds = cost_seconds(plan, done)
    learned = f"{kinds['learn']} learned masks, " if kinds["learn"] else ""
    classical = f", {kinds['classical']} classical" if kinds["classical"] else ""
    return (f"{len(left)} of {len(plan.units)} units left ({kinds['search']} searches, "
            f"{learned}{kinds['fit']} fits, {kinds['transfer']} transfers{classical}): about "
            f"{seconds / 3600:.1f} CPU-thread hours ({math.ceil(seconds / 60)} min) "
            + ("by a rough cost model (paper network: ~0.25 s per 128x128 step per thread in "
               "fast mode)" if plan.rough else "from the ms per step measured here by "
               "precision auto (dense network; the Deep Decoder is cheaper)")
            + (f", {plan.busy}: an overestimate" if plan.busy and not plan.rough else "")
            + "; a GPU is typically 20-50x faster")


def cost_seconds(plan: Plan, done: set[str]) -> float:
    """Estimated CPU-thread seconds of the units left."""
    return sum(u.cost for u in plan.units if u.id not in done)

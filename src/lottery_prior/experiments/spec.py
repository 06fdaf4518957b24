"""Experiment specs: a TOML file naming a grid of images x tasks x methods x sparsities x seeds.

Every key is checked: an unknown key or an impossible value is refused with its place in the
file (``grid.sparsities[2]: must be in (0, 1), got 1.5``). Example::

    name = "denoise-small"

    [grid]
    images = ["data:set5/*"]        # files, builtin:NAME, data:REL, globs of files or data:
    size = 128                      # centre-crop and resize (optional)
    seeds = [0, 1]                  # network seeds (init, z, input perturbation)
    noise_seeds = [0]               # observation seeds
    sparsities = [0.2, 0.5, 0.8, 0.95]
    methods = ["ticket", "random", "random-layerwise", "decoder", "dense", "classical"]
                                    # classical: the classical methods of each task (bm3d, ...)

    [[task]]
    name = "denoise"                # denoise | inpaint | sr
    sigma = 25
    [[task]]
    name = "inpaint"
    mask = "{image}_mask"           # a file per image ({image}: the image spec), text, or keep
    # images = ["data:inpainting/*"] # a task's own images (default: grid.images)

    [model]
    name = "dip"
    options = { width = 64 }

    [fit]                           # FitConfig fields; steps default to the task's
    steps = 1000
    fast = true
    stop = "wmv"                    # record the automatic stop in every fit (none: don't)

    [imp]                           # ImpConfig fields; rounds follow the largest sparsity
    search_steps = 100

    [learned]                       # LearnConfig fields of the method "learned" (optional)
    steps = 1100                    # default: an IMP search with 100-step rounds' steps

    [transfer]
    sparsities = [0.8]
    across_images = true            # each image's ticket on every other image, same task
    across_tasks = [["denoise", "inpaint"]]   # a ticket found for one task used for another
    methods = ["ticket", "learned"] # masks transferred (default: the IMP ticket)
"""

from __future__ import annotations

import glob
import json
import logging
import math
import re
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from lottery_prior.channels import CHANNEL_SCORES
from lottery_prior.checks import (
    MAX_GRID,
    MAX_ROUNDS,
    MAX_SIGMA,
    MAX_STEPS,
    MAX_UNITS,
    float_problem,
    int_problem,
    seed_problem,
    show,
)
from lottery_prior.errors import LipError
from lottery_prior.finders import REGISTRY, finder_names
from lottery_prior.finders.classical import CLASSICAL, classical_names
from lottery_prior.fit import FitConfig
from lottery_prior.images import (
    IMAGE_EXTENSIONS,
    check_size_fits_memory,
    data_root,
    inside_data_folder,
    memory_bytes,
)
from lottery_prior.learned import MAX_PER_FILTER, LearnConfig
from lottery_prior.lottery import STRUCTURES, TARGETS, ImpConfig
from lottery_prior.models import list_models
from lottery_prior.operators import TASK_DEFAULTS, TASKS
from lottery_prior.precision import PRECISIONS
from lottery_prior.stopping import SEARCH_RULES

log = logging.getLogger("lottery_prior")

MAX_TASKS = 100  # [[task]] tables
MAX_SIZE = 65_536  # grid.size in pixels (and what memory allows)
MAX_MODEL_WIDTH = 4096  # any whole-number model option (widths, channels)
MAX_MODEL_DEPTH = 16  # scales of the hourglass, layers of the Deep Decoder
MAX_PARAMETERS = 1_000_000_000


@dataclass(frozen=True)
class TaskSpec:
    """One task and the settings of its observation."""

    name: str
    settings: tuple[tuple[str, Any], ...] = ()
    images: tuple[str, ...] = ()  # its own images (none: the grid's)

    def for_image(self, image: str) -> dict[str, Any]:
        """``make_problem`` keyword arguments for an image (a mask template filled in)."""
        options = dict(self.settings)
        if isinstance(options.get("mask"), str) and "{image}" in options["mask"]:
            options["mask"] = mask_for(options["mask"], image)
        return options


def mask_for(template: str, image: str) -> str:
    """The mask file a template names for an image: ``{image}`` is the image without its
    extension; a file's mask gets the image's extension, or the first that exists."""
    if image.startswith(("data:", "builtin:")):
        return template.replace("{image}", image)
    path = Path(image)
    stem = str(path.with_suffix("")) if path.suffix.lower() in IMAGE_EXTENSIONS else image
    filled = template.replace("{image}", stem)
    if Path(filled).suffix.lower() in IMAGE_EXTENSIONS:
        return filled
    for ext in dict.fromkeys((path.suffix, *IMAGE_EXTENSIONS)):
        if ext and Path(filled + ext).is_file():
            return filled + ext
    return filled + path.suffix


@dataclass
class Spec:
    """A validated experiment spec (see the module docstring for the file format)."""

    name: str
    images: list[str]
    tasks: list[TaskSpec]
    sparsities: list[float]
    methods: list[str]
    seeds: list[int] = field(default_factory=lambda: [0])
    noise_seeds: list[int] = field(default_factory=lambda: [0])
    size: int | None = None
    model: str = "dip"
    model_options: dict[str, Any] = field(default_factory=dict)
    fit: dict[str, Any] = field(default_factory=dict)
    imp: dict[str, Any] = field(default_factory=dict)
    learned: dict[str, Any] = field(default_factory=dict)
    transfer_sparsities: list[float] = field(default_factory=list)
    transfer_methods: list[str] = field(default_factory=lambda: ["ticket"])
    across_images: bool = False
    across_tasks: list[tuple[str, str]] = field(default_factory=list)
    source: Path | None = None

    @property
    def targets(self) -> list[str]:
        """The search targets, a grid factor (``[imp] target``, one or a list)."""
        target = self.imp.get("target", "observation")
        return list(target) if isinstance(target, list) else [target]

    @property
    def max_sparsity(self) -> float:
        return max([*self.sparsities, *self.transfer_sparsities])

    def images_of(self, task: TaskSpec) -> list[str]:
        """The images of a task: its own, else the grid's."""
        return list(task.images) or self.images

    def network_methods(self) -> list[str]:
        """The methods that fit a network (matched to an IMP search)."""
        return [m for m in self.methods if m != CLASSICAL and not REGISTRY[m].classical]

    def classical_methods(self, task: str) -> list[str]:
        """The classical methods of a task: those named, and all of them for "classical"."""
        named = [m for m in self.methods if m != CLASSICAL and REGISTRY[m].classical]
        wanted = classical_names(task) if CLASSICAL in self.methods else []
        return [m for m in dict.fromkeys([*wanted, *named]) if REGISTRY[m].task == task]


def load_spec(path: str | Path) -> Spec:
    """Read and validate a spec file; a one-line error names the key at fault."""
    path = Path(path)
    if not path.is_file():
        raise LipError(f"no spec file {path}; give a TOML experiment spec")
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise LipError(f"{path} is not valid TOML ({_first_line(err)})") from None
    return parse_spec(data, name=default_name(path.stem), source=path)


def parse_spec(data: dict, name: str = "sweep", source: Path | None = None) -> Spec:
    """Validate the spec's data (a parsed TOML document); ``name`` is used when the spec has
    no ``name`` key (it must be a name too, see :func:`default_name`)."""
    where = f"{source}: " if source else ""
    try:
        if not isinstance(data, dict):
            raise _SpecError("spec", "must be a TOML document (a table of tables)")
        return _parse(data, name, source)
    except _SpecError as err:
        raise LipError(f"{where}{err.key}: {err.message}") from None


class _SpecError(Exception):
    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key, self.message = key, _first_line(message)


def _first_line(text: object) -> str:
    return (str(text).strip().splitlines() or [""])[0]


# A spec's name names its results folder (lip-out/sweeps/<name>): a name, never a path.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def name_problem(value: object) -> str | None:
    """What is wrong with ``value`` as a spec name, or None."""
    if not isinstance(value, str) or not NAME.fullmatch(value) or ".." in value:
        return ("must be a name of at most 100 letters, digits, '-', '_' and '.', starting "
                "with a letter or digit, with no '/' or '..' (it names the results folder "
                f"lip-out/sweeps/<name>), got {show(value)}")
    return None


def default_name(stem: str) -> str:
    """A spec file's stem made a valid name: other characters become '-', '..' becomes '.',
    at most 100 characters (``sweep`` if nothing is left)."""
    text = re.sub(r"[^A-Za-z0-9._-]+", "-", stem)
    text = re.sub(r"\.{2,}", ".", text)
    text = re.sub(r"^[._-]+", "", text)[:100].rstrip("._-")
    return text if NAME.fullmatch(text) else "sweep"


def _parse(data: dict, name: str, source: Path | None) -> Spec:
    _known("", data, set(TOP_KEYS) | {s for s in SECTIONS if s})
    spec_name = data.get("name", name)
    problem = name_problem(spec_name)
    if problem:
        raise _SpecError("name", problem)
    if "description" in data:
        _check(TOP_KEYS["description"](data["description"]), "description")
    grid = _table(data, "grid", required=True)
    _known("grid", grid, set(GRID_KEYS))
    tasks = data.get("task")
    images = _strings(grid, "grid.images", required=not (
        isinstance(tasks, list) and tasks and all(isinstance(t, dict) and "images" in t
                                                  for t in tasks)))
    methods = _strings(grid, "grid.methods", required=True)
    sparsities = _sparsities(grid.get("sparsities"), "grid.sparsities", required=True)
    seeds = _seeds(grid.get("seeds", [0]), "grid.seeds")
    noise_seeds = _seeds(grid.get("noise_seeds", [0]), "grid.noise_seeds")
    size = grid.get("size")
    if size is not None:
        _check(GRID_KEYS["size"](size), "grid.size")
        try:
            check_size_fits_memory(size)
        except LipError as err:
            raise _SpecError("grid.size", str(err).replace("--size", "size")) from None

    if not isinstance(tasks, list) or not tasks:
        raise _SpecError("task", "give at least one [[task]] table (name = denoise|inpaint|sr)")
    if len(tasks) > MAX_TASKS:
        raise _SpecError("task", f"at most {MAX_TASKS} [[task]] tables, got {len(tasks)}")
    task_specs = [_task(t, f"task[{i}]") for i, t in enumerate(tasks)]

    model = _table(data, "model")
    _known("model", model, set(MODEL_KEYS))
    model_name = model.get("name", "dip")
    _check(MODEL_KEYS["name"](model_name), "model.name")
    options = model.get("options", {})
    if not isinstance(options, dict):
        raise _SpecError("model.options", "must be a table, e.g. { width = 64 }")

    fit = _precision(_settings(data, "fit", FIT_CHECKS))
    imp = _settings(data, "imp", IMP_CHECKS)
    learned = _settings(data, "learned", LEARNED_CHECKS)
    structure = imp.get("structure", "weights")
    for i, method in enumerate(methods):
        _method(method, f"grid.methods[{i}]", structure)
        if method in REGISTRY and REGISTRY[method].classical and not any(
                t.name == REGISTRY[method].task for t in task_specs):
            raise _SpecError(f"grid.methods[{i}]", f"{method!r} restores "
                             f"{REGISTRY[method].task}, which no [[task]] of the spec is")

    transfer = _table(data, "transfer")
    _known("transfer", transfer, set(TRANSFER_KEYS))
    transfer_methods = _strings(transfer, "transfer.methods") or ["ticket"]
    for i, method in enumerate(transfer_methods):
        _method(method, f"transfer.methods[{i}]", structure, transfer=True)
    across_images = transfer.get("across_images", False)
    _check(TRANSFER_KEYS["across_images"](across_images), "transfer.across_images")
    pairs = transfer.get("across_tasks", [])
    names = [t.name for t in task_specs]
    if not isinstance(pairs, list):
        raise _SpecError("transfer.across_tasks", "must be a list of [from, to] task pairs")
    for i, pair in enumerate(pairs):
        if (not isinstance(pair, list) or len(pair) != 2 or pair[0] == pair[1]
                or any(not isinstance(p, str) or p not in names for p in pair)):
            raise _SpecError(f"transfer.across_tasks[{i}]", f"must be two different tasks of "
                             f"the spec ({', '.join(names)}), got {show(pair)}")
        own = {t.name: t.images for t in task_specs}
        if own[pair[0]] != own[pair[1]]:
            raise _SpecError(f"transfer.across_tasks[{i}]", "a ticket is transferred to the "
                             "same image's other task: give both tasks the same images")
    has_transfer = across_images or bool(pairs)
    transfer_sparsities = _sparsities(transfer.get("sparsities"), "transfer.sparsities",
                                      required=has_transfer)
    expanded = _expand_images(images)
    if len(expanded) > MAX_GRID:
        raise _SpecError("grid.images", f"at most {MAX_GRID:,} images in one grid, got "
                         f"{len(expanded):,}; split the sweep into several specs")
    spec = Spec(
        name=spec_name, images=expanded, tasks=task_specs,
        sparsities=sparsities, methods=methods, seeds=seeds, noise_seeds=noise_seeds,
        size=size, model=model_name, model_options=options, fit=fit, imp=imp, learned=learned,
        transfer_sparsities=transfer_sparsities if has_transfer else [],
        transfer_methods=list(dict.fromkeys(transfer_methods)),
        across_images=across_images, across_tasks=[tuple(p) for p in pairs], source=source)
    _check_units(spec)
    _check_settings(spec)
    return spec


def _check(problem: str | None, key: str) -> None:
    if problem:
        raise _SpecError(key, problem)


@dataclass(frozen=True)
class Key:
    """One key of a spec table: what it means, its type, bounds and default, and its check.

    The validator checks values with it (``key(value)`` returns what is wrong, or None) and
    the documentation's spec reference is generated from the same objects, so the two never
    disagree. ``required`` keys have no default."""

    type: str
    doc: str
    default: Any = None
    bounds: str = ""
    check: Callable[[object], str | None] | None = None
    required: bool = False
    tasks: tuple[str, ...] = ()  # task keys: the tasks that take it

    def __call__(self, value: object) -> str | None:
        return self.check(value) if self.check is not None else None

    @property
    def default_text(self) -> str:
        """The default as the reference shows it."""
        if self.required:
            return "required"
        if isinstance(self.default, str) and not self.default.startswith("="):
            return self.default
        value = self.default[1:] if isinstance(self.default, str) else self.default
        return "`" + (json.dumps(value) if not isinstance(value, str) else value) + "`"


def _whole(minimum: int, maximum: int | None, doc: str, default: Any = None) -> Key:
    bounds = f"{minimum:,} to {maximum:,}" if maximum is not None else f">= {minimum:,}"
    return Key("whole number", doc, default, bounds,
               lambda v: int_problem(v, minimum, maximum))


def _real(low: float | None, high: float | None, doc: str, default: Any = None, *,
          low_open: bool = False, high_open: bool = False) -> Key:
    if high is None:
        bounds = f"{'>' if low_open else '>='} {low:g}"
    else:
        bounds = (f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}")
    return Key("number", doc, default, bounds,
               lambda v: float_problem(v, low, high, low_open=low_open, high_open=high_open))


def _choice(choices: Sequence[str], doc: str, default: Any = None) -> Key:
    choices = tuple(choices)

    def problem(v: object) -> str | None:
        if not isinstance(v, str) or v not in choices:
            return f"must be {' or '.join(choices)}, got {show(v)}"
        return None
    return Key("string", doc, default, " | ".join(choices), problem)


def _boolean(doc: str, default: bool = False) -> Key:
    return Key("true or false", doc, f"={json.dumps(default)}", "",
               lambda v: None if isinstance(v, bool) else f"must be true or false, got {show(v)}")


def _targets(v: object) -> str | None:
    values = v if isinstance(v, list) else [v]
    if not values or len(set(map(str, values))) < len(values):
        return (f"must be {' or '.join(TARGETS)}, or a list of them without repeats, got "
                f"{show(v)}")
    for target in values:
        if target not in TARGETS:
            return f"must be {' or '.join(TARGETS)} (or a list of them), got {show(target)}"
    return None


def _steps(v: object) -> str | None:
    if not isinstance(v, list) or len(v) > 64:
        return f"must be a list of at most 64 steps, e.g. [1000, 3000], got {show(v)}"
    for s in v:
        problem = int_problem(s, 1, MAX_STEPS)
        if problem:
            return problem
    return None


def _device(v: object) -> str | None:
    import torch

    try:
        if isinstance(v, str) and len(v) <= 32:
            torch.device(v)
            return None
    except (RuntimeError, ValueError):
        pass
    return f"must be a device name such as cpu, cuda or cuda:1, got {show(v)}"


def _patterns(v: object) -> str | None:
    if (not isinstance(v, list) or len(v) > 1000
            or not all(isinstance(p, str) and p for p in v)):
        return f"must be a list of glob patterns of weight names (e.g. [\"head.*\"]), got {show(v)}"
    return None


def _is_string(v: object) -> str | None:
    return None if isinstance(v, str) else f"must be a string, got {show(v)}"


def _field(cls: type, name: str) -> str:
    """A dataclass field's default, as the reference shows it (read from the class)."""
    return "=" + json.dumps(cls.__dataclass_fields__[name].default)


_STEPS = ", ".join(f"{s['steps']} ({t})" for t, s in TASK_DEFAULTS.items())
_NOISE = ", ".join(f"{s['input_noise']:.4g} ({t})" for t, s in TASK_DEFAULTS.items())

# Each table's keys. The validator checks every value with its key, and the documentation
# (the sweep-spec reference) is generated from these same tables.
TOP_KEYS = {
    "name": Key("string", "the sweep's name: it names the results folder "
                "`lip-out/sweeps/<name>` (letters, digits, `-`, `_`, `.`, at most 100)",
                "the file's stem", "a name", lambda v: name_problem(v)),
    "description": Key("string", "free text, for people", "none", "", _is_string),
}
GRID_KEYS = {
    "images": Key("list of strings", "image files, `builtin:NAME`, `data:REL`, or globs of "
                  f"files or `data:` names (at most {MAX_GRID:,} images; `*_mask` files are "
                  "left out); needed unless every [[task]] names its own images",
                  required=True),
    "size": _whole(8, MAX_SIZE, "centre-crop and resize every image to size x size first "
                   "(and what memory allows)", "the image's own size"),
    "seeds": Key("list of whole numbers", "network seeds (θ₀, z, input perturbation)",
                 "=[0]", f"0 to 2**63 - 1, at most {MAX_GRID:,}"),
    "noise_seeds": Key("list of whole numbers", "observation seeds (noise, Bernoulli masks)",
                       "=[0]", f"0 to 2**63 - 1, at most {MAX_GRID:,}"),
    "sparsities": Key("list of numbers", "sparsities every method is compared at",
                      bounds=f"each in (0, 1), at most {MAX_GRID:,}", required=True),
    "methods": Key("list of strings", "methods: names of the finder registry (see the "
                   "finders table); `classical` adds each task's classical methods (bm3d, "
                   "biharmonic, bicubic, ...)",
                   bounds="registered finders that suit imp.structure, classical methods",
                   required=True),
}
TASK_KEYS_DOC = {
    "name": _choice(TASKS, "the task", None),
    "sigma": _real(0, MAX_SIGMA, "noise level in 0-255 units", "=25", low_open=True),
    "mask": Key("string", "inpainting mask: a file, a `data:` name, `text`, or a template "
                "with `{image}` (each image's own mask, e.g. `{image}_mask`)",
                "a Bernoulli mask (keep)", "not with keep"),
    "keep": _real(0, 1, "inpainting: the fraction of pixels kept by a Bernoulli mask",
                  "=0.5", low_open=True),
    "factor": Key("whole number", "super-resolution factor", "=4", "2 | 4 | 8",
                  lambda v: None if (isinstance(v, int) and not isinstance(v, bool)
                                     and v in (2, 4, 8)) else
                  f"must be 2, 4 or 8, got {show(v)}"),
    "images": Key("list of strings", "this task's own images, as in grid.images (e.g. the "
                  "inpainting images with their masks beside Set5 for the other tasks)",
                  "grid.images"),
}
TASK_KEYS_DOC = {k: (replace(key, required=True) if k == "name" else replace(
    key, tasks=tuple(t for t, keys in {"denoise": {"sigma", "images"},
                                       "inpaint": {"mask", "keep", "images"},
                                       "sr": {"factor", "images"}}.items() if k in keys)))
                 for k, key in TASK_KEYS_DOC.items()}
TASK_KEYS = {task: {k for k, key in TASK_KEYS_DOC.items() if task in key.tasks}
             for task in TASKS}
MODEL_KEYS = {
    "name": _choice(list_models(), "the network", '="dip"'),
    "options": Key("table", "the model's options, e.g. `{ width = 32, scales = 4 }` (whole "
                   f"numbers at most {MAX_MODEL_WIDTH:,}; scales and layers at most "
                   f"{MAX_MODEL_DEPTH}); the network must fit this machine's memory", "={}"),
}
FIT_CHECKS = {
    "steps": _whole(1, MAX_STEPS, "Adam steps of every fit", f"the task's: {_STEPS}"),
    "lr": _real(0, None, "Adam learning rate", _field(FitConfig, "lr"), low_open=True),
    "input_noise": _real(0, None, "std of the input perturbation",
                         f"the task's: {_NOISE}; 0 for the Deep Decoder"),
    "precision": _choice(PRECISIONS, "the precision of every fit: auto (the fastest here, "
                         "measured once per machine, network and size), fp32, fp32-cl, bf16 "
                         "(native on AMX, AVX-512 BF16 and Ampere+ GPUs), fp16 (CUDA)",
                         _field(FitConfig, "precision")),
    "fast": _boolean("an alias: true for precision = \"auto\", false for \"fp32\" (it meant "
                     "bf16 before 0.3); not with precision"),
    "stop": _choice(("auto", *SEARCH_RULES, "none"), "also score every fit at the automatic "
                    "stop (no oracle): auto (= discrepancy), discrepancy, wmv (ES-WMV) "
                    "or none", '="none"'),
    "device": Key("string", "where every fit runs (`lip sweep --device` overrides it)",
                  "CUDA if available", "cpu, cuda, cuda:N", _device),
    "score_at": Key("list of whole numbers", "milestones: steps at which every fit is also "
                    "scored (one row per milestone, column `step`; `lip report --at STEP`)",
                    "=[] (after the last step only)", "each 1 to steps", _steps),
}
IMP_CHECKS = {
    "rate": _real(0, 1, "fraction of the remaining weights (or channels) pruned a round",
                  _field(ImpConfig, "rate"), low_open=True, high_open=True),
    "layerwise": _boolean("prune each layer by the rate instead of one global threshold",
                          ImpConfig.layerwise),
    "rewind_step": _whole(0, MAX_STEPS, "rewind to the dense fit's weights at this step "
                          "(0: θ₀)", _field(ImpConfig, "rewind_step")),
    "keep_dense": Key("list of strings", "glob patterns of weight names never pruned",
                      "=[]", "at most 1000", _patterns),
    "target": Key("string or list of strings", "what the search fits: the observation, or "
                  "the clean image (the reference code's oracle; scores are still fits on the "
                  "observation); a list is a grid factor: one search of each",
                  _field(ImpConfig, "target"), " | ".join(TARGETS), _targets),
    "search_steps": _whole(1, MAX_STEPS, "steps of a searching round (the last round runs "
                           "fit.steps)", "fit.steps"),
    "early_bird": _real(0, 1, "end a searching round once its next mask changes by less than "
                        "this fraction", "none", low_open=True, high_open=True),
    "early_bird_every": _whole(1, MAX_STEPS, "steps between early-bird checks",
                               _field(ImpConfig, "early_bird_every")),
    "structure": _choice(STRUCTURES, "prune single weights or whole output channels",
                         _field(ImpConfig, "structure")),
    "channel_score": _choice(CHANNEL_SCORES, "how channels are ranked (structure = "
                             "\"channels\")", _field(ImpConfig, "channel_score")),
}
LEARNED_CHECKS = {
    "steps": _whole(1, MAX_STEPS, "mask-learning steps", "those of an IMP search with "
                    "100-step rounds to the same sparsity"),
    "lr": _real(0, None, "Adam learning rate of the mask logits", _field(LearnConfig, "lr"),
                low_open=True),
    "temperature": _real(0, None, "temperature of the binary concrete relaxation",
                         _field(LearnConfig, "temperature"), low_open=True),
    "kl": _real(0, None, "weight of the KL to Bernoulli(target density)",
                _field(LearnConfig, "kl")),
    "allocation": _choice(("global", "erk"), "rank logits over all layers, or within each "
                          "layer with Erdős–Rényi-kernel budgets",
                          _field(LearnConfig, "allocation")),
    "per_filter": _whole(0, MAX_PER_FILTER, "weights every output filter keeps first",
                         _field(LearnConfig, "per_filter")),
}
TRANSFER_KEYS = {
    "sparsities": Key("list of numbers", "sparsities whose masks are transferred (required "
                      "when anything is transferred)", "none",
                      f"each in (0, 1), at most {MAX_GRID:,}"),
    "across_images": _boolean("each image's mask retrained on every other image, same task"),
    "across_tasks": Key("list of [from, to] pairs", "a mask found for one task retrained "
                        "for another", "=[]", "tasks of the spec"),
    "methods": Key("list of strings", "the masks transferred", "=[\"ticket\"]",
                   "transferable finders"),
}
SECTIONS = {
    "": TOP_KEYS, "grid": GRID_KEYS, "task": TASK_KEYS_DOC, "model": MODEL_KEYS,
    "fit": FIT_CHECKS, "imp": IMP_CHECKS, "learned": LEARNED_CHECKS,
    "transfer": TRANSFER_KEYS,
}
"""Every table of a spec and its keys (``task`` is the array of ``[[task]]`` tables)."""
FIT_KEYS = set(FIT_CHECKS)
IMP_KEYS = set(IMP_CHECKS)
LEARNED_KEYS = set(LEARNED_CHECKS)


def _settings(data: dict, section: str, checks: dict) -> dict:
    """A settings table, every key known and every value checked (``fit.steps: …``)."""
    table = _table(data, section)
    _known(section, table, set(checks))
    for key, value in table.items():
        _check(checks[key](value), f"{section}.{key}")
    return table


def _precision(fit: dict) -> dict:
    """``fit.fast`` is an alias: true for ``precision = "auto"``, false for ``"fp32"``."""
    if "fast" not in fit:
        return fit
    if "precision" in fit:
        raise _SpecError("fit.fast", "give precision or fast (its old alias), not both")
    fit = dict(fit)
    fit["precision"] = "auto" if fit.pop("fast") else "fp32"
    log.info("fit.fast is an alias of precision = %r (it meant bf16 before 0.3)",
             fit["precision"])
    return fit


def _check_units(spec: Spec) -> None:
    """Refuse a grid whose rounds or number of fits are past sane bounds, with their place."""
    from lottery_prior.lottery import ImpConfig

    rate = spec.imp.get("rate", ImpConfig.rate)
    rounds = math.log1p(-spec.max_sparsity) / math.log1p(-rate)  # inf for a rate of 1e-320
    if rounds - 1e-9 > MAX_ROUNDS:
        key = "imp.rate" if "rate" in spec.imp else (
            "grid.sparsities" if spec.max_sparsity in spec.sparsities else "transfer.sparsities")
        count = f"{math.ceil(rounds - 1e-9):,} rounds" if rounds < 1e15 else "countless rounds"
        raise _SpecError(key, f"pruning {show(rate)} a round to {show(spec.max_sparsity)} "
                         f"sparsity takes {count}, more than {MAX_ROUNDS}; raise imp.rate or "
                         "lower the largest sparsity")
    searches = (sum(len(spec.images_of(t)) for t in spec.tasks) * len(spec.noise_seeds)
                * len(spec.seeds) * len(spec.targets))
    per_search = len(spec.methods) * len(spec.sparsities)
    targets = (len(spec.images) - 1 if spec.across_images else 0) + len(spec.across_tasks)
    per_search += targets * len(spec.transfer_sparsities) * len(spec.transfer_methods)
    units = searches * (1 + per_search)
    if units > MAX_UNITS:
        raise _SpecError("grid", f"the grid makes about {units:,} searches, fits and "
                         f"transfers, more than {MAX_UNITS:,}; split it into several specs")


def _check_settings(spec: Spec) -> None:
    """Build each part's config once so impossible values are refused before any work; a
    refusal names the key at fault (``fit.steps``, ``model.options.width``)."""
    from lottery_prior.fit import FitConfig
    from lottery_prior.learned import LearnConfig
    from lottery_prior.lottery import ImpConfig

    model = _model(spec)
    if spec.size is not None:
        try:
            model.check_size(spec.size, spec.size)
        except LipError as err:
            raise _SpecError("grid.size", str(err)) from None
    _build("fit", FitConfig, {k: v for k, v in spec.fit.items() if k != "stop"})
    _build("imp", ImpConfig,
           {k: tuple(v) if k == "keep_dense" else v for k, v in spec.imp.items()
            if k != "target"})
    _build("learned", LearnConfig, spec.learned, sparsity=0.5)


def _build(section: str, factory, settings: dict, **fixed: Any):
    """``factory(**fixed, **settings)``, or a _SpecError naming the key that fails alone (the
    table if only a combination fails)."""
    try:
        return factory(**fixed, **settings)
    except (LipError, TypeError, ValueError, OverflowError) as err:
        for key, value in settings.items():
            try:
                factory(**fixed, **{key: value})
            except (LipError, TypeError, ValueError, OverflowError) as single:
                raise _SpecError(f"{section}.{key}", str(single)) from None
        raise _SpecError(section, str(err)) from None


def _model(spec: Spec):
    """The network, built on the meta device (no memory, no time), with its options checked:
    whole numbers bounded, and at most as many parameters as this machine can train."""
    import torch

    from lottery_prior.models import create_model

    for key, value in spec.model_options.items():
        for i, v in enumerate(value if isinstance(value, list) else [value]):
            place = f"model.options.{key}" + (f"[{i}]" if isinstance(value, list) else "")
            if isinstance(value, list) and len(value) > 64:
                raise _SpecError(f"model.options.{key}", f"at most 64 values, got {len(value)}")
            if isinstance(v, int) and not isinstance(v, bool):
                top = MAX_MODEL_DEPTH if key in ("scales", "layers") else MAX_MODEL_WIDTH
                _check(int_problem(v, 0, top), place)
    with torch.device("meta"):
        model = _build("model.options", lambda **o: create_model(spec.model, **o),
                       spec.model_options)
    n = sum(p.numel() for p in model.parameters())
    if n > max_parameters():
        raise _SpecError("model.options", f"the network would have {n:,} parameters, more "
                         f"than the {max_parameters():,} this machine can train; make it "
                         "narrower or shallower")
    return model


def max_parameters() -> int:
    """The most parameters a fit can train here: weights, gradients and Adam's two moments in
    float32 within this machine's memory (and never more than a billion)."""
    have = memory_bytes()
    return int(min(MAX_PARAMETERS, have // 16)) if have else MAX_PARAMETERS


def _method(method: str, key: str, structure: str, transfer: bool = False) -> None:
    """A method of the finder registry that fits the search's structure (and, to be
    transferred, whose ticket is a mask of the searched network)."""
    wanted = finder_names(structure=structure, transferable=True if transfer else None)
    if not transfer:
        wanted.append(CLASSICAL)
    if method not in wanted:
        why = ("unknown method" if method not in REGISTRY else
               "not a mask method that can be transferred" if transfer and
               not REGISTRY[method].transferable else
               f"matched to {REGISTRY[method].structure} tickets, and the search prunes "
               f"{structure} (imp.structure)")
        raise _SpecError(key, f"{method!r}: {why}; use one of {', '.join(wanted)}")


def _task(table: Any, key: str) -> TaskSpec:
    if not isinstance(table, dict):
        raise _SpecError(key, "must be a table with name = denoise|inpaint|sr")
    name = table.get("name")
    _check(TASK_KEYS_DOC["name"](name), f"{key}.name")
    _known(key, table, {"name"} | TASK_KEYS[name])
    images = _expand_images(_strings(table, f"{key}.images"), f"{key}.images")
    settings = {k: v for k, v in table.items() if k not in ("name", "images")}
    for k, value in settings.items():
        _check(TASK_KEYS_DOC[k](value), f"{key}.{k}")
    if "mask" in settings and (not isinstance(settings["mask"], str) or not settings["mask"]):
        raise _SpecError(f"{key}.mask", "must be a mask file, data: name or \"text\" (a "
                         "string; {image} stands for each image), got "
                         f"{show(settings['mask'])}")
    if "mask" in settings and "keep" in settings:
        raise _SpecError(key, "give mask or keep, not both")
    return TaskSpec(name, tuple(sorted(settings.items())), tuple(images))


def _expand_images(specs: list[str], key: str = "grid.images") -> list[str]:
    """Globs of files and of ``data:`` paths become the matching image specs, sorted."""
    images: list[str] = []
    for i, spec in enumerate(specs):
        if not glob.has_magic(spec):
            images.append(spec)
            continue
        if spec.startswith("data:"):
            found = _expand_data_glob(spec, f"{key}[{i}]")
        else:
            try:
                found = sorted(glob.glob(spec))
            except (OSError, ValueError) as err:
                raise _SpecError(f"{key}[{i}]", f"{spec!r} is not a usable pattern "
                                 f"({_first_line(err)})") from None
        if not found:
            raise _SpecError(f"{key}[{i}]", f"{spec!r} matches no image")
        images += [f for f in found if not is_mask(f)]
    return list(dict.fromkeys(images))


def _expand_data_glob(spec: str, key: str) -> list[str]:
    """The ``data:`` names of the files a ``data:`` glob matches, all inside the data folder
    (a pattern or a match that leads outside it, through ``..`` or a symlink, is refused)."""
    root = data_root()
    if root is None:
        raise _SpecError(key, "no shared/data folder here or above; set LIP_DATA")
    pattern = spec[len("data:"):]
    if not pattern or Path(pattern).is_absolute():
        raise _SpecError(key, f"{spec!r}: a data: pattern is relative to the data folder "
                         f"{root}; give e.g. data:set5/*")
    found = []
    try:
        for path in root.glob(pattern):
            if not path.is_file():
                continue
            try:
                inside_data_folder(path, root, spec)
            except LipError:
                raise _SpecError(key, f"{spec!r} matches {path}, outside the data folder "
                                 f"{root} (through .. or a symlink); give a pattern inside "
                                 "it") from None
            found.append(f"data:{path.relative_to(root).with_suffix('')}")
    except (ValueError, NotImplementedError, OSError) as err:
        raise _SpecError(key, f"{spec!r} is not a pattern inside the data folder {root} "
                         f"({err})") from None
    return sorted(found)


def is_mask(image: str) -> bool:
    """Whether an image spec names a mask file (``*_mask``, with or without extension)."""
    return Path(image.split(":", 1)[-1]).stem.endswith("_mask")


def _known(key: str, table: dict, allowed: set[str]) -> None:
    for k in table:
        if k not in allowed:
            shown = k if re.fullmatch(r"[A-Za-z0-9_-]+", str(k)) else json.dumps(str(k))
            place = f"{key}.{shown}" if key else shown
            raise _SpecError(place, f"unknown key; known here: {', '.join(sorted(allowed))}")


def _table(data: dict, key: str, required: bool = False) -> dict:
    value = data.get(key, None)
    if value is None:
        if required:
            raise _SpecError(key, f"missing [{key}] table")
        return {}
    if not isinstance(value, dict):
        raise _SpecError(key, "must be a table")
    return value


def _strings(table: dict, key: str, required: bool = False) -> list[str]:
    value = table.get(key.rsplit(".", 1)[-1])
    if value is None and not required:
        return []
    if (not isinstance(value, list) or not value
            or not all(isinstance(v, str) and v for v in value)):
        raise _SpecError(key, f"must be a non-empty list of strings, got {show(value)}")
    if len(value) > MAX_GRID:
        raise _SpecError(key, f"at most {MAX_GRID:,} entries, got {len(value):,}")
    return value


def _sparsities(value: Any, key: str, required: bool = False) -> list[float]:
    if value is None:
        if required:
            raise _SpecError(key, "missing: give a list of sparsities in (0, 1)")
        return []
    if not isinstance(value, list) or not value:
        raise _SpecError(key, "must be a non-empty list of sparsities in (0, 1)")
    if len(value) > MAX_GRID:
        raise _SpecError(key, f"at most {MAX_GRID:,} sparsities, got {len(value):,}")
    for i, s in enumerate(value):
        _check(float_problem(s, 0, 1, low_open=True, high_open=True), f"{key}[{i}]")
    return sorted({float(s) for s in value})


def _seeds(value: Any, key: str) -> list[int]:
    if not isinstance(value, list) or not value:
        raise _SpecError(key, "must be a non-empty list of seeds (whole numbers from 0 to "
                         "2**63 - 1)")
    if len(value) > MAX_GRID:
        raise _SpecError(key, f"at most {MAX_GRID:,} seeds, got {len(value):,}")
    for i, s in enumerate(value):
        _check(seed_problem(s), f"{key}[{i}]")
    return list(dict.fromkeys(value))

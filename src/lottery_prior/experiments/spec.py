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
    methods = ["ticket", "random", "random-layerwise", "decoder", "dense"]

    [[task]]
    name = "denoise"                # denoise | inpaint | sr
    sigma = 25
    [[task]]
    name = "inpaint"
    mask = "{image}_mask"           # a file per image ({image}: the image spec), text, or keep

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

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
from lottery_prior.images import (
    IMAGE_EXTENSIONS,
    check_size_fits_memory,
    data_root,
    inside_data_folder,
    memory_bytes,
)
from lottery_prior.learned import MAX_PER_FILTER
from lottery_prior.models import list_models
from lottery_prior.operators import TASKS
from lottery_prior.precision import PRECISIONS

log = logging.getLogger("lottery_prior")

TASK_KEYS = {"denoise": {"sigma"}, "inpaint": {"mask", "keep"}, "sr": {"factor"}}
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
    def max_sparsity(self) -> float:
        return max([*self.sparsities, *self.transfer_sparsities])


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
    _known("", data, {"name", "description", "grid", "task", "model", "fit", "imp", "learned",
                      "transfer"})
    spec_name = data.get("name", name)
    problem = name_problem(spec_name)
    if problem:
        raise _SpecError("name", problem)
    if "description" in data and not isinstance(data["description"], str):
        raise _SpecError("description", f"must be a string, got {show(data['description'])}")
    grid = _table(data, "grid", required=True)
    _known("grid", grid, {"images", "size", "seeds", "noise_seeds", "sparsities", "methods"})
    images = _strings(grid, "grid.images", required=True)
    methods = _strings(grid, "grid.methods", required=True)
    sparsities = _sparsities(grid.get("sparsities"), "grid.sparsities", required=True)
    seeds = _seeds(grid.get("seeds", [0]), "grid.seeds")
    noise_seeds = _seeds(grid.get("noise_seeds", [0]), "grid.noise_seeds")
    size = grid.get("size")
    if size is not None:
        _check(int_problem(size, 8, MAX_SIZE), "grid.size")
        try:
            check_size_fits_memory(size)
        except LipError as err:
            raise _SpecError("grid.size", str(err).replace("--size", "size")) from None

    tasks = data.get("task")
    if not isinstance(tasks, list) or not tasks:
        raise _SpecError("task", "give at least one [[task]] table (name = denoise|inpaint|sr)")
    if len(tasks) > MAX_TASKS:
        raise _SpecError("task", f"at most {MAX_TASKS} [[task]] tables, got {len(tasks)}")
    task_specs = [_task(t, f"task[{i}]") for i, t in enumerate(tasks)]

    model = _table(data, "model")
    _known("model", model, {"name", "options"})
    model_name = model.get("name", "dip")
    if not isinstance(model_name, str) or model_name not in list_models():
        raise _SpecError("model.name", f"must be one of {', '.join(list_models())}, got "
                         f"{show(model_name)}")
    options = model.get("options", {})
    if not isinstance(options, dict):
        raise _SpecError("model.options", "must be a table, e.g. { width = 64 }")

    fit = _precision(_settings(data, "fit", FIT_CHECKS))
    imp = _settings(data, "imp", IMP_CHECKS)
    learned = _settings(data, "learned", LEARNED_CHECKS)
    structure = imp.get("structure", "weights")
    for i, method in enumerate(methods):
        _method(method, f"grid.methods[{i}]", structure)

    transfer = _table(data, "transfer")
    _known("transfer", transfer, {"sparsities", "across_images", "across_tasks", "methods"})
    transfer_methods = _strings(transfer, "transfer.methods") or ["ticket"]
    for i, method in enumerate(transfer_methods):
        _method(method, f"transfer.methods[{i}]", structure, transfer=True)
    across_images = transfer.get("across_images", False)
    if not isinstance(across_images, bool):
        raise _SpecError("transfer.across_images", "must be true or false")
    pairs = transfer.get("across_tasks", [])
    names = [t.name for t in task_specs]
    if not isinstance(pairs, list):
        raise _SpecError("transfer.across_tasks", "must be a list of [from, to] task pairs")
    for i, pair in enumerate(pairs):
        if (not isinstance(pair, list) or len(pair) != 2 or pair[0] == pair[1]
                or any(not isinstance(p, str) or p not in names for p in pair)):
            raise _SpecError(f"transfer.across_tasks[{i}]", f"must be two different tasks of "
                             f"the spec ({', '.join(names)}), got {show(pair)}")
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


def _whole(minimum: int, maximum: int | None = None):
    return lambda v: int_problem(v, minimum, maximum)


def _real(low=None, high=None, **open_ends):
    return lambda v: float_problem(v, low, high, **open_ends)


def _choice(*choices: str):
    def problem(v: object) -> str | None:
        if not isinstance(v, str) or v not in choices:
            return f"must be {' or '.join(choices)}, got {show(v)}"
        return None
    return problem


def _boolean(v: object) -> str | None:
    return None if isinstance(v, bool) else f"must be true or false, got {show(v)}"


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


# Each settings table's keys and the check of each value (a function value -> problem).
FIT_CHECKS = {
    "steps": _whole(1, MAX_STEPS), "lr": _real(0, low_open=True),
    "input_noise": _real(0), "precision": _choice(*PRECISIONS), "fast": _boolean,
    "stop": _choice("wmv", "none"),
    "device": _device,
}
IMP_CHECKS = {
    "rate": _real(0, 1, low_open=True, high_open=True), "layerwise": _boolean,
    "rewind_step": _whole(0, MAX_STEPS), "keep_dense": _patterns,
    "target": _choice("observation", "clean"), "search_steps": _whole(1, MAX_STEPS),
    "early_bird": _real(0, 1, low_open=True, high_open=True),
    "early_bird_every": _whole(1, MAX_STEPS),
    "structure": _choice("weights", "channels"), "channel_score": _choice("l1", "l2", "bn"),
}
LEARNED_CHECKS = {
    "steps": _whole(1, MAX_STEPS), "lr": _real(0, low_open=True),
    "temperature": _real(0, low_open=True), "kl": _real(0),
    "allocation": _choice("global", "erk"), "per_filter": _whole(0, MAX_PER_FILTER),
}
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
    searches = len(spec.images) * len(spec.tasks) * len(spec.noise_seeds) * len(spec.seeds)
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
           {k: tuple(v) if k == "keep_dense" else v for k, v in spec.imp.items()})
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
    if not isinstance(name, str) or name not in TASKS:
        raise _SpecError(f"{key}.name", f"must be one of {', '.join(TASKS)}, got {show(name)}")
    _known(key, table, {"name"} | TASK_KEYS[name])
    settings = {k: v for k, v in table.items() if k != "name"}
    if "sigma" in settings:
        _check(float_problem(settings["sigma"], 0, MAX_SIGMA, low_open=True), f"{key}.sigma")
    if "factor" in settings and (not isinstance(settings["factor"], int)
                                 or isinstance(settings["factor"], bool)
                                 or settings["factor"] not in (2, 4, 8)):
        raise _SpecError(f"{key}.factor", f"must be 2, 4 or 8, got {show(settings['factor'])}")
    if "keep" in settings:
        _check(float_problem(settings["keep"], 0, 1, low_open=True), f"{key}.keep")
    if "mask" in settings and (not isinstance(settings["mask"], str) or not settings["mask"]):
        raise _SpecError(f"{key}.mask", "must be a mask file, data: name or \"text\" (a "
                         "string; {image} stands for each image), got "
                         f"{show(settings['mask'])}")
    if "mask" in settings and "keep" in settings:
        raise _SpecError(key, "give mask or keep, not both")
    return TaskSpec(name, tuple(sorted(settings.items())))


def _expand_images(specs: list[str]) -> list[str]:
    """Globs of files and of ``data:`` paths become the matching image specs, sorted."""
    images: list[str] = []
    for i, spec in enumerate(specs):
        if not glob.has_magic(spec):
            images.append(spec)
            continue
        if spec.startswith("data:"):
            found = _expand_data_glob(spec, f"grid.images[{i}]")
        else:
            try:
                found = sorted(glob.glob(spec))
            except (OSError, ValueError) as err:
                raise _SpecError(f"grid.images[{i}]", f"{spec!r} is not a usable pattern "
                                 f"({_first_line(err)})") from None
        if not found:
            raise _SpecError(f"grid.images[{i}]", f"{spec!r} matches no image")
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

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from lottery_prior.compare import METHODS
from lottery_prior.errors import LipError
from lottery_prior.images import data_root, inside_data_folder
from lottery_prior.operators import TASKS

TASK_KEYS = {"denoise": {"sigma"}, "inpaint": {"mask", "keep"}, "sr": {"factor"}}
FIT_KEYS = {"steps", "lr", "input_noise", "fast", "stop", "device"}
IMP_KEYS = {"rate", "layerwise", "rewind_step", "keep_dense", "target", "search_steps",
            "early_bird", "early_bird_every"}
LEARNED_KEYS = {"steps", "lr", "temperature", "kl", "allocation", "per_filter"}
NO_MASK = ("decoder", "dense")  # methods without a mask to transfer


@dataclass(frozen=True)
class TaskSpec:
    """One task and the settings of its observation."""

    name: str
    settings: tuple[tuple[str, Any], ...] = ()

    def for_image(self, image: str) -> dict[str, Any]:
        """``make_problem`` keyword arguments for an image (a mask template filled in)."""
        options = dict(self.settings)
        if isinstance(options.get("mask"), str) and "{image}" in options["mask"]:
            options["mask"] = options["mask"].replace("{image}", image.rsplit(".", 1)[0])
        return options


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
        raise LipError(f"{path} is not valid TOML ({err})") from None
    return parse_spec(data, name=path.stem, source=path)


def parse_spec(data: dict, name: str = "sweep", source: Path | None = None) -> Spec:
    """Validate the spec's data (a parsed TOML document)."""
    where = f"{source}: " if source else ""
    try:
        return _parse(data, name, source)
    except _SpecError as err:
        raise LipError(f"{where}{err.key}: {err.message}") from None


class _SpecError(Exception):
    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key, self.message = key, message


def _parse(data: dict, name: str, source: Path | None) -> Spec:
    _known("", data, {"name", "description", "grid", "task", "model", "fit", "imp", "learned",
                      "transfer"})
    grid = _table(data, "grid", required=True)
    _known("grid", grid, {"images", "size", "seeds", "noise_seeds", "sparsities", "methods"})
    images = _strings(grid, "grid.images", required=True)
    methods = _strings(grid, "grid.methods", required=True)
    for i, method in enumerate(methods):
        if method not in METHODS:
            raise _SpecError(f"grid.methods[{i}]", f"unknown method {method!r}; use one of "
                             f"{', '.join(METHODS)}")
    sparsities = _sparsities(grid.get("sparsities"), "grid.sparsities", required=True)
    seeds = _seeds(grid.get("seeds", [0]), "grid.seeds")
    noise_seeds = _seeds(grid.get("noise_seeds", [0]), "grid.noise_seeds")
    size = grid.get("size")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 8):
        raise _SpecError("grid.size", f"must be a whole number of pixels >= 8, got {size!r}")

    tasks = data.get("task")
    if not isinstance(tasks, list) or not tasks:
        raise _SpecError("task", "give at least one [[task]] table (name = denoise|inpaint|sr)")
    task_specs = [_task(t, f"task[{i}]") for i, t in enumerate(tasks)]

    model = _table(data, "model")
    _known("model", model, {"name", "options"})
    model_name = model.get("name", "dip")
    options = model.get("options", {})
    if not isinstance(options, dict):
        raise _SpecError("model.options", "must be a table, e.g. { width = 64 }")

    fit = _table(data, "fit")
    _known("fit", fit, FIT_KEYS)
    if fit.get("stop", "none") not in ("wmv", "none"):
        raise _SpecError("fit.stop", f"must be wmv or none, got {fit['stop']!r}")
    imp = _table(data, "imp")
    _known("imp", imp, IMP_KEYS)
    learned = _table(data, "learned")
    _known("learned", learned, LEARNED_KEYS)

    transfer = _table(data, "transfer")
    _known("transfer", transfer, {"sparsities", "across_images", "across_tasks", "methods"})
    transfer_methods = _strings(transfer, "transfer.methods") or ["ticket"]
    for i, method in enumerate(transfer_methods):
        if method not in METHODS or method in NO_MASK:
            raise _SpecError(f"transfer.methods[{i}]", f"{method!r} is not a mask method; use "
                             f"{', '.join(m for m in METHODS if m not in NO_MASK)}")
    across_images = transfer.get("across_images", False)
    if not isinstance(across_images, bool):
        raise _SpecError("transfer.across_images", "must be true or false")
    pairs = transfer.get("across_tasks", [])
    names = [t.name for t in task_specs]
    if not isinstance(pairs, list):
        raise _SpecError("transfer.across_tasks", "must be a list of [from, to] task pairs")
    for i, pair in enumerate(pairs):
        if (not isinstance(pair, list) or len(pair) != 2 or pair[0] == pair[1]
                or any(p not in names for p in pair)):
            raise _SpecError(f"transfer.across_tasks[{i}]", f"must be two different tasks of "
                             f"the spec ({', '.join(names)}), got {pair!r}")
    has_transfer = across_images or bool(pairs)
    transfer_sparsities = _sparsities(transfer.get("sparsities"), "transfer.sparsities",
                                      required=has_transfer)
    spec = Spec(
        name=str(data.get("name", name)), images=_expand_images(images), tasks=task_specs,
        sparsities=sparsities, methods=methods, seeds=seeds, noise_seeds=noise_seeds,
        size=size, model=model_name, model_options=options, fit=fit, imp=imp, learned=learned,
        transfer_sparsities=transfer_sparsities if has_transfer else [],
        transfer_methods=list(dict.fromkeys(transfer_methods)),
        across_images=across_images, across_tasks=[tuple(p) for p in pairs], source=source)
    _check_settings(spec)
    return spec


def _check_settings(spec: Spec) -> None:
    """Build each part's config once so impossible values are refused before any work."""
    from lottery_prior.fit import FitConfig
    from lottery_prior.learned import LearnConfig
    from lottery_prior.lottery import ImpConfig
    from lottery_prior.models import create_model

    try:
        model = create_model(spec.model, **spec.model_options)
    except LipError as err:
        raise _SpecError("model", str(err)) from None
    if spec.size is not None:
        try:
            model.check_size(spec.size, spec.size)
        except LipError as err:
            raise _SpecError("grid.size", str(err)) from None
    try:
        FitConfig(**{k: v for k, v in spec.fit.items() if k != "stop"})
    except (LipError, TypeError) as err:
        raise _SpecError("fit", str(err)) from None
    try:
        ImpConfig(**{k: tuple(v) if k == "keep_dense" else v for k, v in spec.imp.items()})
    except (LipError, TypeError) as err:
        raise _SpecError("imp", str(err)) from None
    try:
        LearnConfig(sparsity=0.5, **spec.learned)
    except (LipError, TypeError) as err:
        raise _SpecError("learned", str(err)) from None


def _task(table: Any, key: str) -> TaskSpec:
    if not isinstance(table, dict):
        raise _SpecError(key, "must be a table with name = denoise|inpaint|sr")
    name = table.get("name")
    if name not in TASKS:
        raise _SpecError(f"{key}.name", f"must be one of {', '.join(TASKS)}, got {name!r}")
    _known(key, table, {"name"} | TASK_KEYS[name])
    settings = {k: v for k, v in table.items() if k != "name"}
    if "sigma" in settings and not (isinstance(settings["sigma"], int | float)
                                    and settings["sigma"] > 0):
        raise _SpecError(f"{key}.sigma", f"must be > 0 (0-255 units), got {settings['sigma']!r}")
    if "factor" in settings and settings["factor"] not in (2, 4, 8):
        raise _SpecError(f"{key}.factor", f"must be 2, 4 or 8, got {settings['factor']!r}")
    if "keep" in settings and not (isinstance(settings["keep"], int | float)
                                   and 0 < settings["keep"] <= 1):
        raise _SpecError(f"{key}.keep", f"must be in (0, 1], got {settings['keep']!r}")
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
            found = sorted(glob.glob(spec))
        if not found:
            raise _SpecError(f"grid.images[{i}]", f"{spec!r} matches no image")
        images += [f for f in found if not f.endswith("_mask")]
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


def _known(key: str, table: dict, allowed: set[str]) -> None:
    for k in table:
        if k not in allowed:
            place = f"{key}.{k}" if key else k
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
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise _SpecError(key, "must be a non-empty list of strings")
    return value


def _sparsities(value: Any, key: str, required: bool = False) -> list[float]:
    if value is None:
        if required:
            raise _SpecError(key, "missing: give a list of sparsities in (0, 1)")
        return []
    if not isinstance(value, list) or not value:
        raise _SpecError(key, "must be a non-empty list of sparsities in (0, 1)")
    for i, s in enumerate(value):
        if isinstance(s, bool) or not isinstance(s, int | float) or not 0 < s < 1:
            raise _SpecError(f"{key}[{i}]", f"must be in (0, 1), got {s!r}")
    return sorted({float(s) for s in value})


def _seeds(value: Any, key: str) -> list[int]:
    if not isinstance(value, list) or not value:
        raise _SpecError(key, "must be a non-empty list of seeds (integers >= 0)")
    for i, s in enumerate(value):
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise _SpecError(f"{key}[{i}]", f"must be an integer >= 0, got {s!r}")
    return list(dict.fromkeys(value))

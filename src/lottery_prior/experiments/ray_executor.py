"""Running a plan's units on Ray (``lip sweep SPEC --ray [ADDRESS]``).

Ray *core tasks*, not Ray Tune: a sweep is a fixed graph of units (an IMP search, then the
fits and transfers that need its rounds) whose results are content-addressed and stored once;
there is no search over hyper-parameters, no trial scheduling, early termination or
checkpointing for Tune to add, and its trial bookkeeping would duplicate the results store.
Core tasks map one to one onto units:

* one remote task per unfinished unit, calling :func:`~lottery_prior.experiments.units.run_unit`;
* the driver starts a unit's task once its dependencies (its ``deps``: the IMP search before
  its fits and transfers) have finished and been stored, and keeps as many tasks in flight as
  the cluster can run at once; as with the local executor, after a failure no new unit
  starts, the running ones finish and are stored, then the error is raised (one line naming
  the unit): no finished work is lost;
* GPU-aware: on a cluster with GPUs each task asks for ``num_gpus`` = a fraction of a GPU
  (0.25 for images up to 256x256 pixels, whose fits cannot fill a GPU, else 1.0;
  ``gpu_per_fit`` overrides) and its fits run on the GPU Ray assigns it. Units whose fit
  device is set to ``cpu`` (``lip sweep --device cpu``) ask for no GPU. On a CPU-only cluster
  each task asks for one CPU and runs torch on one thread (two 1-thread fits beat one
  2-thread fit; multi-threaded fits side by side are 10-50x slower);
* the rows are written by this process alone (the driver), into the same results store as the
  local executor, the moment each task finishes: a killed sweep rerun (locally or on Ray)
  recomputes nothing that finished.

Workers write the IMP runs and output images below the results folder themselves, so on a
cluster of several machines the results folder must be on a file system that every node
mounts at the same path (NFS, a cloud file store), and ``lottery_prior`` (with the same
version) must be installed on every node; images named by path must be readable there too
(``builtin:`` images need nothing).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from lottery_prior.errors import LipError
from lottery_prior.experiments.executor import Book, Progress, ready_units
from lottery_prior.experiments.store import Store
from lottery_prior.experiments.units import Plan, Unit, run_unit

log = logging.getLogger("lottery_prior")

MISSING = "Ray is not installed: pip install 'lottery_prior[ray]'"
SMALL_PIXELS = 256 * 256  # fits on images up to this size share a GPU
SMALL_GPU = 0.25  # the GPU fraction of a fit on a small image


def run_ray(plan: Plan, store: Store, *, address: str | None = "auto", show: bool = True,
            gpu_per_fit: float | None = None, device: str | None = None) -> int:
    """Run every unfinished unit of ``plan`` as Ray tasks; returns how many units ran.

    ``address``: ``"auto"`` connects to the Ray cluster running on (or reachable from) this
    machine (``ray start --head``; ``RAY_ADDRESS``) and starts a local Ray if there is none;
    ``None`` leaves the choice to ``ray.init()``; anything else (``"ray://head:10001"``,
    ``"10.0.0.1:6379"``) is passed to ``ray.init``. If Ray is already initialised in this
    process it is used as it is (and left running). ``gpu_per_fit``: the fraction of a GPU
    each task asks for on a cluster with GPUs (default: by image size, see the module).
    """
    if gpu_per_fit is not None and not (
            gpu_per_fit > 0 and (gpu_per_fit <= 1 or float(gpu_per_fit).is_integer())):
        raise LipError(f"gpu_per_fit must be a fraction in (0, 1] or a whole number of GPUs, "
                       f"got {gpu_per_fit}")
    try:
        import ray
    except ImportError:
        raise LipError(MISSING) from None
    ids = [u.id for u in plan.units]
    done = plan.done(store)
    if all(i in done for i in ids):
        return 0
    started_ray = _connect(ray, address)
    try:
        return _run(ray, plan, store, done, show, gpu_per_fit, device)
    finally:
        if started_ray:
            ray.shutdown()


def _connect(ray: Any, address: str | None) -> bool:
    """Initialise Ray; True if this call did it (and should shut it down)."""
    if ray.is_initialized():
        return False
    try:
        if address == "auto":
            try:
                ray.init(address="auto")
            except ConnectionError:
                log.info("no running Ray cluster found; starting a local Ray")
                ray.init()
        elif address is None:
            ray.init()
        else:
            ray.init(address=address)
    except LipError:
        raise
    except Exception as err:  # Ray raises several types for an unreachable cluster
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise LipError(f"cannot start or reach Ray at {address or 'the default address'} "
                       f"({first})") from None
    return True


def _run(ray: Any, plan: Plan, store: Store, done: set[str], show: bool,
         gpu_per_fit: float | None, device: str | None) -> int:
    ids = [u.id for u in plan.units]
    root = str(store.root.resolve())  # workers may have another working directory
    gpus = float(ray.cluster_resources().get("GPU", 0))
    cpu_task = ray.remote(num_cpus=1, num_gpus=0)(_task)
    gpu_task = ray.remote(num_cpus=1, num_gpus=1, max_calls=1)(_task)  # frees GPU memory
    todo = [u for u in plan.units if u.id not in done]
    sizes: dict[tuple, int] = {}
    gpu_wants = {u.id: task_gpus(u, gpus, gpu_per_fit, sizes, device) for u in todo}
    planned: set[str] = set()
    for unit in todo:  # checked before any task starts
        if gpu_wants[unit.id] > gpus:
            raise LipError(f"each task asks for {gpu_wants[unit.id]:g} GPUs but the cluster "
                           f"has {gpus:g}")
        for d in unit.deps:
            if d not in done and d not in planned:
                raise LipError(f"unit {unit.label} needs {d}, which is neither finished nor "
                               "planned before it")
        planned.add(unit.id)

    progress = Progress(plan, done, show)
    book = Book(plan, store, done, progress)
    running: dict[Any, Unit] = {}  # ObjectRef -> unit, until the driver has its rows
    started: set[str] = set()
    failure: LipError | None = None
    wants = [w for w in gpu_wants.values() if w > 0]

    def slots() -> int:
        # what the cluster can run at once: one CPU per task; GPUs over the smallest fraction
        resources = ray.cluster_resources()
        n = int(resources.get("CPU", 1))
        if wants:
            n = min(n, int(resources.get("GPU", 0) / min(wants)) or 1)
        return max(n, 1)

    def launch(unit: Unit) -> None:
        want = gpu_wants[unit.id]
        if want > 0:
            ref = gpu_task.options(num_gpus=want).remote(unit, root, "cuda")
        else:
            ref = cpu_task.remote(unit, root, device)
        started.add(unit.id)
        running[ref] = unit
        progress.started()

    try:
        while True:
            if failure is None:  # after a failure no new unit starts
                for unit in ready_units(plan, done, started)[: slots() - len(running)]:
                    launch(unit)
            if not running:
                break
            finished, _ = ray.wait(list(running), num_returns=1)
            for ref in finished:
                unit = running.pop(ref)
                try:
                    rows = ray.get(ref)
                except Exception as err:
                    failure = failure or _failure(ray, unit, err)
                    continue
                book.record(unit, rows)
    except BaseException:  # interrupted: the running tasks are stopped (their units rerun)
        for ref in running:
            try:
                ray.cancel(ref, force=True)
            except Exception:  # already finished, or Ray is going away
                pass
        raise
    finally:
        progress.close()
        store.write_tables(ids)  # every unit that finished, whatever happened
    if failure is not None:
        raise failure
    return book.ran


def _task(unit: Unit, root: str, device: str | None) -> list[dict]:
    """A unit's work in a Ray worker. ``device``: "cuda" (the one GPU Ray assigned this
    task) or None; never part of its id."""
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
    logging.basicConfig(format="lip: %(message)s", level=logging.WARNING, stream=sys.stderr)
    return run_unit(unit, root, device)


def task_gpus(unit: Unit, cluster_gpus: float, gpu_per_fit: float | None = None,
              sizes: dict[tuple, int] | None = None, device: str | None = None) -> float:
    """The GPUs a unit's task asks for: none on a cluster without GPUs or for a unit whose
    fits are set to a device other than CUDA; else ``gpu_per_fit``, or by default a fraction
    for images up to 256x256 pixels (their fits cannot fill a GPU) and a whole GPU above."""
    if cluster_gpus <= 0 or unit.kind == "classical" or (
            device is not None and not str(device).startswith("cuda")):
        return 0.0
    if gpu_per_fit is not None:
        return float(gpu_per_fit)
    problem = (unit.payload.get("target") or unit.payload.get("search") or unit.payload
               ).get("problem") or {}
    pixels = _pixels(problem, {} if sizes is None else sizes)
    return SMALL_GPU if pixels <= SMALL_PIXELS else 1.0


def _pixels(problem: dict, sizes: dict[tuple, int]) -> int:
    """The pixels of a problem's image (after ``size``), read from its header once."""
    size = problem.get("size")
    if size is not None:
        return int(size) ** 2
    key = (problem.get("image"),)
    if key not in sizes:
        from lottery_prior.images import image_size

        try:
            h, w = image_size(str(problem.get("image")))
            sizes[key] = h * w
        except LipError:
            sizes[key] = SMALL_PIXELS + 1  # unknown: a whole GPU
    return sizes[key]


def _failure(ray: Any, unit: Unit, err: BaseException) -> LipError:
    """One line naming the unit and the cause (the worker's exception, not Ray's wrapper)."""
    cause = err
    if isinstance(err, ray.exceptions.RayTaskError):
        cause = getattr(err, "cause", None) or err
    if isinstance(cause, ray.exceptions.RayTaskError):  # the cause could not be rebuilt
        text = str(cause).strip().splitlines()
        message = text[-1] if text else type(cause).__name__
    elif isinstance(cause, LipError):
        message = str(cause)
    else:
        message = f"{type(cause).__name__}: {cause}"
    message = message.strip().splitlines()[0] if message.strip() else type(cause).__name__
    log.debug("unit %s failed", unit.label, exc_info=err)
    return LipError(f"unit failed on Ray: {unit.label} ({message})")

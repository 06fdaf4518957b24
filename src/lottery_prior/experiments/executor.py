"""Running a plan's units: local worker processes (the default), or Ray (``ray_executor``).

Units whose rows are stored are skipped, so a killed sweep rerun recomputes nothing that
finished. A unit starts once the units it needs have finished. Rows are written by the
coordinating process alone (workers only compute), as each unit ends.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import multiprocessing
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from tqdm import tqdm

from lottery_prior.errors import LipError
from lottery_prior.experiments.store import Store
from lottery_prior.experiments.units import Plan, Unit, run_unit
from lottery_prior.runs import one_line

log = logging.getLogger("lottery_prior")


class Progress:
    """Units done / running / left and an ETA from the cost model, on one tqdm line."""

    def __init__(self, plan: Plan, done: set[str], show: bool = True) -> None:
        self.todo = [u for u in plan.units if u.id not in done]
        self.cost_left = sum(u.cost for u in self.todo)
        self.cost_done = 0.0
        self.running = 0
        self.start = time.perf_counter()
        self.bar = tqdm(total=len(self.todo), desc="sweep", unit="unit", file=sys.stderr,
                        disable=not show, dynamic_ncols=True, leave=True)

    def started(self) -> None:
        self.running += 1
        self._show()

    def finished(self, unit: Unit) -> None:
        self.running -= 1
        self.cost_done += unit.cost
        self.bar.update(1)
        self._show()

    def _show(self) -> None:
        elapsed = time.perf_counter() - self.start
        left = len(self.todo) - self.bar.n - self.running
        eta = ""
        if self.cost_done > 0:
            remaining = elapsed / self.cost_done * (self.cost_left - self.cost_done)
            eta = f", ETA {remaining / 60:.0f} min" if remaining > 120 else \
                f", ETA {remaining:.0f} s"
        self.bar.set_postfix_str(f"running {self.running}, waiting {left}{eta}", refresh=False)

    def close(self) -> None:
        self.bar.close()


class Book:
    """What the coordinating process does as a unit finishes: store its rows, mark it done,
    advance the progress line, refresh the results tables now and then."""

    def __init__(self, plan: Plan, store: Store, done: set[str], progress: Progress) -> None:
        self.ids = [u.id for u in plan.units]
        self.store, self.done, self.progress = store, done, progress
        self.ran = 0

    def record(self, unit: Unit, rows: list[dict]) -> None:
        if unit.kind in ("fit", "transfer", "classical"):
            self.store.add(unit.id, rows)
        self.done.add(unit.id)
        self.ran += 1
        self.progress.finished(unit)
        self.store.write_tables(self.ids, force=False)


def ready_units(plan: Plan, done: set[str], started: set[str]) -> list[Unit]:
    """Units not yet started whose dependencies have all finished, in plan order."""
    return [u for u in plan.units if u.id not in done and u.id not in started
            and all(d in done for d in u.deps)]


def run_local(plan: Plan, store: Store, *, workers: int = 1, show: bool = True,
              device: str | None = None,
              on_finish: Callable[[Unit], None] | None = None,
              work: Callable[[Unit, str | Path, str | None], list[dict]] = run_unit) -> int:
    """Run every unfinished unit in ``workers`` processes (one thread each); returns how many
    units ran. ``workers=0`` runs them in this process (for debugging and tests). If a unit
    fails, no new unit starts, the running ones finish and are stored, then the error is
    raised (one line naming the unit). ``work(unit, root, device)`` does a unit's work (a
    module-level function, so that worker processes can import it)."""
    ids = [u.id for u in plan.units]
    done = plan.done(store)
    progress = Progress(plan, done, show)
    book = Book(plan, store, done, progress)

    def finish(unit: Unit, rows: list[dict]) -> None:
        book.record(unit, rows)
        if on_finish is not None:
            on_finish(unit)

    try:
        if workers == 0:
            while todo := ready_units(plan, done, set()):
                progress.started()
                try:
                    rows = work(todo[0], store.root, device)
                except LipError as err:
                    raise LipError(f"unit {todo[0].label} failed: {err}") from None
                finish(todo[0], rows)
        else:
            _run_pool(plan, store, workers, done, progress, finish, device, work)
    finally:
        progress.close()
        store.write_tables(ids)  # every unit that finished, whatever happened
    left = [u for u in plan.units if u.id not in done]
    if left:
        raise LipError(f"{len(left)} units could not run: their dependencies failed "
                       f"(first: {left[0].label})")
    return book.ran


def _run_pool(plan: Plan, store: Store, workers: int, done: set[str], progress: Progress,
              finish: Callable[[Unit, list[dict]], None], device: str | None,
              work: Callable) -> None:
    context = multiprocessing.get_context("spawn")  # no forked torch state
    started: set[str] = set()
    failure: LipError | None = None
    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=context,
                                initializer=_one_thread) as pool:
        running: dict[cf.Future, Unit] = {}
        try:
            while True:
                if failure is None:
                    for unit in ready_units(plan, done, started)[: workers - len(running)]:
                        started.add(unit.id)
                        running[pool.submit(work, unit, str(store.root), device)] = unit
                        progress.started()
                if not running:
                    break
                finished, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
                for future in finished:
                    unit = running.pop(future)
                    try:
                        rows = future.result()
                    except BrokenProcessPool:
                        lost = ", ".join(u.label for u in [unit, *running.values()])
                        raise LipError(
                            f"a worker process died (killed by the system, e.g. out of memory) "
                            f"while running: {lost}; the {len(done)} finished units are kept: "
                            "rerun the same command to resume (with fewer --workers if memory "
                            "ran out)") from None
                    except LipError as err:
                        failure = failure or LipError(f"unit {unit.label} failed: {err}")
                        continue
                    except Exception as err:  # a bug: name the unit, keep the traceback
                        log.error("unit %s failed", unit.label, exc_info=err)
                        failure = failure or LipError(
                            f"unit {unit.label} failed: {type(err).__name__}: {one_line(err)}")
                        continue
                    finish(unit, rows)
        except BaseException:
            for future in running:
                future.cancel()
            raise
    if failure is not None:
        raise failure


def _one_thread() -> None:
    """Worker setup: one thread per process (two 1-thread workers beat one 2-thread one;
    multi-threaded workers side by side are 10-50x slower)."""
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
    logging.basicConfig(format="lip: %(message)s", level=logging.WARNING, stream=sys.stderr)


def default_workers() -> int:
    """One worker per CPU core."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
               else os.cpu_count() or 1)

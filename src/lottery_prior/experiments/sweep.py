"""A sweep: an experiment spec run into one results folder, resumable, one sweep at a time.

The folder is locked while a sweep runs (a second sweep on it is refused at once, naming the
process that holds it); temporaries that a killed sweep left are removed when the next one
starts; the executors write the results tables at the end whatever happens, so every unit
that finished is in them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lottery_prior.errors import LipError
from lottery_prior.experiments.executor import default_workers, run_local
from lottery_prior.experiments.spec import Spec, load_spec
from lottery_prior.experiments.store import UNITS, Store
from lottery_prior.experiments.units import IMAGES, Plan, cost_seconds, describe_cost, expand
from lottery_prior.files import TMP_SUFFIX, RunLock
from lottery_prior.output_folder import check_writable

SWEEPS = Path("lip-out") / "sweeps"  # default parent of results folders
CONFIRM_HOURS = 24.0  # a sweep estimated above this many CPU-thread hours asks first


@dataclass
class Sweep:
    """A spec's plan, its results store, and how to run what is left."""

    spec: Spec
    out: Path
    plan: Plan = field(init=False)
    store: Store = field(init=False)

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        self.plan = expand(self.spec, self.out)
        self.store = Store(self.out)

    @classmethod
    def load(cls, spec: str | Path, out: str | Path | None = None) -> Sweep:
        """The sweep of a spec file, into ``out`` (default ``lip-out/sweeps/<name>``)."""
        loaded = load_spec(spec)
        return cls(loaded, Path(out) if out is not None else SWEEPS / loaded.name)

    def done(self) -> set[str]:
        return self.plan.done(self.store)

    def hours_left(self) -> float:
        """Estimated CPU-thread hours of the units left (a rough cost model)."""
        return cost_seconds(self.plan, self.done()) / 3600

    def describe(self) -> str:
        return describe_cost(self.plan, self.done())

    def run(self, *, workers: int | None = None, ray: str | None = None,
            device: str | None = None, gpu_per_fit: float | None = None,
            show: bool = True) -> int:
        """Run every unit that has not finished (on ``workers`` local processes, or on Ray
        at address ``ray``); returns how many ran."""
        workers = default_workers() if workers is None else workers
        if workers < 0:
            raise LipError(f"--workers must be >= 0, got {workers}")
        check_writable(self.out)
        with RunLock(self.out):
            self._remove_temporaries()
            if ray is not None:
                from lottery_prior.experiments.ray_executor import run_ray

                return run_ray(self.plan, self.store, address=ray, show=show,
                               gpu_per_fit=gpu_per_fit, device=device)
            return run_local(self.plan, self.store, workers=workers, show=show, device=device)

    def _remove_temporaries(self) -> None:
        """Temporaries of a killed sweep in its own files (run folders clean their own)."""
        pattern = f".*{TMP_SUFFIX}"
        for path in [*self.out.glob(pattern), *(self.out / UNITS).glob(pattern),
                     *(self.out / IMAGES).rglob(pattern)]:
            path.unlink(missing_ok=True)

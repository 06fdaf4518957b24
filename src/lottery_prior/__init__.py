"""Lottery image priors: sparse deep image priors found by lottery-ticket pruning.

The public API is what ``__all__`` lists, importable from ``lottery_prior`` itself::

    import lottery_prior as lp

    problem = lp.make_problem("builtin:astronaut", "denoise", sigma=25, size=64)
    model, z = lp.build_prior("dip", {"width": 16}, problem, seed=0)
    result = lp.fit_prior(model, z, problem.operator, problem.observation,
                          clean=problem.clean, config=lp.FitConfig(steps=100))

Names are imported when first used, so ``import lottery_prior`` stays cheap. No public name
is also the name of a module (``lottery_prior.fit`` is the module of
:func:`fit_prior`, ``lottery_prior.report`` the package of :func:`write_report`), so an
import of a module never hides a function. Everything
else (the modules under ``lottery_prior.*``) is internal: documented, tested, but free to
change between minor versions.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.3.0"

# public name -> the module that defines it (the one place each name is implemented), and
# its name there when it differs
_PUBLIC: dict[str, str | tuple[str, str]] = {
    # image -> observation
    "Problem": "lottery_prior.problem",
    "make_problem": "lottery_prior.problem",
    "build_prior": "lottery_prior.problem",
    "load_image": "lottery_prior.images",
    "save_image": "lottery_prior.images",
    "psnr": "lottery_prior.metrics",
    "create_model": "lottery_prior.models",
    # one fit
    "FitConfig": "lottery_prior.fit",
    "FitResult": "lottery_prior.fit",
    "fit_prior": ("lottery_prior.fit", "fit"),
    "make_stopping_rule": "lottery_prior.stopping",
    # tickets
    "ImpConfig": "lottery_prior.lottery",
    "ImpRun": "lottery_prior.lottery",
    "find_ticket": "lottery_prior.api",
    "Ticket": "lottery_prior.tickets",
    "load_ticket": "lottery_prior.api",
    "evaluate_ticket": "lottery_prior.lottery",
    "Mask": "lottery_prior.masks",
    "LearnConfig": "lottery_prior.learned",
    # comparisons, transfer
    "compare_methods": "lottery_prior.compare",
    "FinderOptions": "lottery_prior.finders",
    "transfer": "lottery_prior.api",
    "MethodFit": "lottery_prior.compare",
    "MaskFinder": "lottery_prior.finders",
    "register_finder": "lottery_prior.finders",
    "finder_names": "lottery_prior.finders",
    "restore_classical": "lottery_prior.finders.classical",
    "Restored": "lottery_prior.finders.classical",
    # experiments
    "run_sweep": "lottery_prior.api",
    "write_report": "lottery_prior.report.html",
    "LipError": "lottery_prior.errors",
}

# the same names as _PUBLIC (a test checks), written out for tools that read __all__
__all__ = [
    "__version__", "Problem", "make_problem", "build_prior", "load_image", "save_image", "psnr",
    "create_model", "FitConfig", "FitResult", "fit_prior",
    "make_stopping_rule", "ImpConfig", "ImpRun", "find_ticket",
    "Ticket", "load_ticket", "evaluate_ticket", "Mask", "LearnConfig", "compare_methods",
    "FinderOptions", "transfer", "MethodFit", "MaskFinder", "register_finder", "finder_names",
    "restore_classical", "Restored", "run_sweep", "write_report", "LipError",
]

if TYPE_CHECKING:  # what the lazy imports below resolve to, for type checkers and docs
    from lottery_prior.api import find_ticket, load_ticket, run_sweep, transfer
    from lottery_prior.compare import MethodFit, compare_methods
    from lottery_prior.errors import LipError
    from lottery_prior.finders import FinderOptions, MaskFinder, finder_names, register_finder
    from lottery_prior.finders.classical import Restored, restore_classical
    from lottery_prior.fit import FitConfig, FitResult
    from lottery_prior.fit import fit as fit_prior
    from lottery_prior.images import load_image, save_image
    from lottery_prior.learned import LearnConfig
    from lottery_prior.lottery import ImpConfig, ImpRun, evaluate_ticket
    from lottery_prior.masks import Mask
    from lottery_prior.metrics import psnr
    from lottery_prior.models import create_model
    from lottery_prior.problem import Problem, build_prior, make_problem
    from lottery_prior.report.html import write_report
    from lottery_prior.stopping import make_stopping_rule
    from lottery_prior.tickets import Ticket


def __getattr__(name: str) -> Any:
    where = _PUBLIC.get(name)
    if where is None:
        raise AttributeError(f"module 'lottery_prior' has no attribute {name!r}")
    module, attribute = where if isinstance(where, tuple) else (where, name)
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value  # imported once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})

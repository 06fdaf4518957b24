"""The one interface of every way to choose the sparse network a comparison fits.

A :class:`MaskFinder` turns a :class:`Match` (a finished IMP run and its round nearest the
requested sparsity: the problem, the prior, theta0 and z, and the ticket every baseline is
matched to) into a :class:`Found`: a ticket (mask, the weights it is retrained from, z) and
a label for tables. Every finder's ticket is then fitted the same way, on the observation
(:func:`lottery_prior.compare.fit_method`), so methods differ in nothing but how the network
was chosen. A finder says what it needs: ``structure`` (the kind of IMP ticket it can be
matched to: weights, channels or either) and whether its ticket is a mask of the run's own
network that can be retrained on another image or task (``transferable``).

A new finder is one module with one class, registered with :func:`register_finder`; ``lip
compare``, ``lip find``, sweeps and the report all read :data:`REGISTRY`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, ClassVar

from lottery_prior.errors import LipError
from lottery_prior.fit import Callback, FitConfig
from lottery_prior.tickets import Ticket

if TYPE_CHECKING:
    from lottery_prior.learned import LearnConfig
    from lottery_prior.lottery import ImpRun
    from lottery_prior.problem import Problem

Progress = Callable[[str], Sequence[Callback]]
STRUCTURES = ("weights", "channels", "any")


@dataclass(frozen=True)
class Match:
    """A finished IMP run and its round whose counted sparsity is nearest the requested one."""

    run: ImpRun
    record: dict
    sparsity: float  # the sparsity asked for

    @classmethod
    def of(cls, run: ImpRun, sparsity: float) -> Match:
        return cls(run, run.closest(sparsity), sparsity)

    @property
    def round(self) -> int:
        return int(self.record["round"])

    @cached_property
    def ticket(self) -> Ticket:
        """The IMP round's ticket (read without the run's lock)."""
        return self.run.ticket(self.round)

    @property
    def problem(self) -> Problem:
        return self.run.problem

    @property
    def seed(self) -> int:
        return self.run.fit_config.seed

    @property
    def observation(self) -> str:
        """The identity of the observation: random baselines draw their masks in its
        context, so every image (and noise seed) gets draws of its own."""
        return self.problem.describe()["observation_sha256"]

    @property
    def search_seconds(self) -> float:
        """Seconds of the IMP rounds before this one: the search that found its mask."""
        records = self.run.finished_records()
        return round(sum(r["seconds"] for r in records[: self.round]), 2)


@dataclass
class Found:
    """What a finder found: the ticket to fit, its label in tables, the finder's seconds, and
    the IMP round's own record when that fit is exactly what would be reported (a ticket
    fitted in full on the observation: refitting it would repeat it)."""

    ticket: Ticket
    label: str
    find_seconds: float | None = None
    record: dict | None = None


@dataclass(frozen=True)
class FinderOptions:
    """Settings of the finders that take some (the learned mask's, from ``[learned]`` in a
    spec or the ``--learn-*`` options)."""

    learn: LearnConfig | None = None


class MaskFinder:
    """Base of the finders: ``find(match) -> Found``, and what a finder needs."""

    name: ClassVar[str]
    title: ClassVar[str]  # for people (tables, legends)
    structure: ClassVar[str] = "weights"  # IMP tickets it is matched to
    transferable: ClassVar[bool] = True  # its ticket is a mask of the run's network
    search_name: ClassVar[str | None] = None  # its name under `lip find --finder`, if any
    random: ClassVar[bool] = False  # its mask is a random draw (claims count the draws)
    classical: ClassVar[bool] = False  # no network: restores the observation directly
    order: ClassVar[int] = 100  # its place in tables and legends

    @classmethod
    def create(cls, options: FinderOptions) -> MaskFinder:
        """The finder with its settings (most have none)."""
        return cls()

    def find(self, match: Match, *, progress: Progress | None = None) -> Found:
        raise NotImplementedError

    def fit_config(self, config: FitConfig) -> FitConfig:
        """The fit settings its ticket is fitted with (the run's, unless the network is
        another model fitted with that model's own defaults)."""
        return config

    def identity(self, sparsity: float) -> dict:
        """Its settings as they enter the identity of a sweep unit at ``sparsity`` (every
        one resolved; none by default)."""
        return {}

    @classmethod
    def fits(cls, structure: str) -> bool:
        """Whether it can be matched to an IMP run of this structure."""
        return cls.structure in ("any", structure)


REGISTRY: dict[str, type[MaskFinder]] = {}


def register_finder(cls: type[MaskFinder]) -> type[MaskFinder]:
    """Class decorator: add a finder to :data:`REGISTRY` under its ``name``."""
    if cls.name in REGISTRY:
        raise LipError(f"finder {cls.name!r} is already registered; pick another name")
    if cls.structure not in STRUCTURES:
        raise LipError(f"finder {cls.name!r}: structure must be one of {', '.join(STRUCTURES)}")
    REGISTRY[cls.name] = cls
    return cls


def finder_class(name: str) -> type[MaskFinder]:
    """The registered finder ``name``; a one-line error naming the known ones otherwise."""
    if name not in REGISTRY:
        raise LipError(f"unknown method {name!r}; choose from {', '.join(REGISTRY)}")
    return REGISTRY[name]


def make_finder(name: str, options: FinderOptions | None = None) -> MaskFinder:
    """The finder ``name`` with its settings."""
    return finder_class(name).create(options or FinderOptions())


def finder_names(*, structure: str | None = None, transferable: bool | None = None) -> list[str]:
    """Registered finders (in table order), optionally those matched to IMP runs of a
    structure, or those whose tickets can be transferred."""
    return [n for n, c in sorted(REGISTRY.items(), key=lambda item: item[1].order)
            if (structure is None or c.structure in ("any", structure))
            and (transferable is None or c.transferable == transferable)]


def method_rank(name: str) -> int:
    """A method's place in tables and legends (unregistered names last)."""
    cls = REGISTRY.get(name)
    return cls.order if cls is not None else len(REGISTRY) + 100


def method_title(name: str) -> str:
    """A method's name for people (its own name if it is not registered)."""
    cls = REGISTRY.get(name)
    return cls.title if cls is not None else name

"""Finders: every way of choosing the sparse network a comparison fits, behind one interface
(:class:`MaskFinder`) and one registry (:data:`REGISTRY`, in table order).

========================  ==================================================================
``dense``, ``ticket``     the unpruned network, and IMP with rewinding (:mod:`.imp`)
``learned``               a mask learned at theta0 (:mod:`.learned`)
``random``, ...           random masks at the ticket's sparsity (:mod:`.random_masks`)
``magnitude`` ...         pruning at initialisation: magnitude, SNIP, GraSP, SynFlow
``decoder``               the Deep Decoder of equal size (:mod:`.decoder`)
``random-channels`` ...   baselines of channel tickets (:mod:`.channel_baselines`)
``bm3d``, ``biharmonic``  classical methods, no network (:mod:`.classical`)
========================  ==================================================================
"""

from lottery_prior.finders import (  # noqa: F401 - importing a module registers its finders
    at_init,
    channel_baselines,
    classical,
    decoder,
    imp,
    learned,
    random_masks,
)
from lottery_prior.finders.base import (
    REGISTRY,
    FinderOptions,
    Found,
    MaskFinder,
    Match,
    finder_class,
    finder_names,
    make_finder,
    method_rank,
    method_title,
    register_finder,
)

__all__ = ["REGISTRY", "FinderOptions", "Found", "Match", "MaskFinder", "finder_class",
           "finder_names", "make_finder", "method_rank",
           "method_title", "register_finder"]

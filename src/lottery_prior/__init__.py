"""Lottery image priors: sparse deep image priors found by lottery-ticket pruning."""

__version__ = "0.3.0"

"""Experiments at scale: a TOML spec -> units of work -> an executor -> a results store.

``spec`` reads and validates the spec, ``units`` expands it into content-addressed units
(IMP searches, fits, transfers) and runs one, ``store`` keeps finished units' rows and the
results table, ``executor`` runs a plan on local worker processes, ``ray_executor`` on Ray.
"""

"""Fitters: one per effect, each a function over tidy DataFrames (docs/architecture.md
section 5), and :func:`fit_store` that fits every effect a store has data for.

>>> from cimlab.models.fit import fit_store
>>> dm = fit_store("data/chip01.h5")           # doctest: +SKIP
>>> dm.save("models/chip01.json")  # doctest: +SKIP
"""

from cimlab.models.fit.binary import fit_binary
from cimlab.models.fit.programming import fit_programming
from cimlab.models.fit.read_noise import fit_read_noise
from cimlab.models.fit.relaxation import fit_relaxation
from cimlab.models.fit.retention import fit_retention
from cimlab.models.fit.store import (
    FitReport,
    TableSet,
    collect,
    fit_store,
    fit_store_report,
    fit_tables,
    hash_tables,
    tables_from_frames,
)
from cimlab.models.fit.stuck import fit_stuck

__all__ = [
    "FitReport",
    "TableSet",
    "collect",
    "fit_binary",
    "fit_programming",
    "fit_read_noise",
    "fit_relaxation",
    "fit_retention",
    "fit_store",
    "fit_store_report",
    "fit_stuck",
    "fit_tables",
    "hash_tables",
    "tables_from_frames",
]

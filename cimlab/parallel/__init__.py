"""Sweeps that scale out (layer 0): one task function mapped over many inputs, serially, on a
local Dask cluster, or on a multi-machine Dask cluster given its scheduler address.

Each user (Monte Carlo over programmings in :mod:`cimlab.sim.evaluate`, campaigns over many
chips in :mod:`cimlab.procedures.many_chips`) passes its own picklable task function; results
come back in input order and depend only on the inputs (seeds are derived per task with
:func:`task_seeds`), never on the engine or the number of workers. docs/scale-out.md.
"""

from cimlab.parallel.engine import (
    DaskEngine,
    Engine,
    SerialEngine,
    engine_for,
    task_seeds,
)

__all__ = ["DaskEngine", "Engine", "SerialEngine", "engine_for", "task_seeds"]

"""Characterization procedures: typed functions over (station, store, plan section).

Each procedure

* is vectorised over cells: one batched pulse and one batched read per iteration (plus the
  clock), never a round trip per cell (the SMU precision reads are per cell by nature);
* writes the tidy tables of ``docs/architecture.md`` as it measures (``run.append`` flushes);
* is resumable: work is cut into named steps; a step's rows are appended as they are measured
  and the step is completed (committed) right after; on resume the store cuts every table
  back to the last committed step and the procedure skips the completed steps, so nothing is
  measured twice or lost (``cimlab.store.Run``);
* shows tqdm progress bars (on a terminal only);
* ends its run "completed", or "aborted" on an exception or Ctrl-C (resumable like a killed
  run);
* never looks at the emulated chip: only at what the instruments answer.

The run metadata records the plan section, the resolved cell set (hash), the station snapshot
and the seeds, so :meth:`Store.begin_run` with ``resume=True`` finds the unfinished run of the
same experiment.

The experiments live one family per module: :mod:`~cimlab.procedures.programming`
(programming error), :mod:`~cimlab.procedures.read_noise` (read fluctuation, SMU reads),
:mod:`~cimlab.procedures.retention` (relaxation, bake retention) and
:mod:`~cimlab.procedures.binary_switching` (BER, fault map, endurance); the run bookkeeping
is :class:`~cimlab.procedures.run.ProcedureRun`. :data:`PROCEDURES` maps a plan experiment's
kind to its procedure.
"""

from __future__ import annotations

from collections.abc import Callable

from cimlab.procedures.binary_switching import ber, endurance, fault_map, sense_reference
from cimlab.procedures.forming import forming
from cimlab.procedures.gate_calibration import gate_calibration
from cimlab.procedures.iv_sweep import iv_sweep
from cimlab.procedures.programming import programming_error
from cimlab.procedures.read_noise import (
    read_fluctuation,
    read_noise_series,
    smu_precision_reads,
)
from cimlab.procedures.retention import ROOM_TEMPERATURE_K, bake_retention, relaxation
from cimlab.procedures.run import ProcedureResult, ProcedureRun, plan_section

PROCEDURES: dict[str, Callable[..., ProcedureResult]] = {
    "programming_error": programming_error,
    "read_fluctuation": read_fluctuation,
    "read_noise_series": read_noise_series,
    "relaxation": relaxation,
    "bake_retention": bake_retention,
    "ber": ber,
    "fault_map": fault_map,
    "endurance": endurance,
    "iv_sweep": iv_sweep,
    "gate_calibration": gate_calibration,
    "forming": forming,
}


__all__ = ["PROCEDURES", "ROOM_TEMPERATURE_K", "ProcedureResult", "ProcedureRun",
           "bake_retention", "ber", "endurance", "fault_map", "forming", "gate_calibration",
           "iv_sweep",
           "plan_section",
           "programming_error", "read_fluctuation", "read_noise_series", "relaxation",
           "sense_reference",
           "smu_precision_reads"]

"""What a procedure needs from a bench and from a store, as ``typing.Protocol``s.

Procedures (layer 6) are written against these, never against a driver class or a bench
topology. Today's integrated bench (one array controller behind one address, an SMU, a bake
oven, a clock: :class:`cimlab.instruments.station.Station`) satisfies them; a discrete bench
(switch matrix + pulse generator + SMU + temperature controller) satisfies them by offering
the same operations: pulse a batch of cells, read a batch of cells, multiply a vector on a
tile, route one cell to the SMU. Method names say what they do, not which command does it.

Everything is structural (``Protocol``): a class satisfies a protocol by having the members,
with no inheritance. Units are SI: V, A, s, S, degC where the name says so.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np


class CellArray(Protocol):
    """The ReRAM array as procedures see it: batched operations over flat cell indices.

    A cell index is ``(tile * rows + row) * cols + col`` over the chip ``geometry``.
    Optional: ``verify_batch_cells`` (int), the most cells an array should program-verify
    and read back in one batch so that a cell's verify read follows its pulse within tens of
    ms (a bench that works cell by cell); procedures read it with
    :func:`cimlab.procedures.programming.timing_batch`."""

    @property
    def geometry(self) -> tuple[int, int, int]:
        """``(n_tiles, rows, cols)`` of the chip."""
        ...

    def pulse(self, cells: Any, polarity: str, v_pulse: Any, v_gate: Any,
              width_s: float) -> np.ndarray:
        """Apply one programming pulse to each of ``cells``: ``polarity`` ``"set"`` (bit-line
        amplitude ``v_pulse`` [V]) or ``"reset"`` (source-line amplitude), word-line voltage
        ``v_gate`` [V] (scalars or one per cell), width ``width_s`` [s]. Returns each cell's
        pulse energy [J]. Out-of-limit values raise before anything is sent."""
        ...

    def read(self, cells: Any = None, **kwargs: Any) -> Any:
        """Read the conductance [S] of each of ``cells`` (a cell may be repeated) at the
        read voltage, one batched operation."""
        ...

    def mvm(self, tile: int, v_rows: Any) -> np.ndarray:
        """Matrix-vector multiply on ``tile``: row voltages [V] in, column currents [A] out."""
        ...

    def select(self, cell: int, v_gate: float | None = None) -> None:
        """Route one cell to the SMU (precision reads, quasi-static sweeps), its word line
        fully on or at ``v_gate`` [V] (the access transistor then limits the current);
        a ``v_gate`` beyond the station's limits raises before anything is sent."""
        ...

    def deselect(self) -> None:
        """Undo :meth:`select`: no cell routed to the SMU."""
        ...


class SourceMeter(Protocol):
    """A source-measure unit sourcing voltage and measuring current (the PyMeasure
    ``Keithley2450`` vocabulary, which other SMU drivers share)."""

    source_voltage: float
    current: float

    def apply_voltage(self, voltage_range: float | None = None,
                      compliance_current: float = 0.1) -> None:
        """Configure as a voltage source with ``compliance_current`` [A]."""
        ...

    def measure_current(self, nplc: float = 1, current: float = 1.05e-4,
                        auto_range: bool = True) -> None:
        """Configure current measurement (range ``current`` [A])."""
        ...

    def enable_source(self) -> None:
        """Output on."""
        ...

    def disable_source(self) -> None:
        """Output off."""
        ...


@runtime_checkable
class RowWindowMVM(Protocol):
    """An array that drives row windows only in its MVMs (protocol 1.3, ``ARR:MVM:ROWS?``):
    only the driven rows' voltages travel. Optional: chip-in-the-loop falls back to
    :meth:`CellArray.mvm` with full-width vectors without it."""

    last_round_trips: int

    def mvm_windows(self, tile: int, windows: list[tuple[int, Any]]) -> list[np.ndarray]:
        """Column currents [A] per window ``(first_row, v (vectors, n) [V])``."""
        ...


class BakeRecordLike(Protocol):
    """Clock times of one bake: start, soak start/end, back at ambient [s]."""

    start_s: float
    soak_start_s: float
    soak_end_s: float
    end_s: float


class TemperatureChamber(Protocol):
    """An oven or a temperature-controlled chuck holding the chip."""

    temperature_c: float
    heater_enabled: bool
    ramp_rate_k_per_s: float

    def wait_until(self, clock: Clock, temp_c: float, tolerance_k: float = 0.5,
                   poll_s: float = 10.0, timeout_s: float = 24 * 3600.0) -> float:
        """Wait (on ``clock``) until the chamber is at ``temp_c`` [degC]; the clock time [s]."""
        ...

    def bake(self, temp_c: float, seconds: float, clock: Clock, *,
             poll_s: float = 10.0) -> BakeRecordLike:
        """Ramp to ``temp_c``, soak ``seconds`` [s] (from the first poll, every ``poll_s``
        [s], at temperature), return to ambient; what happened when."""
        ...


class Clock(Protocol):
    """The bench clock: real time on hardware, the emulator's virtual time otherwise."""

    def now(self) -> float:
        """Time [s] since the bench started."""
        ...

    def sleep(self, seconds: float) -> float:
        """Let ``seconds`` [s] pass; the new time [s]."""
        ...


class Bench(Protocol):
    """An open bench (:class:`cimlab.instruments.station.Station`): the instruments a
    procedure may use, the clock, the safety limits and a provenance snapshot."""

    array: CellArray
    smu: SourceMeter
    oven: TemperatureChamber
    clock: Clock
    limits: Any
    path: Path

    def snapshot(self) -> dict[str, Any]:
        """IDN, settings and versions of every instrument (stored with each run)."""
        ...

    def gate_voltage_for(self, icc_a: float) -> float:
        """Word-line voltage [V] whose access transistor limits the SET current to
        ``icc_a`` [A] (the station's transistor calibration)."""
        ...


class RunRecord(Protocol):
    """One run of a store (:class:`cimlab.store.Run`): tables appended as measured, steps
    committed, metadata, status."""

    @property
    def uid(self) -> str: ...

    @property
    def kind(self) -> str: ...

    @property
    def status(self) -> str: ...

    @property
    def plan(self) -> Any: ...

    @property
    def seeds(self) -> dict: ...

    @property
    def meta(self) -> dict[str, Any]: ...

    @property
    def tables(self) -> list[str]: ...

    @property
    def completed_steps(self) -> set[str]: ...

    @property
    def started_unix(self) -> float: ...

    @property
    def instrument_time_s(self) -> float:
        """Instrument time charged to the run so far, over every call that resumed it [s]."""
        ...

    def table(self, name: str) -> Any:
        """The committed rows of table ``name`` as a pandas DataFrame."""
        ...

    def append(self, name: str, columns: Mapping[str, Any]) -> int:
        """Append rows (equal-length columns) to table ``name``, flushed."""
        ...

    def complete_step(self, step_id: str) -> None:
        """Commit every row appended so far under ``step_id``."""
        ...

    def add_instrument_time(self, seconds: float) -> float:
        """Charge ``seconds`` [s] of instrument time to the run."""
        ...

    def set_meta(self, key: str, value: Any) -> None:
        """Record one JSON-able metadata value."""
        ...

    def finish(self, status: str = "completed") -> None:
        """Close the run as ``status`` ("completed" or "aborted")."""
        ...


class RunStore(Protocol):
    """A measurement store (:class:`cimlab.store.Store`): runs, begun or resumed."""

    def begin_run(self, kind: str, plan: Mapping[str, Any] | Any,
                  snapshot: Mapping[str, Any] | None = None,
                  seeds: Mapping[str, int] | None = None,
                  resume: bool = True) -> RunRecord:
        """Start a run of ``kind`` (or, with ``resume``, continue the unfinished one with the
        same plan)."""
        ...

    def run(self, uid: str) -> RunRecord:
        """The run ``uid`` (or a unique prefix)."""
        ...

    def __iter__(self) -> Iterator[RunRecord]:
        """Every run of the store."""
        ...


__all__ = ["BakeRecordLike", "Bench", "CellArray", "Clock", "RunRecord", "RunStore",
           "SourceMeter", "TemperatureChamber"]

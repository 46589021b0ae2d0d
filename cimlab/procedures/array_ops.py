"""Batched pulse and read over a bench's cell array, counting round trips and cell
operations (:class:`ArrayOps`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from cimlab.procedures.protocols import CellArray
from cimlab.procedures.verify_config import RESET, SET


class ArrayOps:
    """Batched pulse and read over a station's array driver, counting round trips.

    ``pulse`` sends one command per polarity present (program-verify always passes one
    polarity, so one command); ``read`` one command for ``n_reads`` reads of every cell
    (cell list repeated), averaged here. ``commands`` counts those batched commands;
    ``round_trips`` counts the queries instruments answered: the same on an integrated
    array controller (one query per command), but on a discrete bench, whose array counts its
    own queries (``array.round_trips``: relays, generator, SMU per cell), that count.
    """

    def __init__(self, array: CellArray):
        self.array = array
        #: batched array commands sent through this object
        self.commands = 0
        counter = getattr(array, "round_trips", None)
        self._array_rt0: int | None = counter if isinstance(counter, int) else None
        #: cell operations sent: one per pulsed cell, one per cell read
        self.cell_ops = 0
        #: every pulse sent through this object (calibration sweeps included) and its energy [J]
        self.pulses_sent = 0
        self.energy_j = 0.0

    @property
    def round_trips(self) -> int:
        """Instrument queries answered since this object was made (see the class note)."""
        if self._array_rt0 is not None:
            return int(self.array.round_trips) - self._array_rt0  # type: ignore[attr-defined]
        return self.commands

    def pulse(self, cells: np.ndarray, direction: Any, v_pulse: Any, v_gate: Any,
              width_s: float) -> np.ndarray:
        """Pulse ``cells``; ``direction`` +1 SET / -1 RESET (scalar or per cell). Energy [J]."""
        cells = np.asarray(cells, dtype=np.uint32)
        n = cells.size
        d = np.broadcast_to(np.asarray(direction), (n,))
        vp = np.broadcast_to(np.asarray(v_pulse, dtype=float), (n,))
        vg = np.broadcast_to(np.asarray(v_gate, dtype=float), (n,))
        energy = np.zeros(n)
        for pol, sign in (("set", SET), ("reset", RESET)):
            m = d == sign
            if not m.any():
                continue
            self.commands += 1
            self.cell_ops += int(m.sum())
            energy[m] = np.asarray(self.array.pulse(cells[m], pol, _compact(vp[m]),
                                                    _compact(vg[m]), float(width_s)), float)
            self.pulses_sent += int(m.sum())
        self.energy_j += float(energy.sum())
        return energy

    def read(self, cells: np.ndarray, n_reads: int = 1) -> np.ndarray:
        """One batched read of ``cells`` (``n_reads`` reads averaged) [S]."""
        self.commands += 1
        c = np.asarray(cells, dtype=np.uint32)
        self.cell_ops += c.size * n_reads
        if n_reads == 1:
            return np.asarray(self.array.read(c), dtype=float)
        g = np.asarray(self.array.read(np.tile(c, n_reads)), dtype=float)
        return g.reshape(n_reads, c.size).mean(axis=0)


def _compact(v: np.ndarray) -> Any:
    """One number when every cell gets the same value (fewer bytes on the wire)."""
    return float(v[0]) if v.size and np.all(v == v[0]) else v


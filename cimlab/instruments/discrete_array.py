"""``DiscreteArray``: the array interface procedures use (:class:`~cimlab.procedures.protocols.
CellArray`), composed from a discrete bench's instruments (layer 4): a switch matrix
(Keithley 2750, PyMeasure's ``Keithley2750``) routing the chip's word, bit and source lines to
four buses, a pulse generator (Keysight 33500B, PyMeasure's ``Agilent33500``: channel 1 the
programming pulse, channel 2 the DC gate level that sets the SET compliance current) and the
SMU (Keithley 2450) that reads. The matrix's channel numbering is
:mod:`cimlab.instruments.emulator.switch`'s (``row * 10**7 + line``, rows PULSE 1, SMU 2,
GATE 3, GND 4).

Cost per cell (what the benchmark counts as round trips; a round trip is one query answered):

* pulse: 2 per cell (the matrix closes the cell's three crosspoints and answers ``*OPC?``,
  then the generator fires its burst on ``*TRG;*OPC?``), plus 1 per distinct
  (amplitude, gate) pair to program the generator;
* read: 2 per cell (matrix ``*OPC?``, then the SMU's ``:MEAS:CURR?``);
* MVM: not available: a discrete bench has one source; a tile MVM needs the integrated
  array controller's row drivers (InstrumentError).

The instruments are on separate connections, so each step waits for the previous one's
answer: a relay must be closed before the pulse fires. Pulse energy is not measured on this
topology (no current probe on the pulse path): :meth:`pulse` returns NaN per cell.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from cimlab.errors import InstrumentError
from cimlab.instruments.emulator.switch import (
    CHANNEL_ROW,
    ROW_GATE,
    ROW_GND,
    ROW_PULSE,
    ROW_SMU,
    lines_per_tile,
)
from cimlab.instruments.limits import check_limit, check_pulse

log = logging.getLogger(__name__)

#: SMU integration time for a cell read [power-line cycles] (the 2450's fastest, 0.01 PLC)
READ_NPLC = 0.01

#: Cells per program-verify batch on this bench. Each cell operation takes ~1.2 ms of
#: instrument time here (relays settle, 0.01 PLC read; measured by
#: ``benchmarks/discrete_bench.py``), so a 16-cell verify iteration (pulse + read) lasts
#: ~40 ms and a cell's verify read follows its pulse by ~20-80 ms, as on an array controller
#: verifying 4096 cells at once (~25-30 ms). With 4096-cell batches it was ~10 s, long enough
#: for relaxation to move cells out of tolerance between pulse and check, so the verify
#: selected already-relaxed cells and the fitted programming error described the bench's
#: timing, not the device (docs/instruments.md).
VERIFY_BATCH_CELLS = 16


class DiscreteArray:
    """CellArray over a switch matrix, a two-channel pulse generator and an SMU.

    :param switch: a ``Keithley2750``-like driver (``write``, ``ask``)
    :param pulse_gen: an ``Agilent33500``-like driver
    :param smu: a Keithley 2450 driver (the station's limit-checking one)
    :param geometry: ``(n_tiles, rows, cols)`` of the chip on the matrix
    :param limits: the station's limits; ``calibration`` its transistor calibration
    :param read_voltage: read voltage [V] (checked against ``read_v_max_v`` and
        ``smu_v_max_v``)
    """

    #: most cells per program-verify batch (see :data:`VERIFY_BATCH_CELLS`)
    verify_batch_cells = VERIFY_BATCH_CELLS

    def __init__(self, switch: Any, pulse_gen: Any, smu: Any, geometry: tuple[int, int, int],
                 limits: Any, calibration: Any, *, read_voltage: float = 0.2,
                 source: str = ""):
        self.switch, self.pulse_gen, self.smu = switch, pulse_gen, smu
        self._geometry = tuple(int(x) for x in geometry)
        self.limits, self.calibration, self._source = limits, calibration, source
        check_limit(limits, "read_v_max_v", read_voltage, what="read voltage", station=source)
        check_limit(limits, "smu_v_max_v", read_voltage, what="read voltage", station=source)
        self.read_voltage = float(read_voltage)
        #: no board readback of the compliance gate voltage on a discrete bench
        self.v_gate_at_icc_max: float | None = None
        #: queries answered (round trips) and cell operations since open
        self.round_trips = 0
        self.cell_ops = 0
        self.routed_cell: int | None = None
        self.output_enabled = False
        self._gen_setting: tuple[float, float, float] | None = None
        self._smu_ready = False

    # -- geometry and channels -----------------------------------------------------------------
    @property
    def geometry(self) -> tuple[int, int, int]:
        return self._geometry  # type: ignore[return-value]

    def lines(self, cell: int) -> tuple[int, int, int]:
        """Matrix line numbers (from 1) of a cell's word, bit and source line."""
        n_tiles, rows, cols = self._geometry
        c = int(cell)
        if not 0 <= c < n_tiles * rows * cols:
            raise ValueError(f"cell {c} outside the chip's {n_tiles * rows * cols} cells")
        t, rest = divmod(c, rows * cols)
        r, col = divmod(rest, cols)
        base = t * lines_per_tile(rows, cols)
        return base + r + 1, base + rows + col + 1, base + rows + cols + col + 1

    def channels(self, cell: int, purpose: str) -> str:
        """The channel list closing ``cell`` for ``"set"``, ``"reset"`` or ``"read"``."""
        wl, bl, sl = self.lines(cell)
        pairs = {"set": ((ROW_PULSE, bl), (ROW_GND, sl)),
                 "reset": ((ROW_PULSE, sl), (ROW_GND, bl)),
                 "read": ((ROW_SMU, bl), (ROW_GND, sl))}[purpose]
        chans = [ROW_GATE * CHANNEL_ROW + wl] + [r * CHANNEL_ROW + ln for r, ln in pairs]
        return "(@" + ",".join(str(c) for c in chans) + ")"

    def _ask(self, inst: Any, command: str) -> str:
        self.round_trips += 1
        return str(inst.ask(command)).strip()

    def _route(self, cell: int, purpose: str) -> None:
        self._ask(self.switch, f":ROUT:OPEN:ALL;:ROUT:MULT:CLOS {self.channels(cell, purpose)}"
                  ";*OPC?")

    # -- set-up and shut-down --------------------------------------------------------------------
    def enable(self) -> None:
        """Generator: channel 1 a bus-triggered one-pulse burst at 0 V low level, channel 2 a
        DC level at 0 V, both outputs on into a high-impedance load; all relays open."""
        self.switch.write(":ROUT:OPEN:ALL")
        self.pulse_gen.write(
            "*RST;:SOUR1:FUNC PULS;:SOUR1:VOLT:LOW 0;:SOUR1:BURS:MODE TRIG;"
            ":SOUR1:BURS:NCYC 1;:SOUR1:BURS:STAT 1;:TRIG1:SOUR BUS;:OUTP1:LOAD INF;"
            ":SOUR2:FUNC DC;:SOUR2:VOLT:OFFS 0;:OUTP2:LOAD INF;:OUTP1 1;:OUTP2 1")
        self._ask(self.pulse_gen, "*OPC?")
        self._gen_setting = None
        self.output_enabled = True

    def deselect(self) -> None:
        """All relays open."""
        self._ask(self.switch, ":ROUT:OPEN:ALL;*OPC?")
        self.routed_cell = None

    def shutdown(self) -> None:
        """Relays open, generator outputs off at 0 V."""
        try:
            self.switch.write(":ROUT:OPEN:ALL")
        finally:
            self.pulse_gen.write(":OUTP1 0;:OUTP2 0;:SOUR2:VOLT:OFFS 0")
            self.output_enabled = False

    # -- CellArray ---------------------------------------------------------------------------
    def pulse(self, cells: Any, polarity: str, v_pulse: Any, v_gate: Any,
              width_s: float) -> np.ndarray:
        """One pulse per cell (limits checked first, nothing sent on a refusal); NaN energy."""
        check_pulse(self.limits, polarity, v_pulse, v_gate, width_s,
                    calibration=self.calibration if polarity == "set" else None,
                    v_gate_at_icc_max=self.v_gate_at_icc_max, station=self._source)
        pol = {"set": "set", "reset": "reset"}[polarity]
        c = np.atleast_1d(np.asarray(cells, dtype=np.int64))
        vp = np.broadcast_to(np.asarray(v_pulse, dtype=float), c.shape)
        vg = np.broadcast_to(np.asarray(v_gate, dtype=float), c.shape)
        for cell in c:
            self.lines(int(cell))  # every index valid before the first relay moves
        self._need_output()
        # one generator set-up per distinct (amplitude, gate) pair, in first-seen order
        order = np.lexsort((vg, vp))
        for i in order:
            self._program_generator(float(vp[i]), float(vg[i]), float(width_s))
            self._route(int(c[i]), pol)
            self.routed_cell = None
            self._ask(self.pulse_gen, "*TRG;*OPC?")
        self.cell_ops += int(c.size)
        self.deselect()
        return np.full(c.shape, np.nan)

    def _program_generator(self, v_pulse: float, v_gate: float, width_s: float) -> None:
        key = (v_pulse, v_gate, width_s)
        if key == self._gen_setting:
            return
        period = max(4 * width_s, 1e-6)
        self.pulse_gen.write(
            f":SOUR1:FUNC:PULS:PER {period:.9g};:SOUR1:FUNC:PULS:WIDT {width_s:.9g};"
            f":SOUR1:VOLT:HIGH {v_pulse:.9g};:SOUR2:VOLT:OFFS {v_gate:.9g}")
        err = self._ask(self.pulse_gen, "SYST:ERR?")
        if not err.startswith(("+0", "0")):
            raise InstrumentError(f"{self._source}: the pulse generator refused the pulse "
                                  f"{v_pulse:g} V, {width_s:g} s, gate {v_gate:g} V: {err}")
        self._gen_setting = key
        self._smu_ready = False  # the gate level moved: reads set it again

    def read(self, cells: Any = None, **kwargs: Any) -> Any:
        """Conductance [S] of each cell: routed to the SMU, ``I / V_read`` (a cell may repeat)."""
        if cells is None:
            raise ValueError("read(cells): give the cells to read")
        c = np.atleast_1d(np.asarray(cells, dtype=np.int64))
        for cell in np.unique(c):
            self.lines(int(cell))
        self._need_output()
        self._smu_for_reads()
        g = np.empty(c.size)
        for k, cell in enumerate(c):
            self._route(int(cell), "read")
            i = float(self._ask(self.smu, ":MEAS:CURR?").split(",")[0])
            g[k] = i / self.read_voltage
        self.cell_ops += int(c.size)
        self.deselect()
        return g

    def _smu_for_reads(self) -> None:
        if self._smu_ready:
            return
        self._gen_setting = None
        # the gate fully on for reads (the RESET word-line level), transistor out of the way
        self.pulse_gen.write(f":SOUR2:VOLT:OFFS {float(self.limits.reset_wl_max_v):.9g}")
        self.smu.apply_voltage(compliance_current=float(self.limits.smu_i_max_a))
        self.smu.measure_current(nplc=READ_NPLC, current=float(self.limits.smu_i_max_a))
        self.smu.source_voltage = self.read_voltage
        self.smu.enable_source()
        self._smu_ready = True

    def select(self, cell: int | None, v_gate: float | None = None) -> None:
        """Route one cell to the SMU (``None``: open every relay), its word line at the
        RESET word-line level (fully on). A word-line voltage ``v_gate`` for the routed cell
        is not offered here (InstrumentError): gate-set sweeps need an integrated station."""
        if v_gate is not None:
            raise InstrumentError(
                f"{self._source}: a discrete bench routes a cell to the SMU with its word line "
                "fully on; a routed word-line voltage (quasi-static 1T1R sweeps, gate "
                "calibration) needs a station with an array controller (topology = "
                "\"integrated\")")
        if cell is None:
            self.deselect()
            return
        self._need_output()
        self._smu_ready = False  # the caller drives the SMU now
        self._gen_setting = None
        self.pulse_gen.write(f":SOUR2:VOLT:OFFS {float(self.limits.reset_wl_max_v):.9g}")
        self._route(int(cell), "read")
        self.routed_cell = int(cell)

    def mvm(self, tile: int, v_rows: Any) -> np.ndarray:
        raise InstrumentError(
            f"{self._source}: a discrete bench (switch matrix + pulse generator + one SMU) "
            "cannot drive a tile's rows at once; run MVM on a station with an array "
            "controller (topology = \"integrated\")")

    def _need_output(self) -> None:
        if not self.output_enabled:
            raise InstrumentError(f"{self._source}: the pulse generator is off; the station "
                                  "enables it when it opens")

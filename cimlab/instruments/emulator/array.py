"""The emulated array controller: cimlab's array-controller command set
(``docs/array-controller-protocol.md``) over the shared world's chip.

Batched operations take cell lists as little-endian uint32 blocks and per-cell values as
little-endian float32 blocks (or a single number for all cells) and answer one float32 block,
so a whole tile is one round trip. A failed block query answers ``#10`` and queues the error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from cimlab import __version__
from cimlab.instruments.emulator.scpi import (
    Instrument,
    Param,
    ScpiError,
    encode_block,
    expect,
    fmt,
)
from cimlab.instruments.emulator.world import World
from cimlab.params import check, from_dict, param, to_dict

CELL_DTYPE = "<u4"
VALUE_DTYPE = "<f4"
#: most row windows in one ``ARR:MVM:ROWS?`` (protocol 1.3; more: -223)
MAX_MVM_WINDOWS = 4096


@dataclass(frozen=True)
class ArrayRange:
    """Hardware range of the (emulated) array-controller board; ``ARRay:RANGe?`` reports it."""

    v_terminal_max_v: float = param(
        5.0, unit="V", lo=0.0, lo_open=True, doc="largest BL/SL pulse amplitude"
    )
    v_gate_max_v: float = param(5.0, unit="V", lo=0.0, lo_open=True, doc="largest WL voltage")
    width_min_s: float = param(10e-9, unit="s", lo=0.0, lo_open=True, doc="shortest pulse")
    width_max_s: float = param(10e-3, unit="s", lo=0.0, lo_open=True, doc="longest pulse")
    v_read_max_v: float = param(1.0, unit="V", lo=0.0, lo_open=True, doc="largest read voltage")
    v_mvm_max_v: float = param(1.0, unit="V", lo=0.0, lo_open=True, doc="largest |MVM input|")
    v_read_default_v: float = param(0.2, unit="V", lo=0.0, lo_open=True, doc="after *RST")

    def __post_init__(self) -> None:
        check(self)


class ArrayControllerEmulator(Instrument):
    """SCPI state machine of cimlab's array controller over ``world``."""

    NAME = "array"

    def __init__(self, world: World, rng: ArrayRange | None = None, serial: str = "EMU0001"):
        super().__init__(lock=world.lock)
        self.world = world
        self.range = rng or ArrayRange()
        self.serial = serial
        self.n_tiles, self.rows, self.cols = (int(x) for x in world.chip.geometry)
        self.n_cells = self.n_tiles * self.rows * self.cols
        self.output = False
        self.v_read = self.range.v_read_default_v
        c = self.command
        c("ARRay:GEOMetry", query=lambda p: f"{self.n_tiles},{self.rows},{self.cols}")
        c("ARRay:RANGe", query=self._q_range)
        c("ARRay:PULSe", query=self._q_pulse, block_reply=True)
        c("ARRay:READ", query=self._q_read, block_reply=True)
        c("ARRay:MVM", query=self._q_mvm, block_reply=True)
        c("ARRay:MVM:ROWS", query=self._q_mvm_rows, block_reply=True)
        c("ARRay:VREad", write=self._w_vread, query=lambda p: fmt(self.v_read))
        c("ARRay:COMPliance:GATE", query=self._q_compliance_gate)
        c("ARRay:ITIMe", query=lambda p: fmt(self.world.busy_s.get(self.NAME, 0.0), "{:.12g}"))
        c("ROUTe:CELL", write=self._w_route, query=self._q_route)
        c("ROUTe:GATE", query=self._q_gate)
        c("ROUTe:OPEN", write=self._w_open)
        c("OUTPut[:STATe]", write=self._w_output, query=lambda p: "1" if self.output else "0")

    def idn(self) -> str:
        return f"cimlab,Emulated ReRAM array controller,{self.serial},{__version__}"

    def reset(self) -> None:
        self.output = False
        self.v_read = self.range.v_read_default_v
        self.world.routed_cell = None
        self.world.routed_gate_v = None

    # -- state (EmulatedBench.save_state) ------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The board's settings (``array.*`` entries of a bench state file); the routing
        lives in the world."""
        return {"array.output": bool(self.output), "array.v_read": float(self.v_read),
                "array.range": json.dumps(to_dict(self.range))}

    @staticmethod
    def read_range(reader: Any) -> ArrayRange:
        return from_dict(ArrayRange, reader.json("array.range", "the ArrayRange fields"),
                         source=reader.source, prefix=reader.prefix + "array.range.")

    def read_state(self, reader: Any) -> dict[str, Any]:
        v_read = reader.number("array.v_read", lo=0.0, lo_open=True)
        if v_read > self.range.v_read_max_v:
            raise reader.error("array.v_read", f"at most {self.range.v_read_max_v:g} V", v_read)
        return {"output": reader.boolean("array.output"), "v_read": v_read}

    def apply_state(self, values: dict[str, Any]) -> None:
        with self.lock:
            for k, v in values.items():
                setattr(self, k, v)

    # -- helpers -----------------------------------------------------------------------------
    def _cells(self, p: Param, *, unique: bool) -> np.ndarray:
        cells = p.array(CELL_DTYPE)
        if cells.size == 0:
            raise ScpiError(-220, "empty cell list")
        if int(cells.max()) >= self.n_cells:
            raise ScpiError(-222, f"cell {int(cells.max())} >= {self.n_cells} cells")
        if unique and cells.size > 1 and not np.all(cells[1:] > cells[:-1]):
            # not strictly increasing: sort to look for repeats
            s = np.sort(cells)
            if np.any(s[1:] == s[:-1]):
                raise ScpiError(-220, "a cell appears more than once in one pulse command")
        return cells.astype(np.int64)

    def _values(self, p: Param, n: int, lo: float, hi: float, what: str) -> np.ndarray | float:
        if p.is_block:
            v = p.array(VALUE_DTYPE)
            if v.size != n:
                raise ScpiError(-220, f"{what}: {v.size} values for {n} cells")
            if not np.all(np.isfinite(v)) or v.min() < lo or v.max() > hi:
                raise ScpiError(-222, f"{what} outside [{lo:g}, {hi:g}]")
            return v.astype(np.float64)
        return p.number(lo=lo, hi=hi)

    def _need_output(self) -> None:
        if not self.output:
            raise ScpiError(-221, "array output is off (standby); send OUTP ON")

    # -- commands ----------------------------------------------------------------------------
    def _q_range(self, p: list[Param]) -> str:
        expect(p, 0, "ARR:RANG?")
        r = self.range
        return fmt((r.v_terminal_max_v, r.v_gate_max_v, r.width_min_s, r.width_max_s,
                    r.v_read_max_v, r.v_mvm_max_v))

    def _q_pulse(self, p: list[Param]) -> bytes:
        polarity, width, cells_p, v_p, g_p = expect(p, 5, "ARR:PULS?")
        pol = polarity.choice("SET", "RESet")
        r = self.range
        width_s = width.number(lo=r.width_min_s, hi=r.width_max_s)
        cells = self._cells(cells_p, unique=True)
        v_pulse = self._values(v_p, cells.size, 0.0, r.v_terminal_max_v, "pulse amplitude")
        v_gate = self._values(g_p, cells.size, 0.0, r.v_gate_max_v, "gate voltage")
        self._need_output()
        w = self.world
        energy = w.chip.pulse(cells, pol.lower(), v_pulse, v_gate, width_s, w.now_s)
        t = w.timing
        w.charge(self.NAME, t.command_s + cells.size * (width_s + t.pulse_overhead_s))
        return encode_block(np.asarray(energy, dtype=VALUE_DTYPE))

    def _q_read(self, p: list[Param]) -> bytes:
        if len(p) == 2:  # ARR:READ? <cells>,<v_read>: at this voltage, ARR:VRE unchanged
            cells_p, v_p = p
            v_read = self._read_voltage(v_p)
        else:
            (cells_p,) = expect(p, 1, "ARR:READ?")
            v_read = self.v_read
        cells = self._cells(cells_p, unique=False)
        self._need_output()
        w = self.world
        g = w.chip.read(cells, w.now_s, v_read=v_read)
        w.charge(self.NAME, w.timing.command_s + cells.size * w.timing.cell_read_s)
        return encode_block(np.asarray(g, dtype=VALUE_DTYPE))

    def _q_mvm(self, p: list[Param]) -> bytes:
        tile_p, v_p = expect(p, 2, "ARR:MVM?")
        tile = tile_p.integer(lo=0, hi=self.n_tiles - 1)
        v = v_p.array(VALUE_DTYPE)
        if v.size == 0 or v.size % self.rows:
            raise ScpiError(-220, f"{v.size} input voltages is not a multiple of {self.rows} rows")
        self._check_mvm_voltages(v)
        self._need_output()
        batch = v.size // self.rows
        w = self.world
        currents = w.chip.mvm(tile, v.reshape(batch, self.rows).astype(np.float64), w.now_s)
        w.charge(self.NAME, w.timing.command_s + batch * w.timing.mvm_s)
        return encode_block(np.asarray(currents, dtype=VALUE_DTYPE).reshape(-1))

    def _q_mvm_rows(self, p: list[Param]) -> bytes:
        """``ARR:MVM:ROWS? <tile>,<windows>,<v_in>`` (protocol 1.3): MVMs driving row windows
        only (every other row at 0 V). ``<windows>``: u32 block of (first row, rows, vectors)
        per window; ``<v_in>``: f32 block, window after window, ``vectors x rows`` each."""
        tile_p, win_p, v_p = expect(p, 3, "ARR:MVM:ROWS?")
        tile = tile_p.integer(lo=0, hi=self.n_tiles - 1)
        win = win_p.array(CELL_DTYPE).astype(np.int64)
        if win.size == 0 or win.size % 3:
            raise ScpiError(-220, "windows: (first row, rows, vectors) per window, "
                            f"a multiple of 3 values; got {win.size}")
        if win.size // 3 > MAX_MVM_WINDOWS:
            raise ScpiError(-223, f"{win.size // 3} windows (at most {MAX_MVM_WINDOWS})")
        win = win.reshape(-1, 3)
        first, count, nvec = win[:, 0], win[:, 1], win[:, 2]
        if np.any(count < 1) or np.any(nvec < 1) or np.any(first + count > self.rows):
            raise ScpiError(-222, f"a window outside rows 0..{self.rows - 1} or empty")
        v = v_p.array(VALUE_DTYPE)
        need = int(np.sum(count * nvec))
        if v.size != need:
            raise ScpiError(-220, f"{v.size} input voltages for windows of {need}")
        self._check_mvm_voltages(v)
        self._need_output()
        w = self.world
        out, pos = [], 0
        for f, n_rows, n_vec in win:  # one instant: the chip's clock does not move between
            block = v[pos:pos + n_rows * n_vec].reshape(n_vec, n_rows).astype(np.float64)
            pos += n_rows * n_vec
            out.append(w.chip.mvm(tile, block, w.now_s, first_row=int(f)))
        w.charge(self.NAME, w.timing.command_s + int(nvec.sum()) * w.timing.mvm_s)
        return encode_block(np.concatenate(out).astype(VALUE_DTYPE).reshape(-1))

    def _check_mvm_voltages(self, v: np.ndarray) -> None:
        """-222 unless every MVM input voltage is finite and within the board's range."""
        lim = self.range.v_mvm_max_v
        if not np.all(np.isfinite(v)) or np.abs(v).max() > lim:
            raise ScpiError(-222, f"input voltage outside [-{lim:g}, {lim:g}]")

    def _read_voltage(self, v: Param) -> float:
        value = v.number(lo=0.0, hi=self.range.v_read_max_v)
        if value <= 0:
            raise ScpiError(-222, "read voltage must be > 0")
        return value

    def _w_vread(self, p: list[Param]) -> None:
        (v,) = expect(p, 1, "ARR:VRE")
        self.v_read = self._read_voltage(v)

    def _q_compliance_gate(self, p: list[Param]) -> str:
        """``ARR:COMP:GATE? <icc>``: the word-line voltage [V] at which the board's access
        transistors reach SET compliance current ``icc`` [A] (the chip's nominal transistor;
        the device-to-device threshold mismatch is not included)."""
        (i,) = expect(p, 1, "ARR:COMP:GATE?")
        icc = i.number(lo=0.0, hi=1.0)
        if icc <= 0:
            raise ScpiError(-222, "compliance current must be > 0")
        return fmt(self.world.chip.profile.transistor.v_gate_for_icc(icc), "{:.17g}")

    def _w_route(self, p: list[Param]) -> None:
        """``ROUT:CELL <cell>[,<v_gate>]``: route ``cell`` to the SMU terminals with its word
        line at ``v_gate`` [V] (the access transistor then limits the current, as in a SET
        pulse), or fully on without it (protocol 1.2)."""
        if len(p) == 2:
            c, g = p
            gate: float | None = g.number(lo=0.0, hi=self.range.v_gate_max_v)
        else:
            (c,) = expect(p, 1, "ROUT:CELL")
            gate = None
        self.world.routed_cell = c.integer(lo=0, hi=self.n_cells - 1)
        self.world.routed_gate_v = gate

    def _q_gate(self, p: list[Param]) -> str:
        expect(p, 0, "ROUT:GATE?")
        g = self.world.routed_gate_v
        return "-1" if g is None else fmt(g)

    def _q_route(self, p: list[Param]) -> str:
        expect(p, 0, "ROUT:CELL?")
        cell = self.world.routed_cell
        return "-1" if cell is None else str(cell)

    def _w_open(self, p: list[Param]) -> None:
        expect(p, 0, "ROUT:OPEN")
        self.world.routed_cell = None
        self.world.routed_gate_v = None

    def _w_output(self, p: list[Param]) -> None:
        (s,) = expect(p, 1, "OUTP")
        self.output = s.boolean()

"""Driver of an array controller speaking cimlab's array-controller protocol
(``docs/array-controller-protocol.md``): the emulated one or a lab's board firmware.

Batched operations are one round trip each: the cell list (uint32) and per-cell values
(float32, or one number for all cells) go out as IEEE 488.2 blocks, one float32 block comes
back; an empty block means the command failed and the error queue is raised as
:class:`~cimlab.errors.InstrumentError` naming the command.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from pymeasure.instruments import Instrument, SCPIMixin
from pymeasure.instruments.validators import strict_discrete_set, strict_range

from cimlab.errors import InstrumentError
from cimlab.instruments.drivers.visa import (
    ErrorCheckingMixin,
    block,
    open_kwargs,
    raise_errors,
    read_block,
    tune_connection,
)

CELL_DTYPE = "<u4"
VALUE_DTYPE = "<f4"
#: Largest program message a board accepts [bytes], blocks included
#: (docs/array-controller-protocol.md, "Limits"); larger transfers are split by the host.
MAX_MESSAGE_BYTES = 16 << 20
#: Bytes of a message around its block (command header, block header, terminator).
_MESSAGE_OVERHEAD = 64

#: the protocol's ranges (the emulator's defaults; a board reports its own with ``ARR:RANG?``)
PULSE_WIDTH_RANGE = (10e-9, 10e-3)
READ_VOLTAGE_RANGE = (1e-3, 1.0)


class ArrayRanges(NamedTuple):
    """Hardware ranges reported by ``ARR:RANG?``."""

    v_terminal_max_v: float
    v_gate_max_v: float
    width_min_s: float
    width_max_s: float
    v_read_max_v: float
    v_mvm_max_v: float


def _number(x: float) -> bytes:
    return repr(float(x)).encode()


class ArrayController(ErrorCheckingMixin, SCPIMixin, Instrument):
    """A ReRAM array controller (cimlab protocol), opened through PyVISA.

    ``ArrayController("TCPIP0::127.0.0.1::5025::SOCKET")`` or ``ArrayController.open(address)``
    for the cimlab defaults (pyvisa-py, ``\\n`` terminations, big read chunks).
    """

    def __init__(self, adapter: Any, name: str = "array controller", **kwargs: Any):
        super().__init__(adapter, name, **kwargs)
        tune_connection(self)
        #: round trips of the last :meth:`mvm_windows` call
        self.last_round_trips = 0

    @classmethod
    def open(cls, address: str, backend: str = "@py", timeout_s: float = 10.0,
             **kwargs: Any) -> ArrayController:
        return cls(address, **open_kwargs(backend, timeout_s), **kwargs)

    # -- properties --------------------------------------------------------------------------
    geometry = Instrument.measurement(
        "ARR:GEOM?",
        """Get the chip geometry ``(n_tiles, rows, cols)``.""",
        cast=int,
        get_process_list=tuple,
    )

    ranges = Instrument.measurement(
        "ARR:RANG?",
        """Get the board's hardware ranges (:class:`ArrayRanges`).""",
        get_process_list=lambda v: ArrayRanges(*v),
    )

    read_voltage = Instrument.control(
        "ARR:VRE?",
        "ARR:VRE %.9g",
        """Control the read voltage [V] used by :meth:`read` (bit-line bias).""",
        validator=strict_range,
        values=READ_VOLTAGE_RANGE,
        check_set_errors=True,
    )

    output_enabled = Instrument.control(
        "OUTP?",
        "OUTP %d",
        """Control whether the array drivers are on (False: standby, every line grounded).""",
        validator=strict_discrete_set,
        values={True: 1, False: 0},
        map_values=True,
        check_set_errors=True,
    )

    routed_cell = Instrument.measurement(
        "ROUT:CELL?",
        """Get the cell routed to the SMU terminals (-1: none).""",
        cast=int,
    )

    instrument_time = Instrument.measurement(
        "ARR:ITIM?",
        """Get the instrument time [s] the board spent on operations since power-on.""",
    )

    # -- batched operations ------------------------------------------------------------------
    @staticmethod
    def _cells(cells: Any) -> np.ndarray:
        c = np.asarray(cells)
        if c.ndim == 0:
            c = c.reshape(1)
        if c.ndim != 1 or (c.size and not np.issubdtype(c.dtype, np.integer)):
            raise ValueError("cells must be a 1-D sequence of integer cell indices")
        if c.size and (c.min() < 0 or c.max() > np.iinfo(np.uint32).max):
            raise ValueError("cell indices must lie in [0, 2**32)")
        return c

    @staticmethod
    def _per_cell(values: Any, n: int, what: str) -> bytes:
        v = np.asarray(values, dtype=float)
        if v.ndim == 0:
            if not np.isfinite(v):
                raise ValueError(f"{what} must be finite")
            return _number(v)
        if v.shape != (n,):
            raise ValueError(f"{what}: {v.shape} values for {n} cells")
        if not np.all(np.isfinite(v)):
            raise ValueError(f"{what} must be finite")
        if n and np.all(v == v[0]):
            return _number(v[0])  # one number for all cells: fewer bytes on the wire
        return block(v, VALUE_DTYPE)

    def pulse(self, cells: Any, polarity: str, v_pulse: Any, v_gate: Any,
              width_s: float) -> np.ndarray:
        """Pulse every cell once; returns the energy per cell [J]. One round trip.

        :param cells: flat cell indices (each at most once)
        :param polarity: ``"set"`` (``v_pulse`` on the bit line, source line grounded) or
            ``"reset"`` (``v_pulse`` on the source line, bit line grounded)
        :param v_pulse: pulse amplitude [V], per cell or one for all
        :param v_gate: word-line (gate) voltage [V], per cell or one for all; in SET it sets
            the compliance current of the 1T1R access transistor
        :param width_s: pulse width [s]
        """
        strict_discrete_set(polarity, ("set", "reset"))
        strict_range(width_s, PULSE_WIDTH_RANGE)
        c = self._cells(cells)
        if c.size == 0:
            return np.zeros(0)
        head = f"ARR:PULS? {polarity.upper()},{float(width_s)!r},"
        message = b"".join((
            head.encode(), block(c, CELL_DTYPE), b",",
            self._per_cell(v_pulse, c.size, "v_pulse"), b",",
            self._per_cell(v_gate, c.size, "v_gate"), b"\n",
        ))
        command = f"{head}<{c.size} cells>"
        self._last_command = command
        self.write_bytes(message)
        energy = read_block(self, VALUE_DTYPE, command)
        return self._check_count(energy, c.size, command).astype(float)

    def pulse_set(self, cells: Any, v_bl: Any, v_wl: Any, width_s: float) -> np.ndarray:
        """SET pulse: ``v_bl`` on the bit line, ``v_wl`` on the word line; energy [J]."""
        return self.pulse(cells, "set", v_bl, v_wl, width_s)

    def pulse_reset(self, cells: Any, v_sl: Any, v_wl: Any, width_s: float) -> np.ndarray:
        """RESET pulse: ``v_sl`` on the source line, ``v_wl`` on the word line; energy [J]."""
        return self.pulse(cells, "reset", v_sl, v_wl, width_s)

    def read(self, cells: Any = None, *, v_read: float | None = None, **kwargs: Any) -> Any:
        """Conductance [S] of each cell, read at ``v_read`` [V] if given (``ARR:READ?
        <cells>,<v_read>``: the board reads at exactly that voltage and keeps its
        :attr:`read_voltage` setting), else at the board's :attr:`read_voltage`. One round
        trip.

        Without ``cells`` this is PyMeasure's ``Instrument.read()`` (read one response string),
        which ``ask``/``values`` use.
        """
        if cells is None:
            return super().read(**kwargs)
        c = self._cells(cells)
        if c.size == 0:
            return np.zeros(0)
        tail = b""
        if v_read is not None:
            v = float(v_read)
            strict_range(v, READ_VOLTAGE_RANGE)
            tail = b"," + _number(v)
        command = f"ARR:READ? <{c.size} cells>" + ("" if v_read is None else f",{v_read!r}")
        self._last_command = command
        self.write_bytes(b"ARR:READ? " + block(c, CELL_DTYPE) + tail + b"\n")
        g = read_block(self, VALUE_DTYPE, command)
        return self._check_count(g, c.size, command).astype(float)

    def compliance_gate_voltage(self, icc_a: float) -> float:
        """The word-line voltage [V] at which the board's access transistors reach SET
        compliance current ``icc_a`` [A] (the board's own calibration, ``ARR:COMP:GATE?``)."""
        icc = float(icc_a)
        if not (np.isfinite(icc) and icc > 0):
            raise ValueError(f"compliance current must be a finite value > 0 A, got {icc_a!r}")
        command = f"ARR:COMP:GATE? {icc!r}"
        answer = self.ask(command)
        try:
            return float(answer)
        except ValueError:
            raise_errors(self, command)
            raise InstrumentError(f"{self.name}: {command}: unexpected answer {answer!r}") \
                from None

    def mvm(self, tile: int, v_rows: Any) -> np.ndarray:
        """Column currents [A] of ``tile`` for input voltages ``v_rows`` [V] on its rows.

        ``v_rows`` has shape ``(rows,)`` (returns ``(cols,)``) or ``(batch, rows)`` (returns
        ``(batch, cols)``). One round trip for the whole batch, or one per message-sized part
        where the batch's block would pass :data:`MAX_MESSAGE_BYTES` (the protocol's limit).
        """
        v = np.asarray(v_rows, dtype=float)
        if v.ndim not in (1, 2) or v.size == 0:
            raise ValueError("v_rows must have shape (rows,) or (batch, rows)")
        if not np.all(np.isfinite(v)):
            raise ValueError("v_rows must be finite")
        tile = int(tile)
        if tile < 0:
            raise ValueError("tile must be >= 0")
        if v.ndim == 1:
            return self._mvm_message(tile, v[None, :])[0]
        per_message = max(1, (MAX_MESSAGE_BYTES - _MESSAGE_OVERHEAD)
                          // (v.shape[1] * np.dtype(VALUE_DTYPE).itemsize))
        parts = [self._mvm_message(tile, v[i:i + per_message])
                 for i in range(0, v.shape[0], per_message)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def mvm_windows(self, tile: int, windows: list[tuple[int, Any]]) -> list[np.ndarray]:
        """Column currents [A] of ``tile`` for inputs that drive row windows only (every
        other row at 0 V): ``windows`` is a list of ``(first_row, v)`` with ``v`` of shape
        ``(vectors, n)`` [V] for rows ``first_row .. first_row + n - 1``; returns one
        ``(vectors, cols)`` array per window. ``ARR:MVM:ROWS?`` (protocol 1.3): one round
        trip for all windows, or one per message-sized part; only the driven rows travel,
        so a layer that drives 10 of 256 rows sends 10 voltages per vector, not 256."""
        tile = int(tile)
        if tile < 0:
            raise ValueError("tile must be >= 0")
        items: list[tuple[int, np.ndarray]] = []
        for first, v_w in windows:
            v = np.asarray(v_w, dtype=float)
            if v.ndim != 2 or v.shape[0] == 0 or v.shape[1] == 0 or int(first) < 0:
                raise ValueError("each window needs first_row >= 0 and v of shape "
                                 "(vectors, rows) with both > 0")
            if not np.all(np.isfinite(v)):
                raise ValueError("window voltages must be finite")
            items.append((int(first), v))
        if not items:
            return []
        budget = (MAX_MESSAGE_BYTES - _MESSAGE_OVERHEAD) // np.dtype(VALUE_DTYPE).itemsize
        # message-sized parts: windows split by vectors where one alone is too big
        parts: list[list[tuple[int, int, np.ndarray]]] = [[]]   # (window, first, v)
        used = 0
        for w_i, (first, v) in enumerate(items):
            per = max(1, budget // v.shape[1] - 1)
            for a in range(0, v.shape[0], per):
                chunk = v[a:a + per]
                if parts[-1] and used + chunk.size + 3 > budget:
                    parts.append([])
                    used = 0
                parts[-1].append((w_i, first, chunk))
                used += chunk.size + 3
        out: list[list[np.ndarray]] = [[] for _ in items]
        for part in parts:
            spec = np.array([[f, c.shape[1], c.shape[0]] for _, f, c in part], dtype=np.int64)
            command = f"ARR:MVM:ROWS? {tile},<{len(part)} windows>,<voltages>"
            self._last_command = command
            self.write_bytes(f"ARR:MVM:ROWS? {tile},".encode()
                             + block(spec.reshape(-1), CELL_DTYPE) + b","
                             + block(np.concatenate([c.reshape(-1) for _, _, c in part]),
                                     VALUE_DTYPE) + b"\n")
            i = read_block(self, VALUE_DTYPE, command).astype(float)
            n_vec = int(spec[:, 2].sum())
            if n_vec == 0 or i.size % n_vec:
                raise InstrumentError(f"{self.name}: {command}: {i.size} currents for "
                                      f"{n_vec} inputs")
            i = i.reshape(n_vec, -1)
            pos = 0
            for w_i, _, c in part:
                out[w_i].append(i[pos:pos + c.shape[0]])
                pos += c.shape[0]
        self.last_round_trips = len(parts)
        return [o[0] if len(o) == 1 else np.concatenate(o) for o in out]

    def _mvm_message(self, tile: int, v: np.ndarray) -> np.ndarray:
        """One ``ARR:MVM?`` round trip for the ``(batch, rows)`` inputs ``v``."""
        batch = v.shape[0]
        command = f"ARR:MVM? {tile},<{batch}x{v.shape[-1]} voltages>"
        self._last_command = command
        self.write_bytes(f"ARR:MVM? {tile},".encode() + block(v.reshape(-1), VALUE_DTYPE)
                         + b"\n")
        i = read_block(self, VALUE_DTYPE, command).astype(float)
        if i.size % batch:
            raise InstrumentError(f"{self.name}: {command}: {i.size} currents for {batch} inputs")
        return i.reshape(batch, -1)

    def _check_count(self, values: np.ndarray, n: int, command: str) -> np.ndarray:
        if values.size != n:
            raise InstrumentError(f"{self.name}: {command}: {values.size} values for {n} cells")
        return values

    # -- routing and output ------------------------------------------------------------------
    def select(self, cell: int, v_gate: float | None = None) -> None:
        """Route ``cell`` to the SMU terminals (bit line to HI, source line to LO), its word
        line fully on or, with ``v_gate`` [V], at that voltage (protocol 1.2)."""
        cell = int(cell)
        if cell < 0:
            raise ValueError("cell must be >= 0")
        cmd = f"ROUT:CELL {cell}" if v_gate is None else f"ROUT:CELL {cell},{float(v_gate):.9g}"
        self.write(cmd)
        raise_errors(self, cmd)

    def deselect(self) -> None:
        """Disconnect the SMU terminals from the array."""
        self.write("ROUT:OPEN")
        raise_errors(self, "ROUT:OPEN")

    def enable(self) -> None:
        """Turn the array drivers on (leave standby)."""
        self.output_enabled = True

    def disable(self) -> None:
        """Standby: drivers off, every line grounded."""
        self.output_enabled = False

    def shutdown(self) -> None:
        """Safe state: SMU terminals disconnected, drivers off (standby)."""
        self.write("ROUT:OPEN;:OUTP 0")
        raise_errors(self, "ROUT:OPEN;:OUTP 0")  # also waits until the board has done it
        super().shutdown()

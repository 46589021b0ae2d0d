"""The emulated switch matrix of a discrete bench: a Keithley 2750 multimeter/switch system's
``ROUTe`` subsystem (Keithley 2750 User's Manual, section "Close/open channels":
``:ROUTe:MULTiple:CLOSe <clist>``, ``:ROUTe:MULTiple:OPEN <clist>``, ``:ROUTe:OPEN:ALL``,
``:ROUTe:CLOSe?`` / ``:ROUTe:MULTiple:CLOSe?`` answering the closed channels as
``(@ch,ch,...)``), which PyMeasure's ``Keithley2750`` driver speaks unmodified.

The matrix connects the chip's lines (columns) to four instrument buses (rows):

* row 1 ``PULSE``: the pulse generator's channel 1 output,
* row 2 ``SMU``: the source-measure unit's HI terminal,
* row 3 ``GATE``: the gate bias (the pulse generator's channel 2, a DC level),
* row 4 ``GND``: ground (the SMU's LO and the generator's return).

A channel number is ``row * 10**7 + line``; ``line`` (from 1) numbers the chip's lines tile by
tile: the tile's ``rows`` word lines, then its ``cols`` bit lines, then its ``cols`` source
lines. (A real 2750 holds five cards of at most 6 x 8 crosspoints, so a real discrete bench
reaches a few lines of a test array; the emulated matrix is as large as the chip, so the
same procedures run over whole tiles. docs/instruments.md says so.)

The cells a closed pattern connects are worked out by :func:`connected_cells`: a 1T1R cell
(word line = gate, bit line = top electrode, source line = transistor source) sees the pulse
when its word line is on GATE and one of its bit/source lines is on PULSE with the other on
GND; it is read when its word line is on GATE, its bit line on SMU and its source line on GND.
The cell on the SMU path is written to ``world.routed_cell`` (the SMU measures it); more than
one cell on the SMU path is refused (-221), as parallel cells are not emulated.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from cimlab import __version__
from cimlab.instruments.emulator.scpi import Instrument, Param, ScpiError, expect
from cimlab.instruments.emulator.world import World

#: instrument buses (matrix rows)
ROW_PULSE, ROW_SMU, ROW_GATE, ROW_GND = 1, 2, 3, 4
ROWS = (ROW_PULSE, ROW_SMU, ROW_GATE, ROW_GND)
#: channel = row * CHANNEL_ROW + line
CHANNEL_ROW = 10**7

_CLIST = re.compile(r"^\(@(.*)\)$", re.S)


def lines_per_tile(rows: int, cols: int) -> int:
    """Word + bit + source lines of one tile."""
    return rows + 2 * cols


def parse_channel_list(text: str, n_lines: int) -> list[tuple[int, int]]:
    """``(@c1,c2,c3:c4)`` -> ``[(row, line), ...]`` (ranges ``a:b`` on one row, inclusive);
    ScpiError for anything else."""
    m = _CLIST.match(text.strip())
    if m is None:
        raise ScpiError(-104, f"expected a channel list (@...), got {text[:40]!r}")
    out: list[tuple[int, int]] = []
    for item in m.group(1).split(","):
        item = item.strip()
        if not item:
            continue
        lo_s, _, hi_s = item.partition(":")
        try:
            lo = int(lo_s)
            hi = int(hi_s) if hi_s else lo
        except ValueError:
            raise ScpiError(-104, f"bad channel {item[:20]!r}") from None
        (r0, l0), (r1, l1) = divmod(lo, CHANNEL_ROW), divmod(hi, CHANNEL_ROW)
        if r0 != r1 or l1 < l0:
            raise ScpiError(-222, f"channel range {item[:30]!r} must stay on one row, ascending")
        if r0 not in ROWS or not (1 <= l0 and l1 <= n_lines):
            raise ScpiError(-222, f"no channel {item[:30]!r} (rows 1-4, lines 1-{n_lines})")
        out.extend((r0, line) for line in range(l0, l1 + 1))
    if not out:
        raise ScpiError(-220, "empty channel list")
    return out


def connected_cells(closed: dict[int, set[int]], geometry: tuple[int, int, int],
                    ) -> dict[str, np.ndarray]:
    """The cells a closed pattern connects: ``{"set": cells, "reset": cells, "read": cells}``
    (flat indices). ``closed``: ``{row: {line, ...}}``."""
    _n_tiles, rows, cols = geometry
    per = lines_per_tile(rows, cols)
    out: dict[str, list[int]] = {"set": [], "reset": [], "read": []}
    gate = closed.get(ROW_GATE, set())
    by_tile: dict[int, list[int]] = {}
    for line in gate:
        t, k = divmod(line - 1, per)
        if k < rows:
            by_tile.setdefault(t, []).append(k)
    for t, wls in by_tile.items():
        base = t * per
        pulse, smu, gnd = (closed.get(r, set()) for r in (ROW_PULSE, ROW_SMU, ROW_GND))
        for col in range(cols):
            bl, sl = base + rows + col + 1, base + rows + cols + col + 1
            if bl in pulse and sl in gnd:
                kind = "set"
            elif sl in pulse and bl in gnd:
                kind = "reset"
            elif bl in smu and sl in gnd:
                kind = "read"
            else:
                continue
            out[kind].extend((t * rows + wl) * cols + col for wl in sorted(wls))
    return {k: np.asarray(sorted(v), dtype=np.int64) for k, v in out.items()}


class Keithley2750Emulator(Instrument):
    """SCPI state machine of the switch system's ``ROUTe`` subsystem over ``world``."""

    NAME = "switch"

    def __init__(self, world: World, serial: str = "4160001"):
        super().__init__(lock=world.lock)
        self.world = world
        self.serial = serial
        n_tiles, rows, cols = (int(x) for x in world.chip.geometry)
        self.geometry = (n_tiles, rows, cols)
        self.n_lines = n_tiles * lines_per_tile(rows, cols)
        #: closed crosspoints: {row: {line, ...}}
        self.closed: dict[int, set[int]] = {r: set() for r in ROWS}
        #: crosspoint operations (relay closures + openings) since *RST, for relay wear
        self.operations = 0
        c = self.command
        c("ROUTe:MULTiple:CLOSe", write=self._w_close, query=self._q_closed)
        c("ROUTe:CLOSe", query=self._q_closed)
        c("ROUTe:MULTiple:OPEN", write=self._w_open)
        c("ROUTe:OPEN:ALL", write=self._w_open_all)

    def idn(self) -> str:
        return f"KEITHLEY INSTRUMENTS INC.,MODEL 2750,{self.serial},A01  /A02 (cimlab emulator " \
               f"{__version__})"

    def options(self) -> str:
        return "7709,7709,7709,7709,NONE"

    def reset(self) -> None:
        self._open_all()

    # -- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Closed crosspoints (``switch.closed``: channel numbers) and the relay count."""
        return {"switch.closed": np.asarray(self._channels(), dtype=np.int64),
                "switch.operations": int(self.operations)}

    # -- helpers -----------------------------------------------------------------------------
    def _channels(self) -> list[int]:
        return sorted(r * CHANNEL_ROW + line for r, s in self.closed.items() for line in s)

    def _clist(self, p: list[Param], header: str) -> list[tuple[int, int]]:
        if not p:
            raise ScpiError(-109, header)
        text = ",".join(x._need_text("a channel list") for x in p)
        return parse_channel_list(text, self.n_lines)

    def _route(self) -> None:
        """Point the SMU at the one cell on its path (or none)."""
        cells = connected_cells(self.closed, self.geometry)["read"]
        if cells.size > 1:
            raise ScpiError(-221, f"{cells.size} cells on the SMU path (parallel cells are not "
                            "emulated); open the extra channels")
        self.world.routed_cell = int(cells[0]) if cells.size else None

    def _open_all(self) -> None:
        self.operations += sum(len(s) for s in self.closed.values())
        for s in self.closed.values():
            s.clear()
        self.world.routed_cell = None

    # -- commands ----------------------------------------------------------------------------
    def _w_close(self, p: list[Param]) -> None:
        chans = self._clist(p, "ROUT:MULT:CLOS")
        added = [(r, line) for r, line in chans if line not in self.closed[r]]
        for r, line in added:
            self.closed[r].add(line)
        try:
            self._route()
        except ScpiError:
            for r, line in added:  # refused: the relays stay as they were
                self.closed[r].discard(line)
            raise
        self.operations += len(added)

    def _w_open(self, p: list[Param]) -> None:
        for r, line in self._clist(p, "ROUT:MULT:OPEN"):
            if line in self.closed[r]:
                self.closed[r].discard(line)
                self.operations += 1
        self._route()

    def _w_open_all(self, p: list[Param]) -> None:
        expect(p, 0, "ROUT:OPEN:ALL")
        self._open_all()

    def _q_closed(self, p: list[Param]) -> str:
        if p:  # ROUT:MULT:CLOS? <clist>: 1/0 per channel asked
            chans = self._clist(p, "ROUT:CLOS?")
            return ",".join("1" if line in self.closed[r] else "0" for r, line in chans)
        return "(@" + ",".join(str(c) for c in self._channels()) + ")"

    def pulse_cells(self) -> dict[str, np.ndarray]:
        """The cells the closed pattern exposes to the pulse bus (``set``/``reset``)."""
        return connected_cells(self.closed, self.geometry)

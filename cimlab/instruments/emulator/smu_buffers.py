"""Reading buffers of the emulated Keithley 2450: ``defbuffer1``/``defbuffer2`` and
user-defined buffers (``:TRACe:MAKE``), each reading stored with the elements the 2450 keeps
(reading, source value, time stamp, measure/source status, units), and the buffer-element
formatting of ``:TRACe:DATA?``, ``:FETCh?``, ``:READ?`` and ``:MEASure?``.

Reference: Keithley 2450 Reference Manual (2450-901-01), "Reading buffers" and the
``:TRACe`` subsystem; element names and the status-bit table of ``:FETCh?``.
"""

from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass, field

import numpy as np

from cimlab.instruments.emulator.scpi import Param, ScpiError

#: the two buffers every 2450 has; they cannot be deleted or made
DEFAULT_BUFFERS = ("defbuffer1", "defbuffer2")
#: size of a default buffer after *RST (2450 manual, :TRACe:POINts "Default value")
DEFAULT_CAPACITY = 100_000
#: largest buffer the emulator accepts (the 2450 stores up to 11,000,000 standard readings)
MAX_CAPACITY = 11_000_000
#: buffer styles of :TRACe:MAKE (STANdard default, COMPact, FULL, WRITable, FULLWRITable)
STYLES = ("STANdard", "COMPact", "FULL", "WRITable", "FULLWRITable")
#: the emulated real-time clock: virtual time 0 of the world is this UTC instant (a fixed,
#: documented epoch so that buffer time stamps are reproducible for a seed)
RTC_EPOCH = _dt.datetime(2026, 1, 1, tzinfo=_dt.timezone.utc)
OVERFLOW = 9.9e37
#: the 2450's "not a number" for statistics of an empty buffer
NAN_VALUE = 9.91e37

# STATus element bits (manual, "Buffer status bits for sense measurements")
STAT_QUESTIONABLE = 0x0001
STAT_TERMINAL_FRONT = 0x0008
# SOURSTATus bits, in the order of the manual's list: over-voltage protection, readback
# (measured source value), over-temperature, source limited (in compliance), four-wire
# sense, output on
SOURSTAT_READBACK = 0x02
SOURSTAT_LIMITED = 0x08
SOURSTAT_FOUR_WIRE = 0x10
SOURSTAT_OUTPUT_ON = 0x20

#: function code -> unit text of the UNIT / SOURUNIT elements
UNITS = {"CURR": "Amp DC", "VOLT": "Volt DC", "RES": "Ohm"}
_SYMBOL = {"CURR": "A", "VOLT": "V", "RES": "Ohm"}
FUNC_CODES = ("CURR", "VOLT", "RES")

#: buffer element mnemonics (short/long form as in the manual)
ELEMENTS = ("DATE", "FORMatted", "FRACtional", "READing", "RELative", "SEConds", "SOURce",
            "SOURFORMatted", "SOURSTATus", "SOURUNIT", "STATus", "TIME", "TSTamp", "UNIT")
#: at most this many elements in one list (manual: "less than 14" repetitions allowed)
MAX_ELEMENTS = 14


@dataclass(frozen=True)
class Reading:
    """One stored reading: value, source value [V or A], virtual time [s], status words and
    the measure / source functions (``CURR``, ``VOLT``, ``RES``)."""

    value: float
    source: float
    time_s: float
    status: int
    source_status: int
    func: str
    source_func: str

    def row(self) -> list[float]:
        return [self.value, self.source, self.time_s, float(self.status),
                float(self.source_status), float(FUNC_CODES.index(self.func)),
                float(FUNC_CODES.index(self.source_func))]

    @classmethod
    def from_row(cls, row: np.ndarray) -> Reading:
        return cls(float(row[0]), float(row[1]), float(row[2]), int(row[3]), int(row[4]),
                   FUNC_CODES[int(row[5])], FUNC_CODES[int(row[6])])


@dataclass
class ReadingBuffer:
    """A 2450 reading buffer: capacity, style, fill mode (CONTinuous wraps, ONCE stops)."""

    name: str
    capacity: int = DEFAULT_CAPACITY
    style: str = "STANDARD"
    fill_continuous: bool = True
    readings: list[Reading] = field(default_factory=list)
    #: index of the oldest reading once a continuous buffer has wrapped
    start: int = 0

    def add(self, reading: Reading) -> None:
        if len(self.readings) < self.capacity:
            self.readings.append(reading)
        elif self.fill_continuous:
            self.readings[self.start] = reading
            self.start = (self.start + 1) % self.capacity
        # fill mode ONCE: a full buffer keeps its readings

    def ordered(self) -> list[Reading]:
        """Readings oldest first."""
        return self.readings[self.start:] + self.readings[:self.start]

    def clear(self) -> None:
        self.readings.clear()
        self.start = 0

    def resize(self, capacity: int) -> None:
        """A new size clears the buffer (manual, :TRACe:POINts)."""
        self.capacity = capacity
        self.clear()


def name_of(p: Param) -> str:
    """A buffer name given as a string (``'defbuffer1'`` / ``"defbuffer1"``) or bare."""
    if p.is_block:
        raise ScpiError(-104, "expected a buffer name, got a binary block")
    t = p.text
    return p.string() if t[:1] in "'\"" else t


def elements_of(params: list[Param]) -> list[str]:
    """Element names (long form, upper case) from parameters; a quoted list is split."""
    names: list[str] = []
    for p in params:
        if p.is_block:
            raise ScpiError(-104, "expected buffer elements, got a binary block")
        parts = p.string().split(",") if p.text[:1] in "'\"" else [p.text]
        for part in parts:
            names.append(Param(text=part.strip()).choice(*ELEMENTS))
    if len(names) > MAX_ELEMENTS:
        raise ScpiError(-108, f"at most {MAX_ELEMENTS} buffer elements")
    return names or ["READING"]


def _e(value: float) -> str:
    return f"{value:.6E}"


def _prefixed(value: float, unit: str) -> str:
    """A value as the front panel shows it, e.g. ``+012.345 uA``."""
    if value in (OVERFLOW, -OVERFLOW):
        return "Overflow"
    a = abs(value)
    for scale, prefix in ((1e-12, "p"), (1e-9, "n"), (1e-6, "u"), (1e-3, "m"), (1.0, ""),
                          (1e3, "k"), (1e6, "M"), (1e9, "G")):
        if a < scale * 1000 or prefix == "G":
            return f"{value / scale:+08.3f} {prefix}{unit}"
    return f"{value:+.3E} {unit}"  # pragma: no cover


def _utc(time_s: float) -> _dt.datetime:
    return RTC_EPOCH + _dt.timedelta(seconds=time_s)


def format_element(element: str, r: Reading, first_time_s: float) -> str:
    """One element of one reading as the 2450 prints it in ASCII format."""
    if element == "READING":
        return _e(r.value)
    if element == "SOURCE":
        return _e(r.source)
    if element == "RELATIVE":
        return _e(r.time_s - first_time_s)
    if element == "SECONDS":
        return str(math.floor(r.time_s + RTC_EPOCH.timestamp()))
    if element == "FRACTIONAL":
        return f"{r.time_s - math.floor(r.time_s):.9f}"
    if element == "STATUS":
        return str(r.status)
    if element == "SOURSTATUS":
        return str(r.source_status)
    if element == "UNIT":
        return UNITS[r.func]
    if element == "SOURUNIT":
        return UNITS[r.source_func]
    if element == "FORMATTED":
        return _prefixed(r.value, _SYMBOL[r.func])
    if element == "SOURFORMATTED":
        return _prefixed(r.source, _SYMBOL[r.source_func])
    t = _utc(r.time_s)
    frac = f"{r.time_s - math.floor(r.time_s):.9f}"[1:]
    if element == "DATE":
        return t.strftime("%m/%d/%Y")
    if element == "TIME":
        return t.strftime("%H:%M:%S") + frac
    if element == "TSTAMP":
        return t.strftime("%m/%d/%Y %H:%M:%S") + frac
    raise ScpiError(-224, f"unknown buffer element {element}")  # pragma: no cover


def format_readings(readings: list[Reading], elements: list[str], first_time_s: float) -> str:
    return ",".join(format_element(el, r, first_time_s) for r in readings for el in elements)


class BufferSet:
    """All reading buffers of one instrument, by name."""

    def __init__(self) -> None:
        self.buffers: dict[str, ReadingBuffer] = {}
        self.reset()

    def reset(self) -> None:
        """*RST: default buffers emptied at their default size, user buffers deleted."""
        self.buffers = {n: ReadingBuffer(n) for n in DEFAULT_BUFFERS}

    def get(self, name: str) -> ReadingBuffer:
        buf = self.buffers.get(name)
        if buf is None:
            raise ScpiError(-224, f"reading buffer {name!r} does not exist")
        return buf

    def pick(self, params: list[Param], index: int = 0) -> ReadingBuffer:
        """The buffer named by ``params[index]``, defbuffer1 when absent."""
        return self.get(name_of(params[index]) if len(params) > index else "defbuffer1")

    # -- :TRACe commands ---------------------------------------------------------------------
    def make(self, params: list[Param]) -> None:
        if len(params) < 2:
            raise ScpiError(-109, ":TRAC:MAKE needs a name and a size")
        if len(params) > 3:
            raise ScpiError(-108, ":TRAC:MAKE takes a name, a size and a style")
        name = name_of(params[0])
        if not name or len(name) > 31 or not (name[0].isalpha()
                                              and name.replace("_", "a").isalnum()):
            raise ScpiError(-224, f"buffer name {name!r}: a letter, then letters, digits, _")
        if name in self.buffers:
            raise ScpiError(-221, f"reading buffer {name!r} exists already")
        size = params[1].integer(lo=1, hi=MAX_CAPACITY)
        style = params[2].choice(*STYLES) if len(params) > 2 else "STANDARD"
        self.buffers[name] = ReadingBuffer(name, size, style)

    def delete(self, params: list[Param]) -> None:
        if len(params) != 1:
            raise ScpiError(-109 if not params else -108, ":TRAC:DEL takes one buffer name")
        name = name_of(params[0])
        if name in DEFAULT_BUFFERS:
            raise ScpiError(-221, f"{name} is a default buffer and cannot be deleted")
        self.get(name)
        del self.buffers[name]

    def clear(self, params: list[Param]) -> None:
        if len(params) > 1:
            raise ScpiError(-108, ":TRAC:CLE takes at most a buffer name")
        self.pick(params).clear()

    def set_points(self, params: list[Param]) -> None:
        if not params:
            raise ScpiError(-109, ":TRAC:POIN needs a size")
        if len(params) > 2:
            raise ScpiError(-108, ":TRAC:POIN takes a size and a buffer name")
        size = params[0].integer(lo=1, hi=MAX_CAPACITY)
        self.pick(params, 1).resize(size)

    def points(self, params: list[Param]) -> str:
        if len(params) > 1:
            raise ScpiError(-108, ":TRAC:POIN? takes at most a buffer name")
        return str(self.pick(params).capacity)

    def actual(self, params: list[Param]) -> str:
        if len(params) > 1:
            raise ScpiError(-108, ":TRAC:ACT? takes at most a buffer name")
        return str(len(self.pick(params).readings))

    def actual_start(self, params: list[Param]) -> str:
        return "1" if self.pick(params).readings else "0"

    def actual_end(self, params: list[Param]) -> str:
        return str(len(self.pick(params).readings))

    def set_fill_mode(self, params: list[Param]) -> None:
        if not params:
            raise ScpiError(-109, ":TRAC:FILL:MODE needs CONTinuous or ONCE")
        mode = params[0].choice("CONTinuous", "ONCE")
        self.pick(params, 1).fill_continuous = mode == "CONTINUOUS"

    def fill_mode(self, params: list[Param]) -> str:
        return "CONT" if self.pick(params).fill_continuous else "ONCE"

    def data(self, params: list[Param]) -> str:
        """``:TRACe:DATA? <start>, <end>[, "<buffer>"[, <elements>...]]``: readings start..end
        (1-based, inclusive, oldest first)."""
        if len(params) < 2:
            raise ScpiError(-109, ":TRAC:DATA? needs a start and an end index")
        buf = self.pick(params, 2)
        n = len(buf.readings)
        start = params[0].integer(lo=1)
        end = params[1].integer(lo=1)
        if n == 0:
            raise ScpiError(-222, f"reading buffer {buf.name!r} is empty")
        if start > end or end > n:
            raise ScpiError(-222, f"indexes {start}..{end} outside 1..{n} of {buf.name!r}")
        elements = elements_of(params[3:])
        ordered = buf.ordered()
        return format_readings(ordered[start - 1:end], elements, ordered[0].time_s)

    def fetch(self, params: list[Param]) -> str:
        """``:FETCh? ["<buffer>"[, <elements>...]]``: the newest reading."""
        buf = self.pick(params)
        if not buf.readings:
            raise ScpiError(-222, f"reading buffer {buf.name!r} is empty")
        ordered = buf.ordered()
        return format_readings([ordered[-1]], elements_of(params[1:]), ordered[0].time_s)

    def statistic(self, stat: str, params: list[Param]) -> str:
        if len(params) > 1:
            raise ScpiError(-108, "buffer statistics take at most a buffer name")
        values = np.array([r.value for r in self.pick(params).readings])
        if values.size == 0:
            return _e(NAN_VALUE)
        value = {"AVERAGE": values.mean(), "MAXIMUM": values.max(), "MINIMUM": values.min(),
                 "PK2PK": values.max() - values.min(),
                 "STDDEV": values.std(ddof=1) if values.size > 1 else 0.0}[stat]
        return _e(float(value))

    # -- state (EmulatedBench.save_state) ------------------------------------------------------
    def layout(self) -> list[dict[str, object]]:
        """Names, sizes, styles, fill modes and wrap positions, in a fixed order."""
        return [{"name": b.name, "capacity": b.capacity, "style": b.style,
                 "fill_continuous": b.fill_continuous, "start": b.start}
                for b in self.buffers.values()]

    def rows(self) -> np.ndarray:
        """All readings as an (n, 8) float64 array: buffer index, then :meth:`Reading.row`."""
        out = [[float(k), *r.row()] for k, b in enumerate(self.buffers.values())
               for r in b.readings]
        return np.asarray(out, dtype=np.float64).reshape(-1, 8)

    @staticmethod
    def restore(layout: list[dict[str, object]], rows: np.ndarray) -> dict[str, ReadingBuffer]:
        buffers: dict[str, ReadingBuffer] = {}
        for spec in layout:
            b = ReadingBuffer(str(spec["name"]), int(spec["capacity"]), str(spec["style"]),
                              bool(spec["fill_continuous"]))
            b.start = int(spec["start"])
            buffers[b.name] = b
        names = list(buffers)
        for row in rows:
            buffers[names[int(row[0])]].readings.append(Reading.from_row(row[1:]))
        return buffers

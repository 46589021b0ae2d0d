"""The trigger models of the emulated Keithley 2450: the sweeps built by
``:SOURce:SWEep:<function>:LINear|LINear:STEP|LOG|LIST`` and the ``:TRIGger:LOAD`` templates
``"SimpleLoop"`` and ``"Empty"``, parsed into a :class:`TriggerModel` that ``:INITiate``
runs (see :meth:`Keithley2450Emulator._run_trigger_model`).

Reference: Keithley 2450 Reference Manual (2450-901-01), ":SOURce[1]:SWEep:<function>:LINear"
(start, stop, points, delay, count, rangeType, failAbort, dual, bufferName), ":LINear:STEP",
":LOG" (..., asymptote), ":LIST" (startIndex, delay, count, failAbort, bufferName) with
``:SOURce:LIST:<function>``, and ":TRIGger:LOAD". Every sweep runs synchronously inside
``:INITiate`` on the virtual clock, so ``*WAI`` / ``*OPC?`` return at once afterwards; an
infinite count (0) cannot be run that way and is refused with -221.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cimlab.instruments.emulator.scpi import Param, ScpiError
from cimlab.instruments.emulator.smu_buffers import name_of

#: largest source level per function (2450 manual, source ranges: 210 V, 1.05 A)
SOURCE_LIMITS = {"VOLT": 210.0, "CURR": 1.05}
MAX_POINTS = 1_000_000
MAX_COUNT = 268_435_455
#: longest sweep delay [s]; shortest non-zero one is 50 us (manual)
MAX_DELAY_S = 10_000.0
MIN_DELAY_S = 50e-6
#: -1: auto delay
AUTO_DELAY = -1.0


@dataclass
class TriggerModel:
    """What ``:INITiate`` runs. ``kind``: ``EMPTY``, ``SWEEP`` (the levels, in order, once
    per count) or ``SIMPLE`` (``count`` readings at the present source level)."""

    kind: str = "EMPTY"
    func: str = "VOLT"
    levels: list[float] = field(default_factory=list)
    delay_s: float = 0.0
    count: int = 1
    range_type: str = "BEST"
    fail_abort: bool = True
    buffer: str = "defbuffer1"

    def to_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "func": self.func, "levels": list(self.levels),
                "delay_s": self.delay_s, "count": self.count, "range_type": self.range_type,
                "fail_abort": self.fail_abort, "buffer": self.buffer}

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> TriggerModel:
        return cls(str(d["kind"]), str(d["func"]), [float(x) for x in d["levels"]],  # type: ignore[union-attr]
                   float(d["delay_s"]), int(d["count"]), str(d["range_type"]),  # type: ignore[arg-type]
                   bool(d["fail_abort"]), str(d["buffer"]))


def _level(p: Param, func: str) -> float:
    hi = SOURCE_LIMITS[func]
    return p.number(lo=-hi, hi=hi)


def _delay(p: Param) -> float:
    d = p.number(lo=-1.0, hi=MAX_DELAY_S)
    if d != AUTO_DELAY and d < 0:
        raise ScpiError(-222, f"delay {d:g}: -1 (auto), 0, or {MIN_DELAY_S:g} to "
                        f"{MAX_DELAY_S:g} s")
    if 0 < d < MIN_DELAY_S:
        raise ScpiError(-222, f"delay {d:g} s below the shortest, {MIN_DELAY_S:g} s")
    return d


def _count(p: Param) -> int:
    c = p.integer(lo=0, hi=MAX_COUNT)
    if c == 0:
        raise ScpiError(-221, "an infinite sweep count (0) cannot run on the emulated clock; "
                        "give a finite count")
    return c


def _options(params: list[Param], first: int, *, with_range: bool = True,
             with_dual: bool = True) -> tuple[float, int, str, bool, bool, str]:
    """delay, count, rangeType, failAbort, dual, bufferName from ``params[first:]``."""
    rest = list(params[first:])
    delay = _delay(rest.pop(0)) if rest else AUTO_DELAY
    count = _count(rest.pop(0)) if rest else 1
    range_type = rest.pop(0).choice("AUTO", "BEST", "FIXed") if rest and with_range else "BEST"
    fail_abort = rest.pop(0).boolean() if rest else True
    dual = rest.pop(0).boolean() if rest and with_dual else False
    buffer = name_of(rest.pop(0)) if rest else "defbuffer1"
    if rest:
        raise ScpiError(-108, "too many sweep parameters")
    return delay, count, range_type, fail_abort, dual, buffer


def _model(func: str, levels: np.ndarray, opts: tuple[float, int, str, bool, bool, str]
           ) -> TriggerModel:
    delay, count, range_type, fail_abort, dual, buffer = opts
    pts = [float(v) for v in levels]
    if dual:
        pts = pts + pts[::-1]
    return TriggerModel("SWEEP", func, pts, delay, count, range_type, fail_abort, buffer)


def linear(func: str, params: list[Param]) -> TriggerModel:
    """``:SOUR:SWE:<f>:LIN <start>, <stop>, <points>[, <delay>, <count>, <rangeType>,
    <failAbort>, <dual>, "<bufferName>"]``."""
    if len(params) < 3:
        raise ScpiError(-109, ":SOUR:SWE:LIN needs start, stop and points")
    start = _level(params[0], func)
    stop = _level(params[1], func)
    points = params[2].integer(lo=2, hi=MAX_POINTS)
    return _model(func, np.linspace(start, stop, points), _options(params, 3))


def linear_step(func: str, params: list[Param]) -> TriggerModel:
    """``:SOUR:SWE:<f>:LIN:STEP <start>, <stop>, <step>[, ...]``; points =
    floor((stop - start) / step) + 1 (manual)."""
    if len(params) < 3:
        raise ScpiError(-109, ":SOUR:SWE:LIN:STEP needs start, stop and step")
    start = _level(params[0], func)
    stop = _level(params[1], func)
    step = params[2].number(lo=0.0)
    if step <= 0:
        raise ScpiError(-222, "the step size must be greater than 0")
    points = int(np.floor(abs(stop - start) / step + 1e-9)) + 1
    if points > MAX_POINTS:
        raise ScpiError(-222, f"{points} points exceed {MAX_POINTS}")
    direction = 1.0 if stop >= start else -1.0
    levels = start + direction * step * np.arange(points)
    return _model(func, levels, _options(params, 3))


def logarithmic(func: str, params: list[Param]) -> TriggerModel:
    """``:SOUR:SWE:<f>:LOG <start>, <stop>, <points>[, <delay>, <count>, <rangeType>,
    <failAbort>, <dual>, "<bufferName>", <asymptote>]``: points equally spaced in
    log10(level - asymptote)."""
    if len(params) < 3:
        raise ScpiError(-109, ":SOUR:SWE:LOG needs start, stop and points")
    start = _level(params[0], func)
    stop = _level(params[1], func)
    points = params[2].integer(lo=2, hi=MAX_POINTS)
    body = list(params)
    asymptote = 0.0
    if len(body) > 9:
        asymptote = body.pop(9).number(lo=-SOURCE_LIMITS[func], hi=SOURCE_LIMITS[func])
    a, b = start - asymptote, stop - asymptote
    if a == 0 or b == 0 or (a > 0) != (b > 0):
        raise ScpiError(-222, "a log sweep needs start and stop on one side of the asymptote, "
                        "neither equal to it")
    sign = 1.0 if a > 0 else -1.0
    levels = asymptote + sign * np.logspace(np.log10(abs(a)), np.log10(abs(b)), points)
    return _model(func, levels, _options(body, 3))


def from_list(func: str, values: list[float], params: list[Param]) -> TriggerModel:
    """``:SOUR:SWE:<f>:LIST <startIndex>[, <delay>, <count>, <failAbort>, "<bufferName>"]``
    over the source list ``:SOUR:LIST:<f>``."""
    if not params:
        raise ScpiError(-109, ":SOUR:SWE:LIST needs a start index")
    if not values:
        raise ScpiError(-221, f"the source list :SOUR:LIST:{func} is empty")
    start = params[0].integer(lo=1, hi=len(values))
    opts = _options(params, 1, with_range=False, with_dual=False)
    return _model(func, np.asarray(values[start - 1:]), opts)


def simple_loop(params: list[Param]) -> TriggerModel:
    """``:TRIG:LOAD "SimpleLoop", <count>[, <delay>[, "<bufferName>"]]``."""
    if len(params) < 2:
        raise ScpiError(-109, ':TRIG:LOAD "SimpleLoop" needs a count')
    if len(params) > 4:
        raise ScpiError(-108, ':TRIG:LOAD "SimpleLoop" takes count, delay and buffer')
    count = _count(params[1])
    delay = _delay(params[2]) if len(params) > 2 else 0.0
    buffer = name_of(params[3]) if len(params) > 3 else "defbuffer1"
    return TriggerModel("SIMPLE", "VOLT", [], max(delay, 0.0), count, "BEST", False, buffer)


def load(params: list[Param]) -> TriggerModel:
    """``:TRIGger:LOAD "<template>", ...``: ``Empty`` or ``SimpleLoop``."""
    if not params:
        raise ScpiError(-109, ":TRIG:LOAD needs a template name")
    name = name_of(params[0]).upper()
    if name == "EMPTY":
        if len(params) > 1:
            raise ScpiError(-108, ':TRIG:LOAD "Empty" takes no parameters')
        return TriggerModel()
    if name == "SIMPLELOOP":
        return simple_loop(params)
    raise ScpiError(-224, f"trigger model template {name_of(params[0])!r} is not emulated "
                    "(Empty, SimpleLoop, or a :SOUR:SWE sweep)")

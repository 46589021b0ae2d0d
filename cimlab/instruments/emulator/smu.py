"""The emulated Keithley 2450 SourceMeter: the SCPI subset (2450 native command set) that
PyMeasure's ``Keithley2450`` driver sends, answering as the instrument does, so that driver
works against it unmodified.

The SMU's HI/LO terminals see the cell the array controller routed (``ROUTe:CELL``); with no
cell routed the terminals are open. Measured current is :meth:`ReRAMChip.cell_current` of that
cell at the sourced voltage (with its read noise), 0 with the output off; the current limit
(``:SOUR:VOLT:ILIM``) is honoured (in compliance the voltage across the cell drops so the
current equals the limit) and a reading beyond 105 % of a fixed measure range is the
instrument's overflow value ``9.9E+37``. Reference: Keithley 2450 Reference Manual
(2450-901-01), SCPI command reference, *RST defaults.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from cimlab.instruments.emulator.scpi import Instrument, Param, ScpiError, expect
from cimlab.instruments.emulator.world import World

#: Keithley 2450 ranges (reference manual, "Measure ranges" / "Source ranges")
CURRENT_RANGES = (10e-9, 100e-9, 1e-6, 10e-6, 100e-6, 1e-3, 10e-3, 100e-3, 1.0)
VOLTAGE_RANGES = (0.02, 0.2, 2.0, 20.0, 200.0)
RESISTANCE_RANGES = (20.0, 200.0, 2e3, 20e3, 200e3, 2e6, 20e6, 200e6)
OVERFLOW = 9.9e37
MAX_V = 210.0
MAX_I = 1.05
#: over-range factor of a fixed range before the reading overflows
OVERRANGE = 1.05

_FUNC_NAMES = {"CURR": "CURR", "CURRENT": "CURR", "CURR:DC": "CURR", "CURRENT:DC": "CURR",
               "VOLT": "VOLT", "VOLTAGE": "VOLT", "VOLT:DC": "VOLT", "VOLTAGE:DC": "VOLT",
               "RES": "RES", "RESISTANCE": "RES"}


def _e(value: float) -> str:
    """The 2450's ASCII number format, e.g. ``2.000000E-01``."""
    return f"{value:.6E}"


def _pick_range(ranges: tuple[float, ...], value: float) -> float:
    a = abs(value)
    for r in ranges:
        if a <= r * OVERRANGE:
            return r
    raise ScpiError(-222, f"{value:g} beyond the largest range {ranges[-1]:g}")


class Keithley2450Emulator(Instrument):
    """SCPI state machine of a Keithley 2450 whose terminals see the routed cell."""

    NAME = "smu"

    def __init__(self, world: World, serial: str = "04400001"):
        super().__init__(lock=world.lock)
        self.world = world
        self.serial = serial
        c = self.command
        c("SOURce[:FUNCtion][:MODE]", write=self._w_source_func,
          query=lambda p: self.source_func)
        for f in ("VOLTage", "CURRent"):
            key = f[:4].upper()
            c(f"SOURce:{f}[:LEVel][:IMMediate][:AMPLitude]",
              write=self._setter_level(key), query=lambda p, k=key: _e(self.level[k]))
            c(f"SOURce:{f}:RANGe", write=self._setter_src_range(key),
              query=lambda p, k=key: _e(self.src_range[k]))
            c(f"SOURce:{f}:RANGe:AUTO", write=self._setter_flag("src_auto", key),
              query=lambda p, k=key: "1" if self.src_auto[k] else "0")
            c(f"SOURce:{f}:DELay", write=self._setter_delay(key),
              query=lambda p, k=key: _e(self.delay[k]))
            c(f"SOURce:{f}:DELay:AUTO", write=self._setter_flag("delay_auto", key),
              query=lambda p, k=key: "1" if self.delay_auto[k] else "0")
        c("SOURce:VOLTage:ILIMit[:LEVel]", write=self._w_ilim, query=lambda p: _e(self.ilim))
        c("SOURce:CURRent:VLIMit[:LEVel]", write=self._w_vlim, query=lambda p: _e(self.vlim))
        c("SENSe[:FUNCtion][:ON]", write=self._w_sense_func,
          query=lambda p: {"CURR": '"CURR:DC"', "VOLT": '"VOLT:DC"', "RES": '"RES"'}[
              self.sense_func])
        for f in ("VOLTage", "CURRent", "RESistance"):
            key = f[:4].upper() if f != "RESistance" else "RES"
            c(f"SENSe:{f}:RANGe[:UPPer]", write=self._setter_meas_range(key),
              query=lambda p, k=key: _e(self.meas_range[k]))
            c(f"SENSe:{f}:RANGe:AUTO", write=self._setter_flag("meas_auto", key),
              query=lambda p, k=key: "1" if self.meas_auto[k] else "0")
            c(f"SENSe:{f}:NPLCycles", write=self._setter_nplc(key),
              query=lambda p, k=key: _e(self.nplc[k]))
        for f in ("VOLTage", "CURRent"):
            key = f[:4].upper()
            c(f"SENSe:{f}:AVERage[:STATe]", write=self._setter_flag("avg_on", key),
              query=lambda p, k=key: "1" if self.avg_on[k] else "0")
            c(f"SENSe:{f}:AVERage:TCONtrol", write=self._setter_tcon(key),
              query=lambda p, k=key: self.avg_tcon[k])
            c(f"SENSe:{f}:AVERage:COUNt", write=self._setter_avg_count(key),
              query=lambda p, k=key: str(self.avg_count[k]))
        c("SENSe:RESistance:RSENse", write=self._w_rsense,
          query=lambda p: "1" if self.rsense else "0")
        c("OUTPut[:STATe]", write=self._w_output, query=lambda p: "1" if self.output else "0")
        for f in ("VOLTage", "CURRent"):
            key = f[:4].upper()
            c(f"OUTPut:{f}:SMODe", write=self._setter_smode(key),
              query=lambda p, k=key: self.smode[k])
        c("READ", query=self._q_read)
        c("MEASure[:CURRent]", query=lambda p: self._measure(p, "CURR"))
        c("MEASure:VOLTage", query=lambda p: self._measure(p, "VOLT"))
        c("MEASure:RESistance", query=lambda p: self._measure(p, "RES"))
        c("ABORt", write=lambda p: expect(p, 0, ":ABOR") and None)
        c("INITiate[:IMMediate]", write=self._w_init)
        c("TRACe:POINts", write=self._w_trace_points, query=lambda p: str(self.trace_points))
        c("TRACe:CLEar", write=self._w_trace_clear)
        c("TRACe:DATA", query=self._q_trace_data)
        c("TRACe:FEED", write=lambda p: expect(p, 1, ":TRAC:FEED") and None)
        c("TRACe:FEED:CONTrol", write=lambda p: expect(p, 1, ":TRAC:FEED:CONT") and None)
        for stat in ("AVERage", "MAXimum", "MINimum", "STDDev"):
            c(f"TRACe:STATistics:{stat}", query=lambda p, s=stat: self._q_trace_stat(s))
        c("FORMat[:DATA]", write=self._w_format, query=lambda p: "ASC")
        c("ROUTe:TERMinals", write=self._w_terminals, query=lambda p: self.terminals)
        c("STATus:MEASurement:ENABle", write=lambda p: expect(p, 1, ":STAT:MEAS:ENAB") and None)
        c("SYSTem:BEEPer[:IMMediate]", write=lambda p: expect(p, 2, ":SYST:BEEP") and None)
        self.reset()

    # -- identity and reset ------------------------------------------------------------------
    def idn(self) -> str:
        return f"KEITHLEY INSTRUMENTS,MODEL 2450,{self.serial},1.7.12b (emulated by cimlab)"

    def reset(self) -> None:
        """*RST defaults of the 2450 (reference manual, "Default settings")."""
        self.output = False
        self.source_func = "VOLT"
        self.sense_func = "CURR"
        self.level = {"VOLT": 0.0, "CURR": 0.0}
        self.src_range = {"VOLT": 0.02, "CURR": 1e-8}
        self.src_auto = {"VOLT": True, "CURR": True}
        self.delay = {"VOLT": 0.0, "CURR": 0.0}
        self.delay_auto = {"VOLT": True, "CURR": True}
        self.ilim = 1.05e-4
        self.vlim = 21.0
        self.meas_range = {"VOLT": 0.02, "CURR": 1e-8, "RES": 2e5}
        self.meas_auto = {"VOLT": True, "CURR": True, "RES": True}
        self.nplc = {"VOLT": 1.0, "CURR": 1.0, "RES": 1.0}
        self.avg_on = {"VOLT": False, "CURR": False}
        self.avg_tcon = {"VOLT": "REP", "CURR": "REP"}
        self.avg_count = {"VOLT": 10, "CURR": 10}
        self.rsense = False
        self.smode = {"VOLT": "NORM", "CURR": "NORM"}
        self.terminals = "FRON"
        self.trace_points = 100000
        self.trace: list[float] = []

    # -- state (EmulatedBench.save_state) ------------------------------------------------------
    #: the settings a 2450 keeps until *RST (those :meth:`reset` sets), saved with a bench
    SETTINGS = ("output", "source_func", "sense_func", "level", "src_range", "src_auto",
                "delay", "delay_auto", "ilim", "vlim", "meas_range", "meas_auto", "nplc",
                "avg_on", "avg_tcon", "avg_count", "rsense", "smode", "terminals",
                "trace_points")

    def state_dict(self) -> dict[str, Any]:
        """Settings (JSON text) and the reading buffer (``smu.*`` entries of a bench state)."""
        with self.lock:
            settings = {k: getattr(self, k) for k in self.SETTINGS}
            return {"smu.settings": json.dumps(settings),
                    "smu.trace": np.asarray(self.trace, dtype=np.float64)}

    def read_state(self, reader: Any) -> dict[str, Any]:
        """Validate saved settings against the *RST defaults' keys and types."""
        saved = reader.json("smu.settings", "the SMU settings")
        fresh = Keithley2450Emulator.__new__(Keithley2450Emulator)
        Keithley2450Emulator.reset(fresh)
        if not isinstance(saved, dict) or set(saved) != set(self.SETTINGS):
            raise reader.error("smu.settings", "the keys " + ", ".join(self.SETTINGS),
                               sorted(saved) if isinstance(saved, dict) else saved)
        out: dict[str, Any] = {}
        for key in self.SETTINGS:
            default, value = getattr(fresh, key), saved[key]
            if not _same_kind(default, value):
                raise reader.error(f"smu.settings.{key}", f"a value like {default!r}", value)
            out[key] = float(value) if isinstance(default, float) else value
            if isinstance(default, dict):
                out[key] = {k: float(v) if isinstance(default[k], float) else v
                            for k, v in value.items()}
        trace = reader.raw("smu.trace", "a float64 array of readings")
        if not (isinstance(trace, np.ndarray) and trace.dtype == np.float64 and trace.ndim == 1):
            raise reader.error("smu.trace", "a 1-D float64 array of readings", trace)
        out["trace"] = [float(x) for x in trace]
        return out

    def apply_state(self, values: dict[str, Any]) -> None:
        with self.lock:
            for k, v in values.items():
                setattr(self, k, v)

    # -- setters -----------------------------------------------------------------------------
    def _w_source_func(self, p: list[Param]) -> None:
        (f,) = expect(p, 1, ":SOUR:FUNC")
        self.source_func = f.choice("VOLTage", "CURRent")[:4]

    def _setter_level(self, key: str):
        def w(p: list[Param]) -> None:
            (v,) = expect(p, 1, f":SOUR:{key}")
            hi = MAX_V if key == "VOLT" else MAX_I
            value = v.number(lo=-hi, hi=hi)
            if not self.src_auto[key] and abs(value) > self.src_range[key] * OVERRANGE:
                raise ScpiError(-222, f"{value:g} beyond the source range {self.src_range[key]:g}")
            self.level[key] = value
        return w

    def _setter_src_range(self, key: str):
        def w(p: list[Param]) -> None:
            (v,) = expect(p, 1, f":SOUR:{key}:RANG")
            ranges = VOLTAGE_RANGES if key == "VOLT" else CURRENT_RANGES
            self.src_range[key] = _pick_range(ranges, v.number())
            self.src_auto[key] = False
        return w

    def _setter_meas_range(self, key: str):
        def w(p: list[Param]) -> None:
            (v,) = expect(p, 1, f":SENS:{key}:RANG")
            ranges = {"VOLT": VOLTAGE_RANGES, "CURR": CURRENT_RANGES,
                      "RES": RESISTANCE_RANGES}[key]
            self.meas_range[key] = _pick_range(ranges, v.number())
            self.meas_auto[key] = False
        return w

    def _setter_flag(self, table: str, key: str):
        def w(p: list[Param]) -> None:
            (v,) = expect(p, 1, key)
            getattr(self, table)[key] = v.boolean()
        return w

    def _setter_delay(self, key: str):
        def w(p: list[Param]) -> None:
            (v,) = expect(p, 1, f":SOUR:{key}:DEL")
            self.delay[key] = v.number(lo=0.0, hi=10000.0)
            self.delay_auto[key] = False
        return w

    def _setter_nplc(self, key: str):
        def w(p: list[Param]) -> None:
            (v,) = expect(p, 1, f":SENS:{key}:NPLC")
            self.nplc[key] = v.number(lo=0.01, hi=10.0)
        return w

    def _setter_tcon(self, key: str):
        def w(p: list[Param]) -> None:
            (v,) = expect(p, 1, f":SENS:{key}:AVER:TCON")
            self.avg_tcon[key] = v.choice("REPeat", "MOVing")[:3]
        return w

    def _setter_avg_count(self, key: str):
        def w(p: list[Param]) -> None:
            (v,) = expect(p, 1, f":SENS:{key}:AVER:COUN")
            self.avg_count[key] = v.integer(lo=1, hi=100)
        return w

    def _setter_smode(self, key: str):
        def w(p: list[Param]) -> None:
            (v,) = expect(p, 1, f":OUTP:{key}:SMOD")
            self.smode[key] = v.choice("HIMPedance", "NORMal", "ZERO", "GUARd")[:4]
        return w

    def _w_ilim(self, p: list[Param]) -> None:
        (v,) = expect(p, 1, ":SOUR:VOLT:ILIM")
        self.ilim = v.number(lo=1e-9, hi=MAX_I)

    def _w_vlim(self, p: list[Param]) -> None:
        (v,) = expect(p, 1, ":SOUR:CURR:VLIM")
        self.vlim = v.number(lo=0.02, hi=MAX_V)

    def _w_sense_func(self, p: list[Param]) -> None:
        (f,) = expect(p, 1, ":SENS:FUNC")
        name = _FUNC_NAMES.get(f.string().upper())
        if name is None:
            raise ScpiError(-224, f"unknown measure function {f.text}")
        self.sense_func = name

    def _w_rsense(self, p: list[Param]) -> None:
        (v,) = expect(p, 1, ":SENS:RES:RSEN")
        self.rsense = v.boolean()

    def _w_output(self, p: list[Param]) -> None:
        (v,) = expect(p, 1, ":OUTP")
        self.output = v.boolean()

    def _w_format(self, p: list[Param]) -> None:
        (v,) = expect(p, 1, ":FORM")
        v.choice("ASCii")

    def _w_terminals(self, p: list[Param]) -> None:
        (v,) = expect(p, 1, ":ROUT:TERM")
        self.terminals = v.choice("FRONt", "REAR")[:4]

    def _w_trace_points(self, p: list[Param]) -> None:
        (v,) = expect(p, 1, ":TRAC:POIN")
        self.trace_points = v.integer(lo=10, hi=11_000_000)
        self.trace.clear()

    def _w_trace_clear(self, p: list[Param]) -> None:
        expect(p, 0, ":TRAC:CLE")
        self.trace.clear()

    # -- measuring ---------------------------------------------------------------------------
    def _terminal_state(self) -> tuple[float, float]:
        """(voltage across the terminals [V], current through them [A]) right now."""
        w = self.world
        cell = w.routed_cell
        if not self.output:
            return 0.0, 0.0
        if self.source_func == "VOLT":
            v = self.level["VOLT"]
            i = 0.0 if cell is None else float(w.chip.cell_current(cell, v, w.now_s))
            if abs(i) > self.ilim:  # in compliance: the source backs off to the limit
                v = v * self.ilim / abs(i)
                i = float(np.sign(i)) * self.ilim
            return v, i
        i = self.level["CURR"]
        if cell is None:
            return float(np.sign(i)) * self.vlim if i else 0.0, 0.0
        probe = 0.1
        g = float(w.chip.cell_current(cell, probe, w.now_s)) / probe
        v = i / g if g > 0 else float(np.sign(i)) * self.vlim
        if abs(v) > self.vlim:
            v = float(np.sign(v)) * self.vlim
            i = g * v
        return v, i

    def _reading(self, func: str) -> float:
        w = self.world
        t = w.timing
        delay = 1e-3 if self.delay_auto[self.source_func] else self.delay[self.source_func]
        integration = self.nplc[func] / t.smu_line_hz
        v, i = self._terminal_state()
        w.charge(self.NAME, delay + integration + t.smu_overhead_s)
        if func == "CURR":
            value = i
        elif func == "VOLT":
            value = v
        else:
            value = OVERFLOW if i == 0 else v / i
        if not self.meas_auto[func] and abs(value) > self.meas_range[func] * OVERRANGE:
            value = OVERFLOW
        if len(self.trace) < self.trace_points:
            self.trace.append(value)
        return value

    def _q_read(self, p: list[Param]) -> str:
        if len(p) > 1:
            raise ScpiError(-108, ":READ? takes at most a buffer name")
        return _e(self._reading(self.sense_func))

    def _measure(self, p: list[Param], func: str) -> str:
        if len(p) > 1:
            raise ScpiError(-108, ":MEAS? takes at most a buffer name")
        self.sense_func = func
        return _e(self._reading(func))

    def _w_init(self, p: list[Param]) -> None:
        expect(p, 0, ":INIT")
        self._reading(self.sense_func)

    def _q_trace_data(self, p: list[Param]) -> str:
        return ",".join(_e(v) for v in self.trace)

    def _q_trace_stat(self, stat: str) -> str:
        if not self.trace:
            return _e(OVERFLOW)
        a = np.asarray(self.trace)
        value = {"AVERAGE": a.mean(), "MAXIMUM": a.max(), "MINIMUM": a.min(),
                 "STDDEV": a.std(ddof=1) if a.size > 1 else 0.0}[stat.upper()]
        return _e(float(value))


def _same_kind(default: Any, value: Any) -> bool:
    """``value`` (from JSON) has the structure and types of ``default``."""
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool) \
            and bool(np.isfinite(value))
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, str):
        return isinstance(value, str)
    if isinstance(default, dict):
        return isinstance(value, dict) and set(value) == set(default) and all(
            _same_kind(default[k], value[k]) for k in default)
    return False

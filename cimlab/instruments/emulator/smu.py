"""The emulated Keithley 2450 SourceMeter: the 2450's native SCPI command set as its reference
manual documents it (source and measure subsystems with limits and trip status, readback,
autozero, remote sense, source and user delays, measure count, ``*LANG``, the sweep trigger
models, reading buffers with their elements and index ranges, status and error queue), so
that unmodified third-party drivers (PyMeasure's and QCoDeS's ``Keithley2450``) and plain
SCPI scripts work against it. What is and is not emulated: docs/instruments.md.

The SMU's HI/LO terminals see the cell the array controller routed (``ROUTe:CELL``); with no
cell routed the terminals are open. Measured current is :meth:`ReRAMChip.cell_current` of that
cell at the sourced voltage (with its read noise), 0 with the output off; the current limit
(``:SOUR:VOLT:ILIM``) is honoured (in compliance the voltage across the cell drops so the
current equals the limit, and ``:SOUR:VOLT:ILIM:TRIP?`` reports it) and a reading beyond
105 % of a fixed measure range is the instrument's overflow value ``9.9E+37``. Every reading
charges its source delay, NPLC integration and overhead to the virtual clock. Reference:
Keithley 2450 Reference Manual (2450-901-01), SCPI command reference, *RST defaults. Reading
buffers: :mod:`.smu_buffers`; sweeps and trigger models: :mod:`.smu_trigger`.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from cimlab.instruments.emulator import smu_trigger as trig
from cimlab.instruments.emulator.scpi import Instrument, Param, ScpiError, expect
from cimlab.instruments.emulator.smu_buffers import (
    SOURSTAT_FOUR_WIRE,
    SOURSTAT_LIMITED,
    SOURSTAT_OUTPUT_ON,
    SOURSTAT_READBACK,
    STAT_QUESTIONABLE,
    STAT_TERMINAL_FRONT,
    BufferSet,
    Reading,
    elements_of,
    format_readings,
)
from cimlab.instruments.emulator.smu_state import read_smu_state
from cimlab.instruments.emulator.smu_syntax import normalise
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
#: source auto delay charged per reading [s] (the 2450's auto delay on the low ranges, ~1 ms)
AUTO_DELAY_S = 1e-3
#: largest measure count (:SENSe:COUNt, manual: 1 to 300000)
MAX_COUNT = 300_000
#: user delays per function (:SOURce:<function>:DELay:USER<n>, n = 1..5)
USER_DELAYS = 5
#: command sets of *LANG (the 2450 answers in SCPI unless switched and power-cycled)
LANGUAGES = ("SCPI", "TSP", "SCPI2400")

_FUNC_NAMES = {"CURR": "CURR", "CURRENT": "CURR", "CURR:DC": "CURR", "CURRENT:DC": "CURR",
               "VOLT": "VOLT", "VOLTAGE": "VOLT", "VOLT:DC": "VOLT", "VOLTAGE:DC": "VOLT",
               "RES": "RES", "RESISTANCE": "RES"}
_SOURCE_FUNCS = (("VOLTage", "VOLT"), ("CURRent", "CURR"))
_SENSE_FUNCS = (("VOLTage", "VOLT"), ("CURRent", "CURR"), ("RESistance", "RES"))


def _e(value: float) -> str:
    """The 2450's ASCII number format, e.g. ``2.000000E-01``."""
    return f"{value:.6E}"


def _pick_range(ranges: tuple[float, ...], value: float) -> float:
    a = abs(value)
    for r in ranges:
        if a <= r * OVERRANGE:
            return r
    raise ScpiError(-222, f"{value:g} beyond the largest range {ranges[-1]:g}")


def _flag(value: bool) -> str:
    return "1" if value else "0"


class Keithley2450Emulator(Instrument):
    """SCPI state machine of a Keithley 2450 whose terminals see the routed cell."""

    NAME = "smu"

    def __init__(self, world: World, serial: str = "04400001"):
        super().__init__(lock=world.lock)
        self.world = world
        self.serial = serial
        self.buffers = BufferSet()
        self._register_source()
        self._register_sense()
        self._register_system()
        self.reset()

    # -- command registration ----------------------------------------------------------------
    def _register_source(self) -> None:
        c = self.command
        c("SOURce[:FUNCtion][:MODE]", write=self._w_source_func,
          query=lambda p: self.source_func)
        for f, key in _SOURCE_FUNCS:
            c(f"SOURce:{f}[:LEVel][:IMMediate][:AMPLitude]",
              write=self._setter_level(key), query=lambda p, k=key: _e(self.level[k]))
            c(f"SOURce:{f}:RANGe", write=self._setter_src_range(key),
              query=lambda p, k=key: _e(self.src_range[k]))
            c(f"SOURce:{f}:RANGe:AUTO", write=self._setter_flag("src_auto", key),
              query=lambda p, k=key: _flag(self.src_auto[k]))
            c(f"SOURce:{f}:DELay", write=self._setter_delay(key),
              query=lambda p, k=key: _e(self.delay[k]))
            c(f"SOURce:{f}:DELay:AUTO", write=self._setter_flag("delay_auto", key),
              query=lambda p, k=key: _flag(self.delay_auto[k]))
            for n in range(1, USER_DELAYS + 1):
                c(f"SOURce:{f}:DELay:USER{n}", write=self._setter_user_delay("src", key, n),
                  query=lambda p, k=f"{key}{n}": _e(self.src_user_delay[k]))
            c(f"SOURce:{f}:READ:BACK", write=self._setter_flag("readback", key),
              query=lambda p, k=key: _flag(self.readback[k]))
            c(f"SOURce:LIST:{f}", write=self._setter_list(key, append=False),
              query=lambda p, k=key: ",".join(_e(v) for v in self.source_list[k]))
            c(f"SOURce:LIST:{f}:APPend", write=self._setter_list(key, append=True))
            c(f"SOURce:LIST:{f}:POINts", query=lambda p, k=key: str(len(self.source_list[k])))
            c(f"SOURce:SWEep:{f}:LINear", write=self._sweep(trig.linear, key))
            c(f"SOURce:SWEep:{f}:LINear:STEP", write=self._sweep(trig.linear_step, key))
            c(f"SOURce:SWEep:{f}:LOG", write=self._sweep(trig.logarithmic, key))
            c(f"SOURce:SWEep:{f}:LIST", write=self._sweep(
                lambda k, p: trig.from_list(k, self.source_list[k], p), key))
        c("SOURce:VOLTage:ILIMit[:LEVel]", write=self._w_ilim, query=lambda p: _e(self.ilim))
        c("SOURce:CURRent:VLIMit[:LEVel]", write=self._w_vlim, query=lambda p: _e(self.vlim))
        c("SOURce:VOLTage:ILIMit[:LEVel]:TRIPped",
          query=lambda p: _flag(self.tripped and self.source_func == "VOLT"))
        c("SOURce:CURRent:VLIMit[:LEVel]:TRIPped",
          query=lambda p: _flag(self.tripped and self.source_func == "CURR"))
        c("OUTPut[:STATe]", write=self._w_output, query=lambda p: _flag(self.output))
        for f, key in _SOURCE_FUNCS:
            c(f"OUTPut:{f}:SMODe", write=self._setter_smode(key),
              query=lambda p, k=key: self.smode[k])

    def _register_sense(self) -> None:
        c = self.command
        func_query = lambda p: {"CURR": '"CURR:DC"', "VOLT": '"VOLT:DC"',  # noqa: E731
                                "RES": '"RES"'}[self.sense_func]
        c("SENSe[:FUNCtion][:ON]", write=self._w_sense_func, query=func_query)
        c("FUNCtion[:ON]", write=self._w_sense_func, query=func_query)
        for f, key in _SENSE_FUNCS:
            f = f"[SENSe]:{f}" + ("" if key == "RES" else "[:DC]")
            c(f"{f}:RANGe[:UPPer]", write=self._setter_meas_range(key),
              query=lambda p, k=key: _e(self.meas_range[k]))
            c(f"{f}:RANGe:AUTO", write=self._setter_flag("meas_auto", key),
              query=lambda p, k=key: _flag(self.meas_auto[k]))
            c(f"{f}:NPLCycles", write=self._setter_nplc(key),
              query=lambda p, k=key: _e(self.nplc[k]))
            c(f"{f}:AZERo[:STATe]", write=self._setter_flag("azero", key),
              query=lambda p, k=key: _flag(self.azero[k]))
            c(f"{f}:RSENse", write=self._setter_flag("rsense", key),
              query=lambda p, k=key: _flag(self.rsense[k]))
            for n in range(1, USER_DELAYS + 1):
                c(f"{f}:DELay:USER{n}", write=self._setter_user_delay("sense", key, n),
                  query=lambda p, k=f"{key}{n}": _e(self.sense_user_delay[k]))
        for f, key in _SOURCE_FUNCS:
            f = f"[SENSe]:{f}[:DC]"
            c(f"{f}:AVERage[:STATe]", write=self._setter_flag("avg_on", key),
              query=lambda p, k=key: _flag(self.avg_on[k]))
            c(f"{f}:AVERage:TCONtrol", write=self._setter_tcon(key),
              query=lambda p, k=key: self.avg_tcon[k])
            c(f"{f}:AVERage:COUNt", write=self._setter_avg_count(key),
              query=lambda p, k=key: str(self.avg_count[k]))
        c("[SENSe]:AZERo:ONCE", write=self._w_azero_once)
        for path in ("SENSe:COUNt", "COUNt"):
            c(path, write=self._w_count, query=lambda p: str(self.count))
        c("READ", query=self._q_read)
        c("MEASure", query=lambda p: self._measure(p, None))
        for f, key in _SENSE_FUNCS:
            c(f"MEASure:{f}", query=lambda p, k=key: self._measure(p, k))
        c("MEASure:CURRent:DC", query=lambda p: self._measure(p, "CURR"))
        c("MEASure:VOLTage:DC", query=lambda p: self._measure(p, "VOLT"))
        c("FETCh", query=self.buffers.fetch)

    def _register_system(self) -> None:
        c = self.command
        b = self.buffers
        c("ABORt", write=lambda p: expect(p, 0, ":ABOR") and None)
        c("INITiate[:IMMediate]", write=self._w_init)
        c("TRIGger:LOAD", write=self._w_trigger_load)
        c("TRACe:MAKE", write=b.make)
        c("TRACe:DELete", write=b.delete)
        c("TRACe:CLEar", write=b.clear)
        c("TRACe:POINts", write=b.set_points, query=b.points)
        c("TRACe:ACTual", query=b.actual)
        c("TRACe:ACTual:STARt", query=b.actual_start)
        c("TRACe:ACTual:END", query=b.actual_end)
        c("TRACe:FILL:MODE", write=b.set_fill_mode, query=b.fill_mode)
        c("TRACe:DATA", query=b.data)
        c("TRACe:TRIGger", write=self._w_trace_trigger)
        for stat in ("AVERage", "MAXimum", "MINimum", "STDDev", "PK2Pk"):
            key = stat.upper()
            c(f"TRACe:STATistics:{stat}", query=lambda p, s=key: b.statistic(s, p))
        # Model 2400 buffer commands PyMeasure's KeithleyBuffer sends; accepted, no effect
        c("TRACe:FEED", write=lambda p: expect(p, 1, ":TRAC:FEED") and None)
        c("TRACe:FEED:CONTrol", write=lambda p: expect(p, 1, ":TRAC:FEED:CONT") and None)
        c("FORMat[:DATA]", write=self._w_format, query=lambda p: "ASC")
        c("ROUTe:TERMinals", write=self._w_terminals, query=lambda p: self.terminals)
        c("STATus:MEASurement:ENABle", write=lambda p: expect(p, 1, ":STAT:MEAS:ENAB") and None)
        c("STATus:CLEar", write=self._w_status_clear)
        c("SYSTem:CLEar", write=self._w_system_clear)
        c("SYSTem:LFRequency", query=lambda p: f"{self.world.timing.smu_line_hz:g}")
        c("SYSTem:BEEPer[:IMMediate]", write=lambda p: expect(p, 2, ":SYST:BEEP") and None)

    # -- identity, language and reset -------------------------------------------------------
    def idn(self) -> str:
        return f"KEITHLEY INSTRUMENTS,MODEL 2450,{self.serial},1.7.12b (emulated by cimlab)"

    def _common(self, header: str, params: list[Param]) -> str | None:
        """``*LANG?`` / ``*LANG <SCPI|TSP|SCPI2400>`` beside the IEEE 488.2 commands. A new
        language takes effect at the next power cycle (manual), so ``*LANG?`` keeps answering
        the one in use."""
        h = header.upper()
        if h == "*LANG?":
            expect(params, 0, "*LANG?")
            return self.language
        if h == "*LANG":
            (v,) = expect(params, 1, "*LANG")
            self.language_next = v.choice(*LANGUAGES)
            return None
        return super()._common(header, params)

    def handle(self, message: bytes) -> bytes:
        """As :meth:`Instrument.handle`, after dropping an empty last parameter of a unit
        (``:TRACe:MAKE 'buf', 100, `` as QCoDeS sends it with its default style ``""``)."""
        return super().handle(normalise(message))

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
        self.src_user_delay = {f"{k}{n}": 0.0 for _, k in _SOURCE_FUNCS
                               for n in range(1, USER_DELAYS + 1)}
        self.sense_user_delay = {f"{k}{n}": 0.0 for _, k in _SENSE_FUNCS
                                 for n in range(1, USER_DELAYS + 1)}
        self.readback = {"VOLT": True, "CURR": True}
        self.ilim = 1.05e-4
        self.vlim = 21.0
        self.tripped = False
        self.meas_range = {"VOLT": 0.02, "CURR": 1e-8, "RES": 2e5}
        self.meas_auto = {"VOLT": True, "CURR": True, "RES": True}
        self.nplc = {"VOLT": 1.0, "CURR": 1.0, "RES": 1.0}
        self.azero = {"VOLT": True, "CURR": True, "RES": True}
        self.rsense = {"VOLT": False, "CURR": False, "RES": False}
        self.avg_on = {"VOLT": False, "CURR": False}
        self.avg_tcon = {"VOLT": "REP", "CURR": "REP"}
        self.avg_count = {"VOLT": 10, "CURR": 10}
        self.count = 1
        self.smode = {"VOLT": "NORM", "CURR": "NORM"}
        self.terminals = "FRON"
        if not hasattr(self, "language"):  # *LANG survives *RST (a power-cycle setting)
            self.language = "SCPI"
            self.language_next = "SCPI"
        self.source_list: dict[str, list[float]] = {"VOLT": [], "CURR": []}
        self.trigger = trig.TriggerModel()
        self.buffers.reset()

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

    def _setter_user_delay(self, which: str, key: str, n: int):
        def w(p: list[Param]) -> None:
            (v,) = expect(p, 1, f":{which.upper()}:{key}:DEL:USER{n}")
            table = self.src_user_delay if which == "src" else self.sense_user_delay
            table[f"{key}{n}"] = v.number(lo=0.0, hi=10000.0)
        return w

    def _setter_list(self, key: str, append: bool):
        def w(p: list[Param]) -> None:
            if not p:
                raise ScpiError(-109, f":SOUR:LIST:{key} needs at least one value")
            hi = MAX_V if key == "VOLT" else MAX_I
            values = [v.number(lo=-hi, hi=hi) for v in p]
            current = self.source_list[key] if append else []
            if len(current) + len(values) > trig.MAX_POINTS:
                raise ScpiError(-222, f"a source list holds at most {trig.MAX_POINTS} values")
            self.source_list[key] = current + values
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

    def _w_count(self, p: list[Param]) -> None:
        (v,) = expect(p, 1, ":SENS:COUN")
        self.count = v.integer(lo=1, hi=MAX_COUNT)

    def _w_output(self, p: list[Param]) -> None:
        (v,) = expect(p, 1, ":OUTP")
        self.output = v.boolean()
        if not self.output:
            self.tripped = False

    def _w_format(self, p: list[Param]) -> None:
        (v,) = expect(p, 1, ":FORM")
        v.choice("ASCii")

    def _w_terminals(self, p: list[Param]) -> None:
        (v,) = expect(p, 1, ":ROUT:TERM")
        self.terminals = v.choice("FRONt", "REAR")[:4]

    def _w_status_clear(self, p: list[Param]) -> None:
        """``:STATus:CLEar``: clears the event registers (the standard event register here)."""
        expect(p, 0, ":STAT:CLE")
        self.esr = 0

    def _w_system_clear(self, p: list[Param]) -> None:
        """``:SYSTem:CLEar``: clears the event log, which holds the error queue."""
        expect(p, 0, ":SYST:CLE")
        self.errors.clear()

    def _w_azero_once(self, p: list[Param]) -> None:
        """One refresh of the reference and zero measurements: two integrations."""
        expect(p, 0, ":SENS:AZER:ONCE")
        self.world.charge(self.NAME, 2 * self.nplc[self.sense_func] / self.world.timing.smu_line_hz)

    # -- measuring ---------------------------------------------------------------------------
    def _terminal_state(self, dwell_s: float = 0.0) -> tuple[float, float, bool]:
        """(voltage across the terminals [V], current through them [A], limit tripped).

        Sourcing voltage into a routed cell for ``dwell_s`` [s] (the reading's source delay,
        integration and overhead) is a DC bias of the 1T1R cell
        (:meth:`ReRAMChip.dc_bias`): above its threshold the cell switches as under a pulse
        of that width, limited by the current limit and the routed word-line voltage."""
        w = self.world
        cell = w.routed_cell
        if not self.output:
            return 0.0, 0.0, False
        if self.source_func == "VOLT":
            v = self.level["VOLT"]
            if cell is None:
                return v, 0.0, False
            vt, i, tripped = w.chip.dc_bias(cell, v, dwell_s, w.now_s,
                                            v_gate=w.routed_gate_v, i_limit_a=self.ilim)
            return float(vt), float(i), bool(tripped)
        i = self.level["CURR"]
        if cell is None:
            return (float(np.sign(i)) * self.vlim, 0.0, True) if i else (0.0, 0.0, False)
        probe = 0.1
        g = float(w.chip.cell_current(cell, probe, w.now_s)) / probe
        v = i / g if g > 0 else float(np.sign(i)) * self.vlim
        if abs(v) > self.vlim:
            v = float(np.sign(v)) * self.vlim
            return v, g * v, True
        return v, i, False

    def _reading(self, func: str, extra_delay_s: float = 0.0) -> Reading:
        """One reading of ``func``: source delay, integration and overhead charged to the
        virtual clock; the limit trip status updated."""
        w = self.world
        t = w.timing
        src = self.source_func
        delay = AUTO_DELAY_S if self.delay_auto[src] else self.delay[src]
        integration = self.nplc[func] / t.smu_line_hz
        dwell = delay + extra_delay_s + integration + t.smu_overhead_s
        v, i, tripped = self._terminal_state(dwell)
        w.charge(self.NAME, dwell)
        self.tripped = tripped
        value = {"CURR": i, "VOLT": v}.get(func, OVERFLOW if i == 0 else v / i)
        status = STAT_TERMINAL_FRONT if self.terminals == "FRON" else 0
        if not self.meas_auto[func] and abs(value) > self.meas_range[func] * OVERRANGE:
            value = OVERFLOW
        if value == OVERFLOW:
            status |= STAT_QUESTIONABLE
        measured_source = v if src == "VOLT" else i
        source = measured_source if self.readback[src] else self.level[src]
        source_status = ((SOURSTAT_READBACK if self.readback[src] else 0)
                         | (SOURSTAT_LIMITED if tripped else 0)
                         | (SOURSTAT_FOUR_WIRE if self.rsense[func] else 0)
                         | (SOURSTAT_OUTPUT_ON if self.output else 0))
        return Reading(float(value), float(source), w.now_s, status, source_status, func, src)

    def _acquire(self, params: list[Param], func: str) -> str:
        """``count`` readings of ``func`` into the buffer ``params[0]`` (defbuffer1); the last
        one with the elements ``params[1:]`` (READing by default)."""
        buf = self.buffers.pick(params)
        elements = elements_of(params[1:])
        last = None
        for _ in range(self.count):
            last = self._reading(func)
            buf.add(last)
        ordered = buf.ordered()
        return format_readings([last], elements, ordered[0].time_s if ordered else 0.0)

    def _q_read(self, p: list[Param]) -> str:
        return self._acquire(p, self.sense_func)

    def _measure(self, p: list[Param], func: str | None) -> str:
        if func is not None:
            self.sense_func = func
        return self._acquire(p, self.sense_func)

    def _w_trace_trigger(self, p: list[Param]) -> None:
        if len(p) > 1:
            raise ScpiError(-108, ":TRAC:TRIG takes at most a buffer name")
        self._acquire(p[:1], self.sense_func)

    # -- trigger model -----------------------------------------------------------------------
    def _sweep(self, build, key: str):
        def w(p: list[Param]) -> None:
            model = build(key, p)
            self.buffers.get(model.buffer)  # the buffer must exist when the sweep is made
            if model.range_type == "FIXED" and not self.src_auto[key]:
                limit = self.src_range[key] * OVERRANGE
                model.levels = [float(np.clip(v, -limit, limit)) for v in model.levels]
            self.source_func = key
            self.trigger = model
        return w

    def _w_trigger_load(self, p: list[Param]) -> None:
        model = trig.load(p)
        self.buffers.get(model.buffer)
        self.trigger = model

    def _w_init(self, p: list[Param]) -> None:
        expect(p, 0, ":INIT")
        self._run_trigger_model()

    def _run_trigger_model(self) -> None:
        """Run the loaded trigger model to its end on the virtual clock.

        Sweep (manual, "Sweep operation"): clear the buffer, output on, then per count and per
        point: source the level, wait the source delay plus the sweep delay, measure into the
        buffer; with failAbort ON a reading in the limit ends the sweep; output off at the end.
        SimpleLoop: clear the buffer, then ``count`` readings ``delay`` apart.
        """
        m = self.trigger
        if m.kind == "EMPTY":
            return
        buf = self.buffers.get(m.buffer)
        buf.clear()
        extra = max(m.delay_s, 0.0)
        if m.kind == "SIMPLE":
            for _ in range(m.count):
                buf.add(self._reading(self.sense_func, extra))
            return
        key = m.func
        saved_level, saved_auto = self.level[key], self.src_auto[key]
        if m.range_type == "AUTO":
            self.src_auto[key] = True
        self.source_func = key
        self.output = True
        try:
            for _ in range(m.count):
                for level in m.levels:
                    self.level[key] = level
                    r = self._reading(self.sense_func, extra)
                    buf.add(r)
                    if m.fail_abort and r.source_status & SOURSTAT_LIMITED:
                        return
        finally:
            self.output = False
            self.level[key], self.src_auto[key] = saved_level, saved_auto

    # -- state (EmulatedBench.save_state) ------------------------------------------------------
    #: the settings a 2450 keeps until *RST (those :meth:`reset` sets), saved with a bench
    SETTINGS = ("output", "source_func", "sense_func", "level", "src_range", "src_auto",
                "delay", "delay_auto", "src_user_delay", "sense_user_delay", "readback",
                "ilim", "vlim", "tripped", "meas_range", "meas_auto", "nplc", "azero",
                "rsense", "avg_on", "avg_tcon", "avg_count", "count", "smode", "terminals",
                "language", "language_next")

    def state_dict(self) -> dict[str, Any]:
        """Settings, trigger model and source lists (JSON text), buffer layout (JSON) and
        readings (an (n, 8) float64 array): the ``smu.*`` entries of a bench state."""
        with self.lock:
            settings = {k: getattr(self, k) for k in self.SETTINGS}
            sequences = {"trigger": self.trigger.to_dict(), "lists": self.source_list}
            return {"smu.settings": json.dumps(settings),
                    "smu.sequences": json.dumps(sequences),
                    "smu.buffers": json.dumps(self.buffers.layout()),
                    "smu.readings": self.buffers.rows()}

    def read_state(self, reader: Any) -> dict[str, Any]:
        """Validate a saved SMU against the *RST defaults' keys and types."""
        fresh = Keithley2450Emulator.__new__(Keithley2450Emulator)
        fresh.buffers = BufferSet()
        Keithley2450Emulator.reset(fresh)
        return read_smu_state(reader, self.SETTINGS, fresh)

    def apply_state(self, values: dict[str, Any]) -> None:
        with self.lock:
            for k, v in values.items():
                if k == "buffers":
                    self.buffers.buffers = v
                else:
                    setattr(self, k, v)

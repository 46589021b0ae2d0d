"""The emulated pulse generator of a discrete bench: a Keysight (Agilent) 33500B-series
two-channel function/arbitrary waveform generator, in the commands of its user's guide
("SCPI Programming Reference") that PyMeasure's ``Agilent33500`` driver uses unmodified:
``[SOURce[1|2]:]FUNCtion``, ``:VOLTage``, ``:VOLTage:OFFSet``, ``:VOLTage:HIGH``/``:LOW``,
``:VOLTage:UNIT``, ``:FREQuency``, ``:FUNCtion:PULSe:WIDTh``/``:PERiod``/``:TRANsition``,
``:BURSt:STATe``/``:MODE``/``:NCYCles``/``:INTernal:PERiod``, ``OUTPut[1|2]``,
``OUTPut[1|2]:LOAD``, ``TRIGger[1|2]:SOURce IMMediate|EXTernal|BUS``, ``*TRG``.

On the bench (docs/instruments.md, "Discrete bench"): channel 1 is the programming pulse,
routed by the switch matrix (:mod:`cimlab.instruments.emulator.switch`) to the bit lines
(SET) or source lines (RESET) of the selected cells; channel 2 is a DC level (``FUNC DC``,
``VOLT:OFFS``) routed to their word lines: the access transistor's gate, which sets the SET
compliance current. A burst (``BURS:STAT ON``, ``BURS:MODE TRIG``, ``BURS:NCYC n``) on a
``*TRG`` (``TRIG:SOUR BUS``) applies ``n`` pulses of height ``VOLT:HIGH`` (the low level must
be 0 V) and width ``FUNC:PULS:WIDT`` to every cell the matrix connects, through the chip's
pulse physics; the burst's duration (``n`` periods) is charged to the virtual clock.
"""

from __future__ import annotations

from typing import Any

from cimlab import __version__
from cimlab.instruments.emulator.scpi import Instrument, Param, ScpiError, expect, fmt
from cimlab.instruments.emulator.switch import Keithley2750Emulator
from cimlab.instruments.emulator.world import World

#: the 33500B's output limits into a high-impedance load [V] (33500B data sheet: +-10 V into
#: an open circuit); the emulator assumes ``OUTP:LOAD INF`` (the cell is no 50 ohm load)
V_MAX = 10.0
#: pulse width range [s] (33500B data sheet: 16 ns minimum pulse width)
WIDTH_MIN_S, WIDTH_MAX_S = 16e-9, 1e6
#: longest burst
NCYC_MAX = 100_000_000
FUNCTIONS = ("SINusoid", "SQUare", "TRIangle", "RAMP", "PULSe", "PRBS", "NOISe", "ARB", "DC")


class _Channel:
    """One output channel's settings (after ``*RST``: 1 kHz sine, 100 mVpp, 0 V offset)."""

    def __init__(self) -> None:
        self.func = "SIN"
        self.freq_hz = 1e3
        self.amplitude_v = 0.1
        self.offset_v = 0.0
        self.unit = "VPP"
        self.pulse_width_s = 100e-6
        self.transition_s = 8.4e-9
        self.burst = False
        self.burst_mode = "TRIG"
        self.ncycles = 1
        self.burst_period_s = 10e-3
        self.trigger_source = "IMM"
        self.output = False
        self.load = "INF"

    @property
    def high_v(self) -> float:
        return self.offset_v + self.amplitude_v / 2

    @property
    def low_v(self) -> float:
        return self.offset_v - self.amplitude_v / 2

    @property
    def dc_v(self) -> float:
        """What the output holds between pulses / as a DC source [V]."""
        return self.offset_v if self.func == "DC" else self.low_v


class Agilent33500Emulator(Instrument):
    """SCPI state machine of a 33500B two-channel generator over ``world`` and the switch."""

    NAME = "pulse_gen"

    def __init__(self, world: World, switch: Keithley2750Emulator, serial: str = "MY52600001"):
        super().__init__(lock=world.lock)
        self.world = world
        self.switch = switch
        self.serial = serial
        self.ch = {1: _Channel(), 2: _Channel()}
        #: pulses applied since start (cells x cycles)
        self.pulses = 0
        for n in (1, 2):
            for src in ((f"SOURce{n}",) if n == 2 else ("[SOURce]", "SOURce1")):
                self._register(src, n)
            for out in ((f"OUTPut{n}",) if n == 2 else ("OUTPut", "OUTPut1")):
                self.command(f"{out}[:STATe]", write=self._setter(n, "output", "bool"),
                             query=self._getter(n, "output"))
                self.command(f"{out}:LOAD", write=self._w_load(n),
                             query=lambda p, n=n: self.ch[n].load)
            for trg in ((f"TRIGger{n}",) if n == 2 else ("TRIGger", "TRIGger1")):
                self.command(f"{trg}:SOURce", write=self._w_trigger_source(n),
                             query=lambda p, n=n: self.ch[n].trigger_source)

    def _register(self, src: str, n: int) -> None:
        c = self.command
        c(f"{src}:FUNCtion[:SHAPe]", write=self._w_func(n), query=self._getter(n, "func"))
        c(f"{src}:FREQuency", write=self._setter(n, "freq_hz", "num", 1e-6, 30e6),
          query=self._getter(n, "freq_hz"))
        c(f"{src}:VOLTage[:AMPLitude]", write=self._setter(n, "amplitude_v", "num", 1e-3,
                                                          2 * V_MAX),
          query=self._getter(n, "amplitude_v"))
        c(f"{src}:VOLTage:OFFSet", write=self._setter(n, "offset_v", "num", -V_MAX, V_MAX),
          query=self._getter(n, "offset_v"))
        c(f"{src}:VOLTage:HIGH", write=self._w_level(n, high=True),
          query=lambda p, n=n: fmt(self.ch[n].high_v))
        c(f"{src}:VOLTage:LOW", write=self._w_level(n, high=False),
          query=lambda p, n=n: fmt(self.ch[n].low_v))
        c(f"{src}:VOLTage:UNIT", write=self._w_unit(n), query=lambda p, n=n: self.ch[n].unit)
        c(f"{src}:FUNCtion:PULSe:WIDTh", write=self._setter(n, "pulse_width_s", "num",
                                                           WIDTH_MIN_S, WIDTH_MAX_S),
          query=self._getter(n, "pulse_width_s"))
        c(f"{src}:FUNCtion:PULSe:PERiod", write=self._w_period(n),
          query=lambda p, n=n: fmt(1.0 / self.ch[n].freq_hz))
        c(f"{src}:FUNCtion:PULSe:TRANsition[:BOTH]", write=self._setter(
            n, "transition_s", "num", 8.4e-9, 1e-6), query=self._getter(n, "transition_s"))
        c(f"{src}:BURSt:STATe", write=self._setter(n, "burst", "bool"),
          query=self._getter(n, "burst"))
        c(f"{src}:BURSt:MODE", write=self._w_burst_mode(n),
          query=lambda p, n=n: self.ch[n].burst_mode)
        c(f"{src}:BURSt:NCYCles", write=self._w_ncycles(n),
          query=lambda p, n=n: str(self.ch[n].ncycles))
        c(f"{src}:BURSt:INTernal:PERiod", write=self._setter(n, "burst_period_s", "num",
                                                            1e-6, 8000.0),
          query=self._getter(n, "burst_period_s"))

    def idn(self) -> str:
        return f"Agilent Technologies,33522B,{self.serial},3.05-1.19-2.00-52-00 (cimlab " \
               f"emulator {__version__})"

    def reset(self) -> None:
        self.ch = {1: _Channel(), 2: _Channel()}

    def state_dict(self) -> dict[str, Any]:
        """Both channels' settings (``pulse_gen.ch1`` / ``ch2``: ``vars`` of each) and the
        pulse count."""
        import json

        return {f"pulse_gen.ch{n}": json.dumps(vars(c)) for n, c in self.ch.items()} | {
            "pulse_gen.pulses": int(self.pulses)}

    # -- generic handlers --------------------------------------------------------------------
    def _getter(self, n: int, attr: str):
        def q(p: list[Param]) -> str:
            v = getattr(self.ch[n], attr)
            return ("1" if v else "0") if isinstance(v, bool) else \
                fmt(v) if isinstance(v, float) else str(v)
        return q

    def _setter(self, n: int, attr: str, kind: str, lo: float = 0.0, hi: float = 0.0):
        def w(p: list[Param]) -> None:
            (v,) = expect(p, 1, attr)
            setattr(self.ch[n], attr, v.boolean() if kind == "bool" else v.number(lo=lo, hi=hi))
        return w

    def _w_func(self, n: int):
        def w(p: list[Param]) -> None:
            (v,) = expect(p, 1, "FUNC")
            long_ = v.choice(*FUNCTIONS)
            self.ch[n].func = next(f for f in ("SIN", "SQU", "TRI", "RAMP", "PULS", "PRBS",
                                               "NOIS", "ARB", "DC") if long_.startswith(f))
        return w

    def _w_level(self, n: int, *, high: bool):
        def w(p: list[Param]) -> None:
            (v,) = expect(p, 1, "VOLT:HIGH" if high else "VOLT:LOW")
            c = self.ch[n]
            x = v.number(lo=-V_MAX, hi=V_MAX)
            hi_v, lo_v = (x, c.low_v) if high else (c.high_v, x)
            if hi_v - lo_v < 1e-3:
                raise ScpiError(-221, "high level must exceed low level by 1 mV")
            c.amplitude_v, c.offset_v = hi_v - lo_v, (hi_v + lo_v) / 2
        return w

    def _w_unit(self, n: int):
        def w(p: list[Param]) -> None:
            (v,) = expect(p, 1, "VOLT:UNIT")
            u = v.choice("VPP", "VRMS", "DBM")
            if u != "VPP":
                raise ScpiError(-221, "the emulator keeps amplitudes in VPP")
            self.ch[n].unit = u
        return w

    def _w_period(self, n: int):
        def w(p: list[Param]) -> None:
            (v,) = expect(p, 1, "FUNC:PULS:PER")
            self.ch[n].freq_hz = 1.0 / v.number(lo=33e-9, hi=1e6)
        return w

    def _w_burst_mode(self, n: int):
        def w(p: list[Param]) -> None:
            (v,) = expect(p, 1, "BURS:MODE")
            self.ch[n].burst_mode = v.choice("TRIGgered", "GATed")[:4].replace("GATE", "GAT")
        return w

    def _w_ncycles(self, n: int):
        def w(p: list[Param]) -> None:
            (v,) = expect(p, 1, "BURS:NCYC")
            self.ch[n].ncycles = v.integer(lo=1, hi=NCYC_MAX)
        return w

    def _w_load(self, n: int):
        def w(p: list[Param]) -> None:
            (v,) = expect(p, 1, "OUTP:LOAD")
            t = v.text.upper()
            if t in ("INF", "INFINITY"):
                self.ch[n].load = "INF"
            else:
                self.ch[n].load = fmt(v.number(lo=1.0, hi=10e3))
        return w

    def _w_trigger_source(self, n: int):
        def w(p: list[Param]) -> None:
            (v,) = expect(p, 1, "TRIG:SOUR")
            self.ch[n].trigger_source = v.choice("IMMediate", "EXTernal", "BUS")[:3]
        return w

    # -- the pulse ---------------------------------------------------------------------------
    def _common(self, header: str, params: list[Param]) -> str | None:
        if header.upper() == "*TRG":
            if params:
                raise ScpiError(-108, header)
            self.trigger()
            return None
        return super()._common(header, params)

    def trigger(self) -> None:
        """A bus trigger: channel 1 (burst, ``TRIG:SOUR BUS``, output on) fires its burst into
        the cells the matrix connects, at the gate level of channel 2."""
        c1, c2 = self.ch[1], self.ch[2]
        if c1.trigger_source != "BUS" or not c1.burst or c1.burst_mode != "TRIG":
            raise ScpiError(-211, "trigger ignored: channel 1 needs BURS:STAT ON, BURS:MODE "
                            "TRIG and TRIG:SOUR BUS")
        if not c1.output:
            return  # the burst runs into a disabled output: nothing reaches the cells
        if c1.func != "PULS":
            raise ScpiError(-221, "channel 1 must be FUNC PULS for a programming pulse")
        if abs(c1.low_v) > 1e-9:
            raise ScpiError(-221, "the pulse's low level must be 0 V (VOLT:LOW 0)")
        period = 1.0 / c1.freq_hz
        if c1.pulse_width_s >= period:
            raise ScpiError(-221, "pulse width must be shorter than the period")
        v_gate = c2.dc_v if c2.output else 0.0
        w = self.world
        cells = self.switch.pulse_cells()
        for pol in ("set", "reset"):
            cs = cells[pol]
            if cs.size == 0:
                continue
            for _ in range(c1.ncycles):
                w.chip.pulse(cs, pol, c1.high_v, max(v_gate, 0.0), c1.pulse_width_s, w.now_s)
                self.pulses += int(cs.size)
        w.charge(self.NAME, c1.ncycles * period)


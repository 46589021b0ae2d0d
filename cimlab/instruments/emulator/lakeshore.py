"""The emulated temperature controller of a heated chuck: a Lake Shore Model 335, in the
commands of its user's manual (chapter 6, "Command list") that PyMeasure's ``LakeShore3xx``
driver uses unmodified: ``KRDG? <input>`` (kelvin), ``CRDG? <input>`` (degC), ``SETP
<output>,<K>`` / ``SETP? <output>``, ``RANGE <output>,<0-3>`` / ``RANGE? <output>`` (heater off,
low, medium, high), ``RAMP <output>,<0|1>,<K/min>`` / ``RAMP? <output>``, ``HTR? <output>``
(heater output [% of full]), ``MOUT <output>,<%>`` / ``MOUT? <output>``, ``RDGST? <input>``.

Output 1 heats the chuck the chip sits on: it drives the world's chamber temperature
(:meth:`World.advance`: the chuck ramps to the setpoint at the ramp rate while the heater
range is not off, and cools back to ambient when it is), so the chip's thermal budget is the
same physics as with the bake oven. Inputs A and B both read the chuck. Without ramping
(``RAMP 1,0``) the chuck moves at its fastest rate (``OvenRange.max_rate_k_per_s``).
*Differs from a real 335:* one heater loop (output 2 is accepted and inert), no PID tuning,
no sensor curves (readings are the chuck temperature itself); a ramp rate beyond the chuck's
fastest is refused (-222 in ``SYST:ERR?``, which a real 335 does not have).
"""

from __future__ import annotations

from cimlab import __version__
from cimlab.instruments.emulator.scpi import Instrument, Param, ScpiError, expect, fmt
from cimlab.instruments.emulator.world import ZERO_C_K, World

#: heater ranges of the 335 (0 off, 1 low, 2 medium, 3 high); full power fractions
HEATER_RANGES = (0.0, 0.01, 0.1, 1.0)


class LakeShore335Emulator(Instrument):
    """Command set of a Lake Shore 335 controlling the chuck (output 1) over ``world``."""

    NAME = "chuck"

    def __init__(self, world: World, serial: str = "LSA2A1B"):
        super().__init__(lock=world.lock)
        self.world = world
        self.serial = serial
        self.range = {1: 0, 2: 0}
        self.ramp_on = {1: False, 2: False}
        self.ramp_k_per_min = {1: 10.0, 2: 10.0}
        self.setpoint2_k = world.ambient_k
        self.mout = {1: 0.0, 2: 0.0}
        c = self.command
        c("KRDG", query=lambda p: self._reading(p, kelvin=True))
        c("CRDG", query=lambda p: self._reading(p, kelvin=False))
        c("SRDG", query=lambda p: self._reading(p, kelvin=True))
        c("RDGST", query=lambda p: (self._input(p), "0")[1])
        c("SETP", write=self._w_setp, query=self._q_setp)
        c("RANGE", write=self._w_range, query=lambda p: str(self.range[self._output(p)]))
        c("RAMP", write=self._w_ramp, query=self._q_ramp)
        c("HTR", query=self._q_htr)
        c("MOUT", write=self._w_mout, query=lambda p: fmt(self.mout[self._output(p)]))

    def idn(self) -> str:
        return f"LSCI,MODEL335,{self.serial},2.4 (cimlab emulator {__version__})"

    def reset(self) -> None:
        """Heaters off, setpoints at ambient, ramping off."""
        w = self.world
        self.range = {1: 0, 2: 0}
        self.ramp_on = {1: False, 2: False}
        w.oven_output = False
        w.oven_setpoint_k = w.ambient_k
        w.oven_rate_k_per_s = w.oven_range.max_rate_k_per_s

    # -- helpers -----------------------------------------------------------------------------
    @staticmethod
    def _input(p: list[Param]) -> str:
        (x,) = expect(p, 1, "input")
        return x.choice("A", "B")

    @staticmethod
    def _output(p: list[Param], n: int = 1) -> int:
        if len(p) < n:
            raise ScpiError(-109, "output number")
        return p[0].integer(lo=1, hi=2)

    def _reading(self, p: list[Param], *, kelvin: bool) -> str:
        self._input(p)
        t = self.world.oven_temp_k
        return fmt(t if kelvin else t - ZERO_C_K, "{:+.3f}")

    def _apply_rate(self) -> None:
        r = self.world.oven_range
        self.world.oven_rate_k_per_s = (self.ramp_k_per_min[1] / 60.0 if self.ramp_on[1]
                                        else r.max_rate_k_per_s)

    # -- commands ----------------------------------------------------------------------------
    def _w_setp(self, p: list[Param]) -> None:
        out, v = expect(p, 2, "SETP")
        n = out.integer(lo=1, hi=2)
        r = self.world.oven_range
        k = v.number(lo=r.min_c + ZERO_C_K, hi=r.max_c + ZERO_C_K)
        if n == 1:
            self.world.oven_setpoint_k = k
        else:
            self.setpoint2_k = k

    def _q_setp(self, p: list[Param]) -> str:
        n = self._output(p)
        return fmt(self.world.oven_setpoint_k if n == 1 else self.setpoint2_k, "{:+.4f}")

    def _w_range(self, p: list[Param]) -> None:
        out, v = expect(p, 2, "RANGE")
        n = out.integer(lo=1, hi=2)
        self.range[n] = v.integer(lo=0, hi=3)
        if n == 1:
            self.world.oven_output = self.range[1] > 0

    def _w_ramp(self, p: list[Param]) -> None:
        out, on, rate = expect(p, 3, "RAMP")
        n = out.integer(lo=1, hi=2)
        k_per_min = rate.number(lo=0.1, hi=100.0)
        if k_per_min / 60.0 > self.world.oven_range.max_rate_k_per_s:
            raise ScpiError(-222, f"ramp rate {k_per_min:g} K/min beyond the chuck's fastest "
                            f"{60 * self.world.oven_range.max_rate_k_per_s:g} K/min")
        self.ramp_on[n] = on.boolean()
        self.ramp_k_per_min[n] = k_per_min
        self._apply_rate()

    def _q_ramp(self, p: list[Param]) -> str:
        n = self._output(p)
        return f"{int(self.ramp_on[n])},{self.ramp_k_per_min[n]:.1f}"

    def _q_htr(self, p: list[Param]) -> str:
        """Heater output [%]: the power holding the chuck above ambient, as a fraction of the
        range's full power (linear in the temperature rise up to the chuck's maximum)."""
        n = self._output(p)
        w = self.world
        if n != 1 or self.range[1] == 0:
            return "+0.00"
        rise = max(0.0, w.oven_temp_k - w.ambient_k)
        full = (w.oven_range.max_c + ZERO_C_K - w.ambient_k) * HEATER_RANGES[self.range[1]]
        return fmt(min(100.0, 100.0 * rise / full), "{:+.2f}")

    def _w_mout(self, p: list[Param]) -> None:
        out, v = expect(p, 2, "MOUT")
        self.mout[out.integer(lo=1, hi=2)] = v.number(lo=0.0, hi=100.0)

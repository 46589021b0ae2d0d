"""The emulated bake oven (temperature chamber), in cimlab's oven command set.

Commands (temperatures in degC on the wire, as chamber controllers display them; rates in K/s):
``SOURce:TEMPerature[:SETPoint] <degC>`` / ``?``, ``SOURce:TEMPerature:RATE <K/s>`` / ``?``,
``MEASure:TEMPerature?`` (chamber temperature now), ``OUTPut[:STATe] ON|OFF`` / ``?`` (heater
on: ramp to the setpoint; off: cool back to ambient at the same rate),
``SOURce:TEMPerature:RANGe?`` (min, max setpoint), ``SOURce:TEMPerature:RATE:RANGe?``.
The chamber temperature evolves on the world's virtual clock (:meth:`World.advance`) and feeds
the chip's thermal budget.
"""

from __future__ import annotations

from cimlab import __version__
from cimlab.instruments.emulator.scpi import Instrument, Param, ScpiError, expect, fmt
from cimlab.instruments.emulator.world import ZERO_C_K, World


class OvenEmulator(Instrument):
    """SCPI state machine of the temperature chamber the chip sits in."""

    NAME = "oven"

    def __init__(self, world: World, serial: str = "OVN0001"):
        super().__init__(lock=world.lock)
        self.world = world
        self.serial = serial
        r = world.oven_range
        c = self.command
        c("SOURce:TEMPerature[:SETPoint]", write=self._w_setpoint,
          query=lambda p: fmt(self.world.oven_setpoint_k - ZERO_C_K))
        c("SOURce:TEMPerature:RATE", write=self._w_rate,
          query=lambda p: fmt(self.world.oven_rate_k_per_s))
        c("SOURce:TEMPerature:RANGe", query=lambda p: fmt((r.min_c, r.max_c)))
        c("SOURce:TEMPerature:RATE:RANGe", query=lambda p: fmt((0.0, r.max_rate_k_per_s)))
        c("MEASure:TEMPerature", query=lambda p: fmt(self.world.oven_temp_k - ZERO_C_K))
        c("OUTPut[:STATe]", write=self._w_output,
          query=lambda p: "1" if self.world.oven_output else "0")

    def idn(self) -> str:
        return f"cimlab,Emulated bake oven,{self.serial},{__version__}"

    def reset(self) -> None:
        """Heater off (the chamber cools to ambient), setpoint ambient, default ramp rate."""
        w = self.world
        w.oven_output = False
        w.oven_setpoint_k = w.ambient_k
        w.oven_rate_k_per_s = w.oven_range.default_rate_k_per_s

    def _w_setpoint(self, p: list[Param]) -> None:
        (v,) = expect(p, 1, "SOUR:TEMP")
        r = self.world.oven_range
        self.world.oven_setpoint_k = v.number(lo=r.min_c, hi=r.max_c) + ZERO_C_K

    def _w_rate(self, p: list[Param]) -> None:
        (v,) = expect(p, 1, "SOUR:TEMP:RATE")
        rate = v.number(lo=0.0, hi=self.world.oven_range.max_rate_k_per_s)
        if rate <= 0:
            raise ScpiError(-222, "ramp rate must be > 0")
        self.world.oven_rate_k_per_s = rate

    def _w_output(self, p: list[Param]) -> None:
        (v,) = expect(p, 1, "OUTP")
        self.world.oven_output = v.boolean()

"""The emulated bench's clock instrument: the world's virtual time.

Commands: ``TIME?`` (virtual time since the bench started [s]), ``TIME:ADVance <dt>`` and
``TIME:ADVance? <dt>`` (let ``dt`` seconds pass; the query form answers the new time, so a
client knows in the same round trip that it worked). Advancing time ramps the oven and ages
the chip (:meth:`World.advance`); ``SYSTem:BUSY? <instrument>`` reports the instrument time
charged so far to ``ARRAY``, ``SMU`` (campaigns report host time and instrument time).
"""

from __future__ import annotations

from cimlab import __version__
from cimlab.instruments.emulator.scpi import Instrument, Param, expect, fmt
from cimlab.instruments.emulator.world import World

#: longest single advance [s] (about 32 years): a guard against a typo, not physics
MAX_ADVANCE_S = 1e9


class ClockEmulator(Instrument):
    """SCPI state machine of the virtual clock."""

    NAME = "clock"

    def __init__(self, world: World, serial: str = "CLK0001"):
        super().__init__(lock=world.lock)
        self.world = world
        self.serial = serial
        c = self.command
        c("TIME", query=self._q_time)
        c("TIME:ADVance", write=self._advance, query=self._q_advance)
        c("SYSTem:BUSY", query=self._q_busy)

    def idn(self) -> str:
        return f"cimlab,Emulated virtual clock,{self.serial},{__version__}"

    def _q_time(self, p: list[Param]) -> str:
        expect(p, 0, "TIME?")
        return fmt(self.world.now_s, "{:.15g}")

    def _advance(self, p: list[Param]) -> None:
        (dt,) = expect(p, 1, "TIME:ADV")
        self.world.advance(dt.number(lo=0.0, hi=MAX_ADVANCE_S))

    def _q_advance(self, p: list[Param]) -> str:
        self._advance(p)
        return fmt(self.world.now_s, "{:.15g}")

    def _q_busy(self, p: list[Param]) -> str:
        (name,) = expect(p, 1, "SYST:BUSY?")
        which = name.choice("ARRay", "SMU", "OVEN", "SWITch", "PGENerator").lower()
        which = {"pgenerator": "pulse_gen"}.get(which, which)  # the discrete bench's generator
        return fmt(self.world.busy_s.get(which, 0.0), "{:.15g}")

"""Clocks with one interface: ``now() -> s``, ``sleep(seconds)``, ``shutdown()``.

:class:`VirtualClock` drives the emulated bench's clock instrument over PyVISA (sleeping
advances the emulator's time, ramping the oven and ageing the chip); :class:`RealClock` is the
wall clock of a real bench (``time.monotonic`` / ``time.sleep``).
"""

from __future__ import annotations

import time
from typing import Any

from pymeasure.instruments import Instrument, SCPIMixin
from pymeasure.instruments.validators import strict_discrete_set, strict_range

from cimlab.instruments.drivers.visa import ErrorCheckingMixin, open_kwargs

#: longest single sleep [s] the clock instrument accepts
MAX_SLEEP_S = 1e9


class VirtualClock(ErrorCheckingMixin, SCPIMixin, Instrument):
    """The emulated bench's virtual clock."""

    virtual = True

    def __init__(self, adapter: Any, name: str = "virtual clock", **kwargs: Any):
        super().__init__(adapter, name, **kwargs)

    @classmethod
    def open(cls, address: str, backend: str = "@py", timeout_s: float = 10.0,
             **kwargs: Any) -> VirtualClock:
        return cls(address, **open_kwargs(backend, timeout_s), **kwargs)

    time_s = Instrument.measurement("TIME?", """Get the virtual time [s].""")

    def now(self) -> float:
        """Virtual time since the bench started [s]."""
        return float(self.time_s)

    def sleep(self, seconds: float) -> float:
        """Let ``seconds`` of virtual time pass (one round trip); the new time [s]."""
        strict_range(seconds, (0.0, MAX_SLEEP_S))
        reply = self.ask(f"TIME:ADV? {float(seconds)!r}").strip()
        if not reply:
            raise ValueError(f"{self.name}: TIME:ADV? gave no answer")
        return float(reply)

    def busy(self, instrument: str) -> float:
        """Instrument time [s] charged so far by ``"array"``, ``"smu"``, ``"oven"``, or the
        discrete bench's ``"switch"`` and ``"pgen"`` (pulse generator)."""
        strict_discrete_set(instrument, ("array", "smu", "oven", "switch", "pgen"))
        return float(self.ask(f"SYST:BUSY? {instrument.upper()}"))


class RealClock:
    """Wall-clock time of a real bench, with the :class:`VirtualClock` interface."""

    virtual = False
    name = "real clock"
    id = "cimlab,real clock (time.monotonic),0,0"

    def __init__(self) -> None:
        self._t0 = time.monotonic()

    def now(self) -> float:
        """Seconds since this clock was created (monotonic)."""
        return time.monotonic() - self._t0

    def sleep(self, seconds: float) -> float:
        strict_range(seconds, (0.0, MAX_SLEEP_S))
        time.sleep(seconds)
        return self.now()

    def busy(self, instrument: str) -> None:
        """A real bench does not report instrument time: None."""
        return None

    def shutdown(self) -> None:
        """Nothing to switch off."""

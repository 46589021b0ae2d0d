"""Driver of a bake oven (temperature chamber) speaking cimlab's oven command set (the
emulated oven; a lab adapts it to its chamber's controller, see
``instruments/example-real-bench.toml``). Temperatures on the wire are degC, ramp rates K/s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pymeasure.instruments import Instrument, SCPIMixin
from pymeasure.instruments.validators import strict_discrete_set, strict_range

from cimlab.instruments.drivers.visa import ErrorCheckingMixin, open_kwargs, raise_errors

#: setpoint range of the protocol [degC] and ramp-rate range [K/s]
SETPOINT_RANGE_C = (20.0, 250.0)
RATE_RANGE_K_PER_S = (1e-4, 0.5)


@dataclass(frozen=True)
class BakeRecord:
    """What :meth:`BakeOven.bake` did, in clock time [s] and degC."""

    temp_c: float
    start_s: float
    soak_start_s: float
    soak_end_s: float
    end_s: float
    ambient_c: float


class BakeOven(ErrorCheckingMixin, SCPIMixin, Instrument):
    """A temperature chamber the chip sits in."""

    def __init__(self, adapter: Any, name: str = "bake oven", **kwargs: Any):
        super().__init__(adapter, name, **kwargs)

    @classmethod
    def open(cls, address: str, backend: str = "@py", timeout_s: float = 10.0,
             **kwargs: Any) -> BakeOven:
        return cls(address, **open_kwargs(backend, timeout_s), **kwargs)

    setpoint_c = Instrument.control(
        "SOUR:TEMP?", "SOUR:TEMP %.9g",
        """Control the chamber setpoint [degC].""",
        validator=strict_range, values=SETPOINT_RANGE_C, check_set_errors=True,
    )
    ramp_rate_k_per_s = Instrument.control(
        "SOUR:TEMP:RATE?", "SOUR:TEMP:RATE %.9g",
        """Control the ramp rate [K/s] towards the setpoint (and back to ambient).""",
        validator=strict_range, values=RATE_RANGE_K_PER_S, check_set_errors=True,
    )
    heater_enabled = Instrument.control(
        "OUTP?", "OUTP %d",
        """Control the heater output (off: the chamber cools to ambient).""",
        validator=strict_discrete_set, values={True: 1, False: 0}, map_values=True,
        check_set_errors=True,
    )
    temperature_c = Instrument.measurement(
        "MEAS:TEMP?", """Get the chamber temperature now [degC].""",
    )
    setpoint_range_c = Instrument.measurement(
        "SOUR:TEMP:RANG?", """Get the (min, max) setpoint [degC] the chamber accepts.""",
        get_process_list=tuple,
    )

    def wait_until(self, clock: Any, temp_c: float, tolerance_k: float = 0.5,
                   poll_s: float = 10.0, timeout_s: float = 24 * 3600.0) -> float:
        """Poll every ``poll_s`` of ``clock`` time until the chamber is within ``tolerance_k``
        of ``temp_c``; returns the clock time [s] then. TimeoutError after ``timeout_s``."""
        now = start = clock.now()
        while abs(self.temperature_c - temp_c) > tolerance_k:
            if now - start > timeout_s:
                raise TimeoutError(f"{self.name}: {temp_c:g} degC not reached in {timeout_s:g} s")
            now = clock.sleep(poll_s)
        return now

    def bake(self, temp_c: float, seconds: float, clock: Any, *, tolerance_k: float = 0.5,
             poll_s: float = 10.0, cool_down: bool = True) -> BakeRecord:
        """Ramp to ``temp_c``, soak ``seconds`` at it, then heater off and (``cool_down``) wait
        until the chamber is back at the temperature it had before. ``clock`` is the station
        clock (virtual or real). The soak starts when the chamber is within ``tolerance_k``."""
        strict_range(temp_c, SETPOINT_RANGE_C)
        if seconds < 0:
            raise ValueError("soak time must be >= 0 s")
        ambient = self.temperature_c
        start = clock.now()
        self.setpoint_c = temp_c
        self.heater_enabled = True
        soak_start = self.wait_until(clock, temp_c, tolerance_k, poll_s)
        soak_end = clock.sleep(seconds)
        self.heater_enabled = False
        end = self.wait_until(clock, ambient, tolerance_k, poll_s) if cool_down else soak_end
        return BakeRecord(temp_c, start, soak_start, soak_end, end, ambient)

    def shutdown(self) -> None:
        """Safe state: heater off (the chamber cools passively)."""
        self.write("OUTP 0")
        raise_errors(self, "OUTP 0")  # also waits until the chamber has done it
        super().shutdown()

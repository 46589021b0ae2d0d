"""``LakeShoreChuck``: a heated chuck under a Lake Shore 335/336 temperature controller, with
the oven role's interface (:class:`~cimlab.instruments.drivers.oven.BakeOven`: setpoint,
ramp rate, heater on/off, temperature, ``wait_until``, ``bake``, ``shutdown``), so a station
names it as its oven: ``[instruments.oven] driver =
"cimlab.instruments.drivers.chuck:LakeShoreChuck"``.

Commands (Lake Shore 335 user's manual, chapter 6; the ones PyMeasure's ``LakeShore3xx``
sends): ``SETP 1,<K>`` / ``SETP? 1``, ``RAMP 1,1,<K/min>`` / ``RAMP? 1``, ``RANGE 1,<0|3>`` /
``RANGE? 1``, ``CRDG? A``. The controller works in kelvin and K/min; this driver converts to
the oven role's degC and K/s. A 335 has no error queue, so settings are not followed by
``SYST:ERR?``; and it cannot report what the chuck stands: :attr:`CHUCK_RANGE_C` (override it
in a subclass for your chuck).
"""

from __future__ import annotations

from typing import Any

from pymeasure.instruments import Instrument

from cimlab.instruments.drivers.oven import BakeOven
from cimlab.units import KELVIN_OFFSET


class LakeShoreChuck(BakeOven):
    """The chuck's heater loop (output 1) and its sensor (input A)."""

    #: setpoints the chuck stands [degC] (a typical probe-station hot chuck; assumption)
    CHUCK_RANGE_C = (20.0, 250.0)
    #: heater range used when the heater is on (3: high)
    HEATER_RANGE_ON = 3

    def __init__(self, adapter: Any, name: str = "Lake Shore 335 heated chuck", **kwargs: Any):
        kwargs.setdefault("read_termination", "\r\n")
        super().__init__(adapter, name, **kwargs)

    setpoint_c = Instrument.control(
        "SETP? 1", "SETP 1,%.4f", """Control the chuck setpoint [degC] (sent in kelvin).""",
        get_process=lambda k: k - KELVIN_OFFSET, set_process=lambda c: c + KELVIN_OFFSET,
    )
    ramp_rate_k_per_s = Instrument.control(
        "RAMP? 1", "RAMP 1,1,%.1f", """Control the ramp rate [K/s] (ramping on; sent in K/min).""",
        get_process_list=lambda v: float(v[1]) / 60.0, set_process=lambda r: r * 60.0,
    )
    heater_enabled = Instrument.control(
        "RANGE? 1", "RANGE 1,%d", """Control the heater: on (high range) or off.""",
        get_process=lambda v: int(v) > 0,
        set_process=lambda on: LakeShoreChuck.HEATER_RANGE_ON if on else 0,
    )
    temperature_c = Instrument.measurement("CRDG? A", """Get the chuck temperature [degC].""")

    @property
    def setpoint_range_c(self) -> tuple[float, float]:
        """(min, max) setpoint [degC]: :attr:`CHUCK_RANGE_C` (a 335 cannot report it)."""
        return self.CHUCK_RANGE_C

    def check_errors(self) -> list:
        return []  # no error queue on a 335

    def shutdown(self) -> None:
        """Safe state: heater range off (the chuck cools passively)."""
        self.write("RANGE 1,0")
        if int(float(self.ask("RANGE? 1"))) != 0:
            raise RuntimeError(f"{self.name}: the heater did not switch off")

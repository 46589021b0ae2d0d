"""Thermal budget: Arrhenius acceleration and the chip's equivalent room-temperature time.

Relaxation and retention loss are one thermally activated process (oxygen-vacancy motion in the
filament). Time spent at temperature ``T`` counts as ``A(T) = exp(Ea/k (1/T_room - 1/T))``
seconds at room temperature (Arrhenius; ``Ea`` from the profile, published HfOx values
1.1-2.25 eV, DESIGN.md). The chip integrates ``A`` over its temperature history into the
equivalent time ``E(t) = integral A(T(t')) dt'``; relaxation statistics are functions of ``E``.
"""

from __future__ import annotations

import math

from cimlab.physics.profile import Retention
from cimlab.units import K_B_EV


def acceleration(retention: Retention, temperature_k: float, t_room_k: float) -> float:
    """Arrhenius acceleration factor [1] of ``temperature_k`` [K] relative to ``t_room_k``."""
    if not (temperature_k > 0 and math.isfinite(temperature_k)):
        raise ValueError(f"temperature must be a finite value > 0 K, got {temperature_k!r}")
    return math.exp(retention.ea_ev / K_B_EV * (1.0 / t_room_k - 1.0 / temperature_k))


class ThermalClock:
    """Real chip time ``time_s`` and equivalent room-temperature time ``equivalent_s``.

    ``advance(dt, T)`` lets ``dt`` seconds pass at ``T`` (isothermal piece). ``catch_up(now_s)``
    lets the time up to ``now_s`` pass at the ambient temperature (room temperature unless set).
    The clock never runs backwards.
    """

    def __init__(self, retention: Retention, t_room_k: float) -> None:
        self.retention = retention
        self.t_room_k = float(t_room_k)
        self.ambient_k = float(t_room_k)
        self.time_s = 0.0
        # equivalent time = epoch_s + since_epoch_s: per-cell times are stored relative to the
        # epoch, which the chip moves forward (rebase) so that recent times keep full float
        # precision after a bake has added ~1e12 s of equivalent time
        self.epoch_s = 0.0
        self.since_epoch_s = 0.0

    @property
    def equivalent_s(self) -> float:
        return self.epoch_s + self.since_epoch_s

    def rebase(self) -> float:
        """Move the epoch to now; returns the shift [s] to subtract from epoch-relative times."""
        shift = self.since_epoch_s
        self.epoch_s += shift
        self.since_epoch_s = 0.0
        return shift

    def acceleration(self, temperature_k: float) -> float:
        return acceleration(self.retention, temperature_k, self.t_room_k)

    def advance(self, dt_s: float, temperature_k: float) -> None:
        if not (dt_s >= 0 and math.isfinite(dt_s)):
            raise ValueError(f"dt_s must be a finite value >= 0 s, got {dt_s!r}")
        self.since_epoch_s += dt_s * self.acceleration(temperature_k)
        self.time_s += dt_s

    #: a ``now_s`` this far behind the clock [s] is taken as "now" (float round-off of callers
    #: that sum instrument times in a different order)
    TOLERANCE_S = 1e-9

    def catch_up(self, now_s: float) -> None:
        """Bring the clock to ``now_s`` [s] (the gap passes at ``ambient_k``)."""
        if not math.isfinite(now_s):
            raise ValueError(f"now_s must be finite, got {now_s!r}")
        gap = now_s - self.time_s
        if gap > 0:
            self.advance(gap, self.ambient_k)
        elif gap < -self.TOLERANCE_S * max(1.0, abs(now_s)):
            raise ValueError(
                f"now_s = {now_s!r} s lies before the chip's clock ({self.time_s!r} s): time "
                "cannot run backwards; pass the virtual clock's current time"
            )

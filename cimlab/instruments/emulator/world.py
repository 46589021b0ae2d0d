"""The emulated bench's one shared world: the chip, the virtual clock, the oven's chamber
temperature, the SMU's output and the array controller's routing, behind one lock.

Every operation of an emulated instrument charges its *instrument time* to the virtual clock
through :meth:`World.charge`, and any passage of time (charged operations, ``clock`` advances)
goes through :meth:`World.advance`, which feeds the chip's thermal budget
(:meth:`ReRAMChip.advance`) piecewise with the oven's chamber temperature as it ramps.

Timing constants (:class:`Timing`) are the instrument times charged per operation. They are
stated assumptions for a typical lab test-chip board and source-measure unit, with the
source each is modelled on in its field's doc.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from cimlab.params import check, param

#: 0 degC in K
ZERO_C_K = 273.15


@dataclass(frozen=True)
class Timing:
    """Instrument time charged to the virtual clock per operation [s]."""

    pulse_overhead_s: float = param(
        1e-6, unit="s", lo=0.0,
        doc="per pulsed cell beyond its width: DAC settling, WL/BL switching (assumption; "
        "NeuRRAM-class boards apply 1 us pulses at a few-us cadence, Wan et al. 2022)",
    )
    cell_read_s: float = param(
        2e-6, unit="s", lo=0.0,
        doc="per read cell: bias settling, sense amplifier and ADC conversion (assumption; "
        "cells are read one at a time by the board's ADC)",
    )
    mvm_s: float = param(
        10e-6, unit="s", lo=0.0,
        doc="per input vector of a tile MVM: row DAC settling plus one conversion of all "
        "columns by per-column ADCs (assumption, order of NeuRRAM's per-MVM latency)",
    )
    command_s: float = param(
        20e-6, unit="s", lo=0.0,
        doc="per batched array command: firmware parsing and routing set-up (assumption)",
    )
    smu_line_hz: float = param(
        60.0, unit="Hz", lo=1.0,
        doc="power-line frequency for the SMU's NPLC integration time (Keithley 2450 manual)",
    )
    smu_overhead_s: float = param(
        1e-3, unit="s", lo=0.0,
        doc="per SMU reading beyond the integration: source auto-delay and auto-zero "
        "(assumption from the 2450's ~1 ms auto delay on low current ranges)",
    )

    def __post_init__(self) -> None:
        check(self)


@dataclass(frozen=True)
class OvenRange:
    """What the emulated temperature chamber can do."""

    ambient_c: float = param(25.0, unit="degC", lo=-40.0, hi=60.0, doc="room temperature")
    min_c: float = param(20.0, unit="degC", doc="lowest setpoint")
    max_c: float = param(250.0, unit="degC", doc="highest setpoint")
    max_rate_k_per_s: float = param(
        0.5, unit="K/s", lo=0.0, lo_open=True, doc="fastest ramp (30 K/min)"
    )
    default_rate_k_per_s: float = param(
        0.05, unit="K/s", lo=0.0, lo_open=True,
        doc="ramp rate after reset (3 K/min, typical of bench bake ovens; assumption)",
    )
    #: largest temperature step within which the chamber is treated as isothermal when the
    #: thermal budget of a ramp is integrated
    integration_step_k: float = param(0.5, unit="K", lo=0.0, lo_open=True)

    def __post_init__(self) -> None:
        check(self)


class World:
    """Chip + virtual clock + oven + SMU state + routing, shared by all emulated instruments.

    ``chip`` is any object with the :class:`cimlab.physics.ReRAMChip` interface. All access goes
    through ``lock`` (an ``RLock`` the instruments' SCPI layers share).
    """

    def __init__(self, chip, *, timing: Timing | None = None, oven: OvenRange | None = None):
        self.chip = chip
        self.timing = timing or Timing()
        self.oven_range = oven or OvenRange()
        self.lock = threading.RLock()
        self.now_s = 0.0
        #: instrument time charged per instrument name [s]
        self.busy_s: dict[str, float] = {}
        # oven
        self.oven_output = False
        self.oven_setpoint_k = self.oven_range.ambient_c + ZERO_C_K
        self.oven_temp_k = self.oven_range.ambient_c + ZERO_C_K
        self.oven_rate_k_per_s = self.oven_range.default_rate_k_per_s
        # array routing: the cell connected to the SMU terminals, or None
        self.routed_cell: int | None = None

    # -- time --------------------------------------------------------------------------------
    @property
    def ambient_k(self) -> float:
        return self.oven_range.ambient_c + ZERO_C_K

    def oven_target_k(self) -> float:
        return self.oven_setpoint_k if self.oven_output else self.ambient_k

    def advance(self, dt_s: float) -> None:
        """Let ``dt_s`` pass: the chamber ramps towards its target at the ramp rate (back to
        ambient with the output off) and the chip ages at the chamber temperature, integrated
        in steps of at most ``integration_step_k``."""
        if dt_s < 0:
            raise ValueError("time cannot run backwards")
        with self.lock:
            remaining = float(dt_s)
            step_k = self.oven_range.integration_step_k
            while remaining > 0:
                target = self.oven_target_k()
                gap = target - self.oven_temp_k
                if gap == 0.0:
                    self.chip.advance(remaining, self.oven_temp_k)
                    self.now_s += remaining
                    return
                rate = self.oven_rate_k_per_s
                t_gap = abs(gap) / rate
                if abs(gap) <= step_k and remaining >= t_gap:
                    dt, new_temp = t_gap, target
                else:
                    dt = min(remaining, step_k / rate)
                    new_temp = self.oven_temp_k + float(np.sign(gap)) * rate * dt
                self.chip.advance(dt, 0.5 * (self.oven_temp_k + new_temp))
                self.oven_temp_k = new_temp
                self.now_s += dt
                remaining -= dt

    def charge(self, instrument: str, dt_s: float) -> None:
        """Charge ``dt_s`` of instrument time: the clock advances and the chip ages."""
        with self.lock:
            self.busy_s[instrument] = self.busy_s.get(instrument, 0.0) + dt_s
            self.advance(dt_s)

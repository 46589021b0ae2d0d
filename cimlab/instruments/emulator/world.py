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

import json
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from cimlab.params import check, from_dict, param, to_dict
from cimlab.units import KELVIN_OFFSET as ZERO_C_K


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
        #: word-line voltage [V] of the routed cell (``ROUT:CELL <cell>,<v_gate>``), or None:
        #: word line fully on, the access transistor does not limit the SMU's current
        self.routed_gate_v: float | None = None

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

    # -- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The world beside the chip (``world.*`` entries of a bench state file): virtual
        time, instrument time per instrument, oven chamber, routing, timing and oven range."""
        with self.lock:
            return {
                "world.now_s": float(self.now_s),
                "world.busy_s": json.dumps({k: float(v) for k, v in self.busy_s.items()}),
                "world.oven_output": bool(self.oven_output),
                "world.oven_setpoint_k": float(self.oven_setpoint_k),
                "world.oven_temp_k": float(self.oven_temp_k),
                "world.oven_rate_k_per_s": float(self.oven_rate_k_per_s),
                "world.routed_cell": -1 if self.routed_cell is None else int(self.routed_cell),
                "world.routed_gate_v": (-1.0 if self.routed_gate_v is None
                                        else float(self.routed_gate_v)),
                "world.timing": json.dumps(to_dict(self.timing)),
                "world.oven_range": json.dumps(to_dict(self.oven_range)),
            }

    @staticmethod
    def read_config(reader: Any) -> tuple[Timing, OvenRange]:
        """``Timing`` and ``OvenRange`` of a saved world (``reader``: a
        :class:`cimlab.physics.state.StateReader` over a bench state)."""
        src, pre = reader.source, reader.prefix
        timing = from_dict(Timing, reader.json("world.timing", "the Timing fields"),
                           source=src, prefix=pre + "world.timing.")
        oven = from_dict(OvenRange, reader.json("world.oven_range", "the OvenRange fields"),
                         source=src, prefix=pre + "world.oven_range.")
        return timing, oven

    def read_state(self, reader: Any, n_cells: int) -> dict[str, Any]:
        """Validate the ``world.*`` entries of a saved world (not the config); returns the
        attribute values for :meth:`apply_state`."""
        r = reader
        busy = r.json("world.busy_s", "instrument time per instrument")
        if not (isinstance(busy, dict) and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
                for v in busy.values())):
            raise r.error("world.busy_s", "{instrument: seconds >= 0}", busy)
        rng = self.oven_range
        hi_k = rng.max_c + ZERO_C_K
        out = {
            "now_s": r.number("world.now_s", lo=0.0),
            "busy_s": {str(k): float(v) for k, v in busy.items()},
            "oven_output": r.boolean("world.oven_output"),
            "oven_setpoint_k": r.number("world.oven_setpoint_k", lo=rng.min_c + ZERO_C_K),
            "oven_temp_k": r.number("world.oven_temp_k", lo=0.0, lo_open=True),
            "oven_rate_k_per_s": r.number("world.oven_rate_k_per_s", lo=0.0, lo_open=True),
        }
        for key in ("oven_setpoint_k", "oven_temp_k"):
            if out[key] > hi_k:
                raise r.error("world." + key, f"at most {hi_k:g} K (the oven's range)",
                              out[key])
        cell = r.integer("world.routed_cell", lo=-1, hi=n_cells - 1)
        out["routed_cell"] = None if cell < 0 else cell
        out["routed_gate_v"] = None
        if reader.has("world.routed_gate_v"):  # states written before gates were routed lack it
            gate = reader.number("world.routed_gate_v", lo=-1.0)
            out["routed_gate_v"] = None if gate < 0 or cell < 0 else gate
        return out

    def apply_state(self, values: dict[str, Any]) -> None:
        """Install what :meth:`read_state` returned."""
        with self.lock:
            for k, v in values.items():
                setattr(self, k, v)

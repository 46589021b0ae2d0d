"""Station safety limits: the one vocabulary of limit names and the one check (layer 4).

Every limited quantity has exactly one name, a field of :class:`StationLimits` (the
``[limits]`` table of a station file), with its unit and description declared there once.
Everything that compares a value with a station limit calls the functions below:

* :func:`check_limit` -- one quantity against one limit;
* :func:`check_pulse` -- a SET or RESET pulse: amplitude, word-line voltage, compliance
  current, width;
* :func:`check_pulse_extremes` -- the extreme pulses of a schedule (program-verify);
* :func:`check_requests` -- a table of requested maxima ``{limit name: value}`` (a plan's
  pre-check, :meth:`cimlab.procedures.plan.Plan.check_limits`).

The station's limit-checking drivers (:mod:`cimlab.instruments.limited_drivers`), the plan
pre-check and network programming's pre-check all call them. A name that is not a field of
:class:`StationLimits`, or a limits object that lacks it, raises :class:`ConfigError` naming
``limits.<name>``: a renamed or missing limit is an error, never a skip. A value beyond its
limit (or not finite) raises :class:`LimitError` naming the quantity, the value, the limit and
the station file; nothing is clamped. This module sends nothing and imports no driver, so the
pre-checks use it without opening a bench.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from cimlab.errors import ConfigError, LimitError
from cimlab.params import check, doc_of, param, unit_of

#: Keithley 2450 source/compliance ranges (Keithley 2450 reference manual, 2450-901-01,
#: "Source and measure ranges"): a station limit beyond them is a configuration error
SMU_MAX_V = 210.0
SMU_MAX_I = 1.05


@dataclass(frozen=True)
class StationLimits:
    """``[limits]``: safety limits, each checked before anything is sent (never clamped).

    Every key is required: a bench's limits are written down, not assumed. The array limits
    may not exceed the board's own range (``ARR:RANG?``, checked when the station opens), the
    SMU limits not the Keithley 2450's (210 V, 1.05 A), the oven limit not the chamber's.
    """

    set_bl_max_v: float = param(unit="V", lo=0.0, lo_open=True, hi=20.0,
                                doc="SET bit-line amplitude")
    set_wl_max_v: float = param(unit="V", lo=0.0, lo_open=True, hi=20.0,
                                doc="SET word-line (gate) voltage")
    reset_sl_max_v: float = param(unit="V", lo=0.0, lo_open=True, hi=20.0,
                                  doc="RESET source-line amplitude")
    reset_wl_max_v: float = param(unit="V", lo=0.0, lo_open=True, hi=20.0,
                                  doc="RESET word-line (gate) voltage")
    set_icc_max_a: float = param(unit="A", lo=0.0, lo_open=True, hi=0.1,
                                 doc="SET compliance current (set by the word-line voltage)")
    pulse_width_max_s: float = param(unit="s", lo=0.0, lo_open=True, hi=1.0,
                                     doc="pulse width")
    read_v_max_v: float = param(unit="V", lo=0.0, lo_open=True, hi=5.0,
                                doc="read voltage")
    mvm_v_max_v: float = param(unit="V", lo=0.0, lo_open=True, hi=5.0,
                               doc="|MVM input voltage|")
    smu_v_max_v: float = param(unit="V", lo=0.0, lo_open=True, hi=SMU_MAX_V,
                               doc="|SMU source voltage| or voltage compliance")
    smu_i_max_a: float = param(unit="A", lo=0.0, lo_open=True, hi=SMU_MAX_I,
                               doc="|SMU source current| or current compliance")
    oven_temp_max_c: float = param(unit="degC", lo=-100.0, hi=500.0,
                                   doc="oven setpoint")

    def __post_init__(self) -> None:
        check(self)


#: every limit name, in station-file order (the fields of :class:`StationLimits`)
LIMIT_NAMES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(StationLimits))


class GateCalibration(Protocol):
    """What the compliance check needs of a transistor calibration."""

    def icc(self, v_gate: Any) -> Any:
        """SET compliance current [A] at word-line voltage ``v_gate`` [V]."""


def _require_name(name: str, station: str | Path | None) -> None:
    if name not in LIMIT_NAMES:
        raise ConfigError(station, f"limits.{name}",
                          "a station limit; the limits are " + ", ".join(LIMIT_NAMES))


def limit_value(limits: Any, name: str, *, station: str | Path | None = None) -> float:
    """The value of limit ``name`` in ``limits``; ConfigError if ``name`` is not a station
    limit or ``limits`` lacks it (never a skip)."""
    _require_name(name, station)
    value = getattr(limits, name, None)
    if value is None:
        raise ConfigError(station, f"limits.{name}",
                          f"a value for this limit ({doc_of(StationLimits, name)}, "
                          f"{unit_of(StationLimits, name)}); the limits given have none "
                          f"({type(limits).__name__})")
    return float(value)


def check_limit(limits: Any, name: str, value: float, *, what: str = "",
                context: str = "", station: str | Path | None = None) -> None:
    """Raise LimitError if ``value`` exceeds the station limit ``name`` (or is not finite).

    :param limits: a :class:`StationLimits` (or an object with the same attributes)
    :param name: a limit name (:data:`LIMIT_NAMES`); ConfigError if unknown or missing
    :param value: the quantity in the limit's unit; for the limits on a magnitude
        (``mvm_v_max_v``, ``smu_*``, the pulse amplitudes) pass ``abs(value)``
    :param what: what the value is (default: the limit's description)
    :param context: where the request comes from, prefixed to the message (e.g. the plan
        file and field)
    :param station: the station file, named in the message
    """
    limit = limit_value(limits, name, station=station)
    v = float(value)
    if math.isfinite(v) and v <= limit:
        return
    unit = unit_of(StationLimits, name)
    in_station = f" of {station}" if station else ""
    prefix = f"{context}: " if context else ""
    raise LimitError(
        f"{prefix}{what or doc_of(StationLimits, name)} = {v:g} {unit} exceeds the station "
        f"limit limits.{name} = {limit:g} {unit}{in_station}; nothing was sent. Lower the "
        "value or, if the device allows it, raise the limit in the station file.")


def check_requests(limits: Any, requests: Mapping[str, float], *,
                   fields: Mapping[str, str] | None = None, context: str = "",
                   station: str | Path | None = None) -> None:
    """Check a table of requested maxima ``{limit name: value}`` (e.g. everything a plan will
    ask for): LimitError at the first value beyond its limit, naming ``fields[name]`` (the
    field that asks) when given. Every name must be a station limit (ConfigError)."""
    for name in requests:
        _require_name(name, station)
    for name in sorted(requests, key=LIMIT_NAMES.index):
        value = requests[name]
        where = (fields or {}).get(name, "")
        ctx = ", ".join(x for x in (context, f"field '{where}'" if where else "") if x)
        check_limit(limits, name, value, context=ctx, station=station)


def _max_abs(x: Any) -> float:
    a = np.asarray(x, dtype=float)
    if not a.size:
        return 0.0
    return float(np.max(np.abs(a))) if np.all(np.isfinite(a)) else math.nan


def check_set_gate(limits: Any, v_gate: float, *, calibration: GateCalibration | None = None,
                   v_gate_at_icc_max: float | None = None, what: str = "SET word-line voltage",
                   context: str = "", station: str | Path | None = None) -> None:
    """Check a SET word-line voltage [V]: against ``set_wl_max_v``, and the compliance current
    it gives against ``set_icc_max_a`` twice: with ``calibration`` (the station file's
    transistor calibration) and, whatever the file says, against ``v_gate_at_icc_max`` (the
    word-line voltage at which the array board's own readback, ``ARR:COMP:GATE?``, reaches
    ``set_icc_max_a``). Either may be None when unknown."""
    kw: dict[str, Any] = {"context": context, "station": station}
    vg = float(v_gate)
    check_limit(limits, "set_wl_max_v", vg, what=what, **kw)
    if calibration is not None:
        icc = float(calibration.icc(vg))
        check_limit(limits, "set_icc_max_a", icc,
                    what=f"SET compliance current (word line {vg:g} V, station-file "
                    "calibration)", **kw)
    if v_gate_at_icc_max is not None and vg > v_gate_at_icc_max:
        icc_max = limit_value(limits, "set_icc_max_a", station=station)
        prefix = f"{context}: " if context else ""
        raise LimitError(
            f"{prefix}{what} = {vg:g} V gives a compliance current above the station limit "
            f"limits.set_icc_max_a = {icc_max:g} A{f' of {station}' if station else ''}: the "
            f"array board reaches it at {v_gate_at_icc_max:g} V (its own readback, "
            "ARR:COMP:GATE?); nothing was sent. Lower the word-line voltage (and measure the "
            "transistor calibration again).")


def check_pulse(limits: Any, polarity: str, v_pulse: Any, v_gate: Any, width_s: float, *,
                calibration: GateCalibration | None = None,
                v_gate_at_icc_max: float | None = None, context: str = "",
                station: str | Path | None = None) -> None:
    """Check one batched pulse (or the extreme pulse of a schedule) against the limits.

    ``polarity`` ``"set"``: ``max|v_pulse|`` against ``set_bl_max_v``, ``max|v_gate|``
    against ``set_wl_max_v`` and the compliance current at that word-line voltage against
    ``set_icc_max_a``, computed with ``calibration`` (the station file's transistor
    calibration) and, independently of the file, against ``v_gate_at_icc_max`` (the
    word-line voltage at which the array board's own readback puts ``set_icc_max_a``,
    ``ARR:COMP:GATE?``); either may be None when unknown. ``"reset"``: ``max|v_pulse|``
    against ``reset_sl_max_v``, ``max|v_gate|`` against ``reset_wl_max_v``. ``width_s``
    against ``pulse_width_max_s``. Values per cell or one for all.
    """
    kw: dict[str, Any] = {"context": context, "station": station}
    check_limit(limits, "pulse_width_max_s", float(width_s), what="pulse width", **kw)
    vp, vg = _max_abs(v_pulse), _max_abs(v_gate)
    if polarity == "set":
        check_limit(limits, "set_bl_max_v", vp, what="SET bit-line amplitude", **kw)
        check_set_gate(limits, vg, calibration=calibration,
                       v_gate_at_icc_max=v_gate_at_icc_max, **kw)
    elif polarity == "reset":
        check_limit(limits, "reset_sl_max_v", vp, what="RESET source-line amplitude", **kw)
        check_limit(limits, "reset_wl_max_v", vg, what="RESET word-line voltage", **kw)
    else:
        raise ValueError(f"polarity must be 'set' or 'reset', got {polarity!r}")


class PulseExtremes(Protocol):
    """The extreme pulses of a pulse schedule (e.g. a program-verify configuration,
    :class:`cimlab.procedures.program_verify.ProgramVerifyConfig`)."""

    width_s: float
    v_gate_reset: float

    def max_v_set(self) -> float:
        """Largest SET bit-line amplitude [V]."""

    def max_v_reset(self) -> float:
        """Largest RESET source-line amplitude [V]."""

    def max_v_gate_set(self) -> float:
        """Largest SET word-line voltage [V]."""


def check_pulse_extremes(limits: Any, schedule: PulseExtremes, *,
                         calibration: GateCalibration | None = None, context: str = "",
                         station: str | Path | None = None) -> None:
    """Check a schedule's extreme SET and RESET pulses before the first one is sent
    (:func:`check_pulse` twice); network programming's pre-check of program-verify."""
    check_pulse(limits, "set", schedule.max_v_set(), schedule.max_v_gate_set(),
                schedule.width_s, calibration=calibration, context=context, station=station)
    check_pulse(limits, "reset", schedule.max_v_reset(), schedule.v_gate_reset,
                schedule.width_s, context=context, station=station)


__all__ = [
    "LIMIT_NAMES",
    "SMU_MAX_I",
    "SMU_MAX_V",
    "GateCalibration",
    "PulseExtremes",
    "StationLimits",
    "check_limit",
    "check_pulse",
    "check_pulse_extremes",
    "check_requests",
    "check_set_gate",
    "limit_value",
]

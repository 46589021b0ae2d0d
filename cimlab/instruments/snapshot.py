"""The provenance of a run (layer 4): what a station was when the run began, recorded with
every run in the store (``Station.snapshot``): the station file and its text, each
instrument's address and ``*IDN?``, the instruments' settings, limits, calibration, the
emulator (if any), instrument time and the versions of cimlab and its instrument stack."""

from __future__ import annotations

import datetime as _dt
import platform
from typing import Any

from cimlab import __version__
from cimlab.params import to_dict


def _smu_settings(smu: Any) -> dict[str, Any]:
    return {
        "source_mode": smu.source_mode,
        "source_voltage_v": smu.source_voltage,
        "compliance_current_a": smu.compliance_current,
        "source_enabled": bool(smu.source_enabled),
    }


def _oven_settings(oven: Any) -> dict[str, Any]:
    return {
        "setpoint_c": oven.setpoint_c,
        "temperature_c": oven.temperature_c,
        "ramp_rate_k_per_s": oven.ramp_rate_k_per_s,
        "heater_enabled": oven.heater_enabled,
    }


def station_snapshot(st: Any) -> dict[str, Any]:
    """The snapshot of an open :class:`~cimlab.instruments.station.Station` ``st`` (a few
    queries per instrument)."""
    from importlib import metadata

    def version(pkg: str) -> str:
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return "not installed"

    settings: dict[str, Any] = {
        "array": {
            "geometry": list(st.array.geometry),
            "read_voltage_v": st.array.read_voltage,
            "output_enabled": st.array.output_enabled,
            "routed_cell": st.array.routed_cell,
        }
    }
    if st.switch is None:
        settings["array"]["ranges"] = st.array.ranges._asdict()
    else:
        settings["array"]["topology"] = "discrete"
        settings["array"]["round_trips"] = st.array.round_trips
    if st.smu is not None:
        settings["smu"] = _smu_settings(st.smu)
    if st.oven is not None:
        settings["oven"] = _oven_settings(st.oven)
    for name, inst in getattr(st, "extra", {}).items():  # [instruments.extra.<name>]
        role = st.config.instruments.extra[name].role
        settings[f"extra.{name}"] = {"role": role, **(_smu_settings(inst) if role == "smu"
                                                       else _oven_settings(inst))}
    return {
        "station": st.config.station.name,
        "station_file": str(st.path),
        "station_file_text": st.text,
        "clock": {"kind": st.config.station.clock, "now_s": st.clock.now()},
        "host_time_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(),
        "addresses": dict(st.addresses),
        "idn": dict(st.idn),
        "settings": settings,
        "instrument_time_s": st.instrument_time(),
        "limits": to_dict(st.limits),
        "calibration": to_dict(st.calibration),
        "emulator": (to_dict(st.config.emulator) if st.bench is not None else None),
        "emulator_state": st.emulator_state,
        "versions": {
            "cimlab": __version__,
            "python": platform.python_version(),
            **{pkg: version(pkg) for pkg in ("numpy", "pyvisa", "pyvisa-py", "pymeasure")},
        },
    }

"""Helpers for the calibration tests: station files for an emulated bench."""

from __future__ import annotations

from pathlib import Path

STATION_TEMPLATE = """
[station]
name = "test bench"
clock = "virtual"

[emulator]
start = {start}
profile = "{profile}"
seed = {seed}

[instruments.array]
address = "{array}"
[instruments.smu]
address = "{smu}"
[instruments.oven]
address = "{oven}"
[instruments.clock]
address = "{clock}"

[limits]
set_bl_max_v = 3.0
set_wl_max_v = 3.5
reset_sl_max_v = 3.0
reset_wl_max_v = 5.0
set_icc_max_a = {icc_max}
pulse_width_max_s = 1e-3
read_v_max_v = 0.5
mvm_v_max_v = 0.5
smu_v_max_v = {smu_v_max}
smu_i_max_a = 1e-3
oven_temp_max_c = {oven_max}

[calibration.transistor]
model = "square_law"
k_a_per_v2 = 2e-4
v_th_v = 0.5
"""


def station_file(tmp_path: Path, *, seed: int = 1, addresses: dict[str, str] | None = None,
                 icc_max: float = 700e-6, oven_max: float = 200.0,
                 name: str = "station.toml", smu_v_max: float = 0.5,
                 profile: str = "default") -> Path:
    """A station file: in-process emulator (``addresses`` None) or an external bench."""
    if addresses is None:
        addr = {k: "emulator" for k in ("array", "smu", "oven", "clock")}
        start = "true"
    else:
        addr = addresses
        start = "false"
    p = tmp_path / name
    p.write_text(STATION_TEMPLATE.format(start=start, seed=seed, icc_max=icc_max,
                                         oven_max=oven_max, smu_v_max=smu_v_max, profile=profile,
                                         **addr))
    return p


def free_emulator_ports() -> str:
    """A station-file ``ports = {...}`` table giving every emulated instrument a free TCP port
    on 127.0.0.1 (so a served emulator never collides with one left by another process)."""
    import dataclasses
    import socket

    from cimlab.instruments.station_config import EmulatorPorts

    names = [f.name for f in dataclasses.fields(EmulatorPorts)]
    socks = [socket.socket() for _ in names]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        ports = [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()
    return "ports = { " + ", ".join(f"{n} = {p}" for n, p in zip(names, ports, strict=True)) + " }"

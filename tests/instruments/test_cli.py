"""The bench commands: ``cimlab station check`` and ``cimlab emulator serve``."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cimlab.cli.main import main
from cimlab.instruments import Station
from tests.procedures.bench_util import free_emulator_ports

ROOT = Path(__file__).resolve().parents[2]
EMULATED = ROOT / "instruments" / "emulated.toml"


def test_station_check_prints_idn_limits_clock_geometry(capsys):
    assert main(["station", "check", str(EMULATED)]) == 0
    out = capsys.readouterr().out
    assert "KEITHLEY INSTRUMENTS,MODEL 2450" in out
    assert "set_bl_max_v" in out and "clock: virtual" in out
    assert "32 tiles x 256 rows x 64 cols" in out


def test_station_check_bad_file_exit_1(tmp_path, capsys):
    p = tmp_path / "s.toml"
    p.write_text(EMULATED.read_text().replace("smu_i_max_a = 1e-3", "smu_i_max_a = 5.0"))
    assert main(["station", "check", str(p)]) == 1
    err = capsys.readouterr().err
    assert "limits.smu_i_max_a" in err and str(p) in err


@pytest.mark.slow
def test_emulator_serve_as_a_process(tmp_path):
    ports_line = free_emulator_ports()
    ports = [int(p) for p in re.findall(r"= (\d+)", ports_line)]
    text = EMULATED.read_text().replace("start = true", "start = false").replace(
        "ports = { array = 5025, smu = 5026, oven = 5027, clock = 5028 }", ports_line)
    station_file = tmp_path / "served.toml"
    station_file.write_text(text)
    proc = subprocess.Popen(
        [sys.executable, "-m", "cimlab.cli.main", "emulator", "serve", "--station",
         str(station_file)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        lines = []
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "Ctrl-C stops" in line:
                break
        assert f"TCPIP0::127.0.0.1::{ports[0]}::SOCKET" in "".join(lines)
        with Station.open(station_file) as st:
            assert st.bench is None  # reached over the sockets of the other process
            st.array.read(np.arange(10))
            assert st.clock.now() > 0
    finally:
        proc.send_signal(2)  # Ctrl-C
        proc.wait(timeout=20)
    assert proc.returncode == 130  # Ctrl-C: the shell convention, as every command


def _serve_until_ready(station_file, *extra):
    proc = subprocess.Popen(
        [sys.executable, "-m", "cimlab.cli.main", "emulator", "serve", "--station",
         str(station_file), *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if "Ctrl-C stops" in proc.stdout.readline():
            return proc
    proc.kill()
    raise AssertionError("emulator serve did not come up")


def test_emulator_serve_keeps_its_chip_in_a_state_file(tmp_path):
    """Ctrl-C writes the state; the next serve continues on the same chip and clock."""
    ports_line = free_emulator_ports()
    text = EMULATED.read_text().replace("start = true", "start = false").replace(
        "ports = { array = 5025, smu = 5026, oven = 5027, clock = 5028 }", ports_line)
    station_file = tmp_path / "served.toml"
    station_file.write_text(text)
    state = tmp_path / "bench.npz"
    cells = np.arange(64)
    proc = _serve_until_ready(station_file, "--state", str(state))
    try:
        with Station.open(station_file) as st:
            st.array.pulse(cells, "set", 2.0, st.gate_voltage_for(20e-6), 1e-6)
            g_set = st.array.read(cells)
            st.clock.sleep(100.0)
            t_before = st.clock.now()
    finally:
        proc.send_signal(2)
        proc.wait(timeout=30)
    assert proc.returncode == 130 and state.exists()  # stopped by Ctrl-C, state saved
    proc = _serve_until_ready(station_file, "--state", str(state))
    try:
        with Station.open(station_file) as st:
            assert st.clock.now() >= t_before  # the virtual clock went on from the saved state
            g = st.array.read(cells)
    finally:
        proc.send_signal(2)
        proc.wait(timeout=30)
    # the cells keep the SET state programmed before the restart (a fresh chip would not)
    assert np.median(g_set) > 15e-6 and np.median(g) > 15e-6

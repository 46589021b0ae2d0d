"""EmulatedBench state: the whole emulated world (chip, virtual clock, oven, routing, array
and SMU settings) saved to a .npz and served again continues exactly as the original does,
measured through PyVISA; bad files are refused with the file and entry named."""

from __future__ import annotations

import numpy as np
import pytest

from cimlab.errors import ConfigError
from cimlab.instruments.drivers import ArrayController, BakeOven, VirtualClock, open_keithley2450
from cimlab.instruments.emulator import EmulatedBench
from cimlab.instruments.emulator.bench import STATE_VERSION
from cimlab.physics.state import load_npz, save_npz

from .conftest import SEED


class Drivers:
    """The four drivers of a started bench."""

    def __init__(self, bench: EmulatedBench) -> None:
        a = bench.addresses
        self.array = ArrayController.open(a["array"], timeout_s=5)
        self.smu = open_keithley2450(a["smu"], timeout_s=5)
        self.oven = BakeOven.open(a["oven"], timeout_s=5)
        self.clock = VirtualClock.open(a["clock"], timeout_s=5)

    def close(self) -> None:
        for d in (self.array, self.smu, self.oven, self.clock):
            d.adapter.close()


def _continuation(d: Drivers, cells: np.ndarray) -> list[np.ndarray]:
    """What a next command would do; everything it returns must match bit for bit."""
    v = np.linspace(0.0, 0.1, 256)
    out = [np.asarray(d.array.read(cells)), np.asarray(d.array.mvm(0, np.stack([v, v[::-1]])))]
    d.clock.sleep(120.0)  # the oven is still ramping: the chip ages along the ramp
    out += [np.array([d.clock.now(), d.oven.temperature_c]), np.asarray(d.array.read(cells))]
    out.append(np.asarray(d.array.pulse_set(cells[:50], 1.5, 1.24, 1e-6)))
    out.append(np.asarray(d.array.read(cells)))
    out.append(np.array([d.smu.current]))  # the routed cell, through the SMU
    return out


def test_saved_world_continues_identically(small_profile, tmp_path):
    cells = np.arange(0, 4000, 5)
    with EmulatedBench(small_profile, SEED) as bench:
        d = Drivers(bench)
        d.array.enable()
        d.array.pulse_set(cells, 2.0, 1.24, 1e-6)
        d.array.read_voltage = 0.15
        d.array.mvm(0, np.full(256, 0.05))
        d.oven.ramp_rate_k_per_s = 0.5
        d.oven.setpoint_c = 120.0
        d.oven.heater_enabled = True
        d.clock.sleep(100.0)  # 25 -> 75 degC
        d.array.select(7)
        d.smu.apply_voltage(compliance_current=1e-4)
        d.smu.source_voltage = 0.1
        d.smu.enable_source()
        d.smu.measure_current()
        path = bench.save_state(tmp_path / "world.npz")
        state = load_npz(path)
        assert state["format"] == "cimlab-emulated-bench"
        assert state["chip.format"] == "cimlab-chip-state"
        expected = _continuation(d, cells)
        d.close()
    with EmulatedBench.from_state(path) as restored:
        assert restored.profile == small_profile.name and restored.seed == SEED
        w = restored.world
        assert w.routed_cell == 7 and w.oven_output and w.oven_rate_k_per_s == 0.5
        assert w.busy_s["array"] > 0 and w.now_s == state["world.now_s"]
        assert restored.instruments["array"].v_read == 0.15
        assert restored.instruments["smu"].output is True
        assert restored.instruments["smu"].ilim == 1e-4
        d = Drivers(restored)
        assert d.array.output_enabled and d.array.routed_cell == 7
        got = _continuation(d, cells)
        d.close()
    for a, b in zip(expected, got, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_chip_state_alone_gives_fresh_instruments(small_profile, tmp_path):
    from cimlab.physics import ReRAMChip

    chip = ReRAMChip(small_profile, seed=4)
    chip.pulse(np.arange(10), "set", 2.0, 1.24, 1e-6, 50.0)
    p = chip.save(tmp_path / "chip.npz")
    with EmulatedBench.from_state(p) as bench:
        assert bench.world.now_s == chip.time_s == 50.0
        assert bench.seed == 4 and bench.profile == small_profile.name
        clock = VirtualClock.open(bench.addresses["clock"], timeout_s=5)
        assert clock.now() == 50.0
        clock.adapter.close()


@pytest.fixture(scope="module")
def bench_state(small_profile, tmp_path_factory):
    bench = EmulatedBench(small_profile, SEED)
    return load_npz(bench.save_state(tmp_path_factory.mktemp("b") / "world.npz"))


@pytest.mark.parametrize("change, field, expected", [
    (lambda s: s.update(format_version=STATE_VERSION + 1), "format_version", "newer cimlab"),
    (lambda s: s.update(format="cimlab-something"), "format", "cimlab-emulated-bench"),
    (lambda s: s.update({"world.routed_cell": 10**9}), "world.routed_cell", "integer in"),
    (lambda s: s.update({"world.now_s": -5.0}), "world.now_s", ">= 0"),
    (lambda s: s.update({"world.oven_setpoint_k": 900.0}), "world.oven_setpoint_k",
     "oven's range"),
    (lambda s: s.update({"world.timing": '{"mvm_s": -1}'}), "world.timing.mvm_s", "mvm_s"),
    (lambda s: s.update({"array.v_read": 3.0}), "array.v_read", "at most"),
    (lambda s: s.update({"smu.settings": '{"output": true}'}), "smu.settings", "the keys"),
    (lambda s: s.update({"chip.cells.g_prog": np.zeros(3)}), "chip.cells.g_prog", "shape"),
    (lambda s: s.update({"chip.format_version": 99}), "chip.format_version", "newer"),
    (lambda s: s.pop("world.busy_s"), "world.busy_s", "present"),
])
def test_bad_bench_state_names_file_and_entry(bench_state, tmp_path, change, field, expected):
    bad = dict(bench_state)
    change(bad)
    p = save_npz(tmp_path / "bad.npz", bad)
    with pytest.raises(ConfigError) as ei:
        EmulatedBench.from_state(p)
    assert ei.value.field == field and str(p) in str(ei.value)
    assert expected in str(ei.value)


def test_clock_behind_the_chip_is_refused(bench_state, tmp_path):
    bad = dict(bench_state)
    bad["chip.clock.time_s"] = 100.0
    p = save_npz(tmp_path / "bad.npz", bad)
    with pytest.raises(ConfigError, match="at least the chip's clock"):
        EmulatedBench.from_state(p)

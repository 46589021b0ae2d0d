"""Station: strict station files, limits before sending, outputs off on every exit path."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import numpy as np
import pytest

from cimlab.errors import ConfigError, LimitError
from cimlab.instruments import Station
from cimlab.instruments.drivers import ArrayController
from cimlab.instruments.station import load_station_config

ROOT = Path(__file__).resolve().parents[2]
EMULATED = ROOT / "instruments" / "emulated.toml"
EXAMPLE = ROOT / "instruments" / "example-real-bench.toml"


def _outputs_off(bench) -> None:
    inst = bench.instruments
    assert inst["array"].output is False
    assert bench.world.routed_cell is None
    assert inst["smu"].output is False
    assert inst["smu"].level["VOLT"] == 0.0
    assert bench.world.oven_output is False


def _variant(tmp_path, old: str, new: str) -> Path:
    text = EMULATED.read_text()
    assert re.search(old, text, flags=re.M), old
    p = tmp_path / "station.toml"
    p.write_text(re.sub(old, new, text, count=1, flags=re.M))
    return p


@pytest.fixture(scope="module")
def station():
    with Station.open(EMULATED) as st:
        yield st


def test_open_identifies_everything(station):
    assert set(station.idn) == {"array", "smu", "oven", "clock"}
    assert station.idn["smu"].startswith("KEITHLEY")
    assert station.array.output_enabled is True
    assert station.array.geometry == station.bench.chip.geometry


def test_gate_voltage_for_uses_calibration_and_limits(station):
    v = station.gate_voltage_for(55e-6)
    assert station.calibration.transistor.icc(v) == pytest.approx(55e-6)
    # the emulated chip's nominal transistor (profile) agrees with the station file
    assert station.bench.chip.profile.transistor.icc(v) == pytest.approx(55e-6)
    with pytest.raises(LimitError, match="set_icc_max_a"):
        station.gate_voltage_for(1e-3)


@pytest.mark.parametrize(
    "call, key",
    [
        (lambda st, c: st.array.pulse_set(c, 3.5, 1.0, 1e-6), "set_bl_max_v"),
        (lambda st, c: st.array.pulse_set(c, 1.0, 3.6, 1e-6), "set_wl_max_v"),
        (lambda st, c: st.array.pulse_set(c, 1.0, 3.4, 1e-6), "set_icc_max_a"),
        (lambda st, c: st.array.pulse_reset(c, np.linspace(1, 3.1, c.size), 4.0, 1e-6),
         "reset_sl_max_v"),
        (lambda st, c: st.array.pulse_reset(c, 2.0, 5.5, 1e-6), "reset_wl_max_v"),
        (lambda st, c: st.array.pulse_set(c, 1.0, 1.0, 2e-3), "pulse_width_max_s"),
        (lambda st, c: st.array.mvm(0, np.full(256, 0.6)), "mvm_v_max_v"),
        (lambda st, c: setattr(st.array, "read_voltage", 0.8), "read_v_max_v"),
    ],
)
def test_array_limits_raise_before_anything_is_sent(station, call, key):
    cells = np.arange(100)
    n_before = len(station.bench.log("array"))
    with pytest.raises(LimitError, match=key):
        call(station, cells)
    assert len(station.bench.log("array")) == n_before  # the instrument received nothing


@pytest.mark.parametrize(
    "call, key",
    [
        (lambda smu: setattr(smu, "source_voltage", 0.6), "smu_v_max_v"),
        (lambda smu: setattr(smu, "compliance_current", 2e-3), "smu_i_max_a"),
        (lambda smu: smu.apply_voltage(compliance_current=0.1), "smu_i_max_a"),
        (lambda smu: smu.ramp_to_voltage(-0.7), "smu_v_max_v"),
        (lambda smu: setattr(smu, "source_current", -5e-3), "smu_i_max_a"),
    ],
)
def test_smu_limits_raise_before_anything_is_sent(station, call, key):
    n_before = len(station.bench.log("smu"))
    with pytest.raises(LimitError, match=key):
        call(station.smu)
    assert len(station.bench.log("smu")) == n_before


def test_read_at_a_board_read_voltage_beyond_the_limit_is_refused(tmp_path):
    # the board powers up reading at 0.2 V; a station allowing only 0.1 V must not read there
    p = _variant(tmp_path, r"^read_v_max_v = .*$", "read_v_max_v = 0.1")
    with Station.open(p) as st:
        n_before = len(st.bench.log("array"))
        with pytest.raises(LimitError, match="read_v_max_v"):
            st.array.read([0, 1])
        assert len(st.bench.log("array")) == n_before
        st.array.read_voltage = 0.1
        assert st.array.read([0, 1]).shape == (2,)


def test_oven_limit(station):
    n_before = len(station.bench.log("oven"))
    with pytest.raises(LimitError, match="oven_temp_max_c"):
        station.oven.bake(220, 10, station.clock)
    with pytest.raises(LimitError, match="oven_temp_max_c"):
        station.oven.setpoint_c = 201
    assert len(station.bench.log("oven")) == n_before


def test_within_limits_works_and_snapshot(station):
    cells = np.arange(64)
    e = station.array.pulse_set(cells, 2.0, station.gate_voltage_for(20e-6), 1e-6)
    assert e.shape == (64,)
    snap = station.snapshot()
    assert snap["station_file_text"] == EMULATED.read_text()
    assert snap["idn"]["array"].startswith("cimlab")
    assert snap["limits"]["set_bl_max_v"] == 3.0
    assert snap["versions"]["pymeasure"] and snap["versions"]["pyvisa"]
    assert snap["settings"]["array"]["geometry"] == list(station.bench.chip.geometry)
    assert snap["instrument_time_s"]["array"] > 0
    assert snap["emulator"]["seed"] == 1


def test_exception_inside_with_turns_outputs_off():
    with pytest.raises(RuntimeError, match="boom"), Station.open(EMULATED) as st:
        bench = st.bench
        st.array.select(5)
        st.smu.apply_voltage(compliance_current=1e-3)
        st.smu.source_voltage = 0.2
        st.smu.enable_source()
        st.oven.setpoint_c = 60
        st.oven.heater_enabled = True
        raise RuntimeError("boom")
    _outputs_off(bench)


def test_interrupt_between_query_and_answer_still_shuts_down():
    """A stale answer (Ctrl-C after a query was sent, before it was read) and a half-sent
    block must not confuse the shutdown: the station reconnects first."""
    with pytest.raises(KeyboardInterrupt), Station.open(EMULATED) as st:
        bench = st.bench
        st.smu.apply_voltage(compliance_current=1e-3)
        st.smu.source_voltage = 0.2
        st.smu.enable_source()
        st.smu.write(":READ?")  # answer never read
        st.array.write("*IDN?")
        st.array.write_bytes(b"ARR:READ? #18\x00\x00")  # half a block
        st.oven.heater_enabled = True
        st.oven.write("MEAS:TEMP?")
        raise KeyboardInterrupt
    _outputs_off(bench)


def test_keyboard_interrupt_turns_outputs_off():
    with pytest.raises(KeyboardInterrupt), Station.open(EMULATED) as st:
        bench = st.bench
        st.smu.apply_voltage(compliance_current=1e-3)
        st.smu.enable_source()
        raise KeyboardInterrupt
    _outputs_off(bench)


def test_sigterm_unwinds_and_turns_outputs_off():
    with pytest.raises(SystemExit) as info, Station.open(EMULATED) as st:
        bench = st.bench
        st.oven.heater_enabled = True
        os.kill(os.getpid(), signal.SIGTERM)
        st.clock.sleep(1)  # the handler raises here at the latest
    assert info.value.code == 128 + signal.SIGTERM
    _outputs_off(bench)
    assert signal.getsignal(signal.SIGTERM) is not None  # the previous handler is back


@pytest.mark.parametrize(
    "old, new, field, expected",
    [
        (r"^set_bl_max_v = .*$", "", "limits.set_bl_max_v", "required key"),
        (r'^name = "emulated bench"', "name = 12", "station.name", "a string"),
        (r"^smu_v_max_v = .*$", "smu_v_max_v = 300.0", "limits.smu_v_max_v",
         "(0, 210] V"),
        (r"^timeout_s = 10.0", 'timeout_s = "ten"', "instruments.array.timeout_s",
         "a number in"),
        (r'^clock = "virtual"', 'clock = "sundial"', "station.clock", "'virtual', 'real'"),
        (r"^k_a_per_v2 = .*$", "k_a_per_v2 = -1.0", "calibration.transistor.k_a_per_v2",
         "(0, +inf]"),
        (r"^oven_temp_max_c = .*$", "oven_temp_max_c = 200.0\nbogus_limit = 1",
         "limits.bogus_limit", "no such key"),
    ],
)
def test_bad_station_file_names_file_key_expected(tmp_path, old, new, field, expected):
    p = _variant(tmp_path, old, new)
    with pytest.raises(ConfigError) as info:
        Station.open(p)
    err = info.value
    assert err.source == str(p) and err.field == field
    assert expected in str(err)


def test_limit_beyond_array_range_is_config_error(tmp_path):
    # the board reports 5 V (ARR:RANG?): a 6 V limit is refused when the station opens
    p = _variant(tmp_path, r"^reset_wl_max_v = .*$", "reset_wl_max_v = 6.0")
    with pytest.raises(ConfigError, match=r"limits.reset_wl_max_v.*at most 5 V"):
        Station.open(p)


def test_syntax_error_and_missing_file(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("[station\nname = 1")
    with pytest.raises(ConfigError, match="valid TOML"):
        Station.open(p)
    with pytest.raises(ConfigError, match="existing TOML file"):
        Station.open(tmp_path / "nope.toml")


class CountingArray(ArrayController):
    """A lab's own array driver (here: counts reads), named in a station file."""

    reads = 0

    def read(self, cells=None, **kwargs):
        if cells is not None:
            CountingArray.reads += 1
        return super().read(cells, **kwargs)


def test_custom_driver_class_keeps_the_limits(tmp_path):
    p = _variant(tmp_path, r'^\[instruments.array\]\naddress = "emulator"',
                 '[instruments.array]\naddress = "emulator"\n'
                 'driver = "tests.instruments.test_station:CountingArray"')
    with Station.open(p) as st:
        assert isinstance(st.array, CountingArray)
        st.array.read([0, 1])
        assert CountingArray.reads == 1
        with pytest.raises(LimitError):
            st.array.pulse_set([0], 9.0, 1.0, 1e-6)
    bad = _variant(tmp_path, r'^\[instruments.array\]\naddress = "emulator"',
                   '[instruments.array]\naddress = "emulator"\ndriver = "nowhere:Nothing"')
    with pytest.raises(ConfigError, match=r"instruments\.array\.driver"):
        Station.open(bad)


def test_example_real_bench_file_parses():
    cfg, _text = load_station_config(EXAMPLE)
    assert cfg.station.clock == "real"
    assert not cfg.emulator.start
    assert cfg.instruments.smu.address.startswith(("USB", "GPIB", "TCPIP"))


def test_read_goes_out_at_the_station_read_voltage_whatever_the_board_holds(station):
    """Another connection sets the board's read voltage to 0.9 V (beyond the 0.5 V limit):
    the station's read still goes out at its own, checked voltage, in the same message (one
    round trip), and leaves the other connection's setting alone."""
    other = ArrayController.open(station.bench.addresses["array"], timeout_s=5)
    try:
        other.read_voltage = 0.9
        n_before = len(station.bench.log("array"))
        g = station.array.read([0, 1, 2])
        sent = station.bench.log("array")[n_before:]
        assert g.shape == (3,)
        assert len(sent) == 1 and sent[0].startswith("ARR:READ?") and sent[0].endswith(",0.2")
        assert station.bench.instruments["array"].v_read == 0.9
        assert station.array.read_voltage == 0.2 and station.array.board_read_voltage == 0.9
        # adopting the board's setting: the next read is refused, nothing sent
        assert station.array.adopt_board_read_voltage() == 0.9
        n_before = len(station.bench.log("array"))
        with pytest.raises(LimitError, match="read_v_max_v"):
            station.array.read([0, 1, 2])
        assert len(station.bench.log("array")) == n_before
    finally:
        other.read_voltage = 0.2
        other.adapter.close()
    station.array.read_voltage = 0.2


def test_wrong_transistor_calibration_is_refused_at_open(tmp_path):
    """k_a_per_v2 = 1.3e-4 instead of the chip's 2e-4: the file's 700 uA word-line voltage
    (3.78 V) would give ~1 mA. The board's own readback (ARR:COMP:GATE?) refuses the file."""
    p = _variant(tmp_path, r"^k_a_per_v2 = .*$", "k_a_per_v2 = 1.3e-4")
    with pytest.raises(ConfigError) as info:
        Station.open(p)
    assert info.value.field == "calibration.transistor" and info.value.source == str(p)
    assert "ARR:COMP:GATE?" in str(info.value) and "0.00013" in str(info.value)


def test_compliance_limit_holds_whatever_the_file_says(tmp_path):
    """A calibration 4 % off (within the tolerance at open) still cannot push a pulse past
    limits.set_icc_max_a: pulses are checked against the board's own readback too."""
    p = _variant(tmp_path, r"^k_a_per_v2 = .*$", "k_a_per_v2 = 1.92e-4")
    with Station.open(p) as st:
        board = st.array.v_gate_at_icc_max
        assert board == pytest.approx(st.bench.chip.profile.transistor.v_gate_for_icc(700e-6))
        v_file = st.calibration.transistor.v_gate_for(699e-6)  # the file: 699 uA; truly more
        assert st.bench.chip.profile.transistor.icc(v_file) > 700e-6
        n_before = len(st.bench.log("array"))
        with pytest.raises(LimitError, match=r"set_icc_max_a.*ARR:COMP:GATE"):
            st.array.pulse_set([0, 1], 2.0, v_file, 1e-6)
        with pytest.raises(LimitError, match="set_icc_max_a"):
            st.gate_voltage_for(699e-6)
        assert len(st.bench.log("array")) == n_before
        st.array.pulse_set([0, 1], 2.0, st.gate_voltage_for(600e-6), 1e-6)  # below: fine

"""expected_protocol tests: the exact bytes every driver method sends and what it makes of
the answers (no instrument, no emulator)."""

from __future__ import annotations

import numpy as np
import pytest
from pymeasure.test import expected_protocol

from cimlab.errors import InstrumentError
from cimlab.instruments.drivers import ArrayController, BakeOven, VirtualClock
from cimlab.instruments.drivers.visa import block

CELLS = np.array([0, 5, 70000], dtype=np.uint32)


def u4(values) -> bytes:
    return block(values, "<u4")


def f4(values) -> bytes:
    return block(values, "<f4")


# -- array controller ---------------------------------------------------------------------------


def test_array_properties():
    with expected_protocol(
        ArrayController,
        [
            ("ARR:GEOM?", "32,256,64"),
            ("ARR:RANG?", "5,5,1e-08,0.01,1,1"),
            ("ARR:VRE 0.15", None), ("SYST:ERR?", '0,"No error"'),
            ("ARR:VRE?", "0.15"),
            ("OUTP 1", None), ("SYST:ERR?", '0,"No error"'),
            ("OUTP?", "1"),
            ("ROUT:CELL?", "-1"),
            ("ARR:ITIM?", "0.25"),
            ("*IDN?", "cimlab,Emulated ReRAM array controller,EMU0001,0.1.0"),
        ],
    ) as arr:
        assert arr.geometry == (32, 256, 64)
        r = arr.ranges
        assert r.v_terminal_max_v == 5 and r.width_max_s == 0.01
        arr.read_voltage = 0.15
        assert arr.read_voltage == 0.15
        arr.enable()
        assert arr.output_enabled is True
        assert arr.routed_cell == -1
        assert arr.instrument_time == 0.25
        assert arr.id.startswith("cimlab")


def test_array_strict_validators_never_clamp():
    with expected_protocol(ArrayController, []) as arr:
        with pytest.raises(ValueError):
            arr.read_voltage = 2.0
        with pytest.raises(ValueError):
            arr.pulse(CELLS, "set", 1.0, 1.0, width_s=1.0)  # beyond the protocol's 10 ms
        with pytest.raises(ValueError):
            arr.pulse(CELLS, "sett", 1.0, 1.0, 1e-6)
        with pytest.raises(ValueError):
            arr.pulse([1.5, 2.0], "set", 1.0, 1.0, 1e-6)
        with pytest.raises(ValueError):
            arr.pulse(CELLS, "set", [1.0, 2.0], 1.0, 1e-6)  # 2 amplitudes for 3 cells
        with pytest.raises(ValueError):
            arr.mvm(0, [np.nan, 0.1])


def test_array_pulse_per_cell_amplitude_uniform_gate():
    v = np.array([1.0, 1.5, 2.0])
    energy = np.array([1e-12, 2e-12, 3e-12], dtype="<f4")
    msg = b"ARR:PULS? SET,1e-06," + u4(CELLS) + b"," + f4(v) + b",1.2\n"
    with expected_protocol(ArrayController, [(msg, f4(energy) + b"\n")]) as arr:
        e = arr.pulse_set(CELLS, v_bl=v, v_wl=1.2, width_s=1e-6)
    np.testing.assert_allclose(e, energy)


def test_array_pulse_reset_uniform_amplitude_per_cell_gate():
    g = np.array([3.0, 4.0, 5.0])
    msg = b"ARR:PULS? RESET,1e-07," + u4(CELLS) + b",2.5," + f4(g) + b"\n"
    with expected_protocol(ArrayController, [(msg, f4([0, 0, 0]) + b"\n")]) as arr:
        e = arr.pulse_reset(CELLS, v_sl=2.5, v_wl=g, width_s=1e-7)
    assert e.shape == (3,)


def test_array_pulse_failure_reads_error_queue_and_names_command():
    msg = b"ARR:PULS? SET,1e-06," + u4(CELLS) + b",7.0,1.0\n"
    with expected_protocol(
        ArrayController,
        [(msg, b"#10\n"),
         ("SYST:ERR?", '-222,"Data out of range;7 outside [0, 5] [ARR:PULS?]"'),
         ("SYST:ERR?", '0,"No error"')],
    ) as arr, pytest.raises(InstrumentError, match=r"ARR:PULS\? SET.*-222"):
        arr.pulse(CELLS, "set", 7.0, 1.0, 1e-6)


def test_array_read():
    g = np.array([1e-6, 2e-5, 3e-5], dtype="<f4")
    with expected_protocol(
        ArrayController, [(b"ARR:READ? " + u4(CELLS) + b"\n", f4(g) + b"\n")]
    ) as arr:
        np.testing.assert_allclose(arr.read(CELLS), g)
        assert arr.read([]).size == 0  # nothing sent for no cells


def test_array_read_at_a_stated_voltage():
    """``read(cells, v_read=v)`` carries the voltage in the same message (one round trip):
    the board reads at exactly that voltage, whatever its ARR:VRE setting."""
    g = np.array([1e-6, 2e-5, 3e-5], dtype="<f4")
    with expected_protocol(
        ArrayController, [(b"ARR:READ? " + u4(CELLS) + b",0.25\n", f4(g) + b"\n")]
    ) as arr:
        np.testing.assert_allclose(arr.read(CELLS, v_read=0.25), g)
    with expected_protocol(ArrayController, []) as arr, pytest.raises(ValueError):
        arr.read(CELLS, v_read=2.0)  # beyond the protocol's range: nothing sent


def test_array_compliance_readback():
    with expected_protocol(
        ArrayController,
        [("ARR:COMP:GATE? 0.0007", "3.1457513110645907"),
         ("ARR:COMP:GATE? 0.5", ""), ("SYST:ERR?", '-222,"Data out of range;x"'),
         ("SYST:ERR?", '0,"No error"')],
    ) as arr:
        assert arr.compliance_gate_voltage(700e-6) == 3.1457513110645907
        with pytest.raises(InstrumentError, match="-222"):
            arr.compliance_gate_voltage(0.5)
        with pytest.raises(ValueError):
            arr.compliance_gate_voltage(float("nan"))  # nothing sent


def test_array_read_wrong_count_raises():
    with expected_protocol(
        ArrayController, [(b"ARR:READ? " + u4(CELLS) + b"\n", f4([1.0]) + b"\n")]
    ) as arr, pytest.raises(InstrumentError, match="1 values for 3 cells"):
        arr.read(CELLS)


def test_array_mvm_single_and_batch():
    v1 = np.array([0.1, 0.2])
    vb = np.array([[0.1, 0.2], [0.0, 0.3]])
    with expected_protocol(
        ArrayController,
        [(b"ARR:MVM? 1," + f4(v1) + b"\n", f4([1e-6, 2e-6, 3e-6]) + b"\n"),
         (b"ARR:MVM? 0," + f4(vb.ravel()) + b"\n", f4(np.arange(6) * 1e-6) + b"\n")],
    ) as arr:
        assert arr.mvm(1, v1).shape == (3,)
        out = arr.mvm(0, vb)
    assert out.shape == (2, 3)
    np.testing.assert_allclose(out[1], np.array([3, 4, 5]) * 1e-6, rtol=1e-6)


def test_array_mvm_windows_send_only_the_driven_rows():
    """ARR:MVM:ROWS? (protocol 1.3): one u32 block of (first row, rows, vectors) per window,
    one f32 block of the windows' voltages, one reply split back per window."""
    wa = np.array([[0.1, 0.2, 0.3]])                    # 1 vector on rows 4..6
    wb = np.array([[0.05], [0.0]])                      # 2 vectors on row 200
    spec = u4([4, 3, 1, 200, 1, 2])
    volts = f4(np.r_[wa.ravel(), wb.ravel()])
    with expected_protocol(
        ArrayController,
        [(b"ARR:MVM:ROWS? 2," + spec + b"," + volts + b"\n",
          f4(np.arange(6) * 1e-6) + b"\n")],
    ) as arr:
        a, b = arr.mvm_windows(2, [(4, wa), (200, wb)])
        assert arr.last_round_trips == 1
    assert a.shape == (1, 2) and b.shape == (2, 2)
    np.testing.assert_allclose(b[1], [4e-6, 5e-6], rtol=1e-6)


def test_array_select_deselect_shutdown():
    ok = ("SYST:ERR?", '0,"No error"')
    with expected_protocol(
        ArrayController,
        [("ROUT:CELL 12", None), ok, ("ROUT:OPEN", None), ok,
         ("OUTP 0", None), ok, ("ROUT:OPEN;:OUTP 0", None), ok],
    ) as arr:
        arr.select(12)
        arr.deselect()
        arr.disable()
        arr.shutdown()
        assert arr.isShutdown


def test_array_select_error_raises_instrument_error():
    with expected_protocol(
        ArrayController,
        [("ROUT:CELL 99999999", None),
         ("SYST:ERR?", '-222,"Data out of range;99999999 outside [0, 32767] [ROUT:CELL]"'),
         ("SYST:ERR?", '0,"No error"')],
    ) as arr, pytest.raises(InstrumentError, match="ROUT:CELL 99999999"):
        arr.select(99999999)


# -- oven -----------------------------------------------------------------------------------------


def test_oven_properties_and_shutdown():
    ok = ("SYST:ERR?", '0,"No error"')
    with expected_protocol(
        BakeOven,
        [("SOUR:TEMP 85", None), ok, ("SOUR:TEMP?", "85"),
         ("SOUR:TEMP:RATE 0.1", None), ok, ("SOUR:TEMP:RATE?", "0.1"),
         ("OUTP 1", None), ok, ("OUTP?", "1"),
         ("MEAS:TEMP?", "42.5"), ("SOUR:TEMP:RANG?", "20,250"),
         ("OUTP 0", None), ok],
    ) as oven:
        oven.setpoint_c = 85
        assert oven.setpoint_c == 85
        oven.ramp_rate_k_per_s = 0.1
        assert oven.ramp_rate_k_per_s == 0.1
        oven.heater_enabled = True
        assert oven.heater_enabled is True
        assert oven.temperature_c == 42.5
        assert oven.setpoint_range_c == (20, 250)
        oven.shutdown()
    with expected_protocol(BakeOven, []) as oven, pytest.raises(ValueError):
        oven.setpoint_c = 400  # strict: refused, not clamped


def test_oven_bake_sequence():
    ok = ("SYST:ERR?", '0,"No error"')
    with expected_protocol(
        VirtualClock,
        [("TIME?", "0"), ("TIME?", "0"), ("TIME:ADV? 10.0", "10"),
         ("TIME:ADV? 100.0", "110"), ("TIME?", "110")],
    ) as clk, expected_protocol(
        BakeOven,
        [("MEAS:TEMP?", "25"), ("SOUR:TEMP 85", None), ok, ("OUTP 1", None), ok,
         ("MEAS:TEMP?", "60"), ("MEAS:TEMP?", "85"), ("OUTP 0", None), ok,
         ("MEAS:TEMP?", "25.2")],
    ) as oven:
        rec = oven.bake(85, 100.0, clk, poll_s=10.0)
    assert rec.temp_c == 85 and rec.soak_start_s == 10 and rec.soak_end_s == 110
    assert rec.ambient_c == 25


# -- clock ----------------------------------------------------------------------------------------


def test_virtual_clock():
    with expected_protocol(
        VirtualClock,
        [("TIME?", "12.5"), ("TIME:ADV? 3600.0", "3612.5"), ("SYST:BUSY? ARRAY", "0.03")],
    ) as clk:
        assert clk.now() == 12.5
        assert clk.sleep(3600) == 3612.5
        assert clk.busy("array") == 0.03
    with expected_protocol(VirtualClock, []) as clk, pytest.raises(ValueError):
        clk.sleep(-1)


def test_real_clock_same_interface():
    from cimlab.instruments.drivers import RealClock

    c = RealClock()
    t0 = c.now()
    assert c.sleep(0.01) >= t0 + 0.01
    assert c.busy("array") is None
    c.shutdown()

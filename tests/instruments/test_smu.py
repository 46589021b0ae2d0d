"""The emulated Keithley 2450 through the VISA stack: PyMeasure's Keithley2450, unmodified,
and the 2450 command set beyond PyMeasure's subset sent through that driver's write/ask
(sweeps, trigger models, reading buffers, limits and readback, status and error queue)."""

from __future__ import annotations

import datetime
import math

import numpy as np
import pytest
from pymeasure.instruments.keithley import Keithley2450

from cimlab.instruments.emulator.smu_buffers import RTC_EPOCH

CELL = 123


def _settle(bench, clock):
    """Let the as-delivered cells age 1e5 s so relaxation during the test is negligible."""
    clock.sleep(1e5)


def test_driver_is_pymeasures_own(smu):
    assert type(smu) is Keithley2450
    assert smu.id.startswith("KEITHLEY INSTRUMENTS,MODEL 2450")


def test_sources_0v2_and_reads_g_times_v(bench, array, smu, clock):
    """Mean of n readings = G*V of the routed cell within 4 standard errors of the emulator's
    own read noise (sigma of one read from the truth)."""
    _settle(bench, clock)
    array.select(CELL)
    smu.apply_voltage(compliance_current=1e-3)
    smu.measure_current()
    smu.source_voltage = 0.2
    smu.enable_source()
    assert smu.source_enabled is True
    n = 60
    currents = np.array([smu.current for _ in range(n)])
    truth = bench.chip.truth
    g = float(truth.conductance([CELL])[0])
    sigma_i = float(truth.read_sigma(g)) * 0.2  # at v = v_ref the I-V factor is exactly 1
    assert abs(currents.mean() - g * 0.2) < 4 * sigma_i / math.sqrt(n)
    assert 0.5 * sigma_i < currents.std(ddof=1) < 1.5 * sigma_i  # it really is noisy
    assert smu.check_errors() == []
    smu.shutdown()
    assert smu.source_enabled is False  # (a query: the shutdown writes were processed)
    assert bench.instruments["smu"].output is False
    assert bench.instruments["smu"].level["VOLT"] == pytest.approx(0.0, abs=1e-12)


def test_output_off_reads_zero_and_no_cell_reads_zero(bench, array, smu):
    smu.apply_voltage(compliance_current=1e-3)
    smu.source_voltage = 0.2
    array.select(CELL)
    assert smu.current == 0.0  # output off
    smu.enable_source()
    array.deselect()
    assert smu.current == 0.0  # terminals open
    smu.disable_source()


def test_compliance_is_honoured(bench, array, smu):
    array.select(CELL)
    smu.apply_voltage(compliance_current=1e-8)  # far below G*V of any cell at 0.2 V
    smu.source_voltage = 0.2
    smu.enable_source()
    assert smu.current == pytest.approx(1e-8, rel=1e-6)
    smu.disable_source()


def test_fixed_range_overflow_and_properties(bench, array, smu):
    array.select(CELL)
    smu.apply_voltage(voltage_range=2, compliance_current=1e-3)
    assert smu.source_voltage_range == 2.0
    smu.measure_current(nplc=0.1, current=1e-8, auto_range=False)
    assert smu.current_range == 1e-8
    assert smu.current_nplc == 0.1
    smu.source_voltage = 0.2
    smu.enable_source()
    assert smu.current == 9.9e37  # over range, as the instrument reports it
    assert smu.source_mode == "voltage"
    smu.compliance_current = 5e-4
    assert smu.compliance_current == 5e-4
    assert smu.check_errors() == []


def test_reset_clear_and_errors(bench, smu):
    smu.source_voltage = 0.3
    smu.reset()  # "*RST;:stat:pres;:*CLS;"
    assert smu.source_voltage == 0.0
    smu.write(":SOUR:VOLT:LEV 500")  # beyond 210 V
    errs = smu.check_errors()
    assert len(errs) == 1 and int(errs[0][0]) == -222
    smu.write("BOGUS:CMD")
    smu.clear()
    assert smu.check_errors() == []


def test_instrument_time_charged_per_reading(bench, array, smu, clock):
    smu.measure_current(nplc=1)
    before = clock.busy("smu")
    _ = smu.current
    charged = clock.busy("smu") - before
    t = bench.world.timing
    assert charged == pytest.approx(1e-3 + 1 / t.smu_line_hz + t.smu_overhead_s)


def test_other_pymeasure_methods_speak_valid_scpi(bench, array, clock, smu):
    """Current sourcing, voltage/resistance measurement, terminals, beeper, buffer statistics:
    every command PyMeasure sends is understood (empty error queue) and answers sensibly."""
    clock.sleep(1e5)
    array.select(CELL)
    g = float(bench.chip.truth.conductance([CELL])[0])
    smu.apply_current(compliance_voltage=0.5)
    smu.source_current = 1e-7
    smu.measure_voltage()
    smu.enable_source()
    assert smu.voltage == pytest.approx(1e-7 / g, rel=0.3)  # nonlinear I-V, read noise
    smu.measure_resistance()
    assert smu.resistance == pytest.approx(1 / g, rel=0.3)
    smu.source_current = 1e-3  # far beyond what 0.5 V drives through the cell
    smu.measure_voltage()
    assert smu.voltage == pytest.approx(0.5)  # voltage compliance
    smu.disable_source()
    smu.use_rear_terminals()
    smu.use_front_terminals()
    smu.beep(440, 0.1)
    smu.current_output_off_state = "HIMP"
    assert smu.current_output_off_state == "HIMP"
    smu.current_filter_count = 5
    assert smu.current_filter_count == 5
    smu.reset_buffer()
    smu.measure_current()
    smu.apply_voltage(compliance_current=1e-3)
    smu.source_voltage = 0.2
    smu.enable_source()
    readings = [smu.current for _ in range(5)]
    # 2450 native command set: one statistic of the buffer (PyMeasure's mean_current indexes
    # three values, the 2400-emulation format, as its class docstring warns)
    assert smu.means == pytest.approx(np.mean(readings), rel=1e-5)
    assert smu.check_errors() == []


# ---------------------------------------------------------------------------------------------
# the 2450 command set beyond PyMeasure's subset (sent through the driver's write/ask)


def _q(smu, cmd: str) -> str:
    return smu.ask(cmd).strip()


def _floats(smu, cmd: str) -> np.ndarray:
    return np.array(_q(smu, cmd).split(","), dtype=float)


def _no_errors(smu) -> None:
    assert _q(smu, ":SYST:ERR:ALL?") == '0,"No error"'


def test_language_line_frequency_and_clears(bench, smu):
    assert _q(smu, "*LANG?") == "SCPI"
    smu.write("*LANG TSP")  # takes effect at the next power cycle (manual)
    assert _q(smu, "*LANG?") == "SCPI"
    assert bench.instruments["smu"].language_next == "TSP"
    assert _q(smu, ":SYST:LFR?") == f"{bench.world.timing.smu_line_hz:g}"
    smu.write("BOGUS:HEADER")
    assert int(_q(smu, ":SYST:ERR:COUN?")) == 1
    smu.write(":STAT:CLE")
    assert _q(smu, "*ESR?") == "0"  # event registers cleared, the error log kept
    assert _q(smu, ":SYST:ERR?").startswith("-113,")
    smu.write("BOGUS:HEADER")
    smu.write(":SYST:CLE")
    assert _q(smu, ":SYST:ERR:COUN?") == "0"


def test_optional_nodes_suffixes_delays_autozero_and_sense(bench, smu):
    smu.write(":SOUR1:VOLT:DEL:USER3 0.25;:SENS1:CURR:DEL:USER5 1e-3")
    assert float(_q(smu, ":SOURce:VOLTage:DELay:USER3?")) == 0.25
    assert float(_q(smu, ":SENS:CURR:DEL:USER5?")) == 1e-3
    assert float(_q(smu, ":SOUR:VOLT:DEL:USER1?")) == 0.0
    smu.write(":CURR:DC:RANG 1e-6")  # [:SENSe[1]]:CURRent[:DC]:RANGe
    assert float(_q(smu, ":SENS:CURR:RANG?")) == 1e-6
    assert _q(smu, ":SENS:CURR:RANG:AUTO?") == "0"
    smu.write(":SENS:CURR:AZER OFF;:SENS:CURR:RSEN ON;:COUN 3")
    assert _q(smu, ":SENS:CURR:AZER?") == "0" and _q(smu, ":SENS:CURR:RSEN?") == "1"
    assert _q(smu, ":SENS:COUN?") == "3"
    before = bench.world.busy_s.get("smu", 0.0)
    smu.write(":SENS:AZER:ONCE")
    assert _q(smu, "*OPC?") == "1"
    assert bench.world.busy_s["smu"] - before == pytest.approx(2 / bench.world.timing.smu_line_hz)
    smu.write(":SOUR:VOLT:DEL:USER6 1")  # only USER1..USER5 exist
    assert _q(smu, ":SYST:ERR?").startswith("-113,")
    smu.write("*RST")
    assert _q(smu, ":SENS:CURR:AZER?") == "1" and _q(smu, ":SENS:COUN?") == "1"
    _no_errors(smu)


def test_limit_trip_status_and_source_readback(bench, array, smu):
    array.select(CELL)
    smu.write(":SOUR:FUNC VOLT;:SOUR:VOLT 0.2;:SOUR:VOLT:ILIM 1e-8;:OUTP ON")
    assert _q(smu, ":SOUR:VOLT:ILIM:TRIP?") == "0"  # nothing measured yet
    out = _q(smu, ":READ? 'defbuffer1', READ, SOUR, SOURSTAT, STAT").split(",")
    assert float(out[0]) == pytest.approx(1e-8, rel=1e-9)
    assert 0 < float(out[1]) < 0.2  # readback: the voltage the source backed off to
    assert int(out[2]) & 0x08 and int(out[2]) & 0x02 and int(out[2]) & 0x20
    assert int(out[3]) == 8  # front terminals
    assert _q(smu, ":SOUR:VOLT:ILIM:TRIP?") == "1"
    assert _q(smu, ":SOUR:CURR:VLIM:TRIP?") == "0"
    smu.write(":SOUR:VOLT:READ:BACK OFF")
    out = _q(smu, ":READ? 'defbuffer1', SOUR, SOURSTAT").split(",")
    assert float(out[0]) == 0.2 and not int(out[1]) & 0x02  # the programmed level
    smu.write(":SOUR:VOLT:ILIM 1e-3")
    _q(smu, ":READ?")
    assert _q(smu, ":SOUR:VOLT:ILIM:TRIP?") == "0"
    smu.write(":OUTP OFF")
    _no_errors(smu)


def _sweep_sources(smu, sweep: str, buffer: str = "defbuffer1") -> np.ndarray:
    smu.write(f"{sweep};:INIT;*WAI")
    n = int(_q(smu, f":TRAC:ACT? '{buffer}'"))
    return _floats(smu, f":TRAC:DATA? 1, {n}, '{buffer}', SOUR")


def test_sweep_variants_give_the_manuals_points(bench, array, smu):
    array.select(CELL)
    smu.write(":SOUR:VOLT:ILIM 1e-3")
    lin = _sweep_sources(smu, ":SOUR:SWE:VOLT:LIN 0, 0.2, 11")
    np.testing.assert_allclose(lin, np.linspace(0, 0.2, 11), atol=1e-12)
    step = _sweep_sources(smu, ":SOUR:SWE:VOLT:LIN:STEP 0.2, 0, 0.05")
    np.testing.assert_allclose(step, [0.2, 0.15, 0.1, 0.05, 0.0], atol=1e-12)
    log = _sweep_sources(smu, ":SOUR:SWE:VOLT:LOG 0.001, 0.1, 3")
    np.testing.assert_allclose(log, [0.001, 0.01, 0.1], rtol=1e-6)
    dual = _sweep_sources(smu, ":SOUR:SWE:VOLT:LIN 0, 0.1, 3, -1, 2, AUTO, OFF, ON")
    np.testing.assert_allclose(dual, [0, 0.05, 0.1, 0.1, 0.05, 0] * 2, atol=1e-12)
    smu.write(":SOUR:LIST:VOLT 0.1, 0.2;:SOUR:LIST:VOLT:APP 0.05")
    assert _q(smu, ":SOUR:LIST:VOLT:POIN?") == "3"
    listed = _sweep_sources(smu, ":SOUR:SWE:VOLT:LIST 2, 0, 1, OFF, 'defbuffer2'", "defbuffer2")
    np.testing.assert_allclose(listed, [0.2, 0.05], atol=1e-12)
    assert _q(smu, ":OUTP?") == "0"  # each sweep ends with the output off
    assert float(_q(smu, ":SOUR:VOLT?")) == 0.0  # the level set before the sweep
    _no_errors(smu)


def test_sweep_fail_abort_and_time_charged(bench, array, smu, clock):
    array.select(CELL)
    smu.write(":SOUR:VOLT:ILIM 1e-8")  # the first nonzero point trips it
    n_abort = len(_sweep_sources(smu, ":SOUR:SWE:VOLT:LIN 0, 0.2, 11, 0, 1, BEST, ON"))
    n_full = len(_sweep_sources(smu, ":SOUR:SWE:VOLT:LIN 0, 0.2, 11, 0, 1, BEST, OFF"))
    assert (n_abort, n_full) == (2, 11)
    t = bench.world.timing
    smu.write(":SOUR:VOLT:ILIM 1e-3")
    before = clock.busy("smu")
    _sweep_sources(smu, ":SOUR:SWE:VOLT:LIN 0, 0.2, 5, 0.01")
    per_point = 1e-3 + 0.01 + 1 / t.smu_line_hz + t.smu_overhead_s  # auto delay + sweep delay
    assert clock.busy("smu") - before == pytest.approx(5 * per_point)
    smu.write(":SOUR:SWE:VOLT:LIN 0, 0.2, 5, 0, 0")  # infinite count
    assert _q(smu, ":SYST:ERR?").startswith("-221,")


def test_count_simple_loop_and_empty_trigger_model(bench, array, smu):
    array.select(CELL)
    smu.write(":SOUR:VOLT 0.2;:SOUR:VOLT:ILIM 1e-3;:OUTP ON;:TRAC:CLE;:COUN 5")
    last = float(_q(smu, ":READ?"))
    assert _q(smu, ":TRAC:ACT?") == "5"
    assert float(_q(smu, ":FETC?")) == last
    smu.write(":TRIG:LOAD 'SimpleLoop', 4, 0, 'defbuffer2';:INIT;*WAI")
    assert _q(smu, ":TRAC:ACT? 'defbuffer2'") == "4"
    smu.write(":TRIG:LOAD 'Empty';:INIT")
    assert _q(smu, ":TRAC:ACT? 'defbuffer2'") == "4" and _q(smu, ":TRAC:ACT?") == "5"
    smu.write(":TRIG:LOAD 'DurationLoop', 1")
    assert _q(smu, ":SYST:ERR?").startswith("-224,")
    smu.write(":OUTP OFF")


def test_buffers_fill_modes_indexes_and_errors(bench, array, smu, clock):
    array.select(CELL)
    smu.write(":SOUR:VOLT 0.2;:SOUR:VOLT:ILIM 1e-3;:OUTP ON;:TRAC:MAKE 'small', 3")
    assert _q(smu, ":TRAC:POIN? 'small'") == "3"
    values = [float(_q(smu, ":READ? 'small'")) for _ in range(5)]
    assert _q(smu, ":TRAC:ACT? 'small'") == "3" and _q(smu, ":TRAC:FILL:MODE? 'small'") == "CONT"
    np.testing.assert_array_equal(_floats(smu, ":TRAC:DATA? 1, 3, 'small'"), values[2:])
    np.testing.assert_array_equal(_floats(smu, ":TRAC:DATA? 2, 2, 'small', READ"), values[3:4])
    smu.write(":TRAC:POIN 3, 'small'")  # a new size clears the buffer
    assert _q(smu, ":TRAC:ACT? 'small'") == "0"
    smu.write(":TRAC:FILL:MODE ONCE, 'small'")
    values = [float(_q(smu, ":READ? 'small'")) for _ in range(5)]
    np.testing.assert_array_equal(_floats(smu, ":TRAC:DATA? 1, 3, 'small'"), values[:3])
    now = clock.now()
    out = _q(smu, ":FETC? 'small', REL, SEC, FRAC, DATE, TIME, UNIT, FORM").split(",")
    assert float(out[0]) > 0  # relative to the first reading of the buffer
    t = bench.instruments["smu"].buffers.get("small").ordered()[-1].time_s
    assert t <= now and int(out[1]) + float(out[2]) == pytest.approx(1767225600 + t)
    stamp = RTC_EPOCH + datetime.timedelta(seconds=t)  # the emulated real-time clock
    assert out[3] == stamp.strftime("%m/%d/%Y") and out[4].startswith(stamp.strftime("%H:%M:%S"))
    assert out[5] == "Amp DC" and out[6].endswith("A")
    for bad, code in ((":TRAC:DATA? 1, 4, 'small'", "-222"), (":TRAC:DATA? 0, 1, 'small'", "-222"),
                      (":TRAC:ACT? 'nosuch'", "-224"), (":TRAC:MAKE 'small', 10", "-221"),
                      (":TRAC:DEL 'defbuffer1'", "-221"), (":TRAC:DATA? 1", "-109"),
                      (":TRAC:DATA? 1, 1, 'small', COLOR", "-224")):
        smu.write(bad)
        assert _q(smu, ":SYST:ERR?").startswith(code + ","), bad
    smu.write("*RST")  # deletes user buffers, empties the default ones
    assert _q(smu, ":TRAC:ACT?") == "0"
    assert "small" not in bench.instruments["smu"].buffers.buffers
    _no_errors(smu)


def test_saved_bench_keeps_buffers_and_trigger_model(small_profile, tmp_path):
    from cimlab.instruments.emulator import EmulatedBench

    from .conftest import SEED

    with EmulatedBench(small_profile, SEED) as bench:
        emu = bench.instruments["smu"]
        for m in (b"OUTP ON", b":SOUR:VOLT:ILIM 1e-3", b":TRAC:MAKE 'kept', 4",
                  b":SOUR:LIST:VOLT 0.1, 0.2", b":SOUR:SWE:VOLT:LIN 0, 0.2, 3, 0, 1, BEST, ON, "
                  b"OFF, 'kept'", b":INIT", b":SOUR:SWE:VOLT:LIN 0, 0.1, 2"):
            emu.handle(m)
        path = bench.save_state(tmp_path / "b.npz")
        before = emu.handle(b":TRAC:DATA? 1, 3, 'kept', READ, SOUR, REL")
        expected = emu.handle(b":INIT;:TRAC:DATA? 1, 2, 'defbuffer1', READ, SOUR")
    with EmulatedBench.from_state(path) as restored:
        emu = restored.instruments["smu"]
        assert emu.handle(b":TRAC:DATA? 1, 3, 'kept', READ, SOUR, REL") == before
        assert emu.handle(b":SOUR:LIST:VOLT?") == b"1.000000E-01,2.000000E-01\n"
        assert emu.handle(b":INIT;:TRAC:DATA? 1, 2, 'defbuffer1', READ, SOUR") == expected
        assert not emu.errors


@pytest.mark.parametrize("message, expected", [
    (b":TRACe:MAKE 'b', 100, ", b":TRACe:MAKE 'b', 100"),
    (b":TRAC:MAKE 'a,', 10, ;*OPC?", b":TRAC:MAKE 'a,', 10;*OPC?"),
    (b":SOUR1:VOLT 1;:SENSe1:CURR:RANG?", b":SOUR:VOLT 1;:SENSe:CURR:RANG?"),
    (b":TRAC:MAKE 'SOUR1', 10", b":TRAC:MAKE 'SOUR1', 10"),  # inside a string: kept
    (b":SOUR:SWE:VOLT:LIN 0,1,3,0,1,AUTO,ON,OFF,'x'",
     b":SOUR:SWE:VOLT:LIN 0,1,3,0,1,AUTO,ON,OFF,'x'"),
])
def test_syntax_extras_of_the_2450_parser(message, expected):
    from cimlab.instruments.emulator.smu_syntax import normalise

    assert normalise(message) == expected


def test_log_sweep_with_asymptote_and_refused_sweeps(bench, smu):
    smu.write(":SOUR:VOLT:ILIM 1e-3;:SOUR:VOLT:READ:BACK OFF")
    log = _sweep_sources(smu, ":SOUR:SWE:VOLT:LOG 0.11, 0.2, 2, 0, 1, BEST, ON, OFF, "
                         "'defbuffer1', 0.1")
    np.testing.assert_allclose(log, [0.11, 0.2], rtol=1e-9)
    for bad, code in ((":SOUR:SWE:VOLT:LOG -0.1, 0.1, 3", "-222"),  # crosses the asymptote
                      (":SOUR:SWE:VOLT:LIN 0, 300, 3", "-222"),  # beyond 210 V
                      (":SOUR:SWE:VOLT:LIN 0, 1, 1", "-222"),  # fewer than 2 points
                      (":SOUR:SWE:VOLT:LIN 0, 1, 3, 0, 1, BEST, ON, OFF, 'nosuch'", "-224"),
                      (":SOUR:SWE:CURR:LIST 1", "-221"),  # empty source list
                      (":SOUR:SWE:VOLT:LIN 0, 1", "-109")):
        smu.write(bad)
        assert _q(smu, ":SYST:ERR?").startswith(code + ","), bad

"""PyMeasure's Keithley2450, unmodified, against the emulated SMU through the VISA stack."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pymeasure.instruments.keithley import Keithley2450

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

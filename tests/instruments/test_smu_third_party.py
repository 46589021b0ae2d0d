"""Independent clients of the emulated Keithley 2450, unmodified, over PyVISA (TCPIP socket):
QCoDeS's ``Keithley2450``, PyMeasure's ``Keithley2450``, and plain PyVISA sending the 2450
manual's SCPI sequences. Each connects, reads its settings without a timeout, sources 0.2 V
and reads G*V of the routed cell within read noise, runs an 11-point sweep and reads a buffer
with elements. Truth: the emulated chip (``bench.chip.truth``, ``bench.chip.profile``)."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest

CELL = 123
V_READ = 0.2


def _truth(bench):
    """(conductance at v_ref [S], read-noise sigma of the conductance [S]) of CELL."""
    g = float(bench.chip.truth.conductance([CELL])[0])
    return g, float(bench.chip.truth.read_sigma(g))


def _iv_factor(bench, v: np.ndarray) -> np.ndarray:
    """I(v) / g of the chip's I-V (so I = g * factor; factor(v_ref) = v_ref)."""
    return np.asarray(bench.chip.profile.iv.current(1.0, v), dtype=float)


def _check_sweep(bench, volts: np.ndarray, amps: np.ndarray) -> None:
    """Each nonzero point's I / factor(V) estimates G with the read-noise sigma: their mean
    within 4 standard errors, every point within 5 sigma."""
    g, sigma = _truth(bench)
    nz = volts != 0
    est = amps[nz] / _iv_factor(bench, volts[nz])
    assert abs(est.mean() - g) < 4 * sigma / math.sqrt(nz.sum())
    assert np.all(np.abs(est - g) < 5 * sigma)
    assert np.all(amps[~nz] == 0.0)


def _settle_and_route(array, clock):
    clock.sleep(1e5)  # as-delivered cells aged: relaxation during the test negligible
    array.select(CELL)


# ---------------------------------------------------------------------------------------------
# QCoDeS

@pytest.fixture
def qk(bench):
    pytest.importorskip("qcodes")  # the `drivers` / `dev` extra
    from qcodes.instrument_drivers.Keithley import Keithley2450

    k = Keithley2450(f"smu_{id(bench)}", bench.addresses["smu"], visalib="@py", timeout=5)
    yield k
    k.close()


def _errors(k) -> str:
    return k.ask(":SYSTem:ERRor:ALL?")


def test_qcodes_connects_and_snapshots_every_parameter(bench, qk, caplog):
    """Every parameter of every submodule is read from the instrument (no timeout, no error).
    Two things the driver needs from its user first, as on a real 2450: ``user_number`` (else
    it asks ``...:DELay:USERNone?``) and a sweep set up on both source functions (``sweep_axis`` is
    computed locally, not asked)."""
    assert qk.IDN()["model"] == "2450"
    for name in ("_source_voltage", "_source_current", "_sense_current", "_sense_voltage",
                 "_sense_resistance"):
        qk.submodules[name].user_number(1)
    qk.submodules["_source_voltage"].sweep_setup(0, V_READ, 11)
    qk.submodules["_source_current"].sweep_setup(0, 1e-6, 11)
    with caplog.at_level(logging.WARNING):
        snap = qk.snapshot(update=True)
    assert not [r for r in caplog.records if "Could not update" in r.getMessage()]
    assert _errors(qk) == '0,"No error"'
    p = snap["parameters"]
    assert p["line_frequency"]["value"] == f"{bench.world.timing.smu_line_hz:g}"
    assert p["source_function"]["value"] == "voltage"
    assert p["sense_function"]["value"] == "current"
    src = snap["submodules"]["_source_voltage"]["parameters"]
    assert src["limit"]["value"] == pytest.approx(1.05e-4)  # *RST default current limit
    assert src["limit_tripped"]["value"] is False
    assert src["read_back_enabled"]["value"] is True
    sense = snap["submodules"]["_sense_current"]["parameters"]
    assert sense["auto_zero_enabled"]["value"] is True
    assert sense["four_wire_measurement"]["value"] is False
    assert sense["count"]["value"] == "1"


def test_qcodes_sources_0v2_and_reads_g_times_v(bench, array, clock, qk):
    _settle_and_route(array, clock)
    qk.source.function("voltage")
    qk.sense.function("current")
    qk.source.limit(1e-3)
    qk.source.voltage(V_READ)
    n = 60
    with qk.output_enabled.set_to(True):
        currents = np.array([qk.sense.current() for _ in range(n)])
    assert qk.output_enabled() is False
    g, sigma_g = _truth(bench)
    sigma_i = sigma_g * V_READ  # at v = v_ref the I-V factor is exactly v_ref
    assert abs(currents.mean() - g * V_READ) < 4 * sigma_i / math.sqrt(n)
    assert 0.5 * sigma_i < currents.std(ddof=1) < 1.5 * sigma_i
    assert qk.source.limit_tripped() is False
    assert _errors(qk) == '0,"No error"'


def test_qcodes_sweep_returns_11_points_of_the_cells_iv(bench, array, clock, qk):
    _settle_and_route(array, clock)
    qk.source.limit(1e-3)
    qk.source.sweep_setup(0, V_READ, 11)
    qk.sense.function("current")
    amps = qk.sense.sweep()
    volts = qk.source.sweep_axis()
    assert amps.shape == (11,)
    _check_sweep(bench, volts, amps)
    assert _errors(qk) == '0,"No error"'


def test_qcodes_user_buffer_with_elements(bench, array, clock, qk):
    _settle_and_route(array, clock)
    qk.source.limit(1e-3)
    emulator = bench.instruments["smu"]
    with qk.buffer("cimlab", 100) as buf:
        assert buf.size() == 100
        qk.source.sweep_setup(0, V_READ, 11, buffer_name="cimlab")
        buf.elements(["measurement", "source_value", "relative_time", "measurement_unit",
                      "source_value_unit", "measurement_status"])
        qk.source.sweep_start()
        assert buf.number_of_readings() == 11
        rows = np.array(buf.get_data(1, 11), dtype=object).reshape(11, 6)
        amps, volts = rows[:, 0].astype(float), rows[:, 1].astype(float)
        np.testing.assert_allclose(volts, np.linspace(0, V_READ, 11), atol=1e-12)
        _check_sweep(bench, volts, amps)
        rel = rows[:, 2].astype(float)
        assert rel[0] == 0.0 and np.all(np.diff(rel) > 0)
        assert set(rows[:, 3]) == {"Amp DC"} and set(rows[:, 4]) == {"Volt DC"}
        assert set(rows[:, 5]) == {"8"}  # front terminals, not questionable
        last = buf.get_last_reading().split(",")
        assert last == list(rows[-1])
        assert [float(x) for x in buf.get_data(3, 5, readings_only=True)] == list(amps[2:5])
    assert _errors(qk) == '0,"No error"'  # (a query: the :TRAC:DEL write was processed)
    assert "cimlab" not in emulator.buffers.buffers  # deleted on leaving the with block


# ---------------------------------------------------------------------------------------------
# PyMeasure


def test_pymeasure_reads_its_settings_sweeps_and_reads_elements(bench, array, clock, smu):
    """PyMeasure has no snapshot: every query property it defines is read instead; its
    Keithley2450 has no sweep method, so the sweep goes through its ``write``/``ask``."""
    from pymeasure.instruments.keithley import Keithley2450

    props = [name for name in dir(Keithley2450)
             if isinstance(getattr(Keithley2450, name), property) and name not in {
                 "current", "voltage", "resistance",  # measurements (:READ?)
                 "error", "next_error",  # pop the error queue
                 "mean_voltage", "max_voltage", "min_voltage", "std_voltage", "mean_current",
                 "max_current", "min_current", "std_current", "mean_resistance",
                 "max_resistance", "min_resistance", "std_resistance",  # 2400 stat format
                 "buffer_data", "means", "maximums", "minimums", "standard_devs"}]
    values = {name: getattr(smu, name) for name in props}
    assert values["source_mode"] == "voltage" and values["source_enabled"] is False
    assert smu.check_errors() == []
    _settle_and_route(array, clock)
    smu.apply_voltage(compliance_current=1e-3)
    smu.measure_current()
    smu.write(":SOUR:SWE:VOLT:LIN 0, 0.2, 11, 0, 1, BEST, ON, OFF, 'defbuffer1'")
    smu.start_buffer()  # :INIT
    assert smu.ask("*OPC?").strip() == "1"
    assert int(smu.ask(":TRAC:ACT? 'defbuffer1'")) == 11
    data = np.array(smu.values(":TRAC:DATA? 1, 11, 'defbuffer1', SOUR, READ")).reshape(11, 2)
    np.testing.assert_allclose(data[:, 0], np.linspace(0, V_READ, 11), atol=1e-12)
    _check_sweep(bench, data[:, 0], data[:, 1])
    assert smu.ask(":FETC? 'defbuffer1', UNIT, SOURUNIT").strip() == "Amp DC,Volt DC"
    assert smu.source_enabled is False  # the sweep's trigger model ends with the output off
    assert smu.check_errors() == []


# ---------------------------------------------------------------------------------------------
# plain PyVISA: the manual's command sequences


@pytest.fixture
def raw(bench):
    import pyvisa

    rm = pyvisa.ResourceManager("@py")
    inst = rm.open_resource(bench.addresses["smu"], read_termination="\n",
                            write_termination="\n", timeout=5000)
    yield inst
    inst.close()
    rm.close()


def test_raw_scpi_linear_sweep_and_reading_buffer(bench, array, clock, raw):
    """A linear sweep into a user buffer, read back with elements and index ranges, in the
    2450 reference manual's SCPI (sections "Sweep operation", "Reading buffers")."""
    _settle_and_route(array, clock)
    assert raw.query("*LANG?") == "SCPI"
    for cmd in ("*RST", ':SENS:FUNC "CURR"', ":SENS:CURR:RANG:AUTO ON", ":SENS:CURR:RSEN OFF",
                ":SOUR:FUNC VOLT", ":SOUR:VOLT:ILIM 1e-3", ':TRAC:MAKE "sweepBuffer", 1000',
                ':SOUR:SWE:VOLT:LIN 0, 0.2, 11, 0.01, 1, BEST, ON, OFF, "sweepBuffer"',
                ":INIT", "*WAI"):
        raw.write(cmd)
    assert raw.query(':TRAC:ACT? "sweepBuffer"') == "11"
    out = raw.query(':TRAC:DATA? 1, 11, "sweepBuffer", SOUR, READ').split(",")
    pairs = np.array(out, dtype=float).reshape(11, 2)
    _check_sweep(bench, pairs[:, 0], pairs[:, 1])
    mid = raw.query(':TRAC:DATA? 4, 6, "sweepBuffer", READ').split(",")
    assert [float(x) for x in mid] == list(pairs[3:6, 1])
    assert raw.query(':TRAC:STAT:AVER? "sweepBuffer"') == f"{pairs[:, 1].mean():.6E}"
    raw.write(':TRAC:CLE "sweepBuffer"')
    assert raw.query(':TRAC:ACT? "sweepBuffer"') == "0"
    assert raw.query(":SYST:ERR?") == '0,"No error"'
    # documented errors: an index beyond the buffer, a second buffer of the same name
    raw.write(':TRAC:MAKE "sweepBuffer", 10')
    assert raw.query(":SYST:ERR?").startswith("-221,")
    raw.write(":SOUR:SWE:VOLT:LIN 0, 0.2, 11")
    raw.write(":INIT")
    assert raw.query(":TRAC:DATA? 1, 11").count(",") == 10
    raw.write(":TRAC:DATA? 1, 12")
    assert raw.query(":SYST:ERR?").startswith("-222,")
    raw.write(":SYST:CLE")
    assert raw.query(":SYST:ERR:COUN?") == "0"

"""The array controller through the full VISA stack: blocks both ways, physics, timing."""

from __future__ import annotations

import numpy as np
import pytest
from pyvisa import util

from cimlab.errors import InstrumentError
from cimlab.instruments.drivers.visa import block


def test_blocks_match_pyvisa_format():
    values = [1.5, -2.25, 1e-6, 10.0]
    assert block(values, "<f4") == util.to_ieee_block(values, "f", False)
    assert block([1, 2, 70000], "<u4") == util.to_ieee_block([1, 2, 70000], "I", False)
    raw = block(np.arange(3000, dtype="<f4"), "<f4")
    np.testing.assert_array_equal(util.from_ieee_block(raw, "f", False, np.array),
                                  np.arange(3000))


def test_read_block_round_trip_matches_truth(bench, array, clock):
    clock.sleep(1e5)  # aged: relaxation between the read and the truth query is negligible
    array.enable()
    _n_tiles, rows, cols = array.geometry
    cells = np.arange(rows * cols)
    g = array.read(cells)
    assert g.shape == (cells.size,)
    truth = bench.chip.truth.conductance(cells)
    sigma = bench.chip.truth.read_sigma(truth)
    z = (g - truth) / sigma
    # float32 on the wire: relative rounding 6e-8, far below the read noise
    assert abs(z.mean()) < 4 / np.sqrt(z.size)
    assert 0.9 < z.std() < 1.1


def test_pulse_returns_physics_energy_and_moves_conductance(bench, array):
    array.enable()
    cells = np.arange(0, 2000, 7)
    g0 = bench.chip.truth.conductance(cells)
    vg = float(bench.chip.profile.transistor.v_gate_for_icc(50e-6))
    e = array.pulse_set(cells, np.full(cells.size, 1.8), vg, 1e-6)
    assert e.shape == cells.shape and np.all(e >= 0) and e.max() > 0
    g1 = bench.chip.truth.programmed(cells)
    assert np.median(g1 - g0) > 0  # SET raised the conductances
    e = array.pulse_reset(cells, 2.5, 4.0, 1e-6)
    assert np.median(bench.chip.truth.programmed(cells) - g1) < 0


def test_mvm_through_visa_matches_exact_physics(bench, array):
    array.enable()
    _, rows, cols = array.geometry
    v = np.random.default_rng(3).uniform(0, 0.2, (4, rows)).astype(np.float32)
    i = array.mvm(1, v)
    assert i.shape == (4, cols)
    exact = bench.chip.truth.mvm_exact(1, v.astype(float))
    assert np.allclose(i, exact, rtol=0.05, atol=5e-7)


def test_mvm_batch_over_the_message_limit_is_split(bench, array, clock, monkeypatch):
    """A batch whose block would pass the protocol's message limit goes out as several
    messages (one round trip each), and each part is answered by the same physics."""
    from cimlab.instruments.drivers import array_controller
    from cimlab.instruments.emulator import scpi

    assert array_controller.MAX_MESSAGE_BYTES == scpi.MAX_MESSAGE_BYTES  # one protocol limit
    array.enable()
    _, rows, cols = array.geometry
    per_message = 3
    monkeypatch.setattr(array_controller, "MAX_MESSAGE_BYTES",
                        array_controller._MESSAGE_OVERHEAD + per_message * rows * 4)
    v = np.random.default_rng(4).uniform(0, 0.2, (7, rows)).astype(np.float32)
    t0 = clock.now()
    i = array.mvm(1, v)
    assert i.shape == (7, cols)
    t = bench.world.timing
    # three messages (3 + 3 + 1 vectors): three command overheads, one MVM time per vector
    assert clock.now() - t0 == pytest.approx(3 * t.command_s + 7 * t.mvm_s)
    exact = bench.chip.truth.mvm_exact(1, v.astype(float))
    assert np.allclose(i, exact, rtol=0.05, atol=5e-7)


def test_mvm_row_windows_through_visa_match_exact_physics(bench, array, clock, monkeypatch):
    """ARR:MVM:ROWS? (protocol 1.3): each window's currents are the exact physics of the
    full-width vector with 0 V elsewhere; split at the message limit like ARR:MVM?, one MVM
    time per vector; malformed windows are refused with the protocol's errors."""
    from cimlab.instruments.drivers import array_controller

    array.enable()
    _, rows, cols = array.geometry
    rng = np.random.default_rng(6)
    wins = [(0, rng.uniform(0, 0.2, (3, 10))), (64, rng.uniform(0, 0.2, (5, 64))),
            (250, rng.uniform(0, 0.2, (2, 6)))]
    monkeypatch.setattr(array_controller, "MAX_MESSAGE_BYTES",
                        array_controller._MESSAGE_OVERHEAD + 4 * 4 * 64)  # 4 x 64 values
    t0 = clock.now()
    out = array.mvm_windows(1, wins)
    t = bench.world.timing
    assert array.last_round_trips == 2  # (3x10 + 3x64) and (2x64 + 2x6) values
    assert clock.now() - t0 == pytest.approx(array.last_round_trips * t.command_s + 10 * t.mvm_s)
    for (first, v), i in zip(wins, out, strict=True):
        full = np.zeros((v.shape[0], rows))
        full[:, first:first + v.shape[1]] = v.astype(np.float32)
        assert i.shape == (v.shape[0], cols)
        exact = bench.chip.truth.mvm_exact(1, full)
        assert np.allclose(i, exact, rtol=0.05, atol=5e-7)
    for bad, code in [(b"#14" + np.array([250], "<u4").tobytes(), "-220"),      # not 3 values
                      (b"#212" + np.array([250, 10, 1], "<u4").tobytes(), "-222")]:  # past row 255
        array.write_bytes(b"ARR:MVM:ROWS? 0," + bad + b",#14" + b"\x00" * 4 + b"\n")
        assert array.read() == "#10"           # an empty block answers a refused query
        assert array.ask("SYST:ERR?").startswith(code)


def test_timing_is_charged(bench, array, clock):
    array.enable()
    t = bench.world.timing
    t0 = clock.now()
    array.read(np.arange(1000))
    assert clock.now() - t0 == pytest.approx(t.command_s + 1000 * t.cell_read_s)
    t0 = clock.now()
    array.pulse_set(np.arange(10), 1.0, 1.0, 2e-6)
    assert clock.now() - t0 == pytest.approx(t.command_s + 10 * (2e-6 + t.pulse_overhead_s))
    t0 = clock.now()
    array.mvm(0, np.zeros((3, 256)))
    assert clock.now() - t0 == pytest.approx(t.command_s + 3 * t.mvm_s)
    assert array.instrument_time == pytest.approx(clock.busy("array"))


def test_instrument_errors_name_the_command(bench, array):
    with pytest.raises(InstrumentError, match="output is off"):
        array.read([0, 1])  # standby after power-on
    array.enable()
    with pytest.raises(InstrumentError, match=r"ARR:READ\?.*-222"):
        array.read([0, 10**7])
    with pytest.raises(InstrumentError, match="more than once"):
        array.pulse([3, 3], "set", 1.0, 1.0, 1e-6)
    with pytest.raises(InstrumentError, match="-222"):
        array.mvm(7, np.zeros(256))  # no tile 7
    with pytest.raises(InstrumentError, match="-220"):
        array.mvm(0, np.zeros(100))  # not a multiple of 256 rows
    assert array.ask("SYST:ERR?").startswith("0,")


def test_unknown_and_malformed_commands_over_visa(array):
    array.write("ARR:FROB 1")
    assert array.ask("SYST:ERR?").startswith('-113,"Undefined header')
    array.write("ARR:VRE")
    assert array.ask("SYST:ERR?").startswith("-109,")
    array.write("ARR:VRE 0.1,0.2")
    assert array.ask("SYST:ERR?").startswith("-108,")
    array.write("ARR:VRE fast")
    assert array.ask("SYST:ERR?").startswith("-104,")
    array.write_bytes(b"ARR:READ? #0abc\n")
    assert array.read_bytes(4) == b"#10\n"  # a malformed block query still answers a block
    assert array.ask("SYST:ERR?").startswith("-161,")
    assert array.ask("SYST:ERR?") == '0,"No error"'


def test_command_log_records_messages(bench, array):
    array.enable()
    array.read([1, 2, 3])
    log = bench.log("array")
    assert log[-1] == "ARR:READ? #212<12 bytes>"


def test_plain_pyvisa_client_with_its_own_binary_helpers(bench):
    """A lab script using PyVISA alone (write_binary_values / read_binary_values) speaks the
    protocol too: blocks are the standard IEEE 488.2 ones, little endian."""
    import pyvisa

    rm = pyvisa.ResourceManager("@py")
    res = rm.open_resource(bench.addresses["array"], read_termination="\n",
                           write_termination="\n", timeout=5000)
    try:
        assert res.query("*IDN?").startswith("cimlab,")
        res.write("OUTP ON")
        cells = np.arange(0, 4000, 3, dtype=np.uint32)
        res.write_binary_values("ARR:READ? ", cells, datatype="I", is_big_endian=False)
        g = res.read_binary_values(datatype="f", is_big_endian=False, container=np.array)
        assert g.shape == cells.shape and np.all(g > 0)
        assert res.query("SYST:ERR?") == '0,"No error"'
    finally:
        res.close()
        rm.close()


def test_read_at_a_stated_voltage_leaves_the_setting_alone(bench, array):
    array.enable()
    emu = bench.instruments["array"]
    assert array.read(np.arange(8), v_read=0.3).shape == (8,)
    assert emu.v_read == 0.2 and bench.log("array")[-1].endswith(",0.3")
    # a voltage the board cannot apply: the empty block, -222, and nothing is read
    array.write_bytes(b"ARR:READ? " + block([0, 1], "<u4") + b",0\n")
    assert array.read_bytes(4) == b"#10\n"
    assert array.ask("SYST:ERR?").startswith("-222")


def test_compliance_readback_is_the_chips_nominal_transistor(bench, array):
    tr = bench.chip.profile.transistor
    for icc in (20e-6, 700e-6):
        assert array.compliance_gate_voltage(icc) == tr.v_gate_for_icc(icc)  # exact
    assert array.ask("ARR:COMP:GATE? 0;*OPC?") == "1"  # refused (-222), no answer
    assert array.ask("SYST:ERR?").startswith("-222")

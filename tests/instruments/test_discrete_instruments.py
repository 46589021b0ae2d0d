"""The discrete bench's emulated instruments through PyMeasure's drivers, unmodified:
Keithley2750 (switch matrix) and Agilent33500 (pulse generator); and the DiscreteArray
composed from them against the emulated chip's known truth."""

from __future__ import annotations

import numpy as np
import pytest
from pymeasure.instruments.agilent import Agilent33500
from pymeasure.instruments.keithley import Keithley2750

from cimlab.errors import ConfigError, LimitError
from cimlab.instruments.emulator import EmulatedBench
from cimlab.instruments.emulator.switch import CHANNEL_ROW, ROW_GATE, ROW_GND, ROW_SMU
from cimlab.instruments.station import Station
from cimlab.instruments.station_config import resolve_station

#: a raw-socket (``::SOCKET``) VISA resource needs its terminations given, as on hardware
TERM = {"read_termination": "\n", "write_termination": "\n", "timeout": 5000}


@pytest.fixture(scope="module")
def bench():
    with EmulatedBench("default", seed=3) as b:
        yield b


def test_keithley2750_driver_closes_opens_and_lists(bench):
    sw = Keithley2750(bench.addresses["switch"], **TERM)
    try:
        assert "MODEL 2750" in sw.id
        sw.open_all()
        chans = [ROW_GATE * CHANNEL_ROW + 1, ROW_SMU * CHANNEL_ROW + 257,
                 ROW_GND * CHANNEL_ROW + 257 + 64]
        sw.close(",".join(str(c) for c in chans))
        assert sw.closed_channels == sorted(chans)
        # word line 0, bit line 0, source line 0 of tile 0: cell 0 on the SMU path
        assert bench.world.routed_cell == 0
        sw.open(str(chans[1]))
        assert sw.closed_channels == sorted([chans[0], chans[2]])
        assert bench.world.routed_cell is None
        sw.open_all()
        # the manual's answer for no closed channel is "(@)"; PyMeasure passes it through
        assert sw.ask(":ROUT:CLOS?").strip() == "(@)"
    finally:
        sw.adapter.close()


def test_agilent33500_driver_programs_a_burst(bench):
    gen = Agilent33500(bench.addresses["pulse_gen"], **TERM)
    try:
        assert "33522B" in gen.id
        gen.shape = "PULS"
        gen.pulse_period = 4e-6
        gen.pulse_width = 1e-6
        gen.burst_state = True
        gen.burst_ncycles = 3
        gen.trigger_source = "BUS"
        gen.ch_2.shape = "DC"
        gen.ch_2.offset = 1.5
        assert gen.shape == "PULS"
        assert gen.pulse_width == pytest.approx(1e-6)
        assert gen.burst_state is True
        assert gen.burst_ncycles == 3
        assert gen.trigger_source == "BUS"
        assert gen.ch_2.offset == pytest.approx(1.5)
        assert gen.ask("SYST:ERR?").startswith(("+0", "0,"))
    finally:
        gen.adapter.close()


def test_discrete_array_pulses_and_reads_the_routed_cells():
    st = Station.open(resolve_station("emulated-discrete"))
    try:
        chip = st.bench.chip
        a = st.array
        cells = np.arange(100, 116)
        a.pulse(cells, "set", 2.0, st.gate_voltage_for(55e-6), 1e-6)
        g = a.read(cells)
        truth = chip.read(cells, st.bench.world.now_s)
        # strong SET: every cell well above 50 uS, and the SMU read equals the chip's
        # conductance within read noise (a few percent of G at 0.2 V)
        assert np.all(g > 50e-6)
        assert np.allclose(g, truth, rtol=0.1)
        before_other = chip.read(np.arange(200, 216), st.bench.world.now_s)
        a.pulse(cells[:8], "reset", 2.5, 5.0, 1e-6)
        g2 = a.read(cells)
        assert np.all(g2[:8] < 30e-6) and np.all(g2[8:] > 50e-6)
        # cells never routed were never pulsed
        after_other = chip.read(np.arange(200, 216), st.bench.world.now_s)
        assert np.allclose(before_other, after_other, rtol=0.2, atol=1e-6)
        # 2 round trips per cell and op plus per-batch set-up
        assert a.round_trips >= 2 * (3 * 16 + 8)
        with pytest.raises(LimitError):
            a.pulse(cells, "set", 10.0, 1.0, 1e-6)
        with pytest.raises(Exception, match="discrete bench"):
            a.mvm(0, np.zeros(256))
    finally:
        st.close()


def test_resolve_station_by_name_from_anywhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_station("emulated").name == "emulated.toml"
    assert resolve_station("emulated-discrete.toml").name == "emulated-discrete.toml"
    with pytest.raises(ConfigError, match="bundled station name"):
        resolve_station("no-such-bench")


def test_lakeshore3xx_driver_heats_the_chuck(bench):
    from pymeasure.instruments.lakeshore import LakeShore3xx

    ls = LakeShore3xx(bench.addresses["chuck"], **TERM)
    clock = bench.instruments["clock"]
    try:
        assert "MODEL335" in ls.id
        t0 = ls.input_A.kelvin
        assert t0 == pytest.approx(bench.world.ambient_k, abs=1e-3)
        ls.output_1.setpoint = 373.15
        ls.write("RAMP 1,1,30")  # 0.5 K/s
        ls.output_1.range = "high"
        assert ls.output_1.setpoint == pytest.approx(373.15)
        with bench.world.lock:
            bench.world.advance(60.0)  # one minute: +30 K at 30 K/min
        assert ls.input_A.kelvin == pytest.approx(t0 + 30.0, abs=0.01)
        assert ls.input_B.celsius == pytest.approx(t0 + 30.0 - 273.15, abs=0.01)
        assert 0 < ls.output_1.output <= 100
        ls.output_1.range = "off"
        assert ls.output_1.output == 0
        with bench.world.lock:
            bench.world.advance(600.0)
        assert ls.input_A.kelvin == pytest.approx(t0, abs=0.01)  # cooled back to ambient
    finally:
        ls.adapter.close()
        del clock


def test_discrete_station_bakes_on_the_chuck():
    with Station.open("emulated-discrete") as st:
        assert "MODEL335" in st.idn["oven"]
        rec = st.oven.bake(80.0, 600.0, st.clock, poll_s=30.0)
        assert rec.soak_end_s - rec.soak_start_s == pytest.approx(600.0)
        assert st.oven.temperature_c == pytest.approx(25.0, abs=0.5)
        with pytest.raises(LimitError):
            st.oven.setpoint_c = 240.0  # limits.oven_temp_max_c = 200


def test_program_verify_runs_unchanged_on_the_discrete_bench():
    from cimlab.procedures.program_verify import program_verify
    from cimlab.procedures.verify_config import ProgramVerifyConfig

    cfg = ProgramVerifyConfig(tolerance_siemens=1e-6, max_pulses=40)
    cells = np.arange(300, 364)
    with Station.open("emulated-discrete") as st:
        res = program_verify(st.array, cells, 20e-6, cfg, clock=st.clock,
                             rng=np.random.default_rng(5))
        truth = st.bench.chip.read(cells, st.bench.world.now_s)
    ok = np.asarray(res.success, dtype=bool)
    # most cells converge (stuck cells, ~1 %, cannot); the chip's own conductance of the
    # converged cells sits at the target: half of them within the tolerance plus read noise.
    # (Not every one: a discrete bench reads a cell every ~1.2 ms of SMU time, so a cell
    # relaxes for the rest of the batch after its verify read; docs/instruments.md.)
    assert ok.mean() >= 0.9
    assert np.median(np.abs(truth[ok] - 20e-6)) < 1.5e-6


def test_programming_error_verifies_in_small_batches_on_the_discrete_bench(tmp_path):
    """A bench that works cell by cell verifies VERIFY_BATCH_CELLS cells at a time, so a cell's
    read-back follows its last pulse by tens of ms (as on the array controller), not by the
    seconds a 4096-cell batch takes there."""
    from cimlab.instruments.discrete_array import VERIFY_BATCH_CELLS
    from cimlab.procedures.plan import ProgrammingErrorExp
    from cimlab.procedures.plan_levels import LevelSet
    from cimlab.procedures.programming import programming_error
    from cimlab.procedures.verify_config import ProgramVerifyConfig
    from cimlab.store import Store

    exp = ProgrammingErrorExp(modes=("verify",), levels=LevelSet(levels=4),
                              verify=ProgramVerifyConfig(scheme="adaptive", calibration_cells=32),
                              batch=4096)
    cells = np.arange(2048, 2048 + 64, dtype=np.uint32)
    with Station.open(resolve_station("emulated-discrete")) as st, \
            Store.open(tmp_path / "s.h5", "a") as store:
        res = programming_error(st, store, exp, cells, seed=5, progress=False)
        run = store.run(res.run_uid)
        steps = list(run.steps)
        df = run.table("programmed")
    assert len(steps) == cells.size // VERIFY_BATCH_CELLS
    t = df["time_s"].to_numpy()
    t = t[np.isfinite(t)]
    # one 16-cell read takes ~20 ms; a 64-cell batch read would take ~80 ms
    assert np.median(t) < 0.06
    assert df["success"].mean() > 0.85


def test_relaxation_programs_batch_by_batch_on_the_discrete_bench(tmp_path):
    """The program step of relaxation (and of read fluctuation and bakes) also verifies
    VERIFY_BATCH_CELLS cells at a time on a discrete bench; the joined result keeps every
    cell once, in order, with its own pulse time."""
    from cimlab.procedures.plan import RelaxationExp
    from cimlab.procedures.plan_levels import LevelSet
    from cimlab.procedures.retention import relaxation
    from cimlab.procedures.verify_config import ProgramVerifyConfig
    from cimlab.store import Store

    exp = RelaxationExp(levels=LevelSet(levels=4), times_s=(0.01, 1.0),
                        verify=ProgramVerifyConfig(scheme="adaptive", calibration_cells=32))
    cells = np.arange(4096, 4096 + 48, dtype=np.uint32)
    with Station.open(resolve_station("emulated-discrete")) as st, \
            Store.open(tmp_path / "s.h5", "a") as store:
        res = relaxation(st, store, exp, cells, seed=5, progress=False)
        run = store.run(res.run_uid)
        prog = run.table("programmed")
        reads = run.table("reads")
    assert prog["cell"].tolist() == cells.tolist()
    g0_t = prog["time_s"].to_numpy()
    g0_t = g0_t[np.isfinite(g0_t)]
    assert np.median(g0_t) < 0.06          # verify read within tens of ms of the pulse
    assert len(reads) == 2 * cells.size and prog["success"].mean() > 0.85
    pulse_t = prog["pulse_time_s"].to_numpy()
    # batches one after another: later batches were pulsed later
    assert np.nanmedian(pulse_t[-16:]) > np.nanmedian(pulse_t[:16])

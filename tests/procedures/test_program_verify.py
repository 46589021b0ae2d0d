"""Program-verify on the emulated bench, through the real VISA stack."""

from __future__ import annotations

import numpy as np
import pytest

from cimlab.errors import ConfigError
from cimlab.instruments.station import Station
from cimlab.procedures.program_verify import (
    ArrayOps,
    ProgramVerifyConfig,
    format_report,
    measure_pulse_response,
    program_verify,
)
from tests.procedures.bench_util import station_file

TILE = 256 * 64
LEVELS = np.linspace(2e-6, 40e-6, 16)


@pytest.fixture(scope="module")
def station(tmp_path_factory):
    with Station.open(station_file(tmp_path_factory.mktemp("pv"), seed=3)) as st:
        yield st


def _targets(n: int, seed: int = 0) -> np.ndarray:
    return LEVELS[np.random.default_rng(seed).permutation(np.arange(n) % LEVELS.size)]


def test_iteration_is_one_pulse_and_one_read(station):
    """Each verify iteration costs exactly two array round trips: counted on the emulator's
    received commands."""
    cells = np.arange(2 * TILE, 2 * TILE + 512, dtype=np.uint32)
    cfg = ProgramVerifyConfig(scheme="adaptive", n_reads=2)
    ops = ArrayOps(station.array)
    resp = measure_pulse_response(ops, cells[:256], cfg, np.random.default_rng(0))
    log0 = len(station.bench.log("array"))
    res = program_verify(station.array, cells, _targets(cells.size), cfg, response=resp)
    log = station.bench.log("array")[log0:]
    assert res.iterations > 3
    assert len(log) == 2 * res.iterations + 1          # + the initial read
    assert log[0].startswith("ARR:READ?")
    kinds = [m.split()[0] for m in log[1:]]
    assert kinds[0::2] == ["ARR:PULS?"] * res.iterations
    assert kinds[1::2] == ["ARR:READ?"] * res.iterations
    assert res.round_trips == len(log)


def test_ispp_iteration_is_one_pulse_and_one_read(station):
    cells = np.arange(2 * TILE + 512, 2 * TILE + 768, dtype=np.uint32)
    log0 = len(station.bench.log("array"))
    res = program_verify(station.array, cells, _targets(cells.size, 1),
                         ProgramVerifyConfig(scheme="ispp", max_pulses=20))
    assert len(station.bench.log("array")) - log0 == 2 * res.iterations + 1


def test_adaptive_reaches_targets_on_a_reduced_tile(station):
    """4096 cells to 16 levels: >= 99.8 % of the working cells within +-1 uS at the verify
    read, mean pulses per cell < 8; stuck cells found are truly stuck."""
    cells = np.arange(3 * TILE, 3 * TILE + 4096, dtype=np.uint32)
    target = _targets(cells.size, 2)
    res = program_verify(station.array, cells, target, ProgramVerifyConfig(),
                         clock=station.clock, rng=np.random.default_rng(1), final_read=True)
    s = res.summary()
    truth = station.bench.chip.truth.fault_codes()[cells]
    working = truth == 0
    assert res.success[working].mean() >= 0.998, s
    assert res.pulses[working].mean() < 8.0, s
    assert np.all(np.abs(res.g_verify_siemens - target)[res.success] <= 1e-6)
    # stuck detection: flagged cells are stuck in truth; no working cell is flagged
    assert np.mean(truth[res.stuck] != 0) > 0.95
    assert res.stuck.sum() >= 0.8 * (truth != 0).sum()
    assert s["energy_per_cell_j"] > 0 and s["instrument_time_s"] > 0
    assert "pulses/cell mean" in format_report([res])


def test_adaptive_needs_fewer_pulses_than_ispp(station):
    cells_a = np.arange(4 * TILE, 4 * TILE + 2048, dtype=np.uint32)
    cells_i = cells_a + 2048
    t = _targets(cells_a.size, 3)
    a = program_verify(station.array, cells_a, t, ProgramVerifyConfig(scheme="adaptive"))
    i = program_verify(station.array, cells_i, t, ProgramVerifyConfig(scheme="ispp"))
    assert a.pulses.mean() < i.pulses.mean()
    assert a.success.mean() > i.success.mean()


def test_config_is_validated():
    with pytest.raises(ConfigError):
        ProgramVerifyConfig(tolerance_siemens=-1e-6)
    with pytest.raises(ConfigError):
        ProgramVerifyConfig(scheme="magic")
    with pytest.raises(ConfigError):
        ProgramVerifyConfig(v_set_start=2.0, v_set_max=1.0)


def test_cli_program_verify_prints_the_report(tmp_path, capsys):
    import json

    from cimlab.cli.main import main

    st = station_file(tmp_path, seed=4)
    assert main(["program-verify", "--station", str(st), "--tile", "2", "--levels", "8",
                 "--scheme", "adaptive", "--scheme", "single-shot", "--quiet",
                 "--out", str(tmp_path / "pv")]) == 0
    out = capsys.readouterr().out
    assert "pulses/cell mean" in out and "single_shot" in out
    saved = json.loads((tmp_path / "pv" / "tile2-seed0.json").read_text())  # results kept
    figures = {d["scheme"]: d for d in saved["results"]}
    assert figures["adaptive"]["cells"] == TILE
    assert figures["adaptive"]["success_rate_responsive"] > 0.995
    assert figures["single_shot"]["success_rate"] < figures["adaptive"]["success_rate"]
    with pytest.raises(SystemExit):
        main(["program-verify", "--scheme", "magic"])


def test_small_calibration_set_gives_a_finite_pulse_response(tmp_path):
    """32 calibration cells leave some partial-SET amplitudes and RESET floors unmeasured; the
    response falls back to stated defaults instead of carrying NaN into every prediction
    (before: NaN SET spread and RESET floors, with All-NaN RuntimeWarnings)."""
    import warnings

    from cimlab.instruments.station import Station
    from cimlab.procedures.array_ops import ArrayOps
    from cimlab.procedures.pulse_response import measure_pulse_response
    from cimlab.procedures.verify_config import ProgramVerifyConfig
    from tests.procedures.bench_util import station_file

    cfg = ProgramVerifyConfig(scheme="adaptive", calibration_cells=32, calibration_rounds=1)
    with Station.open(station_file(tmp_path, seed=11)) as st, warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        resp = measure_pulse_response(ArrayOps(st.array), np.arange(32, dtype=np.uint32), cfg,
                                      np.random.default_rng(11))
    assert np.isfinite(resp.set_rel_sd) and np.isfinite(resp.reset_rel_sd)
    assert np.all(np.isfinite(resp.reset_floor_siemens)) and np.all(resp.reset_floor_siemens > 0)

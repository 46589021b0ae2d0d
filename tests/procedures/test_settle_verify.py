"""Monitored settle and the delayed within-tolerance metric, against the emulator's truth."""

from __future__ import annotations

import numpy as np
import pytest

from cimlab.errors import ConfigError
from cimlab.instruments.station import Station
from cimlab.procedures.array_ops import ArrayOps
from cimlab.procedures.delayed_tolerance import delay_key, within_tolerance_at
from cimlab.procedures.program_verify import (
    ProgramVerifyConfig,
    measure_pulse_response,
    program_verify,
)
from cimlab.procedures.settle_verify import (
    SettleConfig,
    arrhenius_factor,
    bake_equivalent_s,
    program_settle_verify,
    ramp_equivalent_s,
)
from tests.procedures.bench_util import station_file

TILE = 256 * 64
LEVELS = np.linspace(2e-6, 40e-6, 16)
N = 16 * 64                                   # a 16 x 64 block of a tile


def _targets(n: int, seed: int = 0) -> np.ndarray:
    return LEVELS[np.random.default_rng(seed).permutation(np.arange(n) % LEVELS.size)]


def _binomial_margin(p: float, n: int, z: float = 4.0) -> float:
    return z * np.sqrt(max(p * (1 - p), 0.01) / n)


@pytest.fixture()
def station(tmp_path):
    with Station.open(station_file(tmp_path, seed=3)) as st:
        yield st


def _truth(st):
    return lambda c: st.bench.chip.truth.conductance(c, st.clock.now())


def test_settle_config_validates_and_waits_sum():
    w = SettleConfig(schedule="geometric", rounds=5, first_wait_s=2.0,
                     total_wait_s=1000.0).waits_s()
    assert w[0] == pytest.approx(2.0) and w.sum() == pytest.approx(1000.0, rel=1e-6)
    assert np.all(np.diff(w) > 0)
    # densest near the end: the time left shrinks 2x from check to check down to 10 s
    end = SettleConfig(check_ratio=2.0, last_gap_s=10.0, total_wait_s=1000.0)
    w = end.waits_s()
    left = 1000.0 - np.cumsum(w)
    assert w.sum() == pytest.approx(1000.0, rel=1e-9)
    np.testing.assert_allclose(left[:-1], 1000.0 / 2.0 ** np.arange(1, 7))
    assert left[-2] >= 10.0 and left[-1] == pytest.approx(0.0, abs=1e-9)
    assert SettleConfig(total_wait_s=0.5).waits_s().tolist() == [0.5]
    with pytest.raises(ConfigError):
        SettleConfig(schedule="geometric", first_wait_s=10.0, total_wait_s=5.0)
    with pytest.raises(ConfigError):
        SettleConfig(bake_temp_c=20.0)
    # 150 C with Ea 1.1 eV: ~3e5 x (docs/physics.md)
    assert 1e5 < SettleConfig(bake_temp_c=150.0).acceleration() < 1e6


def test_delayed_metric_matches_truth_and_relaxation_lowers_it(station):
    """The instrument-read fractions agree with the truth's within the binomial error of the
    sample plus read noise; the fraction falls with the delay after a plain verify loop (the
    verify read is a stopping rule, not what the cells hold)."""
    cells = np.arange(3 * TILE, 3 * TILE + N, dtype=np.uint32)
    tgt = _targets(N)
    ops = ArrayOps(station.array)
    res = program_verify(ops, cells, tgt, ProgramVerifyConfig(), clock=station.clock)
    dt = within_tolerance_at(ops, station.clock, cells, tgt, 1e-6, truth=_truth(station))
    assert list(dt.measured) == ["0", "1", "60", "3600", "86400"]
    for k in dt.measured:
        assert abs(dt.measured[k] - dt.truth[k]) < _binomial_margin(dt.truth[k], N)
    assert res.success.mean() > 0.98
    # relaxation: far fewer cells in tolerance a minute later than at the verify read
    assert dt.truth["60"] < res.success.mean() - 0.4
    assert dt.truth["60"] < dt.truth["0"] - _binomial_margin(0.5, N)
    with pytest.raises(ValueError, match="already past"):
        within_tolerance_at(ops, station.clock, cells, tgt, 1e-6,
                            finished_at_s=station.clock.now() - 100.0, delays_s=(1.0,))
    assert delay_key(3600.0) == "3600"


def test_settle_beats_plain_verify_and_counts_every_pulse(station):
    """On the same chip (neighbouring blocks, same levels), the monitored settle holds more
    cells within +-1 uS a minute and an hour after the tile is finished than the plain
    adaptive loop (truth), with every pulse counted and the waiting time reported."""
    cfg = ProgramVerifyConfig()
    tgt = _targets(N)
    a_cells = np.arange(4 * TILE, 4 * TILE + N, dtype=np.uint32)
    s_cells = np.arange(5 * TILE, 5 * TILE + N, dtype=np.uint32)
    ops = ArrayOps(station.array)
    resp = measure_pulse_response(ops, a_cells[:256], cfg, np.random.default_rng(0))
    program_verify(ops, a_cells, tgt, cfg, clock=station.clock, response=resp)
    base = within_tolerance_at(ops, station.clock, a_cells, tgt, 1e-6, n_reads=4,
                               delays_s=(60.0, 3600.0), truth=_truth(station)).truth
    sops = ArrayOps(station.array)
    sc = SettleConfig(rounds=4, total_wait_s=3600.0 * 6)
    res = program_settle_verify(sops, s_cells, tgt, cfg, sc, clock=station.clock)
    assert sops.pulses_sent == res.pulses.sum() + res.calibration_pulses
    assert res.calibration_pulses > 0
    assert res.wait_time_s == pytest.approx(sc.total_wait_s, rel=1e-6)
    assert res.instrument_time_s >= res.wait_time_s
    assert res.pulses[res.redo_rounds > 0].max() <= sc.pulse_budget
    held = within_tolerance_at(sops, station.clock, s_cells, tgt, 1e-6, n_reads=4,
                               finished_at_s=res.finished_at_s, delays_s=(60.0, 3600.0),
                               truth=_truth(station)).truth
    for k in ("60", "3600"):
        assert held[k] > base[k] + 2 * _binomial_margin(0.4, N, z=2.0)


def test_one_pulse_corrections_do_not_plan_a_deep_reset(station):
    """With one pulse left, the loop never spends it on a deep RESET (which only makes sense
    with a SET after it): relaxed cells corrected with a single pulse rarely land far low."""
    cells = np.arange(6 * TILE, 6 * TILE + N, dtype=np.uint32)
    tgt = _targets(N, 1)
    cfg = ProgramVerifyConfig()
    ops = ArrayOps(station.array)
    resp = measure_pulse_response(ops, cells[:256], cfg, np.random.default_rng(0))
    program_verify(ops, cells, tgt, cfg, response=resp)
    station.clock.sleep(3600.0)
    one = ProgramVerifyConfig(max_pulses=1)
    res = program_verify(ops, cells, tgt, one, response=resp, require_pulse=True)
    assert np.all(res.pulses == 1)               # require_pulse: every cell restarted
    low = np.mean(res.g_verify_siemens - tgt < -5e-6)
    assert low < 0.05, low


def test_settle_follows_a_differently_shaped_pulse_response(tmp_path):
    """On the 'shaped' profile (power-law instead of exponential switching drive) the adaptive
    loop, whose pulse response is measured, still verifies, and the monitored settle still
    holds more cells within +-1 uS an hour after the tile is finished than the plain loop."""
    path = station_file(tmp_path, seed=5)
    path.write_text(path.read_text().replace('profile = "default"', 'profile = "shaped"'))
    cfg = ProgramVerifyConfig()
    tgt = _targets(N, 2)
    with Station.open(path) as st:
        assert st.bench.chip.profile.set.drive_power == 3.0
        a_cells = np.arange(4 * TILE, 4 * TILE + N, dtype=np.uint32)
        s_cells = np.arange(5 * TILE, 5 * TILE + N, dtype=np.uint32)
        ops = ArrayOps(st.array)
        res = program_verify(ops, a_cells, tgt, cfg, clock=st.clock)
        assert res.success.mean() > 0.97
        base = within_tolerance_at(ops, st.clock, a_cells, tgt, 1e-6, n_reads=4,
                                   delays_s=(3600.0,), truth=_truth(st)).truth
        sres = program_settle_verify(ArrayOps(st.array), s_cells, tgt, cfg,
                                     SettleConfig(rounds=4, total_wait_s=3600.0 * 6),
                                     clock=st.clock)
        held = within_tolerance_at(ops, st.clock, s_cells, tgt, 1e-6, n_reads=4,
                                   finished_at_s=sres.finished_at_s, delays_s=(3600.0,),
                                   truth=_truth(st)).truth
    assert held["3600"] > base["3600"] + 2 * _binomial_margin(0.4, N, z=2.0)


def test_bake_equivalent_time_counts_the_ramps(station):
    """The room-temperature-equivalent time of a bake through the oven (ramps, soak,
    cool-down) agrees with the emulator's Arrhenius clock; the ramps, not the soak, dominate
    at 150 C (the first version counted the soak only: ~18x too little for 30 s)."""
    chip = station.bench.chip
    ea, room = chip.profile.retention.ea_ev, 25.0
    chip.truth.conductance(np.arange(1, dtype=np.uint32), station.clock.now())
    e0 = chip.equivalent_time_s
    ambient = float(station.oven.temperature_c)
    rec = station.oven.bake(150.0, 30.0, station.clock)
    chip.truth.conductance(np.arange(1, dtype=np.uint32), station.clock.now())
    truth = chip.equivalent_time_s - e0
    got = bake_equivalent_s(rec, 150.0, ambient, ea, room)
    assert got == pytest.approx(truth, rel=0.05)
    soak_only = 30.0 * SettleConfig(bake_temp_c=150.0, ea_ev=ea).acceleration()
    assert truth > 10 * soak_only


def test_mean_pulse_budget_caps_the_tile(station):
    """With a mean budget, every pulse of the tile (calibration sweep, first verify and
    re-pulses) stays within it."""
    cells = np.arange(7 * TILE, 7 * TILE + N, dtype=np.uint32)
    tgt = _targets(N, 3)
    cfg = ProgramVerifyConfig()
    resp = measure_pulse_response(ArrayOps(station.array), cells[:256], cfg,
                                  np.random.default_rng(0))
    ops = ArrayOps(station.array)
    sc = SettleConfig(total_wait_s=3600.0 * 6, mean_pulse_budget=7.0)
    res = program_settle_verify(ops, cells, tgt, cfg, sc, clock=station.clock, response=resp)
    assert res.calibration_pulses == 0 and ops.pulses_sent == res.pulses.sum()
    assert 6.5 <= ops.pulses_sent / N <= 7.0       # the cap binds, and holds
    assert res.redo_rounds.sum() > 0


def test_bake_plan_gives_each_wait_by_its_ramps_and_soak():
    """A tempered bake's ramps + soak give exactly the wait asked for, as cool as the wait
    allows (hotter for longer waits, never above bake_temp_c); short waits stay at room
    temperature, and a wait beyond the hottest bake's ramps soaks longer at bake_temp_c."""
    sc = SettleConfig(total_wait_s=1e8, bake_temp_c=150.0, bake_soak_s=60.0,
                      room_wait_max_s=3600.0)
    amb, rate = 25.0, 0.5
    assert sc.bake_plan(3600.0, amb, rate) is None
    temps = []
    for w in (1e4, 1e5, 1e6, 1e7, 1e8, 1e10):
        plan = sc.bake_plan(w, amb, rate)
        assert plan is not None
        temp, soak = plan
        eq = (ramp_equivalent_s(temp, amb, rate, sc.ea_ev, sc.room_c)
              + soak * arrhenius_factor(temp, sc.ea_ev, sc.room_c))
        assert eq == pytest.approx(w, rel=1e-6)
        assert amb < temp <= 150.0 and soak >= 60.0
        temps.append(temp)
    assert np.all(np.diff(temps) >= 0) and temps[-1] == 150.0 and temps[0] < 90.0
    assert sc.bake_plan(1e10, amb, rate)[1] > 60.0          # hottest bake, longer soak
    with pytest.raises(ConfigError):
        SettleConfig(bake_temp_c=20.0, bake_soak_s=60.0)
    with pytest.raises(ConfigError, match="bake_soak_s"):
        SettleConfig(bake_soak_s=60.0)                      # tempered bakes need an oven


def test_tempered_bake_settle_ages_as_planned_and_holds_after_use(station):
    """The tempered-bake settle reaches its room-temperature-equivalent settle (the emulator's
    Arrhenius clock agrees within 5 %) in a small fraction of the clock time, and the cells it
    keeps barely move in the hour after the tile is finished (their log-time is past ~10
    decades), unlike a one-day room-temperature settle's last re-pulses."""
    chip = station.bench.chip
    cells = np.arange(9 * TILE, 9 * TILE + N, dtype=np.uint32)
    tgt = _targets(N, 5)
    working = chip.truth.fault_codes()[cells] == 0
    cfg = ProgramVerifyConfig(calibration_cells=256)
    sc = SettleConfig(total_wait_s=1e7, bake_temp_c=150.0, bake_soak_s=60.0,
                      room_wait_max_s=3600.0, bake_ramp_k_per_s=0.5, first_max_pulses=3,
                      redo_factor=0.4, ea_ev=chip.profile.retention.ea_ev)
    ops = ArrayOps(station.array)
    chip.truth.conductance(cells[:1], station.clock.now())
    e0, t0 = chip.equivalent_time_s, station.clock.now()
    res = program_settle_verify(ops, cells, tgt, cfg, sc, clock=station.clock,
                                oven=station.oven, rng=np.random.default_rng(1))
    chip.truth.conductance(cells[:1], res.finished_at_s)
    eq_truth = chip.equivalent_time_s - e0
    assert res.equivalent_wait_s == pytest.approx(1e7, rel=0.02)
    assert eq_truth == pytest.approx(res.equivalent_wait_s, rel=0.05)
    assert res.wait_time_s < 1e7 / 500 and res.finished_at_s - t0 >= res.wait_time_s
    assert float(station.oven.temperature_c) == pytest.approx(25.0, abs=0.6)
    dt = within_tolerance_at(ops, station.clock, cells, tgt, cfg.tolerance_siemens,
                             finished_at_s=res.finished_at_s, delays_s=(60.0, 3600.0),
                             mask=working, truth=_truth(station))
    at60, at1h = dt.truth[delay_key(60.0)], dt.truth[delay_key(3600.0)]
    n = int(working.sum())
    # plain adaptive verify holds ~30 % at 60 s on this profile (benchmark); the settle >> that
    assert at60 > 0.6
    assert at60 - at1h < 0.05 + _binomial_margin(0.05, n)

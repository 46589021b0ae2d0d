"""Arrhenius acceleration measured from equivalent-time relaxation statistics."""

import math

import numpy as np
import pytest

from cimlab.physics import ReRAMChip
from cimlab.physics.profile import K_B_EV
from cimlab.units import KELVIN_OFFSET
from tests.physics.conftest import small_profile, z_crit


def _measure_acceleration(temp_k: float, dt_s: float, seed: int) -> tuple[float, float, float]:
    """Program, bake dt_s at temp_k, read; invert the relaxation statistics for the
    equivalent time. Returns (acceleration, lo, hi) with a CI from the sample size."""
    chip = ReRAMChip(small_profile(4), seed=seed)
    p = chip.profile
    rel = p.relaxation
    cells = np.flatnonzero(chip.truth.stuck_mask() == 0)
    rng = np.random.default_rng(seed)
    targets = rng.uniform(8e-6, 30e-6, cells.size)
    chip.pulse(cells, "reset", 3.0, 3.0, 1e-6, 1e-6)
    chip.pulse(cells, "set", 2.0, p.transistor.v_gate_for_icc(targets * p.set.v_c), 1e-6, 2e-6)
    g0 = chip.truth.programmed(cells)
    chip.advance(dt_s, temp_k)
    g = chip.read(cells, chip.time_s)
    d2 = (g - g0) ** 2
    v, m, r2 = rel.var_rate(g0), rel.mean_rate(g0), p.read.sigma(g0) ** 2
    # mean(d2) = L mean(v) + L^2 mean(m^2) + mean(r2)
    a, b = np.mean(m**2), np.mean(v)
    se = d2.std() / math.sqrt(d2.size)

    def l_of(s):
        c = np.mean(r2) - s
        return (-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)

    def t_eq(L):
        return rel.tau_s * (10.0**L - 1.0)

    s = d2.mean()
    k = z_crit()
    acc = t_eq(l_of(s)) / dt_s
    return acc, t_eq(l_of(s - k * se)) / dt_s, t_eq(l_of(s + k * se)) / dt_s


def test_acceleration_between_two_bake_temperatures():
    chip = ReRAMChip(small_profile(1), seed=1)
    t1, t2 = KELVIN_OFFSET + 150.0, KELVIN_OFFSET + 100.0
    # bake times chosen so both give ~100 s of room-temperature equivalent relaxation
    dt1 = 100.0 / chip.truth.acceleration(t1)
    dt2 = 100.0 / chip.truth.acceleration(t2)
    a1, lo1, hi1 = _measure_acceleration(t1, dt1, seed=21)
    a2, lo2, hi2 = _measure_acceleration(t2, dt2, seed=22)
    assert lo1 <= chip.truth.acceleration(t1) <= hi1
    assert lo2 <= chip.truth.acceleration(t2) <= hi2
    ratio_true = math.exp(chip.profile.retention.ea_ev / K_B_EV * (1 / t2 - 1 / t1))
    assert lo1 / hi2 <= ratio_true <= hi1 / lo2
    assert a1 / a2 == pytest.approx(ratio_true, rel=0.5)
    # the measurement is informative: its CI excludes a wrong activation energy
    wrong = math.exp((chip.profile.retention.ea_ev - 0.3) / K_B_EV * (1 / t2 - 1 / t1))
    assert not (lo1 / hi2 <= wrong <= hi1 / lo2)


def test_equivalent_time_integrates_thermal_history():
    chip = ReRAMChip(small_profile(1), seed=1)
    t = chip.truth
    assert t.acceleration(chip.profile.window.t_room_k) == pytest.approx(1.0)
    assert 1e5 < t.acceleration(423.15) < 1e7  # 150 C with Ea = 1.1 eV: ~3e5
    chip.advance(10.0, 423.15)
    chip.advance(5.0, 298.15)
    chip.read(np.arange(4), chip.time_s + 5.0)  # gap passes at ambient (room)
    expected = 10.0 * t.acceleration(423.15) + 10.0 * t.acceleration(298.15)
    assert chip.equivalent_time_s == pytest.approx(expected)
    assert chip.time_s == pytest.approx(20.0)
    chip.ambient_k = 358.15
    chip.read(np.arange(4), chip.time_s + 1.0)
    assert chip.equivalent_time_s == pytest.approx(expected + t.acceleration(358.15))
    with pytest.raises(ValueError, match="backwards"):
        chip.read(np.arange(4), 1.0)
    with pytest.raises(ValueError):
        chip.advance(-1.0, 300.0)
    with pytest.raises(ValueError):
        chip.advance(1.0, -5.0)


def test_recent_times_stay_precise_after_a_long_bake():
    """After ~1e13 s of equivalent time, a read 1 us after a pulse still sees 1 us of
    relaxation (per-cell times are kept relative to a moving epoch)."""
    chip = ReRAMChip(small_profile(1), seed=2)
    cells = np.flatnonzero(chip.truth.stuck_mask() == 0)[:4000]
    chip.advance(1000 * 3600.0, KELVIN_OFFSET + 175.0)
    assert chip.equivalent_time_s > 1e12
    t = chip.time_s + 1.0
    chip.pulse(cells, "set", 2.0, 1.0, 1e-6, t)
    g0 = chip.truth.programmed(cells)
    g = chip.truth.conductance(cells, t + 1e-6)
    # relaxation sigma after 1 us is ~0.014 uS at most (L(1e-6) ~ 1e-4 decade)
    assert np.max(np.abs(g - g0)) < 0.1e-6
    assert chip.truth.programmed_time(cells)[0] == pytest.approx(chip.equivalent_time_s - 1e-6,
                                                                  rel=1e-12)

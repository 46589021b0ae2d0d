"""1/f read noise (cimlab.physics.read_noise): the Lorentzian bank's spectrum, its statistics in
reads of the emulated chip, averaging that stops paying off, state round trip."""

from dataclasses import replace

import numpy as np
from scipy.stats import chi2

from cimlab.physics import ReRAMChip, load_profile
from cimlab.physics import read_noise as flicker
from cimlab.physics.profile import Geometry
from tests.physics.conftest import ALPHA, var_ratio_ci, z_crit


def _techa(n_tiles=1, rows=64, cols=64):
    return replace(load_profile("techa"), geometry=Geometry(n_tiles=n_tiles, rows=rows, cols=cols))


def test_bank_spectrum_follows_power_law():
    rn = load_profile("techa").read
    g = rn.flicker_g_peak
    f = np.logspace(np.log10(rn.flicker_f_lo_hz) + 1, np.log10(rn.flicker_f_hi_hz) - 1, 200)
    nominal = rn.flicker_amplitude(g) * f ** -rn.flicker_alpha
    realised = flicker.lorentzian_psd(rn, g, f)
    # one Lorentzian per decade: ripple within 15 % inside the band
    assert np.all(np.abs(realised / nominal - 1.0) < 0.15)
    # and the fitted exponent of the realised spectrum is alpha
    slope = np.polyfit(np.log(f), np.log(realised), 1)[0]
    assert abs(-slope - rn.flicker_alpha) < 0.02


def _program(chip, level_s, n):
    p = chip.profile
    cells = np.flatnonzero(chip.truth.stuck_mask() == 0)[:n]
    chip.pulse(cells, "reset", 3.0, 3.0, 1e-6, 1e-6)
    chip.pulse(cells, "set", 2.0, p.transistor.v_gate_for_icc(level_s * p.set.v_c), 1e-6, 2e-6)
    # let relaxation settle (1e6 s): over the reads below it moves < 2 % of the read noise
    chip.advance(1e6, p.window.t_room_k)
    return cells


def test_read_variance_is_white_plus_flicker():
    chip = ReRAMChip(_techa(), seed=7)
    rn = chip.profile.read
    cells = _program(chip, rn.flicker_g_peak, 4000)
    now = chip.time_s + 1e-3
    g = chip.truth.conductance(cells, now)
    r = chip.read(cells, now)
    var = chip.truth.read_sigma(g) ** 2 + chip.truth.flicker_sigma(g) ** 2
    z = (r - g) / np.sqrt(var)
    lo, hi = var_ratio_ci(z.size)
    assert lo <= z.var() <= hi
    assert abs(z.mean()) <= z_crit() / np.sqrt(z.size)
    # the flicker part is the larger one at the peak level (techA: ~2 uS vs ~0.2 uS)
    assert np.median(chip.truth.flicker_sigma(g)) > 3 * np.median(chip.truth.read_sigma(g))


def _mean_var_theory(rn, g, n, dt):
    """Variance [S^2] of the mean of n reads dt apart: white / n + OU bank exactly."""
    tau = 1.0 / (2 * np.pi * flicker.corner_frequencies(rn))
    v = flicker.component_variances(rn, np.array([g]))[0]
    j = np.arange(1, n)
    out = float(rn.sigma(g)) ** 2 / n
    for vk, tk in zip(v, tau, strict=True):
        r = np.exp(-dt / tk)
        out += vk * (1.0 / n + 2.0 / n**2 * np.sum((n - j) * r**j))
    return out


def test_averaging_does_not_shrink_as_one_over_sqrt_n():
    chip = ReRAMChip(_techa(), seed=11)
    rn = chip.profile.read
    g0 = rn.flicker_g_peak
    cells = _program(chip, g0, 2000)
    n, dt = 64, 2.5e-3
    t0 = chip.time_s + 1e-3
    reads = np.stack([chip.read(cells, t0 + i * dt) for i in range(n)])
    g = chip.truth.conductance(cells, t0 + n * dt)
    err = reads.mean(axis=0) - g
    # per-cell expected variance (cells differ in g)
    expect = np.array([_mean_var_theory(rn, gi, n, dt) for gi in g])
    # sum of n independent chi2_1 (one per cell): chi2 with n degrees of freedom
    q = np.sum(err**2 / expect)
    assert chi2.ppf(ALPHA / 2, cells.size) <= q <= chi2.ppf(1 - ALPHA / 2, cells.size)
    white_only = np.mean(chip.truth.read_sigma(g) ** 2 + chip.truth.flicker_sigma(g) ** 2) / n
    assert np.mean(err**2) > 10 * white_only


def test_repeats_in_one_read_share_the_flicker_value():
    chip = ReRAMChip(_techa(), seed=3)
    cells = _program(chip, 100e-6, 10)
    now = chip.time_s + 1e-3
    c = int(cells[0])
    r = chip.read(np.full(400, c), now)
    g = chip.truth.conductance([c], now)[0]
    s_w = float(chip.truth.read_sigma(g))
    lo, hi = var_ratio_ci(r.size)
    # only the white part varies between repeats at one instant
    assert lo <= r.var(ddof=1) / s_w**2 <= hi


def test_state_round_trip_with_flicker(tmp_path):
    chip = ReRAMChip(_techa(), seed=5)
    cells = _program(chip, 150e-6, 100)
    chip.read(cells, chip.time_s + 1e-3)
    path = chip.save(tmp_path / "chip.npz")
    other = ReRAMChip.load(path)
    t = chip.time_s + 0.5
    np.testing.assert_array_equal(chip.read(cells, t), other.read(cells, t))


def test_default_profile_has_no_flicker_state():
    chip = ReRAMChip(replace(load_profile("default"), geometry=Geometry(1, 16, 16)), seed=1)
    chip.read(np.arange(10), 1.0)
    assert "flicker.z" not in chip.state_dict()


def test_mvm_carries_the_cells_flicker_at_that_instant():
    """MVM on a 1/f profile: the column currents carry each cell's 1/f value (the state reads
    advance), common to every vector of the batch and to a second MVM at the same instant;
    only the white part differs between them."""
    chip = ReRAMChip(_techa(), seed=13)
    rn = chip.profile.read
    _program(chip, rn.flicker_g_peak, 64 * 64)
    now = chip.time_s + 1e-3
    v_read = 0.2
    v = v_read * np.eye(chip.rows)            # one row per vector: I[r, c] = v (G + F) + white
    a = chip.mvm(0, v, now, ir_drop=False) / v_read
    b = chip.mvm(0, v, now, ir_drop=False) / v_read
    cells = np.arange(chip.rows * chip.cols)
    ok = (chip.truth.stuck_mask()[cells] == 0).reshape(chip.rows, chip.cols)
    g1 = chip.truth.conductance(cells, now)
    shape = (chip.rows, chip.cols)
    g = g1.reshape(shape)
    white = (chip.truth.read_sigma(g1) ** 2).reshape(shape)
    total = white + (chip.truth.flicker_sigma(g1) ** 2).reshape(shape)
    lo, hi = var_ratio_ci(int(ok.sum()))
    z = ((a - g) / np.sqrt(total))[ok]
    assert lo <= z.var() <= hi
    # the second MVM at the same instant differs by the white part only
    d = ((a - b) / np.sqrt(2 * white))[ok]
    assert lo <= d.var() <= hi
    # and the 1/f part is there: white alone would give var(z) ~ white / total << 1
    assert np.median(white / total) < 0.1


def test_mvm_without_flicker_draws_no_flicker_state():
    chip = ReRAMChip(replace(load_profile("default"), geometry=Geometry(1, 16, 16)), seed=1)
    chip.mvm(0, np.full(16, 0.1), 1.0)
    assert "flicker.z" not in chip.state_dict()

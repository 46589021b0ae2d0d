"""Fitters on synthetic tidy tables drawn from known distributions (fixed seeds).

Tolerances come from the fits' own standard errors (95 % CIs) unless stated.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from cimlab.models import DeviceModel
from cimlab.models.extrapolate import extrapolate_retention
from cimlab.models.fit import fit_binary, fit_programming, fit_stuck, fit_tables, tables_from_frames
from cimlab.models.fit.store import hash_tables
from cimlab.models.uncertainty import band

G_REF = 40e-6


def _programmed(rng, sigma_fn, n_per=1500, outliers=0.0):
    targets = np.linspace(4e-6, 40e-6, 10)
    level = np.repeat(np.arange(10), n_per)
    tg = targets[level]
    g = tg + sigma_fn(tg) * rng.standard_normal(tg.size)
    n_out = int(outliers * tg.size)
    if n_out:  # gross outliers: mis-reads far outside the window (150 uS, -50 uS)
        idx = rng.choice(tg.size, n_out, replace=False)
        g[idx] = rng.choice([150e-6, -50e-6], n_out)
    return pd.DataFrame({"cell": np.arange(tg.size), "level": level, "target_siemens": tg,
                         "g_siemens": g, "mode": "single_shot", "time_s": 1e-3})


@pytest.mark.parametrize(("form", "fn"), [
    ("constant", lambda g: np.full_like(g, 2.0e-6)),
    ("proportional", lambda g: 0.08 * g),
    ("linear", lambda g: 0.5e-6 + 0.05 * g),
])
def test_programming_form_selection_and_coverage(form, fn):
    rng = np.random.default_rng(11)
    (pe,) = fit_programming(_programmed(rng, fn, outliers=0.01), G_REF)
    assert pe.form == form, pe.fit.candidates
    g = np.linspace(4e-6, 40e-6, 10)
    y, se, _ = band(pe, "sigma", g)
    truth = fn(g)
    # the whole fitted curve covers the truth within 3 standard errors (10 points)
    assert np.all(np.abs(y - truth) <= 3 * se + 1e-12), np.c_[g, y, truth, se]
    assert pe.fit.gof["n_trimmed"] >= 0.01 * 15000  # the outliers were trimmed


def test_stuck_fractions_cover_truth():
    rng = np.random.default_rng(5)
    n = 200_000
    u = rng.random(n)
    state = np.where(u < 0.00838, "stuck_on", np.where(u < 0.01, "stuck_off", "ok"))
    faults = pd.DataFrame({"cell": np.arange(n), "state": state,
                           "g_after_set_siemens": np.where(state == "stuck_off", 3e-7, 5e-5),
                           "g_after_reset_siemens": np.where(state == "stuck_on", 6e-5, 2e-6)})
    s = fit_stuck(faults)
    for name, truth in (("p_stuck_on", 0.00838), ("p_stuck_off", 0.00162)):
        lo, hi = s.fit.ci95[name]
        assert lo <= truth <= hi
    assert s.g_on_siemens == pytest.approx(6e-5) and s.g_off_siemens == pytest.approx(3e-7)


def test_binary_lognormals_and_ber():
    rng = np.random.default_rng(9)
    n = 20000
    bit = rng.integers(0, 2, n)
    mu_l, s_l, mu_h, s_h = math.log(1e-4), 0.2, math.log(1e-5), 0.6
    g = np.where(bit == 0, np.exp(mu_l + s_l * rng.standard_normal(n)),
                 np.exp(mu_h + s_h * rng.standard_normal(n)))
    thr = math.sqrt(1e-4 * 1e-5)
    bits = pd.DataFrame({"condition": "strong", "structure": "1T1R", "cycle": 0,
                         "cell": np.arange(n), "bit": bit, "read_bit": (g < thr).astype(int),
                         "g_siemens": g, "cell_b": -1, "g_b_siemens": np.nan})
    conds = pd.DataFrame({"condition": ["strong"], "icc_a": [55e-6], "v_reset": [2.5],
                          "width_s": [1e-7], "energy_per_bit_j": [12e-12], "g_ref_siemens": [thr]})
    (c,) = fit_binary(bits, conds).conditions
    for name, truth in (("lrs_median_siemens", 1e-4), ("hrs_median_siemens", 1e-5),
                        ("lrs_sigma_ln", s_l), ("hrs_sigma_ln", s_h)):
        lo, hi = c.fit.ci95[name]
        assert lo <= truth <= hi, name
    lo, hi = c.fit.ci95["ber_1t1r"]
    assert lo <= c.model_ber_1t1r() <= hi  # measured BER agrees with the fitted lognormals
    assert c.energy_per_bit_j == 12e-12


def test_extrapolation_has_uncertainty_from_covariance():
    dm = DeviceModel.default()
    ex0 = extrapolate_retention(dm, 10, 85, n_draws=500)
    assert ex0.acceleration_ci95[0] == pytest.approx(ex0.acceleration)  # literature: fixed
    assert "retention (Ea, tau0)" in ex0.fixed
    # a fitted retention with Ea = 1.2 +- 0.05 eV
    from cimlab.models.params import FitInfo

    r = dm.retention
    cov = [[0.05**2, -0.05**2 / (8.617333262e-5 * 298.15)],
           [-0.05**2 / (8.617333262e-5 * 298.15), (0.05 / (8.617333262e-5 * 298.15)) ** 2]]
    fit = FitInfo(method="test", n=1, covariance={"names": ["ea_ev", "ln_tau0_s"],
                                                   "matrix": cov})
    dm2 = dm.replace(retention=type(r)(ea_ev=1.2, tau0_s=r.tau0_s, fit=fit))
    ex = extrapolate_retention(dm2, 10, 85, n_draws=4000)
    lo, hi = ex.acceleration_ci95
    af = ex.acceleration
    # ln AF = Ea x, x = (1/298.15 - 1/358.15)/kB = 6.52 /eV: 95 % interval +- 1.96*0.05*6.52
    x = (1 / 298.15 - 1 / 358.15) / 8.617333262e-5
    assert math.log(hi / af) == pytest.approx(1.96 * 0.05 * x, rel=0.1)
    assert math.log(af / lo) == pytest.approx(1.96 * 0.05 * x, rel=0.1)
    assert np.all(ex.sigma_ci95[:, 0] <= ex.sigma_siemens) and np.all(
        ex.sigma_siemens <= ex.sigma_ci95[:, 1]
    )
    assert "level" in ex.table()


def test_fit_tables_provenance_and_hash():
    rng = np.random.default_rng(2)
    df = _programmed(rng, lambda g: 0.05 * g, n_per=200)
    ts = tables_from_frames({"programming_error": {"programmed": df}})
    dm = fit_tables(ts).model
    assert dm.provenance.data_sha256 == hash_tables([("programming_error", "programmed", df)])
    df2 = df.assign(g_siemens=df["g_siemens"] * (1 + 1e-9))
    ts2 = tables_from_frames({"programming_error": {"programmed": df2}})
    # the hash is of the data: the changed table's own hash, not the first one's
    assert ts2.sha256 == hash_tables([("programming_error", "programmed", df2)])
    assert ts2.sha256 != ts.sha256
    assert dm.window.levels == 10 and dm.window.g_max == pytest.approx(40e-6)


def test_fit_tables_sigma_forms_restrict_the_choice():
    rng = np.random.default_rng(3)
    df = _programmed(rng, lambda g: 0.5e-6 + 0.05 * g, n_per=400)
    ts = tables_from_frames({"programming_error": {"programmed": df}})
    assert fit_tables(ts).model.programming.form == "linear"
    forced = fit_tables(ts, sigma_forms={"programming": ("proportional",)}).model.programming
    assert forced.form == "proportional" and set(forced.fit.candidates) == {"proportional"}
    with pytest.raises(ValueError, match="unknown effect 'relaxation'"):
        fit_tables(ts, sigma_forms={"relaxation": ("peaked",)})
    with pytest.raises(ValueError, match=r"sigma_forms\['programming'\]: expected forms"):
        fit_tables(ts, sigma_forms={"programming": ("cubic",)})


def test_read_noise_cis_cover_truth_on_synthetic_pairs():
    """The read-noise estimator's 95 % CIs are calibrated: 80 data sets the size of the
    round-trip plan's read fluctuation (1536 cells in 12 levels of 2-40 uS, 16 reads each,
    white noise sqrt(s0^2 + (s1 g / g_ref)^2) with the default profile's s0 0.075 uS and s1
    0.4 uS), fitted as `cimlab fit` does. Quadrature (the truth's form) must be chosen in
    most fits and, where it is, its CIs must cover s0 and s1 at the nominal rate within
    three binomial standard errors. (Fixed seed; the estimator, not the bench: see
    benchmarks/fit_coverage.py for the round trip through the emulated instruments.)"""
    from cimlab.models.fit.read_noise import fit_read_noise

    rng = np.random.default_rng(7)
    s0, s1 = 0.075e-6, 0.4e-6
    levels = np.linspace(2e-6, 40e-6, 12)
    n_cells, reps = 1536, 16
    cell = np.repeat(np.arange(n_cells), reps)
    level = cell // (n_cells // levels.size)
    trials, quad, covered = 80, 0, {"s0": 0, "s1": 0}
    for _ in range(trials):
        g_cell = levels[level[::reps]] + 1e-6 * rng.standard_normal(n_cells)
        g = g_cell[cell]
        sigma = np.sqrt(s0**2 + (s1 * g / G_REF) ** 2)
        reads = pd.DataFrame({"cell": cell, "level": level, "repeat": np.tile(np.arange(reps),
                                                                               n_cells),
                              "g_siemens": g + sigma * rng.standard_normal(g.size)})
        rn = fit_read_noise(reads, G_REF)
        if rn.form != "quadrature":
            continue
        quad += 1
        for name, truth in (("s0", s0), ("s1", s1)):
            lo, hi = rn.fit.ci95[name]
            covered[name] += int(lo <= truth <= hi)
    assert quad >= 0.85 * trials, quad
    floor = 0.95 - 3.0 * math.sqrt(0.95 * 0.05 / quad)
    for name, c in covered.items():
        assert c / quad >= floor, (name, c, quad)


def test_read_noise_with_a_spectrum_fits_the_white_part():
    """Read pairs 3.1 ms apart whose difference also holds a 1/f part peaked at mid levels
    (techA's measured amplitude and exponent, structure function from the spectrum): with
    the spectrum given, the fitter subtracts that part and the white sigma's 95 % CIs cover
    s0 and s1 (quadrature form); without it, sigma at the 1/f peak is the pair's total,
    more than 1.5 x the white part (no sigma(g) form follows the peak)."""
    from cimlab.models.fit.read_noise import fit_read_noise
    from cimlab.models.read_noise_spectrum import ReadNoiseSpectrum

    g_ref, s0, s1, lag = 240e-6, 0.142e-6, 0.216e-6, 3.1e-3
    spec = ReadNoiseSpectrum(g_ref=g_ref, a_peak=1.93e-13, g_peak=126e-6, g_width=54e-6,
                             alpha0=1.13, f_lo_hz=1e-4, f_hi_hz=0.02)
    rng = np.random.default_rng(11)
    levels = np.linspace(20e-6, 220e-6, 12)
    n_cells, reps = 1536, 16
    cell = np.repeat(np.arange(n_cells), reps)
    level = cell // (n_cells // levels.size)
    rep = np.tile(np.arange(reps), n_cells)
    g = (levels[level[::reps]] + 1e-6 * rng.standard_normal(n_cells))[cell]
    white = np.sqrt(s0**2 + (s1 * g / g_ref) ** 2)
    # each pair (0-1, 2-3, ...): the second read differs by the 1/f over the pair's lag
    flick = np.where(rep % 2 == 1, np.sqrt(spec.flicker_pair_variance(g, lag)), 0.0)
    reads = pd.DataFrame({"cell": cell, "level": level, "repeat": rep,
                          "time_s": 1e4 + lag * rep,
                          "g_siemens": g + white * rng.standard_normal(g.size)
                          + flick * rng.standard_normal(g.size)})
    rn = fit_read_noise(reads, g_ref, forms=("quadrature",), spectrum=spec)
    for name, truth in (("s0", s0), ("s1", s1)):
        lo, hi = rn.fit.ci95[name]
        assert lo <= truth <= hi, (name, lo, truth, hi)
    assert "beyond it" in rn.fit.notes
    total = fit_read_noise(reads, g_ref)
    w_peak = math.sqrt(s0**2 + (s1 * 126e-6 / g_ref) ** 2)
    assert float(total.sigma(126e-6)) > 1.5 * w_peak, float(total.sigma(126e-6))

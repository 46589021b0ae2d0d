"""cimlab.stats (the one MAD sigma, Clopper-Pearson and sigma interval) against known truth,
with tolerances from the sample size; cimlab.units."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest

from cimlab.procedures.report import grouped_robust_sigma
from cimlab.stats import (
    MAD_EFFICIENCY,
    MAD_TO_SIGMA,
    clopper_pearson,
    robust_sigma,
    sigma_interval,
)
from cimlab.units import KELVIN_OFFSET, c_to_k, k_to_c


def test_mad_constant_is_the_normal_consistency_factor():
    from scipy.stats import norm

    assert MAD_TO_SIGMA == pytest.approx(1 / norm.ppf(0.75), rel=1e-15)


def test_robust_sigma_recovers_sigma_and_ignores_a_few_stuck_cells():
    """sigma = 2 from 100,000 normal draws, 1 % of them replaced by a stuck value 50 sigma away:
    the MAD sigma stays within 5 standard errors (se = sigma / sqrt(2 n eff), eff 0.37) of the
    truth shifted by the contamination's known effect on the median (< 2 %)."""
    rng = np.random.default_rng(7)
    n, sigma = 100_000, 2.0
    x = rng.normal(5.0, sigma, n)
    se = sigma / math.sqrt(2 * n * MAD_EFFICIENCY)
    assert abs(robust_sigma(x) - sigma) < 5 * se
    x[: n // 100] = 100.0
    assert abs(robust_sigma(x) - sigma) < 0.02 * sigma + 5 * se
    assert np.std(x) > 4 * sigma  # the plain std is what the stuck cells ruin


def test_robust_sigma_along_an_axis_and_per_group_equals_the_scalar_one():
    rng = np.random.default_rng(3)
    x = rng.normal(0.0, 1.0, (7, 301))
    per_row = robust_sigma(x, axis=1)
    assert per_row == pytest.approx([robust_sigma(r) for r in x], rel=1e-15)
    df = pd.DataFrame({"g": np.repeat(np.arange(7), 301), "v": x.ravel()})
    grouped = grouped_robust_sigma(df, ["g"], "v")
    assert grouped.to_numpy() == pytest.approx(per_row, rel=1e-15)


def test_clopper_pearson_equals_scipy_exact_interval_and_covers():
    k = np.array([0, 1, 17, 500, 1000])
    n = np.array([1000, 1000, 1000, 1000, 1000])
    lo, hi = clopper_pearson(k, n)
    for i in range(k.size):
        ci = binomtest(int(k[i]), int(n[i])).proportion_ci(0.95, method="exact")
        assert (lo[i], hi[i]) == pytest.approx((ci.low, ci.high), rel=1e-9, abs=1e-15)
    # coverage of p = 0.03 over 2000 simulated experiments of n = 400: >= 95 % (exact is
    # conservative), within the binomial spread of 2000 trials
    rng = np.random.default_rng(1)
    kk = rng.binomial(400, 0.03, 2000)
    lo, hi = clopper_pearson(kk, np.full(2000, 400))
    cover = np.mean((lo <= 0.03) & (0.03 <= hi))
    assert cover >= 0.95 - 3 * math.sqrt(0.95 * 0.05 / 2000)
    assert clopper_pearson([0], [0]) == (pytest.approx([0.0]), pytest.approx([1.0]))


def test_sigma_interval_covers_the_true_sigma():
    rng = np.random.default_rng(5)
    m, n, sigma = 2000, 20, 3.0
    s = rng.normal(0.0, sigma, (m, n)).std(axis=1, ddof=1)
    lo, hi = sigma_interval(s, np.full(m, n))
    cover = np.mean((lo <= sigma) & (sigma <= hi))
    assert abs(cover - 0.95) < 4 * math.sqrt(0.95 * 0.05 / m)


def test_kelvin_offset():
    assert KELVIN_OFFSET == 273.15  # exact, by the definition of the Celsius scale
    assert c_to_k(150.0) == 423.15 and k_to_c(c_to_k(-40.0)) == pytest.approx(-40.0)

"""Statistics shared by every layer (layer 0: NumPy; SciPy imported lazily where a quantile
function is needed). One definition per statistic:

* :func:`robust_sigma`: the MAD sigma, ``MAD_TO_SIGMA`` x median absolute deviation (the
  report, the fitters and program-verify all use it; :data:`MAD_EFFICIENCY` is its precision
  relative to the sample standard deviation);
* :func:`clopper_pearson`: the exact binomial interval of a proportion (BER, fault fractions,
  the binary-state fitter);
* :func:`sigma_interval`: the chi-square interval of a normal standard deviation.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Consistency constant of the median absolute deviation for a normal distribution,
#: ``1 / Phi^-1(3/4)`` (Rousseeuw & Croux 1993): ``MAD_TO_SIGMA * MAD`` estimates sigma.
MAD_TO_SIGMA = 1.482602218505602
#: Asymptotic efficiency of the MAD sigma relative to the sample std for normal data
#: (Rousseeuw & Croux 1993: 37 %): a robust sigma from n samples is as precise as a plain one
#: from ~0.37 n, which is what its chi-square interval uses.
MAD_EFFICIENCY = 0.3675
#: Default confidence level of the intervals below.
CONFIDENCE = 0.95


def robust_sigma(x: Any, axis: int | None = None) -> Any:
    """``MAD_TO_SIGMA`` x median absolute deviation of ``x`` (stuck or failed cells, a few
    percent of the sample, do not inflate it). ``axis`` None: a float over all of ``x``;
    otherwise an array, one value per slice along ``axis`` (NaN propagates, as np.median)."""
    x = np.asarray(x, dtype=float)
    if axis is None:
        return float(MAD_TO_SIGMA * np.median(np.abs(x - np.median(x))))
    med = np.median(x, axis=axis, keepdims=True)
    return MAD_TO_SIGMA * np.median(np.abs(x - med), axis=axis)


def clopper_pearson(
    k: Any, n: Any, confidence: float = CONFIDENCE
) -> tuple[np.ndarray, np.ndarray]:
    """Exact (Clopper-Pearson) binomial interval for k successes in n trials (vectorised;
    (0, 1) where n = 0)."""
    from scipy.stats import beta

    k = np.asarray(k, dtype=float)
    n = np.asarray(n, dtype=float)
    a = 1.0 - confidence
    with np.errstate(invalid="ignore", divide="ignore"):
        lo = np.where(k > 0, beta.ppf(a / 2, k, n - k + 1), 0.0)
        hi = np.where(k < n, beta.ppf(1 - a / 2, k + 1, n - k), 1.0)
    return np.nan_to_num(lo), np.where(n > 0, hi, 1.0)


def sigma_interval(
    sigma: Any, n: Any, confidence: float = CONFIDENCE
) -> tuple[np.ndarray, np.ndarray]:
    """Chi-square interval of a normal standard deviation estimated from n samples."""
    from scipy.stats import chi2

    s = np.asarray(sigma, float)
    dof = np.asarray(n, float) - 1
    a = 1.0 - confidence
    with np.errstate(invalid="ignore", divide="ignore"):
        lo = s * np.sqrt(dof / chi2.ppf(1 - a / 2, dof))
        hi = s * np.sqrt(dof / chi2.ppf(a / 2, dof))
    return lo, hi

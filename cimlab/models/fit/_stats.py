"""Statistics shared by the fitters: robust group moments, weighted least squares, intervals.

Robustness (documented in docs/device-models.md), at two levels:

* rows: within every group of reads (a level, a level at a time point, ...) values further
  than ``trim`` robust standard deviations (1.4826 x MAD) from the group median are dropped
  before the moments are taken (``trim=None``: no trimming). For Gaussian data a 10-MAD trim
  removes nothing measurable; a mis-read or a stuck cell in a level is removed whatever its
  size. Heavy tails that are physics (relaxation jumps: the techC increments have kurtosis
  up to ~28 at 10 ms) must NOT be trimmed, since the model's variance is their variance: the
  relaxation fitter therefore only drops physically implausible reads.
* groups: curve fits are weighted least squares on the group statistics with a soft-L1
  (pseudo-Huber) loss at 3 standard errors, so one bad group cannot drag the curve. The
  standard error of a variance uses the group's own fourth moment
  (``se^2 = (m4 - var^2) / n``), right for heavy tails too. Parameter covariances are
  ``inv(J^T J)`` scaled by ``max(1, chi2_red)`` (lmfit's convention, never shrunk below the
  statistical one).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from cimlab.models.params import Z95
from cimlab.stats import MAD_TO_SIGMA, clopper_pearson, robust_sigma

#: Half-width of the trimming window, in robust standard deviations (1.4826 x MAD).
TRIM_MAD = 10.0
#: Soft-L1 loss scale of the group-level fits, in standard errors.
F_SCALE = 3.0


def group_moments(
    df: pd.DataFrame,
    keys: Sequence[str],
    value: str,
    extra_means: Sequence[str] = (),
    trim: float | None = TRIM_MAD,
) -> pd.DataFrame:
    """Per-group (optionally trimmed) moments of column ``value``.

    Returns one row per group with the keys, ``n`` (points kept), ``n_out`` (trimmed),
    ``mean``, ``var`` (ddof 1), ``se_var`` (from the fourth moment) and the plain means of
    ``extra_means`` columns (of kept rows).
    """
    keys = list(keys)
    v = df[value].to_numpy(dtype=np.float64)
    keep = np.isfinite(v)
    if trim is not None:
        grp = df.groupby(keys, sort=True, observed=True)[value]
        med = grp.transform("median").to_numpy()
        dev = np.abs(v - med)
        mad = pd.Series(dev, index=df.index).groupby(
            [df[k] for k in keys], sort=True, observed=True
        ).transform("median").to_numpy()
        scale = MAD_TO_SIGMA * mad
        keep &= (dev <= trim * scale) | (scale == 0.0)
    kept = df.loc[keep, [*keys, value, *extra_means]]
    g = kept.groupby(keys, sort=True, observed=True)
    out = g[value].agg(n="count", mean="mean", var="var")
    mu = g[value].transform("mean").to_numpy()
    dev4 = pd.Series((kept[value].to_numpy() - mu) ** 4, index=kept.index)
    m4 = dev4.groupby([kept[k] for k in keys], sort=True, observed=True).mean()
    m4 = m4.reindex(out.index).to_numpy()
    var = out["var"].to_numpy()
    nn = out["n"].to_numpy()
    # se of the sample variance from the 4th central moment (exact for any distribution,
    # to O(1/n)); never below the Gaussian value's half, to keep small groups sane.
    se_var = np.sqrt(np.maximum(m4 - var**2 * (nn - 3) / np.maximum(nn - 1, 1), 0.0)
                     / np.maximum(nn, 1))
    out["se_var"] = np.maximum(se_var, 0.5 * var * np.sqrt(2.0 / np.maximum(nn - 1, 1)))
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        out["kurtosis"] = m4 / np.maximum(var, 1e-300) ** 2 - 3.0
    for col in extra_means:
        out[col] = g[col].mean()
    total = df.groupby(keys, sort=True, observed=True)[value].size()
    out["n_out"] = (total.reindex(out.index) - out["n"]).astype(int)
    return out.reset_index()


@dataclass
class LsqResult:
    """Outcome of :func:`wls`."""

    params: np.ndarray
    cov: np.ndarray
    stderr: np.ndarray
    chi2: float
    dof: int
    n: int
    k: int
    aic: float
    bic: float
    success: bool
    residuals: np.ndarray = field(default_factory=lambda: np.empty(0))

    @property
    def chi2_red(self) -> float:
        return self.chi2 / self.dof if self.dof > 0 else math.nan


def wls(
    residual: Callable[[np.ndarray], np.ndarray],
    p0: Sequence[float],
    bounds: tuple[Sequence[float], Sequence[float]] | None = None,
    n_prior: int = 0,
    robust: bool = True,
) -> LsqResult:
    """Minimise ``sum(residual(p)^2)`` (residuals already divided by their standard errors).

    ``n_prior`` trailing residuals are Gaussian priors (not data): they count in chi2 but
    not in the number of points for dof / AIC / BIC. ``robust``: soft-L1 loss at
    :data:`F_SCALE` (see module docstring); chi2 / AIC / BIC are always the plain sums.
    """
    from scipy.optimize import least_squares

    p0 = np.asarray(p0, dtype=np.float64)
    if bounds is None:
        bounds = (np.full(p0.size, -np.inf), np.full(p0.size, np.inf))
    lo, hi = (np.asarray(b, dtype=np.float64) for b in bounds)
    p0 = np.minimum(np.maximum(p0, lo), hi)
    res = least_squares(residual, p0, bounds=(lo, hi), method="trf", x_scale="jac",
                        max_nfev=2000 * p0.size,
                        loss="soft_l1" if robust else "linear", f_scale=F_SCALE)
    r = res.fun
    chi2 = float(r @ r)
    n = r.size - n_prior
    k = p0.size
    dof = n - k
    J = res.jac
    try:
        cov = np.linalg.inv(J.T @ J)
    except np.linalg.LinAlgError:
        cov = np.linalg.pinv(J.T @ J)
    # J is the loss-weighted Jacobian (scipy); 2 cost is the robust analogue of chi2
    scale = max(1.0, 2.0 * float(res.cost) / dof) if dof > 0 else 1.0
    cov = cov * scale
    stderr = np.sqrt(np.clip(np.diag(cov), 0.0, np.inf))
    aic = chi2 + 2.0 * k
    bic = chi2 + k * math.log(max(n, 1))
    return LsqResult(res.x, cov, stderr, chi2, dof, n, k, aic, bic, bool(res.success), r)


def binomial_ci(k: int, n: int) -> tuple[float, float]:
    """Clopper-Pearson (exact) 95 % interval of a proportion k / n, the report's
    :func:`cimlab.stats.clopper_pearson` for one proportion ((0, 1) if n = 0)."""
    lo, hi = clopper_pearson([k], [n], confidence=0.95)
    return (float(lo[0]), float(hi[0]))


def binomial_stderr(k: int, n: int) -> float:
    """Standard error of k / n; for k = 0 or n uses the rule-of-three scale (3/n)/1.96."""
    if n <= 0:
        return math.nan
    p = k / n
    if k == 0 or k == n:
        return 3.0 / n / Z95
    return math.sqrt(p * (1.0 - p) / n)


def robust_location_scale(x: np.ndarray, trim: float = TRIM_MAD) -> tuple[float, float, int]:
    """Trimmed mean, standard deviation and count of ``x`` (trimming as in group_moments)."""
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return (math.nan, math.nan, 0)
    med = np.median(x)
    s = robust_sigma(x)
    if s > 0:
        x = x[np.abs(x - med) <= trim * s]
    sd = float(np.std(x, ddof=1)) if x.size > 1 else math.nan
    return (float(np.mean(x)), sd, int(x.size))


def r2(y: np.ndarray, f: np.ndarray) -> float:
    """Coefficient of determination of prediction ``f`` for ``y``."""
    ss_res = float(np.sum((y - f) ** 2))
    ss_tot = float(np.sum((y - np.mean(y)) ** 2))
    return 1.0 - ss_res / ss_tot if ss_tot > 0 else math.nan


def block_whiteners(
    df: pd.DataFrame,
    block: str,
    time: str,
    cell: str,
    value: str,
    rows: pd.DataFrame,
    scale: float = 1.0,
    var_model: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Whitening matrices for group means and group variances measured on the SAME cells.

    The statistics of one block (a level) at its time points come from the same cells, so
    they are correlated (strongly: a cell far from the mean at 1 s is still far at 10 s).
    Treating them as independent overstates the information (CIs too narrow). Here the
    covariance of the group means and of the group variances across the time points of a
    block is estimated from the cells themselves (pairwise over the cells present at both
    times, no model assumed), and its inverse Cholesky factor returned, block diagonal, in the
    order of ``rows`` (which must be sorted by block, then time, one row per (block, time)).
    ``scale`` divides the values first (fits run in uS). Returns ``(W_mean, W_var)`` such
    that ``W @ (y - model)`` are independent unit-variance residuals.

    ``var_model`` (per row of ``rows``, in the scaled units): a model's variance of each
    group. The covariances are then rescaled from the groups' observed variances to the
    model's (the correlations and the shape of the tails, i.e. the kurtosis, stay the
    data's). Weights from the observed variances favour the groups that fluctuated low and
    bias a variance fit low (the default profile's relaxation rate k_peak came out 4.5 % low
    over 8 seeds, 0.9 % with the refit); a refit with the first fit's model variances
    removes that (as ``fit_sigma`` does).
    """
    n_rows = len(rows)
    W_m = np.zeros((n_rows, n_rows))
    W_v = np.zeros((n_rows, n_rows))
    blocks = rows[block].to_numpy()
    times = rows[time].to_numpy()
    start = 0
    grouped = dict(tuple(df.groupby(block, sort=False)))
    while start < n_rows:
        b = blocks[start]
        stop = start
        while stop < n_rows and blocks[stop] == b:
            stop += 1
        sub = grouped[b]
        tk = times[start:stop]
        sub = sub[sub[time].isin(tk)]
        X = sub.pivot_table(index=cell, columns=time, values=value, aggfunc="mean")
        X = X.reindex(columns=tk).to_numpy(dtype=float) / scale
        M = np.isfinite(X)
        n = M.sum(axis=0).astype(float)
        mu = np.nanmean(X, axis=0)
        D = np.where(M, X - mu, 0.0)
        var = (D**2).sum(axis=0) / np.maximum(n - 1, 1)
        Z = np.where(M, D**2 - var, 0.0)
        Mf = M.astype(float)
        n_jk = Mf.T @ Mf
        denom = np.outer(n, n)
        with np.errstate(invalid="ignore", divide="ignore"):
            c_m = (D.T @ D) / np.maximum(n_jk - 1, 1) * n_jk / denom
            c_v = (Z.T @ Z) / np.maximum(n_jk - 1, 1) * n_jk / denom
            if var_model is not None:
                r = np.sqrt(np.maximum(np.asarray(var_model[start:stop], dtype=float), 0.0)
                            / np.maximum(var, 1e-300))
                r = np.where(np.isfinite(r) & (r > 0), r, 1.0)
                c_m = c_m * np.outer(r, r)
                c_v = c_v * np.outer(r * r, r * r)
        for c, W in ((c_m, W_m), (c_v, W_v)):
            c = np.nan_to_num(0.5 * (c + c.T))
            w, V = np.linalg.eigh(c)
            floor = max(float(w.max()), 1e-300) * 1e-10
            w = np.maximum(w, floor)
            # symmetric inverse square root: whitening that keeps each residual "in place"
            W[start:stop, start:stop] = (V / np.sqrt(w)) @ V.T
        start = stop
    return W_m, W_v

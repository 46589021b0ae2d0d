"""Fit a level-dependent standard deviation ``sigma(g)`` in every model form; pick by BIC.

Shared by the programming-error and read-noise fitters. Inputs are per-group estimates
(one per programmed level): mean conductance ``g`` [S], standard deviation ``sigma`` [S] and
its standard error ``se`` [S]. Forms (cimlab.models.effects.SIGMA_FORMS): constant,
proportional, linear, quadrature (floor and relative part in quadrature), polynomial
(quadratic in g/g_ref). Each is fitted by weighted least squares; the one with the lowest BIC
wins (ties to the simpler one, listed first). A form whose sigma goes negative inside
0 <= g <= 1.5 g_ref is rejected.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from cimlab.models.effects import SIGMA_FORMS
from cimlab.models.fit._stats import LsqResult, r2, wls
from cimlab.models.params import Z95

_U = 1e-6  # fits run in uS so that parameters are O(1)


def _model(form: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    if form == "constant":
        return lambda p, x: np.full_like(x, p[0])
    if form == "proportional":
        return lambda p, x: p[0] * x
    if form == "linear":
        return lambda p, x: p[0] + p[1] * x
    if form == "quadrature":
        return lambda p, x: np.sqrt(p[0] ** 2 + (p[1] * x) ** 2)
    if form == "polynomial":
        return lambda p, x: p[0] + x * (p[1] + p[2] * x)
    raise ValueError(form)


@dataclass
class SigmaFit:
    """Best form and its coefficients (S), standard errors, CIs and the candidates table."""

    form: str
    coeffs: dict[str, float]
    stderr: dict[str, float]
    ci95: dict[str, tuple[float, float]]
    candidates: dict[str, dict[str, float]]
    result: LsqResult
    gof: dict[str, float]
    n: int
    covariance: dict | None = None


def _p0(form: str, x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    if form == "constant":
        return np.array([np.average(y, weights=w)])
    if form == "proportional":
        return np.array([np.sum(w * x * y) / np.sum(w * x * x)])
    if form == "linear":
        return np.polyfit(x, y, 1, w=np.sqrt(w))[::-1].copy()
    if form == "polynomial":
        return np.polyfit(x, y, 2, w=np.sqrt(w))[::-1].copy()
    # quadrature: linear in (s0^2, s1^2) for sigma^2
    A = np.stack([np.ones_like(x), x * x], axis=1)
    coef, *_ = np.linalg.lstsq(A * np.sqrt(w)[:, None], (y * y) * np.sqrt(w), rcond=None)
    return np.sqrt(np.maximum(coef, 1e-6 * max(float(np.max(y)) ** 2, 1e-12)))


def fit_sigma(
    g: np.ndarray,
    sigma: np.ndarray,
    se: np.ndarray,
    g_ref: float,
    forms: Sequence[str] = tuple(SIGMA_FORMS),
    validate: Callable[[str, dict[str, float]], bool] | None = None,
    rel_se: np.ndarray | None = None,
) -> SigmaFit:
    """Fit every form in ``forms`` to (g, sigma +- se) and return the lowest-BIC valid one.

    ``rel_se`` (the relative standard error of each sigma, e.g. ``1/sqrt(2 (n-1))``): when
    given, the weights are recomputed from the *model's* sigma and the fit repeated
    (iteratively reweighted, 3 passes). Weights from the observed sigmas favour the groups
    that fluctuated low and bias a fit low by ~(relative se)^2 per group; with ~30-100
    reads per group that is several percent on the floor term.
    """
    g = np.asarray(g, float)
    y = np.asarray(sigma, float) / _U
    s = np.asarray(se, float) / _U
    ok = np.isfinite(y) & np.isfinite(s) & (s > 0) & np.isfinite(g)
    x, y, s = g[ok] / g_ref, y[ok], s[ok]
    rs = None if rel_se is None else np.asarray(rel_se, float)[ok]
    w = 1.0 / s**2
    best: tuple[float, str, LsqResult] | None = None
    candidates: dict[str, dict[str, float]] = {}
    for form in forms:
        names = SIGMA_FORMS[form]
        if x.size <= len(names):
            continue
        f = _model(form)
        lo = np.full(len(names), -np.inf)
        if form == "quadrature":
            lo = np.zeros(len(names))
        bounds = (lo, np.full(len(names), np.inf))
        res = wls(lambda p, f=f: (y - f(p, x)) / s, _p0(form, x, y, w), bounds=bounds)
        if rs is not None:
            for _ in range(3):
                sm = np.maximum(np.abs(f(res.params, x)), 1e-6 * np.max(y)) * rs
                res = wls(lambda p, f=f, sm=sm: (y - f(p, x)) / sm, res.params, bounds=bounds)
        coeffs = {"s0": 0.0, "s1": 0.0, "s2": 0.0}
        coeffs.update({n: float(v) * _U for n, v in zip(names, res.params, strict=True)})
        if validate is not None and not validate(form, coeffs):
            candidates[form] = {"aic": res.aic, "bic": res.bic, "k": len(names),
                                "chi2": res.chi2, "valid": 0.0}
            continue
        candidates[form] = {"aic": res.aic, "bic": res.bic, "k": len(names), "chi2": res.chi2}
        if best is None or res.bic < best[0] - 1e-9:
            best = (res.bic, form, res)
    if best is None:
        raise ValueError(
            f"cannot fit sigma(g): {x.size} usable levels (need at least 2 distinct levels "
            "with 2 or more reads each)"
        )
    _, form, res = best
    names = SIGMA_FORMS[form]
    coeffs = {n: 0.0 for n in ("s0", "s1", "s2")}
    stderr, ci = {}, {}
    for n, v, e in zip(names, res.params, res.stderr, strict=True):
        coeffs[n] = float(v) * _U
        stderr[n] = float(e) * _U
        ci[n] = (coeffs[n] - Z95 * stderr[n], coeffs[n] + Z95 * stderr[n])
    pred = _model(form)(res.params, x)
    gof = {
        "chi2_red": res.chi2_red,
        "r2": r2(y, pred),
        "rmse_siemens": float(np.sqrt(np.mean((y - pred) ** 2))) * _U,
        "max_rel_err": float(np.max(np.abs(pred - y) / np.maximum(y, 1e-30))),
    }
    gof = {k: (v if math.isfinite(v) else math.nan) for k, v in gof.items()}
    cov = {"names": list(names), "matrix": (res.cov * _U**2).tolist()}
    return SigmaFit(form, coeffs, stderr, ci, candidates, res, gof, int(x.size), cov)

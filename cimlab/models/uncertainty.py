"""Uncertainty of a fitted effect's *functions* (sigma(g), drift(g), ...): delta method.

A fit stores the covariance of the parameters it estimated (``effect.fit.covariance``:
``{"names": [...], "matrix": [[...]]}``, SI units; ``log10_t0_s`` / ``ln_tau0_s`` stand for
the logarithms of ``t0_s`` / ``tau0_s``). :func:`band` propagates it through any method of
the effect with a numerical Jacobian, giving the standard error and 95 % interval of the
prediction at each point. Used by the tests to compare fitted functions with the
emulator's truth where the fitted form is not the physics' form, and available to the
simulator for model uncertainty.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from cimlab.models.params import Z95


def _with(effect: Any, name: str, value: float) -> Any:
    if name.startswith("log10_"):
        return dataclasses.replace(effect, **{name[len("log10_"):]: 10.0**value})
    if name.startswith("ln_"):
        return dataclasses.replace(effect, **{name[len("ln_"):]: float(np.exp(value))})
    return dataclasses.replace(effect, **{name: value})


def _value(effect: Any, name: str) -> float:
    if name.startswith("log10_"):
        return float(np.log10(getattr(effect, name[len("log10_"):])))
    if name.startswith("ln_"):
        return float(np.log(getattr(effect, name[len("ln_"):])))
    return float(getattr(effect, name))


def band(effect: Any, method: str, *args: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(value, stderr, ci95)`` of ``getattr(effect, method)(*args)``; ci95 has shape
    ``(..., 2)``. Without a covariance the stderr is 0 (a literature value)."""
    f = getattr(effect, method)
    y = np.asarray(f(*args), dtype=float)
    fit = getattr(effect, "fit", None)
    if fit is None or not fit.covariance:
        se = np.zeros_like(y)
        return y, se, np.stack([y, y], axis=-1)
    names = list(fit.covariance["names"])
    cov = np.asarray(fit.covariance["matrix"], dtype=float)
    J = []
    for n in names:
        v = _value(effect, n)
        h = 1e-6 if n.startswith(("log10_", "ln_")) else 1e-6 * max(abs(v), 1e-12)
        try:
            up = np.asarray(getattr(_with(effect, n, v + h), method)(*args), dtype=float)
            dn = np.asarray(getattr(_with(effect, n, v - h), method)(*args), dtype=float)
            J.append((up - dn) / (2 * h))
        except Exception:  # a step that leaves the parameter's bounds: one-sided
            up = np.asarray(getattr(_with(effect, n, v + h), method)(*args), dtype=float)
            J.append((up - y) / h)
    Jm = np.stack([j.ravel() for j in J], axis=1)
    var = np.einsum("ij,jk,ik->i", Jm, cov, Jm)
    se = np.sqrt(np.maximum(var, 0.0)).reshape(y.shape)
    return y, se, np.stack([y - Z95 * se, y + Z95 * se], axis=-1)


def drop_degenerate_intervals(effect: Any) -> Any:
    """``effect`` without the intervals its fit could not determine.

    A standard error that is zero, negative or not finite (a parameter at a bound of its fit,
    a degenerate drift whose Jacobian column vanishes, a singular covariance) would print as
    ``+- 0`` and a zero-width 95 % CI that claims a precision the data never had. Those
    parameters lose their stderr and CI, and the fit's notes say "not identified by the data"
    for each (the value is kept: it is the fit's best estimate)."""
    fit = getattr(effect, "fit", None)
    if fit is None:
        return effect
    bad = sorted(
        n for n in set(fit.stderr) | set(fit.ci95)
        if not (np.isfinite(fit.stderr.get(n, 1.0)) and fit.stderr.get(n, 1.0) > 0.0)
        or (n in fit.ci95 and not (np.all(np.isfinite(fit.ci95[n]))
                                   and fit.ci95[n][1] > fit.ci95[n][0]))
    )
    if not bad:
        return effect
    note = "not identified by the data (zero or undefined standard error, no interval): " \
        + ", ".join(bad)
    fit = dataclasses.replace(
        fit, stderr={k: v for k, v in fit.stderr.items() if k not in bad},
        ci95={k: v for k, v in fit.ci95.items() if k not in bad},
        notes=f"{fit.notes}; {note}" if fit.notes else note)
    return dataclasses.replace(effect, fit=fit)

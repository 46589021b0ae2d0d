"""Model forms of the level-dependent coefficients of the device effects.

A standard deviation ``sigma(g)`` (:data:`SIGMA_FORMS`: ``s0 + s1 x + s2 x^2`` or, form
``quadrature``, ``sqrt(s0^2 + (s1 x)^2)``) and the relaxation variance rate ``k(g)``
(:data:`RATE_FORMS`, including the tabulated form at :data:`TABLE_X`), with ``x = g / g_ref``
[g in S]; the checks that a form's fixed coefficients are zero and that a polynomial stays
non-negative over ``0 <= g/g_ref <= 1.5``. Used by :mod:`cimlab.models.effects` and
:mod:`cimlab.models.effects_relaxation`; :mod:`cimlab.models.effects` re-exports the public
names.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cimlab.errors import ConfigError
from cimlab.models._array import asarray, is_torch, xp

#: Model forms of a standard deviation ``s0 + s1 x + s2 x^2`` (``quadrature``:
#: ``sqrt(s0^2 + (s1 x)^2)``, a floor plus a relative part) and the coefficients each one
#: leaves free (the others must be zero).
SIGMA_FORMS: dict[str, tuple[str, ...]] = {
    "constant": ("s0",),
    "proportional": ("s1",),
    "linear": ("s0", "s1"),
    "quadrature": ("s0", "s1"),
    "polynomial": ("s0", "s1", "s2"),
}

#: Model forms of the relaxation variance rate ``k(x) = k0 + k1 x + k2 x^2``.
RATE_FORMS: dict[str, tuple[str, ...]] = {
    "constant": ("k0",),
    "linear": ("k0", "k1"),
    "polynomial": ("k0", "k1", "k2"),
    "peaked": ("k_peak", "g_peak", "shape_a"),
    "table": tuple(f"kt{i}" for i in range(9)),
}

#: Knots of the tabulated variance rate (form "table"), in g/g_ref: k(g) is linear between
#: ``kt0 .. kt8`` at these points and constant beyond the last one.
TABLE_X = np.linspace(0.0, 1.5, 9)
_TABLE_NAMES = RATE_FORMS["table"]

#: Normalised conductances on which polynomial sigmas must be non-negative (a model is
#: defined for ``0 <= g <= 1.5 g_ref``; beyond that callers extrapolate at their own risk).
_X_CHECK = np.linspace(0.0, 1.5, 151)


def _poly(c0: float, c1: float, c2: float, g: Any, g_ref: float):
    x = asarray(g) / g_ref
    return c0 + x * (c1 + c2 * x)


def _sigma(obj: Any, g: Any):
    if obj.form == "quadrature":
        x = asarray(g) / obj.g_ref
        v = obj.s0**2 + (obj.s1 * x) ** 2
        return xp(v).sqrt(v)
    return _poly(obj.s0, obj.s1, obj.s2, g, obj.g_ref)


def _check_sigma(obj: Any, what: str) -> None:
    _check_form(obj, SIGMA_FORMS, ("s0", "s1", "s2"))
    if obj.form == "quadrature":
        for name in ("s0", "s1"):
            if getattr(obj, name) < 0.0:
                raise ConfigError(None, name, ">= 0 for form 'quadrature'", getattr(obj, name))
    else:
        _check_nonneg(obj, ("s0", "s1", "s2"), what)


def _check_form(obj: Any, forms: dict[str, tuple[str, ...]], coeffs: tuple[str, ...]) -> None:
    free = forms[obj.form]
    for name in coeffs:
        if name not in free and getattr(obj, name) != 0.0:
            raise ConfigError(
                None,
                name,
                f"0 for form '{obj.form}' (free coefficients: {', '.join(free)})",
                getattr(obj, name),
            )


def _check_nonneg(obj: Any, coeffs: tuple[str, str, str], what: str) -> None:
    c = [getattr(obj, n) for n in coeffs]
    values = c[0] + _X_CHECK * (c[1] + c[2] * _X_CHECK)
    if np.any(values < -1e-30):
        bad = float(_X_CHECK[np.argmin(values)])
        raise ConfigError(
            None,
            coeffs[0],
            f"{what} >= 0 for 0 <= g/g_ref <= 1.5 (it is negative at g/g_ref = {bad:.2f})",
            tuple(c),
        )


def _table_rate(knots: tuple[float, ...], g: Any, g_ref: float):
    """Piecewise-linear k(g) through ``knots`` at ``g/g_ref`` = TABLE_X (flat outside)."""
    g = asarray(g)
    if is_torch(g):
        import torch

        h = float(TABLE_X[1] - TABLE_X[0])
        u = (g / g_ref).clamp(0.0, float(TABLE_X[-1])) / h
        i = u.floor().clamp(max=len(knots) - 2).long()
        f = u - i
        kt = torch.tensor(knots, dtype=g.dtype, device=g.device)
        return kt[i] * (1.0 - f) + kt[i + 1] * f
    return np.interp(np.asarray(g, dtype=float) / g_ref, TABLE_X, np.asarray(knots))

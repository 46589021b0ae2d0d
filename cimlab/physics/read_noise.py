"""1/f (flicker) read noise as a bank of Ornstein-Uhlenbeck processes per cell.

A stationary Gaussian process with the one-sided spectrum ``A f^-alpha`` is approximated by a
sum of independent Lorentzians (McWhorter's superposition of traps with log-uniformly
distributed time constants; Hooge & Bobbert, Physica B 239, 223 (1997)): corner frequencies
``f_k`` log-uniform, ``d`` per decade, between ``f_lo`` and ``f_hi``, component variances

    v_k = A ln(10) sin(pi alpha / 2) / d * f_k^(1 - alpha)

which makes ``sum_k 4 v_k tau_k / (1 + (2 pi f tau_k)^2)`` (``tau_k = 1 / (2 pi f_k)``) equal to
``A f^-alpha`` inside the band (exact for a continuous density of corners: the integral
``int u^(1-alpha) / (1 + u^2) du = (pi/2) / sin(pi alpha / 2)``; ripple about 10% at one per
decade). Below ``f_lo`` the spectrum is flat, above ``f_hi`` it falls as ``f^-2``.

Each cell keeps the components as unit-variance OU states ``z_k`` and the time of its last
read; a read at time ``t`` advances them exactly: ``z <- r z + sqrt(1 - r^2) N(0, 1)``,
``r = exp(-(t - t_last) / tau_k)``, and returns ``sum_k sqrt(v_k(g)) z_k``. A cell never read
before starts from the stationary distribution (``r = 0``), which is exact for a stationary
process. The states do not depend on ``g``: reprogramming a cell changes the amplitudes, not
the trap occupancy.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from cimlab.physics.profile import ReadNoise


@lru_cache(maxsize=32)
def _bank(rn: ReadNoise) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(f_k [Hz], tau_k [s], v_k / A(g) [Hz])`` of the bank (cached per profile)."""
    decades = math.log10(rn.flicker_f_hi_hz / rn.flicker_f_lo_hz)
    k = max(2, round(decades * rn.flicker_per_decade) + 1)
    f = np.logspace(math.log10(rn.flicker_f_lo_hz), math.log10(rn.flicker_f_hi_hz), k)
    d = (k - 1) / decades
    a = rn.flicker_alpha
    w = math.log(10.0) * math.sin(math.pi * a / 2.0) / d * f ** (1.0 - a)
    for arr in (f, w):
        arr.setflags(write=False)
    tau = 1.0 / (2.0 * math.pi * f)
    tau.setflags(write=False)
    return f, tau, w


def corner_frequencies(rn: ReadNoise) -> np.ndarray:
    """Corner frequencies ``f_k`` [Hz] of the bank (log-uniform, ends included)."""
    return _bank(rn)[0]


def component_variances(rn: ReadNoise, g: np.ndarray) -> np.ndarray:
    """Variances ``v_k`` [S^2] of the components for cells at ``g`` [S], shape ``(n, K)``."""
    amp = np.asarray(rn.flicker_amplitude(g), dtype=float)
    return amp[:, None] * _bank(rn)[2][None, :]


def flicker_variance(rn: ReadNoise, g: np.ndarray) -> np.ndarray:
    """Stationary variance [S^2] of the flicker part at ``g`` [S] (all components)."""
    return component_variances(rn, np.atleast_1d(np.asarray(g, float))).sum(axis=1)


def lorentzian_psd(rn: ReadNoise, g: float, f_hz: np.ndarray) -> np.ndarray:
    """One-sided PSD [S^2/Hz] the bank actually realises at ``g`` [S] (ripple included)."""
    v = component_variances(rn, np.array([float(g)]))[0]
    tau = _bank(rn)[1]
    f = np.asarray(f_hz, dtype=float)[:, None]
    return (4.0 * v * tau / (1.0 + (2.0 * math.pi * f * tau) ** 2)).sum(axis=1)


def advance(
    z: np.ndarray, t_last: np.ndarray, t_now: float, rn: ReadNoise, rng: np.random.Generator
) -> np.ndarray:
    """OU states ``z`` (shape ``(n, K)``, unit variance) advanced from ``t_last`` [s] (NaN:
    never read) to ``t_now`` [s]; returns the new states (float32)."""
    tau = _bank(rn)[1]
    dt = np.where(np.isnan(t_last), np.inf, np.maximum(t_now - t_last, 0.0))
    noise = rng.standard_normal(z.shape, dtype=np.float32)
    if dt.size and bool(np.all(dt == dt[0])):
        # the usual case (a tile read as a whole): one decay per component
        r = np.exp(-dt[0] / tau).astype(np.float32)
        noise *= np.sqrt(1.0 - r * r).astype(np.float32)
        noise += r * z
        return noise
    r = np.exp(-dt[:, None] / tau[None, :]).astype(np.float32)
    return (r * z + np.sqrt(1.0 - r * r) * noise).astype(np.float32)


def flicker_values(rn: ReadNoise, z: np.ndarray, g: np.ndarray) -> np.ndarray:
    """The 1/f part [S] of cells with OU states ``z`` (n, K) at true conductances ``g`` [S]:
    ``sqrt(A(g)) sum_k sqrt(w_k) z_k``."""
    sw = np.sqrt(_bank(rn)[2]).astype(np.float32)
    return np.sqrt(np.asarray(rn.flicker_amplitude(g), dtype=float)) * (z @ sw)

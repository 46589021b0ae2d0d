"""The read-noise spectrum effect: white + 1/f, level dependent (SI units).

One-sided power spectral density of repeated reads of a cell at conductance ``g``:

    S(g, f) = sigma_w(g)^2 / bandwidth_hz + A(g) (f / 1 Hz)^-alpha(g)        [S^2/Hz]

* white part: ``sigma_w(g) = sqrt(s0^2 + (s1 g / g_ref)^2)``, the std of one read's
  independent part at the read bandwidth ``bandwidth_hz`` (half the sample rate of the
  time series it was fitted on);
* 1/f part: ``A(g) = a_peak exp(-(g - g_peak)^2 / (2 g_width^2))`` (largest at mid levels) with
  exponent ``alpha(g) = alpha0 + alpha1 g / g_ref`` (``alpha1 = 0`` when a constant exponent
  is enough).

Measured on techA (Levy et al., reference-data/rram-levy-techA, fit in docs/physics.md) by
:func:`cimlab.models.fit.read_noise_spectrum.fit_read_noise_spectrum`. What a simulator needs
is :meth:`ReadNoiseSpectrum.sigma_of_mean`: the std of the mean of ``n`` reads spaced ``dt``,
which for 1/f noise does not fall as 1/sqrt(n).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from cimlab.errors import ConfigError
from cimlab.models.params import FitInfo
from cimlab.params import check, param

#: Corner-frequency grid of :meth:`ReadNoiseSpectrum.flicker_pair_variance` [points per
#: decade]: the integrand is smooth in log f (each Lorentzian's ``1 - exp``), 50 points per
#: decade integrate it to better than 0.1 %
PAIR_POINTS_PER_DECADE = 50
#: Upper frequency [Hz] of the 1/f part in a read pair's difference when the spectrum was
#: fitted below it: a read averages over ~5 ms, so faster noise is its white part (the
#: techA reads' bandwidth, 200 Hz sampling; emulator profiles: flicker_f_hi_hz = 100 Hz)
PAIR_F_HI_HZ = 100.0


@dataclass(frozen=True)
class ReadNoiseSpectrum:
    """White + 1/f read-noise spectrum (see module docstring). Default: no 1/f part and the
    white level of :class:`cimlab.models.effects.ReadNoise`'s default at 40 uS."""

    g_ref: float = param(40e-6, unit="S", lo=0.0, lo_open=True, doc="normalising conductance")
    bandwidth_hz: float = param(
        200.0, unit="Hz", lo=0.0, lo_open=True, doc="read bandwidth of the white part (fs/2)")
    s0: float = param(6.3158e-8, unit="S", lo=0.0, hi=1e-3, doc="white sigma: floor")
    s1: float = param(3.3684e-7, unit="S", lo=0.0, hi=1e-3, doc="white sigma: part in g/g_ref")
    a_peak: float = param(0.0, unit="S^2/Hz", lo=0.0, hi=1e-6, doc="1/f PSD at 1 Hz, peak")
    g_peak: float = param(20e-6, unit="S", lo=-1e-3, hi=1e-2, doc="level of the 1/f peak")
    g_width: float = param(20e-6, unit="S", lo=0.0, lo_open=True, hi=1e-2,
                           doc="Gaussian width of A(g)")
    alpha0: float = param(1.0, unit="1", lo=0.0, hi=3.0, doc="1/f exponent at g = 0")
    alpha1: float = param(0.0, unit="1", lo=-3.0, hi=3.0, doc="exponent slope in g/g_ref")
    f_lo_hz: float = param(0.1, unit="Hz", lo=0.0, lo_open=True,
                           doc="lowest frequency the fit saw (validity)")
    f_hi_hz: float = param(200.0, unit="Hz", lo=0.0, lo_open=True,
                           doc="highest frequency the fit saw (validity)")
    source: str = param("default: white only, paper 000 read fluctuation", doc="origin")
    fit: FitInfo | None = None

    def __post_init__(self) -> None:
        check(self)
        if self.f_hi_hz <= self.f_lo_hz:
            raise ConfigError(None, "f_hi_hz", f"a value above f_lo_hz = {self.f_lo_hz:g}",
                              self.f_hi_hz)

    def white_sigma(self, g: Any) -> Any:
        """Std [S] of the white part of one read at ``g`` [S]."""
        x = np.asarray(g, dtype=float) / self.g_ref
        return np.sqrt(self.s0**2 + (self.s1 * x) ** 2)

    def flicker_amplitude(self, g: Any) -> Any:
        """``A(g)`` [S^2/Hz]: the 1/f PSD at 1 Hz."""
        g = np.asarray(g, dtype=float)
        return self.a_peak * np.exp(-0.5 * ((g - self.g_peak) / self.g_width) ** 2)

    def alpha(self, g: Any) -> Any:
        """Spectral exponent [1] at ``g`` [S]."""
        return self.alpha0 + self.alpha1 * np.asarray(g, dtype=float) / self.g_ref

    def psd(self, g: Any, f_hz: Any) -> Any:
        """One-sided PSD [S^2/Hz] at conductance ``g`` [S] and frequency ``f_hz`` [Hz]
        (broadcast)."""
        f = np.asarray(f_hz, dtype=float)
        return (self.white_sigma(g) ** 2 / self.bandwidth_hz
                + self.flicker_amplitude(g) * f ** -self.alpha(g))

    def sigma_of_mean(self, g: float, n: int, dt_s: float, f_min_hz: float | None = None
                      ) -> float:
        """Std [S] of the mean of ``n`` reads of one cell at ``g`` [S] spaced ``dt_s`` [s].

        White part: ``sigma_w / sqrt(n)``. 1/f part: ``int A f^-alpha |H(f)|^2 df`` from
        ``f_min_hz`` (default ``f_lo_hz``: slower fluctuations are the cell's level, not
        noise) to ``1 / (2 dt)``, with ``H`` the n-point average's response
        ``sin(pi f n dt) / (n sin(pi f dt))``."""
        if n < 1 or not dt_s > 0:
            raise ValueError(f"need n >= 1 and dt_s > 0, got n={n!r}, dt_s={dt_s!r}")
        white = float(self.white_sigma(g)) ** 2 / n
        a = float(self.flicker_amplitude(g))
        if a == 0.0:
            return math.sqrt(white)
        f_lo = self.f_lo_hz if f_min_hz is None else float(f_min_hz)
        f_hi = 0.5 / dt_s
        if f_hi <= f_lo:
            return math.sqrt(white)
        f = np.logspace(math.log10(f_lo), math.log10(f_hi), 4000)
        x = np.pi * f * dt_s
        with np.errstate(invalid="ignore", divide="ignore"):
            h = np.where(x > 0, np.sin(n * x) / (n * np.sin(x)), 1.0)
        s = a * f ** -float(self.alpha(g)) * h * h
        flick = float(np.sum(0.5 * (s[1:] + s[:-1]) * np.diff(f)))
        return math.sqrt(white + flick)

    def flicker_pair_variance(self, g: Any, dt_s: Any) -> np.ndarray:
        """Variance [S^2] that the 1/f part adds to the difference of two reads of a cell at
        ``g`` [S] taken ``dt_s`` [s] apart (broadcast). It grows with ``dt`` and levels off
        beyond ~1/f_lo: two reads seconds apart share their slow 1/f offset, reads hours
        apart do not.

        The 1/f part is taken as what it physically is, a superposition of Lorentzians (traps
        with log-uniformly distributed corner frequencies, McWhorter; Hooge & Bobbert, Physica
        B 239, 223 (1997)) with corners from ``f_lo_hz`` to ``max(f_hi_hz, PAIR_F_HI_HZ)``
        and variance density ``A(g) sin(pi alpha / 2) f_c^(1 - alpha)`` per unit ``ln f_c``,
        which gives ``A f^-alpha`` inside that band; one Lorentzian adds ``2 v (1 - exp(-2 pi
        f_c dt))`` to a pair. Above the band the spectrum then falls as f^-2 instead of
        stopping: the fastest traps still differ between two reads a few ms apart (techa
        round trip: the relaxation onset's interval covered 53 of 60 seeds with the power law
        cut at 100 Hz, 56 of 60 with this). Below the band the spectrum is continued flat at
        ``S(f_lo)`` (a 1/f part must roll off somewhere; flat at the level last seen is the
        least it can hold there), ``2 S(f_lo) int_0^f_lo (1 - cos 2 pi f dt) df`` in closed
        form: without it a bake fit took that part for relaxation (techa's onset 6-9 ms for
        5 ms). Above a slow series' band (a read every 20 s sees up to 0.02 Hz) the 1/f is
        taken to go on up to :data:`PAIR_F_HI_HZ`: 1/f noise spans decades, and that part
        (half the variance on techa) differs between two reads as much as the slow part."""
        g, dt = np.broadcast_arrays(np.asarray(g, dtype=float), np.asarray(dt_s, dtype=float))
        a = self.flicker_amplitude(g)
        out = np.zeros(g.shape)
        use = (a > 0.0) & (dt > 0.0)
        if not np.any(use):
            return out
        f_hi = max(self.f_hi_hz, PAIR_F_HI_HZ)
        n_f = math.ceil(math.log10(f_hi / self.f_lo_hz) * PAIR_POINTS_PER_DECADE) + 1
        ln_fc = np.linspace(math.log(self.f_lo_hz), math.log(f_hi), n_f)
        fc = np.exp(ln_fc)[None, :]
        alpha = np.asarray(self.alpha(g[use]))[:, None]
        density = a[use][:, None] * np.sin(0.5 * np.pi * alpha) * fc ** (1.0 - alpha)
        s = density * -np.expm1(-2.0 * np.pi * fc * dt[use][:, None])
        out[use] = 2.0 * np.sum(0.5 * (s[:, 1:] + s[:, :-1]) * np.diff(ln_fc)[None, :], axis=1)
        # flat below f_lo: 2 S(f_lo) int_0^f_lo (1 - cos 2 pi f dt) df, in closed form
        f0, d = self.f_lo_hz, dt[use]
        s0 = a[use] * f0 ** -np.asarray(self.alpha(g[use]))
        out[use] += 2.0 * s0 * (f0 - np.sin(2.0 * np.pi * f0 * d) / (2.0 * np.pi * d))
        return out

    def excess_pair_variance(self, g: Any, dt_s: Any, lag_s: float) -> np.ndarray:
        """What the 1/f part adds [S^2] to a read pair ``dt_s`` apart beyond what a
        read-noise sigma measured on pairs ``lag_s`` [s] apart already holds (never
        negative): the variance a relaxation or bake fit adds to its read intercept."""
        return np.maximum(self.flicker_pair_variance(g, dt_s)
                          - self.flicker_pair_variance(g, lag_s), 0.0)


__all__ = ["PAIR_F_HI_HZ", "PAIR_POINTS_PER_DECADE", "ReadNoiseSpectrum"]

"""Read-noise spectrum fitter: time series of reads -> ReadNoiseSpectrum (white + 1/f).

Per series (one cell read at ``fs`` samples/s): Welch's method with non-overlapping Hann
segments (``nperseg`` samples, mean removed per segment); the periodograms are averaged in
log-spaced frequency bins (``bins_per_decade``) between ``f_min_hz`` and ``0.4 fs`` (below
the anti-alias roll-off), per segment; the bin's PSD is the mean over segments and its
standard error the segments' spread / sqrt(n_segments) (segments do not overlap, so they are
independent: the error includes the non-Gaussian, telegraph-like part of real 1/f noise).
``S(f) = W + A f^-alpha`` is fitted to the bins by weighted least squares in log S; the
parameter errors are the covariance scaled by max(1, chi2_red) (the model's misfit counts
as error).

Across series (levels): the white std ``sqrt(W fs/2)`` in the quadrature form, ``ln A`` as a
Gaussian in ``g`` (peak, level, width) and ``alpha`` constant or linear in ``g/g_ref``
(linear kept when BIC prefers it and its slope is resolved at 2 sigma), each by weighted
least squares on the per-series estimates and their errors.
Input arrays only (``samples``, ``fs``, level ``g``), so the source may be a store's
time-series run or a reference file.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cimlab.models.params import Z95, FitInfo
from cimlab.models.read_noise_spectrum import ReadNoiseSpectrum


@dataclass(frozen=True)
class SeriesSpectrum:
    """The spectrum of one time series and its ``W + A f^-alpha`` fit (SI units)."""

    g_mean: float          # S, mean conductance of the series
    fs_hz: float           # Hz, sample rate
    f_hz: np.ndarray       # Hz, bin centres (geometric mean of the bin's frequencies)
    psd: np.ndarray        # S^2/Hz, mean PSD of the bin
    psd_se: np.ndarray     # S^2/Hz, its standard error over segments
    white: float           # S^2/Hz, W
    white_se: float
    amp: float             # S^2/Hz at 1 Hz, A
    amp_se: float
    alpha: float           # 1
    alpha_se: float
    chi2_red: float
    n_segments: int

    @property
    def white_sigma(self) -> float:
        """Std [S] of the white part of one sample (bandwidth fs/2)."""
        return math.sqrt(self.white * self.fs_hz / 2.0)


def binned_psd(samples: np.ndarray, fs_hz: float, nperseg: int = 8192,
               bins_per_decade: int = 10, f_min_hz: float = 0.1,
               f_max_hz: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """``(f, psd, psd_se, n_segments)`` of one series (see module docstring)."""
    from scipy.signal import spectrogram

    x = np.asarray(samples, dtype=float)
    if x.ndim != 1 or not np.all(np.isfinite(x)):
        raise ValueError("samples must be a 1-D array of finite conductances")
    if x.size < 2 * nperseg:
        raise ValueError(f"a series needs at least 2 * nperseg = {2 * nperseg} samples, "
                         f"got {x.size}")
    f, _t, sxx = spectrogram(x, fs=fs_hz, window="hann", nperseg=nperseg, noverlap=0,
                             detrend="constant", scaling="density", mode="psd")
    n_seg = sxx.shape[1]
    f_hi = 0.4 * fs_hz if f_max_hz is None else f_max_hz
    k = np.arange(math.floor(math.log10(f_min_hz) * bins_per_decade),
                  math.ceil(math.log10(f_hi) * bins_per_decade) + 1)
    edges = 10.0 ** (k / bins_per_decade)
    fc, mean, se = [], [], []
    for lo, hi in itertools.pairwise(edges):
        m = (f >= max(lo, f_min_hz)) & (f < min(hi, f_hi)) & (f > 0)
        if not m.any():
            continue
        per_seg = sxx[m].mean(axis=0)
        fc.append(math.exp(np.log(f[m]).mean()))
        mean.append(per_seg.mean())
        se.append(per_seg.std(ddof=1) / math.sqrt(n_seg))
    return np.array(fc), np.array(mean), np.array(se), n_seg


#: Longest and shortest Welch segment [samples] and the fewest segments a series is cut
#: into when the segment length is not given: techA's 1e5-sample series get 8192 (0.05 Hz
#: bins at 400 Hz)
NPERSEG_MAX, NPERSEG_MIN, MIN_SEGMENTS = 8192, 16, 4
#: Lowest frequency fitted when not given: 0.1 Hz (techA's drift below it is not read
#: noise), or 4 frequency bins above DC where the segments are too short to reach 0.1 Hz
F_MIN_DEFAULT_HZ, F_MIN_BINS = 0.1, 4


def segment_plan(n_samples: int, fs_hz: float, nperseg: int | None = None,
                 f_min_hz: float | None = None) -> tuple[int, float]:
    """``(nperseg, f_min_hz)`` for a series of ``n_samples`` at ``fs_hz``: the given values,
    else the longest power-of-two segment (<= :data:`NPERSEG_MAX`) that cuts the series into
    >= :data:`MIN_SEGMENTS`, and ``min(0.1 Hz, 4 fs / nperseg)``. A slow series (a lab's
    hours-long record at ~1 Hz) thus reaches the low frequencies it holds, techA's does
    not change."""
    if nperseg is None:
        nperseg = NPERSEG_MAX
        while nperseg > NPERSEG_MIN and n_samples < MIN_SEGMENTS * nperseg:
            nperseg //= 2
    if f_min_hz is None:
        f_min_hz = min(F_MIN_DEFAULT_HZ, F_MIN_BINS * fs_hz / nperseg)
    return int(nperseg), float(f_min_hz)


def fit_series(samples: np.ndarray, fs_hz: float, *, nperseg: int | None = None,
               f_min_hz: float | None = None, bins_per_decade: int = 10) -> SeriesSpectrum:
    """Fit ``S(f) = W + A f^-alpha`` to one time series (``samples`` [S] at ``fs_hz``;
    segment length and lowest frequency by default from :func:`segment_plan`)."""
    from scipy.optimize import least_squares

    x = np.asarray(samples, dtype=float)
    nperseg, f_min_hz = segment_plan(x.size, fs_hz, nperseg, f_min_hz)
    f, s, se, n_seg = binned_psd(x, fs_hz, nperseg, bins_per_decade, f_min_hz)
    rel = np.maximum(se / s, 1e-3)
    ls = np.log(s)

    def res(p):
        return (ls - np.log(np.exp(p[0]) + np.exp(p[1]) * f ** -p[2])) / rel

    w0 = float(np.median(s[-5:]))
    a0 = float(max(s[0] - w0, 1e-3 * s[0]) * f[0])
    r = least_squares(res, [math.log(w0), math.log(a0), 1.0],
                      bounds=([-120, -120, 0.0], [0, 0, 3.0]), method="trf", x_scale="jac")
    dof = max(f.size - 3, 1)
    chi2_red = float(r.fun @ r.fun) / dof
    try:
        cov = np.linalg.inv(r.jac.T @ r.jac) * max(1.0, chi2_red)
        se_p = np.sqrt(np.maximum(np.diag(cov), 0.0))
    except np.linalg.LinAlgError:
        se_p = np.full(3, np.inf)
    w, a = math.exp(r.x[0]), math.exp(r.x[1])
    return SeriesSpectrum(
        g_mean=float(x.mean()), fs_hz=float(fs_hz), f_hz=f, psd=s, psd_se=se,
        white=w, white_se=w * float(se_p[0]), amp=a, amp_se=a * float(se_p[1]),
        alpha=float(r.x[2]), alpha_se=float(se_p[2]), chi2_red=chi2_red, n_segments=n_seg)


def _wls(res, p0, bounds=None):
    from scipy.optimize import least_squares

    lo_hi = bounds or (np.full(len(p0), -np.inf), np.full(len(p0), np.inf))
    r = least_squares(res, p0, bounds=lo_hi, method="trf", x_scale="jac")
    n, k = r.fun.size, len(p0)
    chi2 = float(r.fun @ r.fun)
    scale = max(1.0, chi2 / (n - k)) if n > k else 1.0
    try:
        cov = np.linalg.inv(r.jac.T @ r.jac) * scale
    except np.linalg.LinAlgError:
        cov = np.full((k, k), np.inf)
    bic = chi2 + k * math.log(max(n, 1))
    return r.x, cov, chi2, bic


def fit_read_noise_spectrum(
    samples: Sequence[np.ndarray], fs_hz: float | Sequence[float],
    levels_s: Sequence[float] | None = None, *, g_ref: float | None = None,
    nperseg: int | None = None, f_min_hz: float | None = None,
) -> tuple[ReadNoiseSpectrum, list[SeriesSpectrum]]:
    """Fit :class:`ReadNoiseSpectrum` to time series of reads, one cell per series.

    ``samples``: one 1-D array of conductances [S] per series; ``fs_hz``: sample rate(s)
    [Hz]; ``levels_s``: the conductance [S] each series stands for (default: its mean);
    ``g_ref``: normalising conductance (default: the largest level). Needs >= 3 series (for
    the level dependence). ``nperseg`` / ``f_min_hz``: Welch segment length and lowest
    frequency (default per series: :func:`segment_plan`). Returns the effect and the
    per-series fits (slope and its error per level)."""
    n = len(samples)
    if n < 3:
        raise ValueError(f"the level dependence needs >= 3 series (levels), got {n}")
    fs = np.broadcast_to(np.asarray(fs_hz, dtype=float), (n,))
    series = [fit_series(x, float(fs[i]), nperseg=nperseg, f_min_hz=f_min_hz)
              for i, x in enumerate(samples)]
    g = np.array([s.g_mean for s in series] if levels_s is None else levels_s, dtype=float)
    g_ref = float(g.max() if g_ref is None else g_ref)
    xg = g / g_ref
    stderr: dict[str, float] = {}
    params: dict[str, float] = {}
    us = 1e-6
    # white: sigma_w = sqrt(s0^2 + (s1 x)^2)
    sw = np.array([s.white_sigma for s in series])
    sw_se = np.maximum(np.array([0.5 * s.white_se / s.white for s in series]) * sw, 1e-3 * sw)
    pw, cw, _, _ = _wls(lambda p: (np.hypot(p[0], p[1] * xg) - sw / us) / (sw_se / us),
                        [float(sw.min() / us), float(sw.max() / us)],
                        ([0.0, 0.0], [np.inf, np.inf]))
    params["s0"], params["s1"] = float(pw[0]) * us, float(pw[1]) * us
    stderr["s0"], stderr["s1"] = (float(math.sqrt(cw[i, i])) * us for i in range(2))
    # 1/f amplitude: ln A = ln a_peak - (x - x_peak)^2 / (2 w^2)
    la = np.log([s.amp for s in series])
    la_se = np.maximum([s.amp_se / s.amp for s in series], 1e-3)
    i_max = int(np.argmax(la))
    pa, ca, chi2_a, _ = _wls(
        lambda p: (la - (p[0] - 0.5 * ((xg - p[1]) / p[2]) ** 2)) / la_se,
        [float(la[i_max]), float(xg[i_max]), 0.5], ([-120, -1.0, 1e-3], [0.0, 5.0, 10.0]))
    params["a_peak"] = math.exp(pa[0])
    params["g_peak"] = float(pa[1]) * g_ref
    params["g_width"] = float(pa[2]) * g_ref
    stderr["a_peak"] = params["a_peak"] * math.sqrt(ca[0, 0])
    stderr["g_peak"] = math.sqrt(ca[1, 1]) * g_ref
    stderr["g_width"] = math.sqrt(ca[2, 2]) * g_ref
    # exponent: constant or linear in x, by BIC
    al = np.array([s.alpha for s in series])
    al_se = np.maximum([s.alpha_se for s in series], 1e-3)
    p1, c1, chi2_1, bic1 = _wls(lambda p: (al - p[0]) / al_se, [float(al.mean())])
    p2, c2, chi2_2, bic2 = _wls(lambda p: (al - p[0] - p[1] * xg) / al_se,
                                [float(al.mean()), 0.0])
    candidates = {"alpha_constant": {"bic": bic1, "k": 1.0, "chi2": chi2_1},
                  "alpha_linear": {"bic": bic2, "k": 2.0, "chi2": chi2_2}}
    # linear only when its slope is resolved (2 sigma, errors scaled by the misfit): with
    # one cell per level, cell-to-cell scatter of alpha is no level dependence
    if bic2 < bic1 and abs(p2[1]) > 2.0 * math.sqrt(c2[1, 1]):
        form = "alpha_linear"
        params["alpha0"], params["alpha1"] = float(p2[0]), float(p2[1])
        stderr["alpha0"], stderr["alpha1"] = (float(math.sqrt(c2[i, i])) for i in range(2))
    else:
        form = "alpha_constant"
        params["alpha0"], params["alpha1"] = float(p1[0]), 0.0
        stderr["alpha0"] = float(math.sqrt(c1[0, 0]))
    f_lo = float(min(s.f_hz[0] for s in series))
    f_hi = float(max(s.f_hz[-1] for s in series))
    gof = {"chi2_red_lnA": chi2_a / max(n - 3, 1)}
    for i, s in enumerate(series):
        gof[f"series{i}_g_siemens"] = s.g_mean
        gof[f"series{i}_alpha"] = s.alpha
        gof[f"series{i}_alpha_se"] = s.alpha_se
        gof[f"series{i}_chi2_red"] = s.chi2_red
    nseg0 = segment_plan(np.asarray(samples[0]).size, float(fs[0]), nperseg)[0]
    fit = FitInfo(
        method="Welch (non-overlapping Hann segments, log-binned, errors over segments); "
        "W + A f^-alpha per series by WLS in log S; level dependence by WLS",
        n=int(sum(np.asarray(x).size for x in samples)), form=form, gof=gof,
        candidates=candidates, stderr=stderr,
        ci95={k: (params[k] - Z95 * v, params[k] + Z95 * v) for k, v in stderr.items()},
        notes=f"{n} series, nperseg={nseg0}, f {f_lo:.3g}-{f_hi:.3g} Hz")
    eff = ReadNoiseSpectrum(
        g_ref=g_ref, bandwidth_hz=float(fs.min()) / 2.0, f_lo_hz=f_lo, f_hi_hz=f_hi,
        source="fit", fit=fit, **params)
    return eff, series


__all__ = ["SeriesSpectrum", "binned_psd", "fit_read_noise_spectrum", "fit_series"]

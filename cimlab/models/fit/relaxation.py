"""Relaxation fitter: reads at times after program-verify -> Relaxation (+ read-noise levels).

Data: ``relaxation`` / ``imported`` ``reads`` tables (cell, level, target_siemens, g0_siemens,
time_s,
g_siemens, temp_k; optional ``g0_time_s``: when the g0 read was taken after the cell's last pulse,
0 if absent). Times must be counted from each cell's last programming pulse: relaxation starts
there and its clock runs in log time from ~ms, so a few-ms error in the pulse or g0 times
biases t0 (see docs/device-models.md, "Timing"). For each cell ``d = g_siemens - g0_siemens`` is its
change since the verify read; per level and time point the mean and variance of ``d`` are
taken (not trimmed, see below; their covariance across the time points of a level, which
share cells, is estimated from the cells and used to whiten the fit). Because the
relaxation increments are independent of the programming error, this removes the programmed
spread exactly, and the two reads in ``d`` contribute ``2 sigma_read^2``:

* variance: ``var_d(l, t) = c_l + k(g_l) log10(1 + t / t0)``. The intercept ``c_l`` is twice
  the read variance when a read-noise model is given; otherwise both "none" and "free per
  level (>= 0)" are tried and BIC decides (techC: none). ``k`` is each form of
  :data:`cimlab.models.effects.RATE_FORMS` (constant, linear, polynomial, peaked); weighted
  least squares (soft-L1 loss) with the standard error of each group variance from its
  fourth moment; the form with the lowest BIC wins.

Cells whose verify read ``g0_siemens`` is not in their level (beyond 10 MAD of the level's median:
stuck cells, failed verifies) are dropped (:func:`in_level`). Groups whose spread reaches zero
conductance (mean - 3 sd < 0, :func:`censored`) are left
out: the distribution is truncated there (a conductance cannot be negative), which would
bias the variance law at the lowest levels and longest times.

Rows are NOT trimmed by a MAD rule: the relaxation increments are heavy tailed (techC:
kurtosis up to ~28 at 10 ms, real jumps of several uS), and the model's variance must be
their variance (a 5-MAD trim underestimates sigma by up to 80 % there). Only reads outside
:data:`PLAUSIBLE` are dropped; robustness comes from the soft-L1 loss over groups.
* mean: ``mean_d(l, t) = b_l + drift(g_l) log10(1 + t / t0)`` (t0 from the variance fit,
  ``b_l`` a per-level offset of the verify read), drift "linear" or "tanh"; BIC.

``g_l`` is the mean verify conductance of the level. Reads more than ROOM_TOLERANCE_K from the
reference temperature are first converted to equivalent room-temperature time with
``retention``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cimlab.errors import ConfigError
from cimlab.models.effects import RATE_FORMS, TABLE_X, ReadNoise, Relaxation, Retention
from cimlab.models.fit._stats import (
    MAD_TO_SIGMA,
    TRIM_MAD,
    LsqResult,
    block_whiteners,
    group_moments,
    r2,
    wls,
)
from cimlab.models.params import Z95, FitInfo
from cimlab.models.read_noise_spectrum import ReadNoiseSpectrum
from cimlab.params import bounds_of

_U = 1e-6
REQUIRED = ("level", "g0_siemens", "time_s", "g_siemens")
MEAN_FORMS = ("linear", "tanh")
#: Reads (and verify reads) outside this range, in units of g_ref, are dropped as
#: implausible (mis-reads); nothing else is trimmed: relaxation tails are physics.
PLAUSIBLE = (-0.25, 4.0)
#: Reads within this many kelvin of the reference temperature count as room temperature (the
#: Arrhenius correction of 5 K at 1.2 eV is 0.1 decade, below the uncertainty of Ea itself;
#: imported sets often record a nominal 300 K).
ROOM_TOLERANCE_K = 5.0
#: Smoothness prior of the tabulated rate: each second difference of the knots has a
#: standard deviation of this fraction of the median per-level rate.
TABLE_SMOOTH = 0.5
#: The drift's centre (where means relax to) is fitted inside 0 .. GC_MAX g_ref.
GC_MAX = 1.5
#: Range of the fitted scale of the measured spectrum's 1/f variance between the two reads of
#: a change (1: as the spectrum says). The spectrum of a slow series (a read every 20 s) is
#: extrapolated ~4 decades up to the ms-scale lags of the first changes: a fixed term would
#: pass that error into t0 unseen (techa round trip, seeds 0-29, with the power-law
#: structure function of stop 21: onset ~11 % high, its 95 % interval covering 25 of 30;
#: fitted: 27 of 30; with the Lorentzian one now 28 of 30, scales 0-1.9, 12 at the bound 0).
FLICKER_SCALE_BOUNDS = (0.0, 10.0)
#: A fitted scale this close to a bound is reported as at it (the optimiser stops ~1e-12 off).
FLICKER_SCALE_AT_BOUND = 1e-6


def drift_amplitude_bounds_u() -> tuple[float, float]:
    """Bounds [uS per decade] of a fitted drift amplitude ``m_max``: the model's own range
    (:class:`Relaxation`'s ``m_max``), so every fitted drift can be written as a model. A
    tanh drift whose width is far wider than the measured levels is a straight line there:
    only ``m_max / g_width`` is determined and the amplitude runs off; bounded, it stops at
    the range with the same slope instead of failing the whole fit."""
    lo, hi = bounds_of(Relaxation, "m_max")
    return lo / _U, hi / _U


#: Groups closer than this many standard deviations to zero conductance are censored.
CENSOR_SIGMAS = 3.0


@dataclass
class RelaxationFit:
    """Fitted effect plus the per-level read-noise constants and the grouped data."""

    effect: Relaxation
    levels: pd.DataFrame  # level, g_siemens, c_s2 (2 sigma_read^2), c_se_s2
    groups: pd.DataFrame  # level, tkey, n, mean, var, g0_siemens, time_s, t_eq_s, var_model, ...


def _rate(form: str, p: np.ndarray, g: np.ndarray, g_ref_u: float) -> np.ndarray:
    """k(g) in uS^2 / decade for parameters p (uS units), g in uS."""
    if form == "table":
        return np.interp(np.asarray(g, dtype=float) / g_ref_u, TABLE_X, np.asarray(p))
    if form == "peaked":
        kp, gp, a = p
        x = np.maximum(g, 1e-12) / gp
        return kp * np.exp(a * (np.log(x) + 1.0 - x))
    x = g / g_ref_u
    c = np.zeros(3)
    c[: p.size] = p
    return c[0] + x * (c[1] + c[2] * x)


def _drift(form: str, p: np.ndarray, g: np.ndarray, g_ref_u: float) -> np.ndarray:
    if form == "tanh":
        m, gc, w = p
        return m * np.tanh((gc - g) / w)
    m, gc = p
    return m * (gc - g) / g_ref_u


def _group(
    reads: pd.DataFrame, retention: Retention | None, g_ref: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(cell-level rows, groups): per (level, time point) moments of d = g - g0."""
    missing = [c for c in REQUIRED if c not in reads.columns]
    if missing:
        raise ValueError(f"reads table lacks columns {missing}")
    t = reads["time_s"].to_numpy(dtype=float)
    gs = reads["g_siemens"].to_numpy(dtype=float)
    g0 = reads["g0_siemens"].to_numpy(dtype=float)
    lo, hi = PLAUSIBLE
    keep = np.isfinite(t) & (t > 0) & np.isfinite(gs) & np.isfinite(g0)
    if "g0_time_s" in reads.columns:  # NaN: the cell's last pulse is unknown
        keep &= np.isfinite(reads["g0_time_s"].to_numpy(dtype=float))
    keep &= (gs >= lo * g_ref) & (gs <= hi * g_ref) & (g0 >= lo * g_ref) & (g0 <= hi * g_ref)
    df = reads.loc[keep]
    t = t[keep]
    t_eq = t
    if retention is not None and "temp_k" in df.columns:
        tk = df["temp_k"].to_numpy(dtype=float)
        hot = np.abs(tk - retention.t_ref_k) > ROOM_TOLERANCE_K
        if np.any(hot):
            t_eq = np.where(hot, t * np.asarray(retention.acceleration(tk)), t)
    tkey = (
        df["time_index"].to_numpy()
        if "time_index" in df.columns
        else np.round(np.log10(t) * 10.0).astype(np.int64)
    )
    work = pd.DataFrame({
        "cell": df["cell"].to_numpy() if "cell" in df.columns else np.arange(len(df)),
        "run": df["run"].to_numpy() if "run" in df.columns else 0,
        "level": df["level"].to_numpy(), "tkey": tkey,
        "d": (df["g_siemens"] - df["g0_siemens"]).to_numpy(dtype=float),
        "g0_siemens": df["g0_siemens"].to_numpy(dtype=float), "time_s": t, "t_eq_s": t_eq,
        "g0_time_s": (df["g0_time_s"].to_numpy(dtype=float) if "g0_time_s" in df.columns
                      else np.zeros(len(df))),
    })
    work = work[in_level(work["level"].to_numpy(), work["g0_siemens"].to_numpy())]
    cum = group_moments(work, ["level", "tkey"], "d",
                        extra_means=["g0_siemens", "time_s", "t_eq_s", "g0_time_s"], trim=None)
    work = work.assign(cellkey=work["run"].astype(str) + ":" + work["cell"].astype(str))
    return work, cum[cum["n"] >= 5].reset_index(drop=True)


class GroupLogTime:
    """Group means of ``dL = log10(1 + t/t0) - log10(1 + tp/t0)`` over the cells of each
    (level, time point) group, as a function of ``log10 t0``.

    Cells of one group are read at one instant but were pulsed at different times (each
    verify iteration is its own batch), so their ``t`` (read after the last pulse) and ``tp``
    (g0 read after the last pulse) differ by up to tens of ms. With the Brownian law the
    group's variance is ``k E[dL]``, and ``E[dL]`` differs from ``dL(E[t], E[tp])`` at
    t ~ t0, so the exact mean is used. Cells are compressed to distinct (t, tp) pairs
    (rounded to 0.1 % in log time), typically a few per verify iteration and group.
    """

    def __init__(self, work: pd.DataFrame, groups: pd.DataFrame):
        t = work["t_eq_s"].to_numpy(dtype=float)
        tp = work["g0_time_s"].to_numpy(dtype=float)
        rt = np.round(np.log10(np.maximum(t, 1e-15)) * 1e3).astype(np.int64)
        rp = np.where(tp > 0, np.round(np.log10(np.maximum(tp, 1e-15)) * 1e3), -(10**9))
        agg = pd.DataFrame({"level": work["level"].to_numpy(), "tkey": work["tkey"].to_numpy(),
                            "rt": rt, "rp": rp.astype(np.int64), "t": t, "tp": tp}).groupby(
            ["level", "tkey", "rt", "rp"], sort=False).agg(
            t=("t", "mean"), tp=("tp", "mean"), w=("t", "size")).reset_index()
        gidx = pd.Series(np.arange(len(groups)), index=pd.MultiIndex.from_frame(
            groups[["level", "tkey"]]))
        gid = gidx.reindex(pd.MultiIndex.from_frame(agg[["level", "tkey"]])).to_numpy()
        use = np.isfinite(gid)
        self.gid = gid[use].astype(np.int64)
        self.t = agg["t"].to_numpy()[use]
        self.tp = agg["tp"].to_numpy()[use]
        self.w = agg["w"].to_numpy(dtype=float)[use]
        self.n = len(groups)
        self.wsum = np.bincount(self.gid, self.w, minlength=self.n)

    def flicker(self, spectrum: ReadNoiseSpectrum, g_group: np.ndarray,
                lag_s: float = 0.0) -> np.ndarray:
        """Group means [S^2] of the variance the 1/f read noise adds to ``d`` (two reads
        ``t - tp`` apart, :meth:`ReadNoiseSpectrum.flicker_pair_variance`) for groups at
        conductance ``g_group`` [S], beyond what a read-noise model measured on pairs
        ``lag_s`` apart already holds."""
        v = spectrum.excess_pair_variance(np.asarray(g_group, dtype=float)[self.gid],
                                          np.maximum(self.t - self.tp, 0.0), lag_s)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.bincount(self.gid, self.w * v, minlength=self.n) / self.wsum

    def __call__(self, log10_t0: float) -> np.ndarray:
        t0 = 10.0 ** float(log10_t0)
        v = np.log10(1.0 + self.t / t0) - np.log10(1.0 + self.tp / t0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.bincount(self.gid, self.w * v, minlength=self.n) / self.wsum


def in_level(level: np.ndarray, g0: np.ndarray, trim: float = TRIM_MAD) -> np.ndarray:
    """Cells whose programmed (verify) read lies in their level: within ``trim`` robust
    standard deviations (1.4826 MAD) of the level's median. Stuck cells and cells a verify
    failed to place are not samples of that level's relaxation (a stuck-on cell in a 5 uS
    level would add 0.5 uS to the level's mean conductance and nothing to its spread)."""
    s = pd.Series(g0)
    med = s.groupby(level).transform("median").to_numpy()
    dev = np.abs(g0 - med)
    mad = pd.Series(dev).groupby(level).transform("median").to_numpy() * MAD_TO_SIGMA
    return (dev <= trim * mad) | (mad == 0.0)


def censored(g_mean: Any, var: Any) -> np.ndarray:
    """Groups whose distribution reaches zero conductance (mean - CENSOR_SIGMAS sd < 0): a
    conductance cannot go below 0 (the emulator has a physical floor), so the spread there is
    truncated and would bias the variance law; such groups are left out of the fits."""
    g_mean = np.asarray(g_mean, dtype=float)
    sd = np.sqrt(np.maximum(np.asarray(var, dtype=float), 0.0))
    return g_mean - CENSOR_SIGMAS * sd < 0.0


def fit_relaxation(
    reads: pd.DataFrame,
    g_ref: float,
    retention: Retention | None = None,
    read_noise: ReadNoise | None = None,
    forms: tuple[str, ...] = tuple(RATE_FORMS),
    mean_forms: tuple[str, ...] = MEAN_FORMS,
    spectrum: ReadNoiseSpectrum | None = None,
    read_lag_s: float = 0.0,
) -> RelaxationFit:
    """Fit :class:`Relaxation` to a relaxation ``reads`` table (see module docstring).

    ``spectrum`` (a measured read-noise spectrum with a 1/f part): the two reads of each
    change ``d``, ``t - tp`` apart, then also differ by the 1/f noise between them
    (:meth:`ReadNoiseSpectrum.flicker_pair_variance`), which grows with ``t`` like
    relaxation does; it is added to the intercept instead of being fitted as relaxation,
    less the part ``read_noise`` already holds (its pairs were ``read_lag_s`` apart; 0 when
    ``read_noise`` was fitted with the spectrum, i.e. holds no 1/f). Its scale is fitted
    (``gof.flicker_scale``, :data:`FLICKER_SCALE_BOUNDS`), so the spectrum's error at short
    lags widens the intervals instead of biasing t0 and the rate.

    ``forms`` / ``mean_forms`` restrict the candidate variance-rate and drift forms (BIC
    picks among them; a single one fits that form, e.g. the physics' form in tests).

    Two passes: the first leaves out the groups whose *observed* spread reaches zero
    conductance; the second decides the censoring from the first fit's *model* (so that the
    choice does not depend on each group's own noise, which would bias the rate low at the
    lowest levels) and refits. A last fit takes the groups' weights at the model's variances
    instead of the observed ones (:func:`block_whiteners` ``var_model``), which removes a
    downward bias of the rate.
    """
    work, cum = _group(reads, retention, g_ref)

    def fit_kept(cut, model=None):
        kept = cum[~cut].sort_values(["level", "tkey"]).reset_index(drop=True)
        var_model = None
        if model is not None:  # weights from the model's variances, not the observed ones
            key = pd.MultiIndex.from_frame(kept[["level", "tkey"]])
            vm = model.groups.set_index(["level", "tkey"])["var_model"]
            var_model = vm.reindex(key).to_numpy(dtype=float) / _U**2
            var_model = np.where(np.isfinite(var_model), var_model,
                                 kept["var"].to_numpy(dtype=float) / _U**2)
        W_m, W_v = block_whiteners(work, "level", "tkey", "cellkey", "d", kept, scale=_U,
                                   var_model=var_model)
        dlog = GroupLogTime(work, kept)
        c_extra = None
        if spectrum is not None and spectrum.a_peak > 0.0:
            c_extra = dlog.flicker(spectrum, kept["g0_siemens"].to_numpy(),
                                   read_lag_s) / _U**2
        return _fit_once(kept, g_ref, read_noise, forms, W_m, W_v, dlog, mean_forms, c_extra)

    cut1 = censored(cum["g0_siemens"] + cum["mean"], cum["var"])
    first = fit_kept(cut1)
    r = first.effect
    g0 = cum["g0_siemens"].to_numpy()
    t = cum["t_eq_s"].to_numpy()
    cut2 = censored(g0 + np.asarray(r.mean_shift(g0, t)), np.asarray(r.variance(g0, t)))
    if not np.array_equal(cut1, cut2):
        first = fit_kept(cut2)
    return fit_kept(cut2, model=first)


def _fit_once(
    mom: pd.DataFrame,
    g_ref: float,
    read_noise: ReadNoise | None,
    forms: tuple[str, ...],
    W_m: np.ndarray,
    W_v: np.ndarray,
    dlog: GroupLogTime,
    mean_forms: tuple[str, ...] = MEAN_FORMS,
    c_extra: np.ndarray | None = None,
) -> RelaxationFit:
    cum = mom
    levels = np.unique(mom["level"].to_numpy())
    li = np.searchsorted(levels, mom["level"].to_numpy())
    n_lev = levels.size
    if mom["tkey"].nunique() < 2:
        raise ValueError("relaxation fit needs reads at 2 or more time points after programming")
    g_lvl = mom.groupby("level")["g0_siemens"].mean().reindex(levels).to_numpy() / _U
    g = g_lvl[li]
    t = mom["t_eq_s"].to_numpy()
    tp = mom["g0_time_s"].to_numpy()  # when g0 was read after the last pulse (0: at it)
    first_inc = np.ones(t.size, dtype=bool)
    y = mom["var"].to_numpy() / _U**2
    n = mom["n"].to_numpy()
    s = np.maximum(mom["se_var"].to_numpy() / _U**2, 1e-12)
    g_ref_u = g_ref / _U

    # --- initial t0 and per-level (c_l, k_l) by linear LS on a grid of t0
    best = None
    for lt0 in np.linspace(-6, 1, 29):
        L = dlog(lt0)
        A = np.zeros((y.size, 2 * n_lev))
        A[np.arange(y.size), li] = 1.0
        A[np.arange(y.size), n_lev + li] = L
        coef, *_ = np.linalg.lstsq(A / s[:, None], y / s, rcond=None)
        chi2 = float(np.sum(((A @ coef) - y) ** 2 / s**2))
        if best is None or chi2 < best[0]:
            best = (chi2, lt0, coef)
    _, lt0_init, coef = best
    c_init = np.maximum(coef[:n_lev], 1e-4 * np.median(y))
    k_lvl = np.maximum(coef[n_lev:], 1e-6)

    if read_noise is not None:
        c_read = 2.0 * np.asarray(read_noise.sigma(g * _U)) ** 2 / _U**2
        intercepts = ("read_noise",)
    else:
        c_read = np.zeros_like(y)
        intercepts = ("none", "per_level")
    c_flick = np.zeros_like(y) if c_extra is None else np.nan_to_num(np.asarray(c_extra))
    # the 1/f term's scale is fitted (FLICKER_SCALE_BOUNDS): the spectrum it comes from is
    # measured on a slow series and extrapolated decades up to the ms between two reads
    nl = int(bool(np.any(c_flick > 0.0)))
    candidates: dict[str, dict[str, float]] = {}
    fits: dict[tuple[str, str], tuple[LsqResult, int, int]] = {}
    for form in forms:
        if form == "peaked":
            j = int(np.argmax(k_lvl))
            p0 = [float(k_lvl[j]), float(max(g_lvl[j], 0.05 * g_ref_u)), 1.0]
            lo = [0.0, 1e-3, 0.0]
            hi = [np.inf, 10 * g_ref_u, 20.0]
        elif form == "table":
            if n_lev < 4:
                continue
            o = np.argsort(g_lvl)
            p0 = list(np.maximum(np.interp(TABLE_X, g_lvl[o] / g_ref_u, k_lvl[o]), 0.0))
            lo, hi = [0.0] * len(p0), [np.inf] * len(p0)
        else:
            deg = len(RATE_FORMS[form]) - 1
            if n_lev <= deg:
                continue
            p0 = list(np.polyfit(g_lvl / g_ref_u, k_lvl, deg)[::-1]) if deg else [
                float(np.median(k_lvl))]
            lo, hi = [-np.inf] * (deg + 1), [np.inf] * (deg + 1)
        kf = len(p0)
        for icpt in intercepts:
            nc = n_lev if icpt == "per_level" else 0

            n_pen = kf - 2 if form == "table" else 0
            s_pen = TABLE_SMOOTH * max(float(np.median(k_lvl)), 1e-6)

            def resid(p, form=form, kf=kf, nc=nc, n_pen=n_pen, s_pen=s_pen, nl=nl):
                k = _rate(form, np.asarray(p[1: 1 + kf]), g, g_ref_u)
                lam = p[-1] if nl else 1.0
                c = (p[1 + kf: 1 + kf + nc][li] if nc else c_read) + lam * c_flick
                r = W_v @ (y - c - k * dlog(p[0]))
                if n_pen:  # smoothness of the table: second differences as a prior
                    r = np.r_[r, np.diff(np.asarray(p[1: 1 + kf]), 2) / s_pen]
                return r

            x0 = [lt0_init, *p0, *(c_init if nc else []), *([1.0] * nl)]
            lb = [-9.0, *lo, *([0.0] * nc), *([FLICKER_SCALE_BOUNDS[0]] * nl)]
            ub = [4.0, *hi, *([np.inf] * nc), *([FLICKER_SCALE_BOUNDS[1]] * nl)]
            res = wls(resid, x0, bounds=(lb, ub), n_prior=n_pen)
            key = f"{form}+{icpt}"
            coeff = _coeffs(form, res.params[1: 1 + kf], g_ref)
            try:
                Relaxation(form=form, g_ref=g_ref, t0_s=10 ** float(res.params[0]), **coeff)
            except ConfigError:
                candidates[key] = {"aic": res.aic, "bic": res.bic, "k": res.k, "valid": 0.0}
                continue
            candidates[key] = {"aic": res.aic, "bic": res.bic, "k": res.k, "chi2": res.chi2}
            fits[(form, icpt)] = (res, kf, nc)
    if not fits:
        raise ValueError("no relaxation variance form could be fitted")
    order = list(RATE_FORMS)
    form, icpt = min(fits, key=lambda f: (fits[f][0].bic, order.index(f[0])))
    res, kf, nc = fits[(form, icpt)]
    tau = float(np.mean(tp))
    lt0 = float(res.params[0])
    t0 = 10**lt0
    L = dlog(lt0)
    kp = res.params[1: 1 + kf]
    coeffs = _coeffs(form, kp, g_ref)
    stderr: dict[str, float] = {}
    ci: dict[str, tuple[float, float]] = {}
    se_lt0 = float(res.stderr[0])
    stderr["t0_s"] = t0 * math.log(10) * se_lt0
    ci["t0_s"] = (10 ** max(lt0 - Z95 * se_lt0, -300.0), 10 ** min(lt0 + Z95 * se_lt0, 300.0))
    names = _names(form)
    for i, name in enumerate(names):
        scale = _scale(name)
        v = float(kp[i]) * scale
        e = float(res.stderr[1 + i]) * scale
        stderr[name] = e
        ci[name] = (v - Z95 * e, v + Z95 * e)
    if nc:
        c_fit = res.params[1 + kf: 1 + kf + nc]
        c_se = res.stderr[1 + kf: 1 + kf + nc]
    else:
        c_fit = np.array([c_read[li == j].mean() if np.any(li == j) else 0.0
                          for j in range(n_lev)])
        c_se = np.zeros(n_lev)


    # --- mean drift, t0 fixed
    ym = mom["mean"].to_numpy() / _U
    sm = np.sqrt(np.maximum(mom["var"].to_numpy(), 1e-30) / n) / _U
    b_init = np.zeros(n_lev)
    slopes = np.zeros(n_lev)
    for j in range(n_lev):
        m = li == j
        if m.sum() >= 2:
            A = np.stack([first_inc[m].astype(float), L[m]], axis=1)
            cj, *_ = np.linalg.lstsq(A / sm[m, None], ym[m] / sm[m], rcond=None)
            b_init[j], slopes[j] = cj
    beta, alpha = np.polyfit(g_lvl, slopes, 1)
    m_lin = -beta * g_ref_u
    gc_lin = -alpha / beta if beta != 0 else float(np.mean(g_lvl))
    mfits: dict[str, LsqResult] = {}
    # means relax towards a level inside the window (0 .. GC_MAX g_ref): a centre outside it
    # makes every level drift the same way, which a straight line extrapolates with the wrong
    # sign below the measured levels; a form whose centre ends at this bound is not taken
    gc_lo, gc_hi = 0.0, GC_MAX * g_ref_u
    gc0 = float(np.clip(gc_lin, gc_lo + 1e-3 * g_ref_u, gc_hi - 1e-3 * g_ref_u))
    m_lo, m_hi = drift_amplitude_bounds_u()
    at_bound: list[str] = []
    for mform in mean_forms:
        if mform == "linear":
            p0 = [m_lin, gc0]
            lo, hi = [m_lo, gc_lo], [m_hi, gc_hi]
        else:
            amp = float(np.max(np.abs(slopes))) * (1.0 if m_lin >= 0 else -1.0)
            p0 = [amp, gc0, max(0.25 * float(np.ptp(g_lvl)), 0.1)]
            lo, hi = [m_lo, gc_lo, 1e-3], [m_hi, gc_hi, 10 * g_ref_u]
        p0[0] = float(np.clip(p0[0], 0.5 * m_lo, 0.5 * m_hi))

        def mres(p, mform=mform):
            b = p[:n_lev]
            return W_m @ (ym - b[li] * first_inc - _drift(mform, np.asarray(p[n_lev:]), g,
                                                          g_ref_u) * L)

        r_ = wls(mres, [*b_init, *p0], bounds=([-np.inf] * n_lev + lo, [np.inf] * n_lev + hi))
        mfits[mform] = r_
        candidates[f"mean:{mform}"] = {"aic": r_.aic, "bic": r_.bic, "k": r_.k, "chi2": r_.chi2}
        gc = float(r_.params[n_lev + 1])
        if min(gc - gc_lo, gc_hi - gc) <= 1e-4 * g_ref_u:
            at_bound.append(mform)
            candidates[f"mean:{mform}"]["valid"] = 0.0
    usable = [f for f in mfits if f not in at_bound] or list(mfits)
    mform = min(usable, key=lambda f: (mfits[f].bic, MEAN_FORMS.index(f)))
    mr = mfits[mform]
    mp = mr.params[n_lev:]
    mse = mr.stderr[n_lev:]
    drift = {"m_max": float(mp[0]) * _U, "g_center": float(mp[1]) * _U,
             "g_width": float(mp[2] if mform == "tanh" else g_ref_u) * _U}
    for i, name in enumerate(("m_max", "g_center", "g_width")[: mp.size]):
        stderr[name] = float(mse[i]) * _U
        ci[name] = (float(drift[name] - Z95 * stderr[name]),
                    float(drift[name] + Z95 * stderr[name]))


    # cumulative groups (g - g0 at each time point): what a user compares with
    cl = np.searchsorted(levels, cum["level"].to_numpy())
    ok = (cl < n_lev) & np.isin(cum["level"].to_numpy(), levels)
    cum = cum[ok].reset_index(drop=True)
    cl = cl[ok]
    gc_ = g_lvl[cl]
    Lc = L[ok]
    c_cum = c_fit[cl] if nc else (2.0 * np.asarray(read_noise.sigma(gc_ * _U)) ** 2 / _U**2
                                  if read_noise is not None else np.zeros(len(cum)))
    lam, lam_se = (float(res.params[-1]), float(res.stderr[-1])) if nl else (1.0, 0.0)
    var_cum = c_cum + lam * c_flick[ok] + _rate(form, kp, gc_, g_ref_u) * Lc
    mean_cum = mr.params[:n_lev][cl] + _drift(mform, mp, gc_, g_ref_u) * Lc
    y_cum = cum["var"].to_numpy() / _U**2
    sig_obs = np.sqrt(y_cum)
    sig_mod = np.sqrt(np.maximum(var_cum, 0))
    gof = {
        "var_chi2_red": res.chi2_red,
        "var_r2": r2(y_cum, var_cum),
        "sigma_max_rel_err": float(np.max(np.abs(sig_mod - sig_obs) / sig_obs)),
        "sigma_median_rel_err": float(np.median(np.abs(sig_mod - sig_obs) / sig_obs)),
        "mean_chi2_red": mr.chi2_red,
        "mean_r2": r2(cum["mean"].to_numpy() / _U, mean_cum),
        "mean_rmse_siemens": float(np.sqrt(np.mean((cum["mean"].to_numpy() / _U - mean_cum) ** 2)))
        * _U,
        "n_trimmed": float(mom["n_out"].sum()),
    }
    if tau:
        gof["g0_time_s_mean"] = tau
    if nl:
        gof["flicker_scale"] = lam
        gof["flicker_scale_se"] = lam_se
    lam_at = (nl and lam <= FLICKER_SCALE_BOUNDS[0] + FLICKER_SCALE_AT_BOUND,
              nl and lam >= FLICKER_SCALE_BOUNDS[1] - FLICKER_SCALE_AT_BOUND)
    # covariance (SI units; log10_t0_s dimensionless): variance-law block, drift block
    v_names = ["log10_t0_s", *names]
    v_scale = np.array([1.0, *[_scale(nm) for nm in names]])
    cv = res.cov[: 1 + kf, : 1 + kf] * np.outer(v_scale, v_scale)
    m_names = ["m_max", "g_center", "g_width"][: mp.size]
    cm = mr.cov[n_lev:, n_lev:] * _U**2
    cov = np.zeros((len(v_names) + len(m_names),) * 2)
    cov[: len(v_names), : len(v_names)] = cv
    cov[len(v_names):, len(v_names):] = cm
    fit = FitInfo(
        covariance={"names": v_names + m_names, "matrix": cov.tolist()},
        method="weighted least squares (soft-L1) on per-(level, time) mean/variance of "
        "g - g0 (untrimmed); forms by BIC",
        n=int(n.sum()), form=f"{form}/{mform}", aic=res.aic + mr.aic, bic=res.bic + mr.bic,
        gof=gof, candidates=candidates, stderr=stderr, ci95=ci,
        notes=f"{n_lev} levels x {mom['tkey'].nunique()} time points; "
        + (f"g0 read on average {tau:.3g} s after the last pulse; " if tau else "")
        + "intercept of var(g - g0): "
        + {"none": "none (BIC)", "per_level": "free per level (BIC)",
           "read_noise": "2 sigma_read^2 from the read-noise model"}[icpt]
        + (f" + the 1/f read noise between the two reads (measured spectrum, its scale "
           f"fitted: {lam:.2f} +- {lam_se:.2f}, gof.flicker_scale"
           + ("; at its bound 0: the changes hold no 1/f beyond the intercept, the "
              "interval is one-sided" if lam_at[0] else "")
           + ("; WARNING: at its upper bound" if lam_at[1] else "") + ")"
           if nl else "")
        + (f"; drift forms with their centre at a bound (0 or {GC_MAX:g} g_ref) not taken: "
           + ", ".join(at_bound) if at_bound and mform not in at_bound else "")
        + ("; WARNING: drift centre g_center ended at its bound (means relax towards a "
           "level outside the measured range; drift below the lowest level is uncertain)"
           if mform in at_bound else "")
        + ("; drift amplitude m_max at the model's bound: the drift is straight over the "
           "measured levels (only m_max / g_width is determined)"
           if np.any(np.isclose(mp[0], (m_lo, m_hi), rtol=1e-6)) else ""),
    )
    eff = Relaxation(
        form=form, g_ref=g_ref, t0_s=t0, mean_form=mform, source="fit", fit=fit,
        **coeffs, **drift,
    )
    groups = cum.assign(
        g_level_siemens=gc_ * _U, var_model=var_cum * _U**2, mean_model=mean_cum * _U,
    )
    lv = pd.DataFrame({"level": levels, "g_siemens": g_lvl * _U, "c_s2": c_fit * _U**2,
                       "c_se_s2": c_se * _U**2})
    return RelaxationFit(eff, lv, groups)


def _names(form: str) -> tuple[str, ...]:
    return RATE_FORMS[form]


def _scale(name: str) -> float:
    if name.startswith("kt"):
        return _U**2
    return {"k0": _U**2, "k1": _U**2, "k2": _U**2, "k_peak": _U**2, "g_peak": _U,
            "shape_a": 1.0}[name]


def _coeffs(form: str, p: np.ndarray, g_ref: float) -> dict[str, float]:
    names = _names(form)
    out = {n_: float(v) * _scale(n_) for n_, v in zip(names, p, strict=True)}
    for n_ in ("k0", "k1", "k2"):
        out.setdefault(n_, 0.0)
    return out

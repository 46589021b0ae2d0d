"""Retention fitter: bakes at one or more temperatures -> Retention (Arrhenius Ea, prefactor).

Data: ``bake_retention`` ``reads`` (cell, level, target_siemens, step, temp_k, bake_time_s,
g_siemens,
[repeat], [temp_index]). Cells are programmed, read (step 0, at room temperature shortly after
programming), then baked in cumulative steps at ``temp_k`` and read after each. Reads of the
same step are averaged per cell; ``d = g(step) - g(step 0)`` per cell. Per (temperature,
level, step) the mean and variance of ``d`` (not trimmed: relaxation tails are physics; only
implausible reads are dropped) are modelled with the relaxation law in equivalent
room-temperature time::

    t_eq = t_off + AF(T) t_bake,        AF(T) = exp(Ea / kB (1/T_ref - 1/T))
    dL   = log10(1 + t_eq / t0) - log10(1 + t_off / t0)
    var_d  = c + s_k k(g) dL            mean_d = s_m drift(g) dL

``k``, ``drift`` and ``t0`` come from the relaxation model (fitted from a room-temperature
relaxation run when the store has one: then ``log10 t0`` and ``s_k`` get Gaussian priors from
that fit's uncertainties, so they propagate into Ea). Ea is fitted to the *spread* only: the
mean drift's form is the least certain part of the relaxation model (on the emulator a
linear drift is often preferred by BIC over the true tanh), and letting it pull Ea biased
Ea by ~2 sigma in tests; the drift is reported (``gof.mean_rmse_siemens``), not fitted. ``c`` is
the read variance of the two reads in ``d`` (from the read-noise model). ``t_off`` (room time
from programming to the step-0 read) is a free nuisance. Free: Ea, log10 t_off, log10 t0,
s_k; weighted least squares (soft-L1), standard errors from the Jacobian. Heating and
cooling ramps (``bakes`` table of the run) are integrated exactly for linear ramps.

The Arrhenius prefactor of the onset time, ``t0(T) = tau0 exp(Ea / kB T)``, is
``ln tau0 = ln t0 - Ea / (kB T_ref)``; its covariance with Ea is exported
(``fit.covariance``) for :mod:`cimlab.models.extrapolate`. With bakes at two or more
temperatures each temperature's AF is also fitted on its own and an Arrhenius line through
``ln AF(T)`` is reported (``gof.arrhenius_chi2_red``: does one Ea explain all temperatures?).

**One bake temperature.** Ea is then not identifiable: what the data fix is the equivalent
time scale at that temperature, ``ln AF(T_bake)`` (reported in ``gof.ln_af_bake`` with its
standard error ``gof.ln_af_bake_se``), and any error in the room-temperature relaxation law
moves it straight into an "Ea" (the quick plan's 150 C bake gave 1.71 +- 0.22 eV for a true
1.2 eV). So Ea is NOT fitted: it stays at the prior (``ea_prior``, the model's value, default
the low end of the published HfOx range) with the published range
:data:`~cimlab.models.effects.EA_PRIOR_RANGE_EV` as its interval and no standard error;
``gof.ea_ev_prior`` = 1 and the notes say "prior (one bake temperature: Ea not identifiable)".
``tau0`` then follows from the relaxation onset at room temperature and the prior Ea; the
exported covariance gives Ea the variance of a uniform draw over the range, and
:func:`cimlab.models.extrapolate.extrapolate_retention` propagates the whole range (with a
warning).

**Bakes only** (no room-temperature relaxation run of the same chips): the rate's level
dependence (peaked form), its onset time and the room time before the bake all come from
the bakes, at any number of temperatures. With one duration per temperature the bakes fix
the spread per level up to a trade between Ea and the onset time, so where Ea is not
identifiable (one temperature, or a fitted 95 % interval wider than the published range, as
with two) Ea is held at the prior and the onset and pre-bake room time are fitted with it
held: the model then reproduces the bakes it was fitted on, and its room-temperature onset
is what the prior implies (notes say so).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cimlab.errors import ConfigError
from cimlab.models.effects import (
    EA_PRIOR_RANGE_EV,
    K_B_EV,
    RATE_FORMS,
    ReadNoise,
    Relaxation,
    Retention,
)
from cimlab.models.fit._stats import wls
from cimlab.models.fit.bake_temperatures import (  # noqa: F401 (re-exported)
    FAIL_MEAN_SIGMAS,
    FAIL_SIGMA_REL,
    _ramp_factor,
    _t_eq,
    bake_groups,
    fails,
    finish,
    fit_bake_drift,
    predict_groups,
    temperature_check,
)
from cimlab.models.fit.relaxation import (
    _drift,
    _rate,
    _scale,
    censored,
    drift_amplitude_bounds_u,
)
from cimlab.models.params import Z95, FitInfo, wald_ci
from cimlab.models.read_noise_spectrum import ReadNoiseSpectrum
from cimlab.params import bounds_of
from cimlab.units import KELVIN_OFFSET

_U = 1e-6
#: What the fit info says about Ea when the store has one bake temperature.
EA_PRIOR_NOTE = "prior (one bake temperature: Ea not identifiable)"


@dataclass
class RetentionFit:
    effect: Retention
    groups: pd.DataFrame
    per_temperature: pd.DataFrame  # temp_k, ln_af, ln_af_se, ln_af_model
    relaxation: Relaxation | None = None  # the relaxation law at the joint optimum

    t_off_s: float = 0.0
    #: Ea that reproduces the measured bakes [eV]: the fitted one, or with one bake
    #: temperature the effective value ``ln AF(T_bake) / x(T_bake)`` (not the model's prior)
    ea_bake_ev: float | None = None
    #: per bake temperature: measured vs predicted (medians over levels of |mean error| in
    #: sigmas and |relative spread error|, pooled means / sigmas), ``excluded`` 1 if it left
    #: the Arrhenius law
    per_temperature_check: pd.DataFrame | None = None

    def model_variance(self, groups: pd.DataFrame) -> np.ndarray:
        """Model variance [S^2] of g - reference for cumulative bake groups (no read noise)."""
        r, ret = self.relaxation, self.effect
        T = groups["bake_temp_k"].to_numpy()
        amb = groups["ambient_k"].to_numpy()
        amb = np.where(np.isfinite(amb), amb, ret.t_ref_k)
        ea = ret.ea_ev if self.ea_bake_ev is None else self.ea_bake_ev
        teq = _t_eq(ea, self.t_off_s, groups["soak_cum_s"].to_numpy(),
                    groups["ramp_cum_s"].to_numpy(), T, amb, ret.t_ref_k)
        return np.asarray(r.variance(groups["g0"].to_numpy(), teq))


def fit_retention(
    reads: pd.DataFrame,
    relaxation: Relaxation,
    g_ref: float,
    read_noise: ReadNoise | None = None,
    t_ref_k: float = 298.15,
    ea_guess: float = 1.2,
    programmed: pd.DataFrame | None = None,
    bakes: pd.DataFrame | None = None,
    ea_prior: float | None = None,
    ea_prior_range: tuple[float, float] = EA_PRIOR_RANGE_EV,
    spectrum: ReadNoiseSpectrum | None = None,
    read_lag_s: float = 0.0,
) -> RetentionFit:
    """Fit :class:`Retention` (see module docstring).

    ``spectrum`` (a measured read-noise spectrum with a 1/f part): each change's two reads,
    a bake apart, also differ by the slow 1/f noise between them
    (:meth:`ReadNoiseSpectrum.flicker_pair_variance`, at the bake's soak + ramp time); it is
    added to the read variance ``c`` (less what ``read_noise``, measured on pairs
    ``read_lag_s`` apart, holds). Without it that variance is taken for relaxation, and
    since it is the same at every temperature it flattens the Arrhenius line (techa: Ea
    0.45-0.54 eV for a true 1.1 eV).

    ``ea_prior`` [eV] (default: :class:`Retention`'s default, the low end of
    ``ea_prior_range``) and ``ea_prior_range`` are used only when the bakes are at one
    temperature: then Ea is not fitted (not identifiable) but kept at the prior.

    Groups whose spread reaches zero conductance are censored in two passes (observed, then
    from the first fit's model), as in :func:`cimlab.models.fit.relaxation.fit_relaxation`.
    """
    inc, cum = bake_groups(reads, g_ref, programmed, bakes)
    if inc.empty:
        raise ValueError("bake table has no cells read before and after a bake step")
    prior = (Retention().ea_ev if ea_prior is None else float(ea_prior),
             tuple(map(float, ea_prior_range)))
    if not prior[1][0] <= prior[0] <= prior[1][1]:
        raise ValueError(f"ea_prior {prior[0]} eV lies outside ea_prior_range {prior[1]}")
    args = (relaxation, read_noise, t_ref_k, ea_guess, prior, spectrum, read_lag_s)

    # temperatures off the Arrhenius law: from the hottest down, predict each from a fit to
    # the cooler ones; one the law cannot predict is flagged and left out (>= 2 stay)
    temps = np.unique(np.round(cum["bake_temp_k"].to_numpy(), 3))
    tk_of = cum.groupby("temp_index")["bake_temp_k"].max()
    excluded: list[float] = []
    checks: dict[float, dict[str, float]] = {}
    # a fit needs 2 temperatures when the relaxation law comes from a room-temperature run,
    # 3 when the bakes alone must also give the law's level dependence and onset
    min_fit = 2 if relaxation.fit is not None else 3
    while temps.size - len(excluded) - 1 >= min_fit:
        hot = float(temps[-1 - len(excluded)])
        ok_t = set(tk_of.index[tk_of.to_numpy() < hot - 1e-6])
        sub_fit = _fit_temps(inc[inc["temp_index"].isin(ok_t)].reset_index(drop=True),
                             cum[cum["temp_index"].isin(ok_t)].reset_index(drop=True), args)
        held = cum[np.isclose(cum["bake_temp_k"], hot, atol=1e-3)].reset_index(drop=True)
        chk = temperature_check(sub_fit, held, read_noise)
        checks[hot] = chk
        if not fails(chk):
            break
        excluded.append(hot)
    if excluded:
        t_fail = min(excluded)
        inc = inc[~np.isin(inc["bake_temp_k"].round(3), np.round(excluded, 3))]
        keep_c = ~np.isin(cum["bake_temp_k"].round(3), np.round(excluded, 3))
        cum_all, cum = cum, cum[keep_c].reset_index(drop=True)
        inc = inc.reset_index(drop=True)
        warnings.warn(
            "bake temperatures " + ", ".join(f"{t - KELVIN_OFFSET:.0f} C" for t in sorted(excluded))
            + " leave the Arrhenius law fitted to the cooler bakes (predicted from them: "
            + "; ".join(f"{t - KELVIN_OFFSET:.0f} C mean shift off by "
                        f"{checks[t]['mean_err_sigma']:.2g} sigma, spread by "
                        f"{100 * checks[t]['sigma_rel_err']:.0f} %"
                        for t in sorted(excluded))
            + "): a failure mode other than relaxation; excluded from Ea", stacklevel=2)
    else:
        t_fail, cum_all = 0.0, cum
    n_kept = int(np.unique(np.round(cum["bake_temp_k"].to_numpy(), 3)).size)
    bakes_only = relaxation.fit is None
    if bakes_only and n_kept == 1:
        out = _fit_temps(inc, cum, args, ea_fixed=prior[0])
    else:
        out = _fit_temps(inc, cum, args)
        if bakes_only and not _ea_identified(out, prior[1]):
            out = _fit_temps(inc, cum, args, ea_fixed=prior[0])
    return finish(out, cum_all, read_noise, t_fail, excluded, checks)


def _ea_identified(fit: RetentionFit, prior_range: tuple[float, float]) -> bool:
    """Whether the bakes determine Ea: its 95 % interval is narrower than the published
    range. Bakes alone (no room-temperature relaxation run) with one duration per temperature
    fix the spread per level up to a trade between Ea and the relaxation onset time (docs/
    device-models.md, "Why Ea is not identified"); with two temperatures the fitted Ea then
    comes with an interval of thousands of eV, or none (a singular fit: zero width)."""
    lo, hi = fit.effect.fit.ci95.get("ea_ev", (-math.inf, math.inf))
    return bool(np.isfinite(lo) and np.isfinite(hi)
                and 0.0 < hi - lo < prior_range[1] - prior_range[0])


def _fit_temps(inc: pd.DataFrame, cum: pd.DataFrame, args: tuple,
               ea_fixed: float | None = None) -> RetentionFit:
    """The joint fit of the given bake groups, censoring in two passes (``ea_fixed``: Ea
    held at that value, see :func:`_fit_once`)."""

    def keep(cut):
        bad = set(zip(cum.loc[cut, "temp_index"], cum.loc[cut, "level"], cum.loc[cut, "step"],
                      strict=True))
        m = np.array([k not in bad for k in zip(inc["temp_index"], inc["level"], inc["step"],
                                                strict=True)], dtype=bool)
        return inc[m].reset_index(drop=True)

    cut1 = censored(cum["g0"] + cum["mean"], cum["var"])
    first = _fit_guarded(keep(cut1), cum, *args, ea_fixed=ea_fixed)
    cut2 = censored(cum["g0"].to_numpy() + cum["mean"].to_numpy(), first.model_variance(cum))
    if np.array_equal(cut1, cut2):
        return first
    return _fit_guarded(keep(cut2), cum, *args, ea_fixed=ea_fixed)


#: Least-squares starts of the retention fit (the best points of its start grid).
N_STARTS = 3
#: Width [eV] of the bound interval that holds Ea at a value it cannot be fitted to.
EA_PIN_EV = 1e-9
#: Upper bound [log10 s] of the onset and pre-bake room times when Ea is held: the model's
#: own bound on the onset time (a technology that barely relaxes at room temperature).
PINNED_LOG10_TIME_MAX = math.log10(bounds_of(Relaxation, "t0_s")[1])


class _InvalidLaw(Exception):
    """The relaxation law floated inside the retention fit left its valid range."""


def _fit_guarded(mom: pd.DataFrame, cum: pd.DataFrame, *args,
                 ea_fixed: float | None = None) -> RetentionFit:
    """:func:`_fit_once`; if floating the relaxation law with its prior makes the variance
    rate negative somewhere in 0 <= g/g_ref <= 1.5 (a polynomial k(g) extrapolated past the
    measured levels), refit with the law's shape held at the room-temperature fit (only its
    onset time and scale free) and say so in the notes, instead of failing the whole fit."""
    try:
        return _fit_once(mom, cum, *args, ea_fixed=ea_fixed)
    except _InvalidLaw as exc:
        return _fit_once(mom, cum, *args, no_prior=str(exc), ea_fixed=ea_fixed)


def _fit_once(
    mom: pd.DataFrame,
    cum: pd.DataFrame,
    relaxation: Relaxation,
    read_noise: ReadNoise | None,
    t_ref_k: float,
    ea_guess: float,
    prior: tuple[float, tuple[float, float]],
    spectrum: ReadNoiseSpectrum | None = None,
    read_lag_s: float = 0.0,
    no_prior: str | None = None,
    ea_fixed: float | None = None,
) -> RetentionFit:
    verify_ref = bool(len(mom)) and mom["reference"].iloc[0] == "verify"
    levels = np.unique(mom["level"].to_numpy())
    li = np.searchsorted(levels, mom["level"].to_numpy())
    g = mom.groupby("level")["g0"].mean().reindex(levels).to_numpy()[li]
    T = mom["bake_temp_k"].to_numpy()
    soak = mom["soak_cum_s"].to_numpy()
    ramp = mom["ramp_cum_s"].to_numpy()
    soak_p = mom["soak_prev_s"].to_numpy()
    ramp_p = mom["ramp_prev_s"].to_numpy()
    step_p = mom["step_prev"].to_numpy()
    amb = mom["ambient_k"].to_numpy()
    amb = np.where(np.isfinite(amb), amb, t_ref_k)
    reps = mom["reps"].to_numpy()
    y_v = mom["var"].to_numpy() / _U**2
    s_v = np.maximum(mom["se_var"].to_numpy() / _U**2, 1e-12)
    g_u, g_ref_u = g / _U, relaxation.g_ref / _U
    notes = []
    if read_noise is not None:
        sr2 = np.asarray(read_noise.sigma(g)) ** 2 / _U**2
        # two reads per change: the verify read (one read) or a previous step's mean
        c = sr2 * (np.where(step_p < 0, 1.0, 1.0 / reps) + 1.0 / reps)
        notes.append("read variance from the read-noise model")
    else:
        c = np.zeros_like(y_v)
        notes.append("no read-noise model: read variance neglected")
    if spectrum is not None and spectrum.a_peak > 0.0:
        # the two reads of a change are a bake apart: the slow 1/f noise between them adds
        # (real time: soak and ramps; the room time around them is not known here)
        dt_real = soak + ramp - np.where(step_p < 0, 0.0, soak_p + ramp_p)
        c = c + spectrum.excess_pair_variance(g, np.maximum(dt_real, 0.0),
                                              read_lag_s) / _U**2
        notes.append("1/f read noise between the two reads of each change from the measured "
                     "spectrum")
    notes.append("change measured from the verify read" if verify_ref else
                 "change measured from the step-0 read (no programmed table)")
    has_ramps = bool(np.any(ramp > 0))
    notes.append("heating/cooling ramps from the bakes table integrated" if has_ramps else
                 "no bakes table: temperature steps taken as instantaneous")
    x_T = (1.0 / t_ref_k - 1.0 / T) / K_B_EV  # ln AF = Ea * x_T
    n_temps = int(np.unique(np.round(T, 3)).size)

    # relaxation parameters: theta = [log10 t0, form parameters (uS units)]
    form = relaxation.form
    names = list(RATE_FORMS[form])
    scale = np.array([1.0, *[_scale(n) for n in names]])
    theta0 = np.array([math.log10(relaxation.t0_s),
                       *[getattr(relaxation, n) / _scale(n) for n in names]])
    cov_t = None
    fit_r = relaxation.fit
    if fit_r is not None and fit_r.covariance is not None:
        cn = list(fit_r.covariance["names"])
        want = ["log10_t0_s", *names]
        if all(w in cn for w in want):
            ix = [cn.index(w) for w in want]
            cov_t = np.asarray(fit_r.covariance["matrix"], dtype=float)[np.ix_(ix, ix)]
            cov_t = cov_t / np.outer(scale, scale)
    if no_prior is not None:
        notes.append(f"relaxation law floated with its prior left the valid range ({no_prior}); "
                     "its shape held at the room-temperature fit")
    if cov_t is not None and np.all(np.isfinite(cov_t)) and no_prior is None:
        mode = "prior"
        prec = np.linalg.pinv(cov_t)
        prec = 0.5 * (prec + prec.T) + 1e-12 * np.eye(prec.shape[0])
        chol = np.linalg.cholesky(prec)
        notes.append("relaxation onset and rate law floated with the relaxation fit's "
                     "covariance as a prior (its uncertainty propagates into Ea)")
    elif levels.size >= 4 and fit_r is None and no_prior is None:
        # bakes only (no room-temperature relaxation run): the level dependence of the rate
        # comes from the bakes themselves, in the peaked form (a rate that vanishes at 0 S,
        # peaks at g_peak; g_peak at many g_ref is a rising power law), at any number of
        # temperatures (the literature default's flat rate misses a 240 uS technology's
        # spread, which falls 10x over its levels, by ~70 %)
        mode = "shape"
        form = "peaked"
        names = list(RATE_FORMS[form])
        vl = pd.Series(y_v).groupby(li).mean().reindex(range(levels.size)).to_numpy()
        gl = pd.Series(g_u).groupby(li).mean().reindex(range(levels.size)).to_numpy()
        j = int(np.nanargmax(vl))
        theta0 = np.array([math.log10(relaxation.t0_s), max(float(vl[j]), 1e-6),
                           max(float(gl[j]), 0.05 * g_ref_u), 1.0])
        notes.append("no relaxation run: rate law k(g) (peaked form), onset time and Ea "
                     "fitted to the bakes alone")
    elif n_temps >= 2:
        mode = "scale"
        notes.append("relaxation not fitted: onset time and rate scale free (from the bakes)")
    else:
        mode = "fixed"
        notes.append("one bake temperature and no relaxation fit: relaxation held at the "
                     "model's values (Ea conditional on them)")

    # parameter vector: [Ea, log10 t_off, (theta... | log10 t0, log10 k scale)]
    if mode == "shape":
        p0 = np.r_[ea_guess, 0.0, theta0]
        lo = np.array([0.05, -4.0, -9.0, 0.0, 1e-3, 0.0])
        hi = np.array([5.0, 6.0, 4.0, np.inf, 10 * g_ref_u, 20.0])
    elif mode == "prior":
        p0 = np.r_[ea_guess, 0.0, theta0]
        lo = np.r_[0.05, -4.0, theta0 - 50 * np.sqrt(np.maximum(np.diag(cov_t), 1e-30))]
        hi = np.r_[5.0, 6.0, theta0 + 50 * np.sqrt(np.maximum(np.diag(cov_t), 1e-30))]
        if form == "peaked":
            lo[3:] = np.maximum(lo[3:], [0.0, 1e-3, 0.0])
        elif form == "table":
            lo[3:] = np.maximum(lo[3:], 0.0)
    elif mode == "scale":
        p0 = np.array([ea_guess, 0.0, theta0[0], 0.0])
        lo, hi = np.array([0.05, -4.0, -9.0, -2.0]), np.array([5.0, 6.0, 4.0, 2.0])
    else:
        p0 = np.array([ea_guess, 0.0])
        lo, hi = np.array([0.05, -4.0]), np.array([5.0, 6.0])
    if ea_fixed is not None:  # not identifiable from these bakes: held (pinned by its bounds)
        p0[0], lo[0], hi[0] = ea_fixed, ea_fixed, ea_fixed + EA_PIN_EV
        # the onset and pre-bake room time then absorb the prior's acceleration (e.g. x7e3
        # for 1.1 eV instead of 0.3 eV at 140 C): room for it, up to the model's bound
        hi[1] = max(hi[1], PINNED_LOG10_TIME_MAX)
        if mode in ("shape", "scale"):
            hi[2] = max(hi[2], PINNED_LOG10_TIME_MAX)
    n_prior = theta0.size if mode == "prior" else 0
    pairs, inv = np.unique(np.stack([T, amb], axis=1), axis=0, return_inverse=True)
    inv = inv.ravel()

    def unpack(p):
        """(Ea, log10 t_off, log10 t0, k(g) in uS^2/decade)."""
        if mode in ("prior", "shape"):
            return p[0], p[1], p[2], _rate(form, np.asarray(p[3:]), g_u, g_ref_u)
        k = _rate(form, theta0[1:], g_u, g_ref_u)
        if mode == "scale":
            return p[0], p[1], p[2], k * 10 ** p[3]
        return p[0], p[1], theta0[0], k

    def clocks(ea, lto, lt0, ea_x=None):
        """Decades of relaxation clock elapsed over each change (end minus start)."""
        rf = _ramp_factor(ea, pairs[:, 0], pairs[:, 1], t_ref_k)[inv]
        af = np.exp(ea * x_T if ea_x is None else ea_x)
        teq = 10**lto + af * soak + rf * ramp
        teq_p = np.where(step_p < 0, 0.0, 10**lto + af * soak_p + rf * ramp_p)
        t0 = 10**lt0
        return np.log10(1.0 + teq / t0) - np.log10(1.0 + teq_p / t0)

    def resid(p):
        ea, lto, lt0, k = unpack(p)
        v = c + k * clocks(ea, lto, lt0)
        r = (y_v - v) / s_v
        if mode == "prior":
            r = np.r_[r, chol.T @ (np.asarray(p[2:]) - theta0)]
        return r

    # starts: a grid over Ea, the room time before the bake and (where it is free) the
    # onset time; the least-squares fit runs from the best few and keeps the lowest chi^2.
    # One start was not enough: on the techA bakes alone it ended in a local minimum (Ea
    # 0.12 eV, chi2_red 122, shape at its bound) while Ea pinned at 0.3 eV gives chi2_red 5.2
    grid = []
    lt0_starts = (p0[2], -1.0, 1.0, 3.0) if mode in ("shape", "scale") else (None,)
    lto_starts = (-2.0, 0.0, 2.0)
    if ea_fixed is not None:  # the held Ea moves both times by many decades
        lto_starts = tuple(np.arange(-2.0, PINNED_LOG10_TIME_MAX, 2.0))
        if mode in ("shape", "scale"):
            lt0_starts = (p0[2], *np.arange(-1.0, PINNED_LOG10_TIME_MAX, 2.0))
    for ea0 in (np.linspace(0.3, 3.0, 28) if ea_fixed is None else (ea_fixed,)):
        for lto0 in lto_starts:
            for lt00 in lt0_starts:
                pp = p0.copy()
                pp[0], pp[1] = ea0, lto0
                if lt00 is not None:
                    pp[2] = lt00
                r = resid(pp)
                c2 = float(r @ r)
                if np.isfinite(c2):
                    grid.append((c2, pp))
    grid.sort(key=lambda item: item[0])
    res = None
    for _, pp in grid[:N_STARTS]:
        try:
            cand = wls(resid, np.clip(pp, lo, hi), bounds=(lo, hi), n_prior=n_prior)
        except (ValueError, np.linalg.LinAlgError):
            continue
        if res is None or cand.chi2 < res.chi2:
            res = cand
    if res is None:
        res = wls(resid, grid[0][1] if grid else p0, bounds=(lo, hi), n_prior=n_prior)
    p_names = ["ea_ev", "log10_t_off_s", "log10_t0_s", *names][: res.params.size] \
        if mode in ("prior", "shape") else ["ea_ev", "log10_t_off_s", "log10_t0_s",
                                            "log10_rate_scale"][: res.params.size]
    span = np.where(np.isfinite(hi - lo), hi - lo, np.maximum(np.abs(res.params), 1.0))
    at_bound = [n for n, v, a, b, w in zip(p_names, res.params, lo, hi, span, strict=True)
                if min(v - a, b - v) <= 1e-6 * w and not (n == "ea_ev" and ea_fixed is not None)]
    if at_bound:
        notes.insert(0, "WARNING: parameters at a bound of the fit (not determined by these "
                     "bakes; their uncertainty is not a CI): " + ", ".join(at_bound))
    ea, lto, lt0, k_fit = unpack(res.params)
    ea, lt0 = (float(ea) if ea_fixed is None else float(ea_fixed)), float(lt0)
    cov = res.cov
    se_ea = math.sqrt(max(cov[0, 0], 0.0))
    # ln tau0 = ln(10) lt0 - Ea / (kB T_ref)
    J = np.zeros((2, res.params.size))
    J[0, 0] = 1.0
    J[1, 0] = -1.0 / (K_B_EV * t_ref_k)
    if mode != "fixed":
        J[1, 2] = math.log(10.0)
    cov2 = J @ cov @ J.T
    if mode == "fixed" and fit_r is not None and "t0_s" in fit_r.stderr:
        cov2[1, 1] += (fit_r.stderr["t0_s"] / relaxation.t0_s) ** 2
    ln_tau0 = math.log(10.0) * lt0 - ea / (K_B_EV * t_ref_k)
    se_lt = math.sqrt(max(cov2[1, 1], 0.0))
    tau0 = math.exp(ln_tau0)
    stderr = {"ea_ev": se_ea, "tau0_s": tau0 * se_lt}
    ci = {"ea_ev": (ea - Z95 * se_ea, ea + Z95 * se_ea),
          "tau0_s": (math.exp(max(ln_tau0 - Z95 * se_lt, -700.0)),
                     math.exp(min(ln_tau0 + Z95 * se_lt, 700.0)))}
    ea_model = ea
    one_temp = {}
    if n_temps == 1 or ea_fixed is not None:
        # Ea not identifiable: keep the prior, report what one temperature identifies
        x_b = float(x_T[0])
        ea_model, (ea_lo, ea_hi) = (ea, prior[1]) if ea_fixed is not None else prior
        # variance of ln t0 at room temperature (the relaxation onset), in ln units
        if mode != "fixed":
            var_lt0 = math.log(10.0) ** 2 * max(float(cov[2, 2]), 0.0)
        elif fit_r is not None and "t0_s" in fit_r.stderr:
            var_lt0 = (fit_r.stderr["t0_s"] / relaxation.t0_s) ** 2
        else:
            var_lt0 = 0.0
        var_ea = (ea_hi - ea_lo) ** 2 / 12.0  # uniform over the published range
        b = -1.0 / (K_B_EV * t_ref_k)
        cov2 = np.array([[var_ea, b * var_ea], [b * var_ea, var_lt0 + b * b * var_ea]])
        ln_tau0 = math.log(10.0) * lt0 + b * ea_model
        tau0 = math.exp(ln_tau0)
        # tau0 = t0 exp(-Ea / kB T_ref): with Ea only known to lie in the published range,
        # its interval spans the whole range (b < 0: the high Ea gives the low tau0), widened
        # by the onset time's own 95 % interval. A Wald interval at the prior Ea alone looks
        # precise and misses the truth whenever the true Ea is not the prior.
        se_t0 = math.sqrt(var_lt0)
        ln_t0 = math.log(10.0) * lt0
        stderr = {"tau0_s": tau0 * math.sqrt(cov2[1, 1])}
        ci = {"ea_ev": (ea_lo, ea_hi),
              "tau0_s": (math.exp(max(ln_t0 + b * ea_hi - Z95 * se_t0, -700.0)),
                         math.exp(min(ln_t0 + b * ea_lo + Z95 * se_t0, 700.0)))}
        if ea_fixed is None:
            one_temp = {"ea_ev_prior": 1.0, "ln_af_bake": ea * x_b,
                        "ln_af_bake_se": se_ea * abs(x_b), "bake_temp_k": float(T[0])}
            notes.insert(0, f"ea_ev: {EA_PRIOR_NOTE}; kept at {ea_model:g} eV, published "
                         f"range [{ea_lo:g}, {ea_hi:g}] eV (DESIGN.md); fitted instead: the "
                         f"equivalent time scale at {T[0] - KELVIN_OFFSET:.1f} C, ln AF = "
                         f"{ea * x_b:.3g} +- {se_ea * abs(x_b):.2g} (gof.ln_af_bake)")
        else:
            # bakes only: the onset time and the room time before the bake are fitted with
            # Ea held, so they carry the prior's acceleration (the bakes are reproduced)
            one_temp = {"ea_ev_prior": 1.0}
            if n_temps == 1:
                one_temp["bake_temp_k"] = float(T[0])
            why = (EA_PRIOR_NOTE if n_temps == 1 else
                   f"not identified by bakes alone at {n_temps} temperatures (its 95 % interval "
                   f"was wider than the published range)")
            notes.insert(0, f"ea_ev: {why}; kept at {ea_model:g} eV, published range "
                         f"[{ea_lo:g}, {ea_hi:g}] eV (DESIGN.md); no room-temperature "
                         "relaxation run, so the onset time and the room time before the bake "
                         "are fitted with Ea held there: they reproduce the bakes and scale "
                         "with the prior (a relaxation run of the same chips would separate "
                         "them)")
    # cumulative groups (change from the reference at each step), for quality and plots
    cum = cum[np.isin(cum["level"].to_numpy(), levels)].reset_index(drop=True)
    cl = np.searchsorted(levels, cum["level"].to_numpy())
    g_c = mom.groupby("level")["g0"].mean().reindex(levels).to_numpy()[cl]
    Tc = cum["bake_temp_k"].to_numpy()
    amb_c = cum["ambient_k"].to_numpy()
    amb_c = np.where(np.isfinite(amb_c), amb_c, t_ref_k)
    teq_c = _t_eq(ea, 10**lto, cum["soak_cum_s"].to_numpy(), cum["ramp_cum_s"].to_numpy(), Tc,
                  amb_c, t_ref_k)
    Lc = np.log10(1.0 + teq_c / 10**lt0)
    if not verify_ref:
        Lc = Lc - np.log10(1.0 + 10**lto / 10**lt0)
    rel_fit_k = _rate(form, np.asarray(res.params[3:]), g_c / _U, g_ref_u) \
        if mode in ("prior", "shape") \
        else np.asarray(relaxation.rate(g_c)) / _U**2 * (10 ** float(res.params[3])
                                                         if mode == "scale" else 1.0)
    if read_noise is not None:
        sr2c = np.asarray(read_noise.sigma(g_c)) ** 2 / _U**2
        c_c = sr2c * ((1.0 if verify_ref else 1.0 / cum["reps"].to_numpy())
                      + 1.0 / cum["reps"].to_numpy())
    else:
        c_c = np.zeros(len(cum))
    v_mod = c_c + rel_fit_k * Lc
    drift_fit, m_at_bound = None, False
    if mode == "shape":
        drift_fit = fit_bake_drift(cum, g_c / _U, Lc, g_ref_u)
        m_mod = _drift("tanh", drift_fit.params, g_c / _U, g_ref_u) * Lc
        notes.append("mean shift: drift law (tanh towards g_center) fitted to the bake means")
        m_at_bound = bool(np.any(np.isclose(drift_fit.params[0], drift_amplitude_bounds_u(),
                                            rtol=1e-6)))
        if m_at_bound:
            notes.append("drift amplitude m_max at the model's bound: the tanh is straight "
                         "over the measured levels (only m_max / g_width is determined)")
    else:
        m_mod = np.asarray(relaxation.drift(g_c)) / _U * Lc
    y_c = cum["var"].to_numpy() / _U**2
    live = ~censored(g_c + cum["mean"].to_numpy(), v_mod * _U**2)
    gof = {
        "chi2_red": res.chi2_red,
        "sigma_max_rel_err": float(np.max((np.abs(np.sqrt(np.maximum(v_mod, 0)) - np.sqrt(y_c))
                                           / np.sqrt(np.maximum(y_c, 1e-30)))[live]))
        if live.any() else math.nan,
        "mean_rmse_siemens": float(np.sqrt(np.mean((cum["mean"].to_numpy()[live] / _U
                                              - m_mod[live]) ** 2))) * _U
        if live.any() else math.nan,
        "t_off_s": 10 ** float(lto),
        "t0_s": 10**lt0,
        "n_temperatures": float(n_temps),
        "n_at_bound": float(len(at_bound)),
        **one_temp,
    }
    # per-temperature AF (other parameters fixed at the joint optimum)
    rows = []
    for tk in np.unique(np.round(T, 6)):
        sel = np.isclose(T, tk)
        x0 = float(x_T[sel][0])
        if abs(x0) < 1e-9:
            continue

        def r_t(p, sel=sel):
            ea_x = np.where(sel, p[0], ea * x_T)
            return ((y_v - c - k_fit * clocks(ea, lto, lt0, ea_x)) / s_v)[sel]

        rt = wls(r_t, [ea * x0])
        rows.append({"temp_k": float(tk), "ln_af": float(rt.params[0]),
                     "ln_af_se": float(rt.stderr[0]), "ln_af_model": ea * x0})
    per_t = pd.DataFrame(rows, columns=["temp_k", "ln_af", "ln_af_se", "ln_af_model"])
    if len(per_t) >= 2:
        z = (per_t["ln_af"] - per_t["ln_af_model"]) / per_t["ln_af_se"]
        gof["arrhenius_chi2_red"] = float(np.sum(z**2) / (len(per_t) - 1))
    fit = FitInfo(
        method="weighted least squares (soft-L1) of bake mean/variance vs equivalent time "
        "(Arrhenius incl. ramps), relaxation law from the room-temperature model",
        n=int(mom["n"].sum()), form="arrhenius", aic=res.aic, bic=res.bic, gof=gof,
        stderr=stderr, ci95=ci,
        covariance={"names": ["ea_ev", "ln_tau0_s"], "matrix": cov2.tolist()},
        notes="; ".join(notes) + f"; temperatures [K]: "
        f"{', '.join(f'{t:.2f}' for t in sorted(set(np.round(T, 2))))}",
    )
    eff = Retention(ea_ev=ea_model, t_ref_k=t_ref_k, tau0_s=tau0,
                    source=("fit" if n_temps >= 2 and ea_fixed is None else
                            "fit (Ea: prior, one bake temperature)" if n_temps == 1 else
                            "fit (Ea: prior, not identified by the bakes)"),
                    fit=fit)
    groups = cum.assign(var_model=v_mod * _U**2, mean_model=m_mod * _U, censored=~live)
    if mode == "shape":
        relax_fit = Relaxation(
            form="peaked", g_ref=relaxation.g_ref, t0_s=10**lt0, k0=0.0,
            **{n: float(v) * _scale(n) for n, v in zip(names, res.params[3:], strict=True)},
            mean_form="tanh", m_max=float(drift_fit.params[0]) * _U,
            g_center=float(drift_fit.params[1]) * _U, g_width=float(drift_fit.params[2]) * _U,
            source="fit (bakes: rate law and onset from the retention fit)",
            fit=_bakes_law_fit(res, drift_fit, names, lt0, at_bound, m_at_bound, ea_fixed,
                               notes))
    elif mode == "prior":
        try:
            relax_fit = dataclasses.replace(
                relaxation, t0_s=10**lt0,
                **{n: float(v) * _scale(n) for n, v in zip(names, res.params[3:], strict=True)})
        except ConfigError as exc:
            raise _InvalidLaw(f"{exc.field}: {exc.expected}") from None
    elif mode == "scale":
        kk = 10 ** float(res.params[3])
        relax_fit = dataclasses.replace(relaxation, t0_s=10**lt0, **{
            n: getattr(relaxation, n) * (kk if n.startswith("k") else 1.0) for n in names})
    else:
        relax_fit = relaxation
    return RetentionFit(eff, groups, per_t, relax_fit, 10 ** float(lto), ea_bake_ev=ea)


def _bakes_law_fit(res, drift_fit, names: list[str], lt0: float, at_bound: list[str],
                   m_at_bound: bool, ea_fixed: float | None, notes: list[str]) -> FitInfo:
    """The FitInfo of a relaxation law fitted to the bakes alone (no relaxation run): the
    onset and rate law's standard errors from the retention fit's covariance (with Ea held
    at its prior they are conditional on it), the drift's from the bake-mean fit. Parameters
    that ended at a bound of the fit get no interval (they are not determined)."""
    se = np.sqrt(np.maximum(np.diag(res.cov), 0.0))
    err: dict[str, float] = {}
    ci: dict[str, tuple[float, float]] = {}
    if "log10_t0_s" not in at_bound:
        err["t0_s"] = 10**lt0 * math.log(10.0) * float(se[2])
        w = Z95 * float(se[2])  # decades; the interval kept inside floating point
        ci["t0_s"] = (10 ** max(lt0 - w, -300.0), 10 ** min(lt0 + w, 300.0))
    for i, n in enumerate(names):
        if n not in at_bound:
            v, e = float(res.params[3 + i]) * _scale(n), float(se[3 + i]) * _scale(n)
            err[n], ci[n] = e, wald_ci(v, e)
    for i, n in enumerate(("m_max", "g_center", "g_width")):
        if n == "m_max" and m_at_bound:
            continue  # at the model's bound: only m_max / g_width is determined
        v, e = float(drift_fit.params[i]) * _U, float(drift_fit.stderr[i]) * _U
        err[n], ci[n] = e, wald_ci(v, e)
    warn = [n for n in notes if "WARNING" in n]
    held = (f"; with Ea held at its prior ({ea_fixed:g} eV) the onset's interval is "
            "conditional on it" if ea_fixed is not None else "")
    return FitInfo(
        method="fitted inside the retention fit (bakes only: rate law k(g) peaked, onset "
        "time and the room time before the bake from the bake spreads; drift from the bake "
        "means)", n=int(res.n), form="peaked/tanh", stderr=err, ci95=ci,
        notes="no room-temperature relaxation run: every parameter of this law comes from "
        "the bakes (uncertainties from the retention fit's Jacobian)" + held
        + ("; not determined (at a bound of the fit): " + ", ".join(at_bound)
           if at_bound else "") + ("; " + "; ".join(warn) if warn else ""))

"""Read-noise fitter: repeated reads of the same cells -> ReadNoise.

Estimator: non-overlapping pairs of consecutive reads of a cell (repeats 0-1, 2-3, ...) give
differences ``d`` with ``var(d) = 2 sigma(g)^2`` that are independent of each other and of the
cell's programmed value, and insensitive to slow drift (the relaxation between the two reads
of a pair is subtracted when a relaxation model is given). The pairs are binned by their own
mean conductance (5 % wide bins in log g, at least 30 pairs; not by target level, so stuck
or mis-programmed cells count at the conductance they have); per bin the 10-MAD-trimmed
variance of ``d`` gives ``sigma``, and ``sigma(g)`` is fitted in every form and chosen by
BIC. When the pairs span at least one decade of time after programming, a time dependence
``sigma (1 + time_slope log10(1 + t / 1 s))`` is also tried and kept if BIC prefers it.

With a measured read-noise spectrum that has a 1/f part, the 1/f variance between the two
reads of each pair (:meth:`ReadNoiseSpectrum.flicker_pair_variance` at the pair's lag) is
subtracted as well, and ``sigma`` is the read noise beyond the spectrum's 1/f (the white part
when the spectrum holds all the 1/f at the pairs' lag): at the techa profile's 1/f peak it is
~90 % of a pair 3 ms apart, and its Gaussian dependence on g is no sigma(g) form's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from cimlab.errors import ConfigError
from cimlab.models.effects import SIGMA_FORMS, ReadNoise, Relaxation
from cimlab.models.fit._stats import group_moments, wls
from cimlab.models.fit.sigma import _model, fit_sigma
from cimlab.models.params import Z95, FitInfo
from cimlab.models.read_noise_spectrum import ReadNoiseSpectrum

REQUIRED = ("cell", "level", "repeat", "g_siemens")
#: Fewest read pairs in a conductance bin for it to be used.
MIN_PAIRS = 30
NO_BIN = -(2**62)


def conductance_bins(g: np.ndarray, width: float = 0.05) -> np.ndarray:
    """Bins of conductance ``width`` wide in log(g) (5 %): read noise depends on the
    conductance a cell actually has, not on the level it was aimed at (a stuck-on cell in a
    low level has the read noise of 60 uS), and narrow bins keep sigma(g) constant inside a
    bin. Values <= 0 share bin :data:`NO_BIN`."""
    g = np.asarray(g, dtype=float)
    out = np.full(g.size, NO_BIN, dtype=np.int64)
    pos = g > 0
    out[pos] = np.floor(np.log(g[pos]) / np.log1p(width)).astype(np.int64)
    return out


def read_pairs(reads: pd.DataFrame) -> pd.DataFrame:
    """Non-overlapping consecutive read pairs: level, g (pair mean), d (difference), t."""
    missing = [c for c in REQUIRED if c not in reads.columns]
    if missing:
        raise ValueError(f"reads table lacks columns {missing}")
    df = reads.sort_values(["cell", "repeat"], kind="stable")
    if "time_s" not in df.columns:
        df = df.assign(time_s=np.nan)
    rep = df["repeat"].to_numpy()
    cell = df["cell"].to_numpy()
    g = df["g_siemens"].to_numpy(dtype=float)
    t = df["time_s"].to_numpy(dtype=float)
    # position of each read among its cell's reads
    first = np.r_[True, cell[1:] != cell[:-1]]
    idx = np.arange(cell.size)
    start = np.maximum.accumulate(np.where(first, idx, 0))
    pos = idx - start
    a = np.flatnonzero(pos % 2 == 0)
    a = a[(a + 1 < cell.size)]
    a = a[cell[a + 1] == cell[a]]
    del rep
    return pd.DataFrame({
        "level": df["level"].to_numpy()[a],
        "g": 0.5 * (g[a] + g[a + 1]),
        "d": g[a + 1] - g[a],
        "t0": t[a], "t1": t[a + 1],
    })


def fit_read_noise(
    reads: pd.DataFrame, g_ref: float, relaxation: Relaxation | None = None,
    forms: Sequence[str] = tuple(SIGMA_FORMS),
    spectrum: ReadNoiseSpectrum | None = None,
) -> ReadNoise:
    """Fit :class:`ReadNoise` from a ``read_fluctuation`` ``reads`` table (BIC chooses the
    sigma(g) form among ``forms``). ``spectrum`` (with a 1/f part): fit what is left
    beyond its 1/f (module docstring); pairs without read times are then left out."""
    pairs = read_pairs(reads)
    if pairs.empty:
        raise ValueError("reads table has no cell read twice: read noise needs repeats >= 2")
    notes = ["estimator: differences of non-overlapping read pairs, var(d) = 2 sigma^2"]
    corr = np.zeros(len(pairs))
    timed = np.isfinite(pairs[["t0", "t1"]].to_numpy()).all(axis=1)
    if relaxation is not None and timed.any():
        # pairs of cells whose last pulse is unknown (no pulse in the run's verify: in band
        # at its first read, relaxed long before) get no correction
        t0 = np.where(timed, pairs["t0"].to_numpy(), 0.0)
        t1 = np.where(timed, pairs["t1"].to_numpy(), 0.0)
        corr = np.asarray(relaxation.rate(pairs["g"].to_numpy())) * (
            np.asarray(relaxation.decades(t1)) - np.asarray(relaxation.decades(t0)))
        notes.append("relaxation between the two reads of a pair subtracted")
    if spectrum is not None and spectrum.a_peak > 0.0:
        if not timed.any():
            raise ValueError("read pairs without read times: the 1/f part between the two "
                             "reads of a pair needs their time_s")
        pairs, corr = pairs[timed].reset_index(drop=True), corr[timed]
        lag = (pairs["t1"] - pairs["t0"]).to_numpy(dtype=float)
        corr = corr + spectrum.flicker_pair_variance(pairs["g"].to_numpy(), lag)
        left = int((~timed).sum())
        notes.append("1/f part between the two reads (measured spectrum) subtracted: sigma is "
                     "the read noise beyond it"
                     + (f" ({left} untimed pairs left out)" if left else ""))
    pairs = pairs.assign(corr=corr, gbin=conductance_bins(pairs["g"].to_numpy()))
    mom = group_moments(pairs, ["gbin"], "d", extra_means=["g", "corr", "t0"])
    mom = mom[(mom["n"] >= MIN_PAIRS) & (mom["gbin"] != NO_BIN)]
    var = (mom["var"].to_numpy() - mom["corr"].to_numpy()) / 2.0
    n = mom["n"].to_numpy()
    var = np.maximum(var, 1e-3 * mom["var"].to_numpy() / 2.0)
    sig = np.sqrt(var)
    se = sig / np.sqrt(2.0 * np.maximum(n - 1, 1))
    g = mom["g"].to_numpy()

    def valid(form, c):
        try:
            ReadNoise(form=form, g_ref=g_ref, **c)
        except ConfigError:
            return False
        return True

    sf = fit_sigma(g, sig, se, g_ref, forms=forms, validate=valid,
                   rel_se=1.0 / np.sqrt(2.0 * np.maximum(n - 1, 1)))
    coeffs, stderr, ci = dict(sf.coeffs), dict(sf.stderr), dict(sf.ci95)
    time_slope, candidates = 0.0, dict(sf.candidates)
    covariance = sf.covariance
    aic, bic, gof = sf.result.aic, sf.result.bic, dict(sf.gof)
    t = pairs["t0"].to_numpy()
    tt = t[np.isfinite(t) & (t > 0)]
    if tt.size and math.log10(tt.max() / max(tt.min(), 1e-9)) >= 1.0:
        # time dependence: groups per (level, decade of time)
        pairs = pairs.assign(tdec=np.floor(np.log10(np.maximum(pairs["t0"], 1e-9))))
        mt = group_moments(pairs, ["gbin", "tdec"], "d", extra_means=["g", "corr", "t0"])
        mt = mt[(mt["n"] >= MIN_PAIRS) & (mt["gbin"] != NO_BIN)]
        vt = np.maximum((mt["var"] - mt["corr"]).to_numpy() / 2.0, 1e-30)
        st = np.sqrt(vt)
        set_ = st / np.sqrt(2.0 * np.maximum(mt["n"].to_numpy() - 1, 1))
        xg = mt["g"].to_numpy() / g_ref
        Lt = np.log10(1.0 + mt["t0"].to_numpy() / 1.0)
        names = list(SIGMA_FORMS[sf.form])
        f = _model(sf.form)
        p0 = [coeffs[n_] / 1e-6 for n_ in names] + [0.0]

        def res_t(p, with_time=True):
            s = f(np.asarray(p[:-1]), xg) * (1.0 + (p[-1] if with_time else 0.0) * Lt)
            return (st / 1e-6 - s) / (set_ / 1e-6)

        r1 = wls(res_t, p0)
        r0 = wls(lambda p: res_t(np.r_[p, 0.0], False), p0[:-1])
        candidates["time_dependent"] = {"aic": r1.aic, "bic": r1.bic, "k": r1.k}
        if r1.bic < r0.bic:
            time_slope = float(r1.params[-1])
            for i, n_ in enumerate(names):
                coeffs[n_] = float(r1.params[i]) * 1e-6
                stderr[n_] = float(r1.stderr[i]) * 1e-6
                ci[n_] = (coeffs[n_] - Z95 * stderr[n_], coeffs[n_] + Z95 * stderr[n_])
            stderr["time_slope"] = float(r1.stderr[-1])
            ci["time_slope"] = (time_slope - Z95 * stderr["time_slope"],
                                time_slope + Z95 * stderr["time_slope"])
            aic, bic = r1.aic, r1.bic
            sc = np.array([1e-6] * len(names) + [1.0])
            covariance = {"names": [*names, "time_slope"],
                          "matrix": (r1.cov * np.outer(sc, sc)).tolist()}
            notes.append("time dependence selected by BIC")
        else:
            notes.append("time dependence tried, rejected by BIC")
    gof["n_trimmed"] = float(mom["n_out"].sum())
    fit = FitInfo(
        method="weighted least squares on per-conductance-bin trimmed read-pair variance; "
        "form by BIC",
        n=int(n.sum()), form=sf.form, aic=aic, bic=bic, gof=gof, candidates=candidates,
        stderr=stderr, ci95=ci, notes="; ".join(notes), covariance=covariance,
    )
    return ReadNoise(form=sf.form, g_ref=g_ref, time_slope=time_slope, source="fit", fit=fit,
                     **coeffs)

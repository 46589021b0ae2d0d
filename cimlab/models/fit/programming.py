"""Programming-error fitter: ``programmed`` tables -> one ProgrammingError per mode.

Per programming mode ("single_shot", "verify") and level (target conductance), the error
``e = g_siemens - target_siemens`` gives a robust (10-MAD trimmed) mean and variance. The variance
of one
measured read after programming contains the programming spread, one read's noise and the
relaxation the cells went through before the read (``time_s`` after programming). The read
noise, when it was measured, is subtracted: ``sigma_prog^2 = var - sigma_read(g)^2``. The
relaxation up to the read is NOT subtracted by :func:`cimlab.models.fit.fit_store` (it can be,
``relaxation=``): ms-scale relaxation depends on pulse and read timing the campaigns record
only to a few ms, and subtracting a wrong amount made the result worse than keeping it; the
model's programming error is therefore the spread ``time_s`` (a field; typically ms) after
programming (a level where a subtraction would go
negative is floored at 5 % of the measured variance and listed in the fit notes). Without a
measured read noise, sigma is the spread of the reads as measured (one read's noise
included; noted), so do not add the literature read noise on top when comparing with reads.
``sigma(g)`` is then fitted in every form and chosen by BIC (:mod:`cimlab.models.fit.sigma`);
``mean_offset`` is the pooled mean error with its standard error.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from cimlab.errors import ConfigError
from cimlab.models.effects import SIGMA_FORMS, ProgrammingError, ReadNoise, Relaxation
from cimlab.models.fit._stats import group_moments
from cimlab.models.fit.sigma import fit_sigma
from cimlab.models.params import Z95, FitInfo

REQUIRED = ("level", "target_siemens", "g_siemens", "mode")


def _valid(mode: str, g_ref: float):
    def check(form: str, c: dict[str, float]) -> bool:
        try:
            ProgrammingError(mode=mode, form=form, g_ref=g_ref, **c)
        except ConfigError:
            return False
        return True

    return check


def fit_programming(
    programmed: pd.DataFrame,
    g_ref: float,
    read_noise: ReadNoise | None = None,
    relaxation: Relaxation | None = None,
    forms: Sequence[str] = tuple(SIGMA_FORMS),
) -> list[ProgrammingError]:
    """One :class:`ProgrammingError` per mode found in ``programmed`` (verify first; BIC
    chooses each sigma(g) form among ``forms``)."""
    missing = [c for c in REQUIRED if c not in programmed.columns]
    if missing:
        raise ValueError(f"programmed table lacks columns {missing}")
    df = programmed.assign(err=programmed["g_siemens"] - programmed["target_siemens"])
    if "time_s" not in df.columns:
        df = df.assign(time_s=0.0)
    out = []
    for mode in sorted(df["mode"].astype(str).unique(), key=lambda m: m != "verify"):
        sub = df[df["mode"].astype(str) == mode]
        mom = group_moments(sub, ["level"], "err", extra_means=["target_siemens", "time_s"])
        mom = mom[mom["n"] >= 3]
        g = mom["target_siemens"].to_numpy()
        var = mom["var"].to_numpy()
        n = mom["n"].to_numpy()
        corr = np.zeros_like(var)
        notes = []
        if read_noise is not None:
            corr += np.asarray(read_noise.sigma(g)) ** 2
            notes.append("one read's noise subtracted (read_noise model)")
        else:
            notes.append("read noise not measured: sigma includes one read's noise")
        if relaxation is not None:
            corr += np.asarray(relaxation.variance(g, mom["time_s"].to_numpy()))
            notes.append("relaxation until the read (time_s) subtracted")
        v_prog = var - corr
        floored = v_prog <= 0.05 * var
        if np.any(floored):
            notes.append(
                f"{int(floored.sum())} level(s) with read noise ~ spread: sigma set to "
                "sqrt(5 %) of the measured variance there"
            )
        v_prog = np.where(floored, 0.05 * var, v_prog)
        sig = np.sqrt(v_prog)
        se_var = var * np.sqrt(2.0 / np.maximum(n - 1, 1))
        se = se_var / (2.0 * sig)
        sf = fit_sigma(g, sig, se, g_ref, forms=forms, validate=_valid(mode, g_ref),
                       rel_se=se / sig)
        # pooled mean error
        N = float(n.sum())
        offset = float(np.sum(n * mom["mean"].to_numpy()) / N)
        off_se = float(math.sqrt(np.sum(n * var)) / N)
        stderr = dict(sf.stderr)
        ci = dict(sf.ci95)
        stderr["mean_offset"] = off_se
        ci["mean_offset"] = (offset - Z95 * off_se, offset + Z95 * off_se)
        gof = dict(sf.gof)
        gof["n_trimmed"] = float(mom["n_out"].sum())
        fit = FitInfo(
            method="weighted least squares on per-level trimmed std (10 MAD); form by BIC",
            n=int(N), form=sf.form, aic=sf.result.aic, bic=sf.result.bic, gof=gof,
            candidates=sf.candidates, stderr=stderr, ci95=ci, notes="; ".join(notes),
            covariance=sf.covariance,
        )
        t = sub["time_s"].to_numpy(dtype=float)
        t = t[np.isfinite(t)]  # NaN: a cell that needed no pulse (its pulse time is unknown)
        t_med = float(np.median(t)) if t.size else 0.0
        out.append(ProgrammingError(
            mode=mode, form=sf.form, g_ref=g_ref, mean_offset=offset,
            time_s=max(t_med, 0.0), source="fit", fit=fit, **sf.coeffs,
        ))
    return out

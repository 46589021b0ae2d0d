"""Choice of the relaxation variance form by held-out validation (k-fold over cells).

BIC judges a form on the cells it was fitted to. A lab wants the form that predicts cells it
has not seen: :func:`choose_relaxation_form` splits the cells into ``folds`` groups at random
(fixed seed), fits each candidate form on the other folds (:func:`fit_relaxation` with that
form only) and scores it on the held-out cells' (level, time) groups: the mean over groups of
``ln(var_pred / var_measured)^2`` (spread in log units, symmetric in over- and
under-prediction), with ``var_pred = c_l + k(g) (log10(1 + t/t0) - log10(1 + tp/t0))`` (``c_l``
the fitted per-level intercept, e.g. twice the read variance). Groups that reach zero
conductance (:func:`censored`) are not scored. The form with the lowest score wins; the
scores and the fraction of held-out groups whose predicted sigma is within 15 % are returned.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cimlab.models.effects import RATE_FORMS, ReadNoise, Retention
from cimlab.models.fit.relaxation import _group, censored, fit_relaxation
from cimlab.models.read_noise_spectrum import ReadNoiseSpectrum

#: Relative sigma error counted as "within" in the reported figure.
WITHIN = 0.15


@dataclass
class FormChoice:
    """Outcome of :func:`choose_relaxation_form`."""

    form: str
    folds: int
    scores: dict[str, float]  # mean squared log variance ratio on held-out groups
    within: dict[str, float]  # fraction of held-out groups with sigma within 15 %
    failed: dict[str, str]  # forms that could not be fitted on some fold, with the reason


def _held_out_errors(fit, reads: pd.DataFrame, retention: Retention | None,
                     g_ref: float) -> np.ndarray:
    """ln(var_pred / var_measured) over the uncensored (level, time) groups of ``reads``."""
    _, cum = _group(reads, retention, g_ref)
    r = fit.effect
    c = fit.levels.set_index("level")["c_s2"].reindex(cum["level"]).to_numpy(dtype=float)
    c = np.where(np.isfinite(c), c, 0.0)
    g0 = cum["g0_siemens"].to_numpy()
    dl = np.asarray(r.decades(cum["t_eq_s"].to_numpy())) - np.asarray(
        r.decades(cum["g0_time_s"].to_numpy()))
    pred = c + np.asarray(r.rate(g0)) * dl
    meas = cum["var"].to_numpy()
    live = ~censored(g0 + cum["mean"].to_numpy(), meas) & (pred > 0) & (meas > 0)
    return np.log(pred[live] / meas[live])


def choose_relaxation_form(
    reads: pd.DataFrame,
    g_ref: float,
    retention: Retention | None = None,
    read_noise: ReadNoise | None = None,
    forms: tuple[str, ...] = tuple(RATE_FORMS),
    folds: int = 5,
    seed: int = 0,
    spectrum: ReadNoiseSpectrum | None = None,
    read_lag_s: float = 0.0,
) -> FormChoice:
    """The variance form that best predicts held-out cells (see module docstring;
    ``spectrum``, ``read_lag_s``: as in :func:`~cimlab.models.fit.relaxation.fit_relaxation`)."""
    if folds < 2:
        raise ValueError(f"k-fold validation needs at least 2 folds, got {folds}")
    key = reads["cell"].astype(str)
    if "run" in reads.columns:
        key = reads["run"].astype(str) + ":" + key
    cells = np.unique(key.to_numpy())
    if cells.size < 5 * folds:
        raise ValueError(f"{cells.size} cells are too few for {folds}-fold validation "
                         f"(need {5 * folds}); use BIC")
    fold_of = pd.Series(np.random.default_rng(seed).permutation(cells.size) % folds,
                        index=cells)
    f = fold_of.reindex(key.to_numpy()).to_numpy()
    scores: dict[str, float] = {}
    within: dict[str, float] = {}
    failed: dict[str, str] = {}
    for form in forms:
        errs = []
        try:
            for k in range(folds):
                fit = fit_relaxation(reads[f != k], g_ref, retention=retention,
                                     read_noise=read_noise, forms=(form,), spectrum=spectrum,
                                     read_lag_s=read_lag_s)
                errs.append(_held_out_errors(fit, reads[f == k], retention, g_ref))
        except ValueError as exc:
            failed[form] = str(exc)
            continue
        e = np.concatenate(errs)
        if e.size == 0:
            failed[form] = "no uncensored held-out group"
            continue
        scores[form] = float(np.mean(e**2))
        within[form] = float(np.mean(np.abs(np.exp(0.5 * e) - 1.0) <= WITHIN))
    if not scores:
        raise ValueError("no relaxation form could be validated: "
                         + "; ".join(f"{k}: {v}" for k, v in failed.items()))
    order = list(RATE_FORMS)
    best = min(scores, key=lambda s: (scores[s], order.index(s) if s in order else math.inf))
    return FormChoice(best, folds, scores, within, failed)

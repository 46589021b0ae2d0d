"""Stuck-at fitter: a ``fault_map`` ``faults`` table -> StuckAt.

Fractions of cells classified stuck-on / stuck-off with Clopper-Pearson 95 % intervals;
stuck-on conductance = median of their reads after RESET, stuck-off = median after SET
(standard error 1.2533 sigma / sqrt(n) of a median, sigma from the MAD).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from cimlab.models.effects import StuckAt
from cimlab.models.fit._stats import binomial_ci, binomial_stderr
from cimlab.models.params import Z95, FitInfo
from cimlab.stats import robust_sigma


def _median_se(x: np.ndarray) -> tuple[float, float]:
    med = float(np.median(x))
    if x.size < 2:
        return med, math.nan
    s = robust_sigma(x)
    return med, 1.2533 * s / math.sqrt(x.size)


def fit_stuck(faults: pd.DataFrame, default: StuckAt | None = None) -> StuckAt:
    """Fit :class:`StuckAt` from a fault map."""
    default = default or StuckAt()
    state = faults["state"].astype(str).to_numpy()
    n = state.size
    k_on = int((state == "stuck_on").sum())
    k_off = int((state == "stuck_off").sum())
    stderr = {"p_stuck_on": binomial_stderr(k_on, n), "p_stuck_off": binomial_stderr(k_off, n)}
    ci = {"p_stuck_on": binomial_ci(k_on, n), "p_stuck_off": binomial_ci(k_off, n)}
    vals = {"p_stuck_on": k_on / n, "p_stuck_off": k_off / n,
            "g_on_siemens": default.g_on_siemens, "g_off_siemens": default.g_off_siemens}
    notes = []
    for key, k, col, st in (("g_on_siemens", k_on, "g_after_reset_siemens", "stuck_on"),
                            ("g_off_siemens", k_off, "g_after_set_siemens", "stuck_off")):
        if k >= 2:
            med, se = _median_se(faults.loc[state == st, col].to_numpy(dtype=float))
            vals[key] = max(med, 0.0)
            if math.isfinite(se):
                stderr[key] = se
                ci[key] = (med - Z95 * se, med + Z95 * se)
        else:
            notes.append(f"fewer than 2 {st} cells: {key} kept at its prior value")
    fit = FitInfo(method="binomial proportions (Clopper-Pearson); medians", n=n,
                  gof={"n_stuck_on": float(k_on), "n_stuck_off": float(k_off)},
                  stderr=stderr, ci95=ci, notes="; ".join(notes))
    return StuckAt(source="fit", fit=fit, **vals)

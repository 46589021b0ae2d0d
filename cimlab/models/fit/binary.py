"""Binary-condition fitter: ``ber`` (bits, conditions) and ``endurance`` (cycles) tables.

Per programming condition:

* LRS / HRS: ``ln g`` of every cell read in that state (1T1R cells by their bit; both cells of
  a 2T2R pair: the one programmed LRS and its complement) -> trimmed (10 MAD) mean and
  standard deviation; median ``exp(mean)``. Reads of the same cell over cycles are not
  independent (device-to-device spread), so standard errors use the number of distinct cells.
* working cells: stuck cells hold no bit (paper 004, ~1 %: the stuck-at effect models them
  apart), so bits on cells that :func:`cimlab.calibration.report.stuck_cells` flags (the
  store's fault map where it covers the cell, else the BER run's own reads after SET and
  RESET) are left out of the states and of the BER, as in the calibration report; the raw
  BER over all bits is kept in ``fit.gof`` (``ber_1t1r_raw``, ...).
* BER per structure: errors / bits over working cells with a Clopper-Pearson 95 % interval;
  for a structure not measured, the value the fitted lognormals predict (no stderr, noted).
* ``threshold_s``: the sense reference the campaign used (``conditions.g_ref_s``), else the
  geometric mean of the medians. ``energy_per_bit_j``: the campaign's mean energy per bit
  (no stderr: the table holds the mean only).
* endurance: from ``cycles`` (g_lrs_s, g_hrs_s at logarithmically spaced cycles); a cell has
  failed at the first read where ``g_lrs / g_hrs < ENDURANCE_RATIO``; the endurance is the
  median cycles to failure (interpolated in log cycles between read marks), with a
  distribution-free 95 % interval from binomial order statistics. If fewer than half the cells
  failed, the largest cycle read is a lower bound (noted, no stderr). No endurance data: the
  literature value of the condition of the same name (paper 003) is kept.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from cimlab.calibration.report import stuck_cells, working_bits
from cimlab.models.effects import BinaryCondition, BinaryStates
from cimlab.models.fit._stats import binomial_ci, binomial_stderr, robust_location_scale
from cimlab.models.params import Z95, FitInfo

#: A cell has failed when its LRS/HRS conductance ratio falls below this.
ENDURANCE_RATIO = 2.0


def _states(bits: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(ln g LRS, cells LRS, ln g HRS, cells HRS) from a bits table of one condition."""
    bit = bits["bit"].to_numpy()
    g = bits["g_s"].to_numpy(dtype=float)
    cell = bits["cell"].to_numpy()
    lrs_g, lrs_c, hrs_g, hrs_c = [g[bit == 0]], [cell[bit == 0]], [g[bit == 1]], [cell[bit == 1]]
    if "g_b_s" in bits.columns:
        gb = bits["g_b_s"].to_numpy(dtype=float)
        cb = bits["cell_b"].to_numpy() if "cell_b" in bits.columns else -np.ones_like(cell)
        pair = np.isfinite(gb)
        # cell b is programmed to the complement of the bit
        lrs_g.append(gb[pair & (bit == 1)])
        lrs_c.append(cb[pair & (bit == 1)])
        hrs_g.append(gb[pair & (bit == 0)])
        hrs_c.append(cb[pair & (bit == 0)])
    lg, lc = np.concatenate(lrs_g), np.concatenate(lrs_c)
    hg, hc = np.concatenate(hrs_g), np.concatenate(hrs_c)
    okl, okh = lg > 0, hg > 0
    return np.log(lg[okl]), lc[okl], np.log(hg[okh]), hc[okh]


def endurance_estimate(cycles: pd.DataFrame) -> dict[str, float]:
    """Median cycles to failure (see module docstring) from one condition's ``cycles``."""
    df = cycles.sort_values(["cell", "cycle"])
    ratio = df["g_lrs_s"].to_numpy() / np.maximum(df["g_hrs_s"].to_numpy(), 1e-30)
    failed = ratio < ENDURANCE_RATIO
    df = df.assign(failed=failed)
    marks = np.sort(df["cycle"].unique())
    first_fail = df[df["failed"]].groupby("cell")["cycle"].min()
    cells = df["cell"].unique()
    n = cells.size
    fail_cycle = np.full(n, np.inf)
    pos = pd.Series(np.arange(n), index=cells)
    fail_cycle[pos.reindex(first_fail.index).to_numpy()] = first_fail.to_numpy()
    # interval censoring: failure happened between the previous mark and this one
    prev = {int(m): (int(marks[i - 1]) if i > 0 else 0) for i, m in enumerate(marks)}
    lo_cyc = np.array([prev[int(c)] + 1 if np.isfinite(c) else np.inf for c in fail_cycle])
    mid = np.where(np.isfinite(fail_cycle),
                   np.sqrt(np.maximum(lo_cyc, 1) * np.maximum(fail_cycle, 1)), np.inf)
    srt = np.sort(mid)
    k_fail = int(np.isfinite(srt).sum())
    out = {"n_cells": float(n), "n_failed": float(k_fail), "max_cycle": float(marks.max())}
    if k_fail < (n + 1) // 2 + 0 or n == 0:
        out["median"] = float(marks.max())
        out["censored"] = 1.0
        return out
    med = float(np.median(srt))
    # distribution-free CI for the median: order statistics j, k with binomial(n, 1/2)
    from scipy.stats import binom

    j = int(binom.ppf(0.025, n, 0.5))
    k = int(binom.ppf(0.975, n, 0.5))
    lo = float(srt[max(j - 1, 0)])
    hi = float(srt[min(k, n - 1)])
    out.update(median=med, ci_lo=lo, ci_hi=hi if math.isfinite(hi) else float(marks.max()),
               censored=0.0)
    return out


def fit_binary(
    bits: pd.DataFrame | None,
    conditions: pd.DataFrame | None,
    cycles: pd.DataFrame | None = None,
    literature: BinaryStates | None = None,
    faults: pd.DataFrame | None = None,
) -> BinaryStates:
    """Fit one :class:`BinaryCondition` per condition found in ``bits`` / ``conditions``,
    on working cells (``faults``: a fault map's table, see the module docstring)."""
    names: list[str] = []
    for t in (conditions, bits):
        if t is not None and "condition" in t.columns:
            for n in t["condition"].astype(str).unique():
                if n not in names:
                    names.append(n)
    lit = {c.name: c for c in (literature.conditions if literature else ())}
    out = []
    for name in names:
        if bits is None or "condition" not in bits.columns:
            continue
        b_all = bits[bits["condition"].astype(str) == name]
        if b_all.empty:
            continue
        stuck = stuck_cells(b_all, faults)
        b = b_all[working_bits(b_all, stuck)]
        n_stuck = int(stuck["state"].isin(("stuck_on", "stuck_off")).sum())
        lnl, cl, lnh, ch = _states(b)
        mu_l, sd_l, _ = robust_location_scale(lnl)
        mu_h, sd_h, _ = robust_location_scale(lnh)
        nl = max(np.unique(cl).size, 2)
        nh = max(np.unique(ch).size, 2)
        stderr: dict[str, float] = {}
        ci: dict[str, tuple[float, float]] = {}
        vals: dict[str, float] = {}
        for key, mu, sd, n in (("lrs", mu_l, sd_l, nl), ("hrs", mu_h, sd_h, nh)):
            se_mu = sd / math.sqrt(n)
            se_sd = sd / math.sqrt(2.0 * (n - 1))
            vals[f"{key}_median_s"] = math.exp(mu)
            stderr[f"{key}_median_s"] = math.exp(mu) * se_mu
            ci[f"{key}_median_s"] = (math.exp(mu - Z95 * se_mu), math.exp(mu + Z95 * se_mu))
            vals[f"{key}_sigma_ln"] = sd
            stderr[f"{key}_sigma_ln"] = se_sd
            ci[f"{key}_sigma_ln"] = (sd - Z95 * se_sd, sd + Z95 * se_sd)
        row = None
        if conditions is not None and not conditions.empty:
            m = conditions[conditions["condition"].astype(str) == name]
            row = m.iloc[-1] if not m.empty else None
        lc = lit.get(name)
        icc = float(row["icc_a"]) if row is not None else (lc.icc_a if lc else 1e-4)
        v_reset = float(row["v_reset"]) if row is not None else (lc.v_reset if lc else 2.5)
        width = float(row["width_s"]) if row is not None else (lc.width_s if lc else 100e-9)
        thr = float(row["g_ref_s"]) if row is not None and "g_ref_s" in row and np.isfinite(
            row["g_ref_s"]) else math.sqrt(vals["lrs_median_s"] * vals["hrs_median_s"])
        energy = float(row["energy_per_bit_j"]) if row is not None else (
            lc.energy_per_bit_j if lc else 0.0)
        src = sorted(set(stuck.loc[stuck["state"].isin(("stuck_on", "stuck_off")),
                                   "source"].astype(str)))
        notes = [f"{n_stuck} stuck cells excluded ({', '.join(src) or 'none found'})"]
        gof: dict[str, float] = {"stuck_cells_excluded": float(n_stuck)}
        probe = BinaryCondition(name=name, icc_a=icc, v_reset=v_reset, width_s=width,
                                threshold_s=thr, ber_1t1r=0.0, ber_2t2r=0.0, **vals)
        bers = {}
        for structure in ("1T1R", "2T2R"):
            key = "ber_" + structure.lower()
            sb = b[b["structure"].astype(str) == structure]
            model = probe.model_ber_1t1r() if structure == "1T1R" else probe.model_ber_2t2r()
            gof[f"{key}_model"] = model
            raw = b_all[b_all["structure"].astype(str) == structure]
            if len(raw):
                gof[f"{key}_raw"] = float(np.mean(raw["bit"].to_numpy()
                                                  != raw["read_bit"].to_numpy()))
            if sb.empty:
                bers[key] = model
                notes.append(f"{structure} not measured: BER from the fitted lognormals")
                continue
            k = int((sb["bit"].to_numpy() != sb["read_bit"].to_numpy()).sum())
            n = len(sb)
            bers[key] = k / n
            stderr[key] = binomial_stderr(k, n)
            ci[key] = binomial_ci(k, n)
            gof[f"{key}_errors"] = float(k)
            gof[f"{key}_bits"] = float(n)
        endurance = lc.endurance_cycles if lc else 1.0
        if cycles is not None and "condition" in cycles.columns:
            cy = cycles[cycles["condition"].astype(str) == name]
            if not cy.empty:
                est = endurance_estimate(cy)
                endurance = max(est["median"], 1.0)
                gof["endurance_cells"] = est["n_cells"]
                gof["endurance_failed"] = est["n_failed"]
                if est["censored"]:
                    notes.append(f"fewer than half the cells failed by cycle "
                                 f"{est['max_cycle']:.0f}: endurance is a lower bound")
                else:
                    ci["endurance_cycles"] = (est["ci_lo"], est["ci_hi"])
                    stderr["endurance_cycles"] = (est["ci_hi"] - est["ci_lo"]) / (2 * Z95)
            elif lc:
                notes.append("no endurance data: literature value (paper 003)")
        elif lc:
            notes.append("no endurance data: literature value (paper 003)")
        fit = FitInfo(
            method="trimmed lognormal moments per state; Clopper-Pearson BER; median cycles "
            "to failure (working cells)", n=len(b), form="lognormal", gof=gof,
            stderr=stderr, ci95=ci,
            notes="; ".join(notes),
        )
        out.append(BinaryCondition(
            name=name, icc_a=icc, v_reset=v_reset, width_s=width, threshold_s=thr,
            energy_per_bit_j=energy, endurance_cycles=float(endurance), source="fit",
            fit=fit, **vals, **bers,
        ))
    return BinaryStates(conditions=tuple(out), source="fit")

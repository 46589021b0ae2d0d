"""Binary-condition fitter: ``ber`` (bits, conditions) and ``endurance`` (cycles) tables.

Per programming condition:

* LRS / HRS: ``ln g`` of every cell read in that state (1T1R cells by their bit; both cells of
  a 2T2R pair: the one programmed LRS and its complement). The states are not exactly
  lognormal (the HRS has a long low-conductance tail towards the floor: on the emulator its
  two-sided log-std is 1.20 where the tail facing the LRS has 1.0), and what the model's BER
  (``gof.ber_*_model``) and the simulator need is the tail that faces the other state. So
  each state is a lognormal with median ``exp(median ln g)`` and sigma fitted to the
  quantiles of its FACING half (HRS: upper, LRS: lower; least squares of ``ln g`` quantiles
  on normal quantiles from the median out to the quantile with :data:`TAIL_MIN_POINTS`
  points beyond it). The two-sided trimmed (10 MAD) std is kept in ``gof``
  (``lrs_sigma_ln_two_sided``, ``hrs_sigma_ln_two_sided``). Before, the two-sided sigma
  predicted a strong-condition BER of 5.6e-4 for a true 9.8e-5; the facing-tail sigma gives
  ~1e-4. Reads of the same cell over cycles are not independent (device-to-device spread),
  so standard errors use the number of distinct cells.
* working cells: stuck cells hold no bit (paper 004, ~1 %: the stuck-at effect models them
  apart), so bits on cells that :func:`cimlab.procedures.cell_states.stuck_cells` flags (the
  store's fault map where it covers the cell, else the BER run's own reads after SET and
  RESET) are left out of the states and of the BER, as in the calibration report; the raw
  BER over all bits is kept in ``fit.gof`` (``ber_1t1r_raw``, ...).
* BER per structure: errors / bits over working cells with a Clopper-Pearson 95 % interval;
  for a structure not measured, the value the fitted lognormals predict (no stderr, noted).
* ``threshold_siemens``: the sense reference the campaign used (``conditions.g_ref_siemens``), else
the
  geometric mean of the medians. ``energy_per_bit_j``: the campaign's mean energy per bit
  (no stderr: the table holds the mean only).
* endurance: from ``cycles`` (g_lrs_siemens, g_hrs_siemens read at a few, usually log-spaced,
cycles).
  Failure is a PERSISTENT window closure, not one low read: a read is "closed" when the cell
  did not switch, ``g_lrs - g_hrs < max(STUCK_WINDOW_S, STUCK_WINDOW_REL * max(g_lrs,
  g_hrs))`` (the shared stuck-cell rule, :func:`cimlab.procedures.cell_states.stuck_cells`; a
  worn-out cell is frozen in one state, physics docs "Endurance"), and a cell has failed at
  the first read from which every later read is closed, provided those are at least
  :data:`ENDURANCE_CONSECUTIVE_READS` reads. A single LRS/HRS ratio below 2 is normal
  cycle-to-cycle spread (HRS sigma of ln g ~0.7: under the weak condition a quarter of all
  reads), not wear-out: the old rule called 213 of 256 healthy weak cells failed.
  A failure is known only to lie between the previous read and this one (interval censored);
  a cell that never failed is right-censored at its last open read. A cell closed at the
  last read only cannot be confirmed: its likelihood is a failure in the last interval or a
  working cell read closed, with the transient-closure rate ``q`` measured on the cells'
  earlier reads (closed reads followed by an open one); without this the failures of the
  last interval were lost and the very-strong median came out 118 [107, 134] for a true
  100 cycles. The cycles to failure
  are fitted by maximum likelihood as a lognormal (the emulator's and, per Grossi et al.,
  real devices' damage limit is lognormal) with both censorings; the median is
  ``exp(mu)`` and its 95 % interval comes from the profile likelihood of ``mu`` (chi2(1)
  3.84), so it reflects the censoring intervals and the sample size. With fewer than
  :data:`ENDURANCE_MIN_FAILURES` failures the median is not estimable: the result is a
  LOWER BOUND, the largest read cycle ``c`` at which the Clopper-Pearson upper limit of the
  fraction failed by ``c`` is below 1/2 (``gof.endurance_cycles_lower_bound`` = 1; shown as
  "> c cycles (lower bound: ...)"). No endurance data: the literature value of the condition
  of the same name (paper 003) is kept.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from cimlab.models.effects import BinaryCondition, BinaryStates
from cimlab.models.fit._stats import binomial_ci, binomial_stderr, robust_location_scale
from cimlab.models.params import Z95, FitInfo
from cimlab.procedures.cell_states import (
    STUCK_WINDOW_REL,
    STUCK_WINDOW_S,
    stuck_cells,
    working_bits,
)

#: A cell has failed when its window stays closed (see the module docstring) from one read
#: on, over at least this many consecutive reads (the last of them the last read).
ENDURANCE_CONSECUTIVE_READS = 2
#: Fewest failed cells for a median cycles-to-failure estimate; below, a lower bound.
ENDURANCE_MIN_FAILURES = 5
#: The state's facing-tail fit uses quantiles out to the one with this many reads beyond it.
TAIL_MIN_POINTS = 10


def facing_tail_lognormal(ln_g: np.ndarray, side: str,
                          ln_threshold: float | None = None) -> tuple[float, float]:
    """(median of ln g, sigma) of a lognormal fitted to the ``side`` ("upper" or "lower")
    half of ``ln_g``: least squares through the median of the quantiles on normal
    quantiles (30 points evenly spaced in z from 0.1 to the quantile with
    :data:`TAIL_MIN_POINTS` reads beyond it, or, when ``ln_threshold`` (the sense reference)
    lies closer with at least that many reads beyond it, to the threshold's quantile: the
    part of the tail that decides the bit errors)."""
    from scipy.stats import norm

    x = np.asarray(ln_g, dtype=float)
    x = x[np.isfinite(x)]
    if side not in ("upper", "lower"):
        raise ValueError(f"side must be 'upper' or 'lower', got {side!r}")
    med = float(np.median(x)) if x.size else math.nan
    if x.size < 4 * TAIL_MIN_POINTS:
        return med, float(np.std(x, ddof=1)) if x.size > 1 else math.nan
    z_max = float(norm.isf(TAIL_MIN_POINTS / x.size))
    if ln_threshold is not None and math.isfinite(ln_threshold):
        beyond = int(np.sum(x > ln_threshold if side == "upper" else x < ln_threshold))
        if beyond >= TAIL_MIN_POINTS:
            z_max = max(min(z_max, float(norm.isf(beyond / x.size))), 0.5)
    z = np.linspace(0.1, z_max, 30)
    p = norm.cdf(z) if side == "upper" else norm.cdf(-z)
    d = np.abs(np.quantile(x, p) - med)
    return med, float(np.sum(z * d) / np.sum(z * z))


def _states(bits: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(ln g LRS, cells LRS, ln g HRS, cells HRS) from a bits table of one condition."""
    bit = bits["bit"].to_numpy()
    g = bits["g_siemens"].to_numpy(dtype=float)
    cell = bits["cell"].to_numpy()
    lrs_g, lrs_c, hrs_g, hrs_c = [g[bit == 0]], [cell[bit == 0]], [g[bit == 1]], [cell[bit == 1]]
    if "g_b_siemens" in bits.columns:
        gb = bits["g_b_siemens"].to_numpy(dtype=float)
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


def closed_window(g_lrs: np.ndarray, g_hrs: np.ndarray) -> np.ndarray:
    """True where a cell did not switch in a cycle: ``g_lrs - g_hrs`` below
    ``max(STUCK_WINDOW_S, STUCK_WINDOW_REL * max(g_lrs, g_hrs))`` (the shared stuck rule)."""
    g_lrs, g_hrs = np.asarray(g_lrs, dtype=float), np.asarray(g_hrs, dtype=float)
    big = np.maximum(g_lrs, g_hrs)
    return ~((g_lrs - g_hrs) >= np.maximum(STUCK_WINDOW_S, STUCK_WINDOW_REL * big))


def failure_intervals(cycles: pd.DataFrame,
                      k: int = ENDURANCE_CONSECUTIVE_READS) -> pd.DataFrame:
    """Per cell: (lo, hi] cycles bracketing its failure (``hi`` = inf: right-censored at
    ``lo``, its last open read). See the module docstring.

    Cycle counts: the ``cycle`` column is the 0-based index of the cycle read, so a read at
    index ``m`` has seen ``m + 1`` cycles. Cells closed at every read (never seen switching:
    stuck from manufacture, not worn out) are left out (column ``stuck`` of the result is
    True for them, lo = hi = NaN). A cell closed at its last read only (fewer than ``k``
    closed reads at the end: a failure not yet confirmed, or a transient closure of a
    working cell) gets ``unconfirmed`` = True with (lo, hi] its last interval.
    """
    if k < 1:
        raise ValueError(f"k (consecutive closed reads) must be >= 1, got {k}")
    df = cycles.sort_values(["cell", "cycle"], kind="stable")
    closed = closed_window(df["g_lrs_siemens"].to_numpy(), df["g_hrs_siemens"].to_numpy())
    cell = df["cell"].to_numpy()
    cyc = df["cycle"].to_numpy(dtype=float) + 1.0  # cycles completed at the read
    starts = np.flatnonzero(np.r_[True, cell[1:] != cell[:-1]])
    ends = np.r_[starts[1:], cell.size]
    rows = []
    for a, b in zip(starts, ends, strict=True):
        c, cl = cyc[a:b], closed[a:b]
        # length of the closed run that ends at the last read
        tail = int(np.argmin(cl[::-1])) if not cl.all() else cl.size
        if tail == cl.size:
            rows.append((cell[a], math.nan, math.nan, True, False))
        elif tail >= k:
            i = cl.size - tail  # first read of the persistent closure
            lo = c[i - 1] if i > 0 else 0.0
            rows.append((cell[a], lo, c[i], False, False))
        else:
            # alive (or closure not yet confirmed): censored at its last open read
            i = cl.size - tail - 1
            if tail > 0:
                rows.append((cell[a], c[i], c[-1], False, True))
            else:
                rows.append((cell[a], c[i], math.inf, False, False))
    return pd.DataFrame(rows, columns=["cell", "lo", "hi", "stuck", "unconfirmed"])


def transient_closure_rate(cycles: pd.DataFrame) -> float:
    """Fraction of reads of working cells that are closed although a later read of the same
    cell is open (cycle-to-cycle spread or a failed RESET, not wear-out)."""
    df = cycles.sort_values(["cell", "cycle"], kind="stable")
    closed = closed_window(df["g_lrs_siemens"].to_numpy(), df["g_hrs_siemens"].to_numpy())
    cell = df["cell"].to_numpy()
    # an open read at or after this one, within the same cell (reverse cumulative max)
    rev = pd.Series((~closed)[::-1].astype(int)).groupby(cell[::-1]).cummax().to_numpy()[::-1]
    later_open = np.r_[rev[1:], 0].astype(bool) & np.r_[cell[1:] == cell[:-1], False]
    n = int(later_open.sum())
    return float(np.sum(closed & later_open)) / n if n else 0.0


def _lognormal_loglik(mu: float, sigma: float, lo: np.ndarray, hi: np.ndarray,
                      unconfirmed: np.ndarray | None = None, q: float = 0.0) -> float:
    """Log-likelihood of interval- (lo, hi] and right-censored (hi = inf) lognormal cycles to
    failure; ``unconfirmed`` intervals are a failure in (lo, hi] or a working cell read
    closed with probability ``q``."""
    from scipy.special import log_ndtr, ndtr

    if unconfirmed is None:
        unconfirmed = np.zeros(lo.size, dtype=bool)
    fail = np.isfinite(hi)
    z_hi = (np.log(hi[fail]) - mu) / sigma
    lo_f = lo[fail]
    z_lo = np.where(lo_f > 0, (np.log(np.maximum(lo_f, 1e-300)) - mu) / sigma, -np.inf)
    p = ndtr(z_hi) - ndtr(z_lo)
    p = p + q * unconfirmed[fail] * ndtr(-z_hi)
    cen = ~fail
    lc = lo[cen]
    z_c = np.where(lc > 0, (np.log(np.maximum(lc, 1e-300)) - mu) / sigma, -np.inf)
    return float(np.sum(np.log(np.maximum(p, 1e-300))) + np.sum(log_ndtr(-z_c)))


def endurance_estimate(cycles: pd.DataFrame,
                       k: int = ENDURANCE_CONSECUTIVE_READS,
                       min_failures: int = ENDURANCE_MIN_FAILURES) -> dict[str, float]:
    """Median cycles to failure from one condition's ``cycles`` (see module docstring).

    Cycles are counts (cycle index + 1). Returns n_cells (working: stuck-from-the-start
    cells left out, n_stuck), n_failed (confirmed), n_unconfirmed, transient_closure_rate,
    max_cycle, median and either ``censored`` = 0 with ci_lo,
    ci_hi (profile likelihood) and sigma_ln, or ``censored`` = 1 with median the lower bound.
    """
    from scipy.optimize import brentq, minimize, minimize_scalar
    from scipy.stats import beta

    iv = failure_intervals(cycles, k)
    n_stuck = int(iv["stuck"].sum())
    iv = iv[~iv["stuck"]]
    lo, hi = iv["lo"].to_numpy(), iv["hi"].to_numpy()
    unconf = iv["unconfirmed"].to_numpy(dtype=bool)
    q = transient_closure_rate(cycles)
    n = int(lo.size)
    fail = np.isfinite(hi)
    # only confirmed failures (k closed reads at the end) decide whether the median is
    # estimable: the rate of transient closures varies from read to read (weak RESETs), so
    # an excess of closures at the last read alone is no evidence of wear-out
    k_fail = int(np.sum(fail & ~unconf))
    max_cycle = float(cycles["cycle"].max()) + 1.0 if len(cycles) else 0.0
    out = {"n_cells": float(n), "n_failed": float(k_fail), "max_cycle": max_cycle,
           "n_stuck": float(n_stuck), "n_unconfirmed": float(unconf.sum()),
           "transient_closure_rate": q}
    if n == 0 or k_fail < min_failures:
        # lower bound: the largest read cycle at which fewer than half can have failed (95 %)
        bound = 1.0
        for c in np.sort(np.unique(cycles["cycle"].to_numpy(dtype=float))) + 1.0:
            at_risk = int(np.sum(fail | (lo >= c)))  # cells observed up to c
            kf = int(np.sum(fail & (hi <= c)))
            if at_risk == 0:
                continue
            upper = 1.0 if kf >= at_risk else float(beta.ppf(0.975, kf + 1, at_risk - kf))
            if upper < 0.5:
                bound = max(bound, c)
        out.update(median=bound, censored=1.0)
        return out

    def nll(p):
        return -_lognormal_loglik(p[0], math.exp(p[1]), lo, hi, unconf, q)

    ref = np.log(np.maximum(np.where(fail, hi, lo), 1.0))
    best = minimize(nll, [float(np.median(ref)), math.log(0.5)], method="Nelder-Mead",
                    options={"xatol": 1e-7, "fatol": 1e-9, "maxiter": 4000})
    mu, ls = float(best.x[0]), float(best.x[1])
    ll_max = -float(best.fun)

    def profile(m):
        r = minimize_scalar(lambda q: nll([m, q]), bounds=(math.log(0.01), math.log(10.0)),
                            method="bounded")
        return 2.0 * (ll_max + float(r.fun)) - 3.841458820694124

    span = max(math.exp(ls), 0.05)
    bounds = []
    for sign in (-1.0, 1.0):
        step, edge = span, None
        for _ in range(60):
            if profile(mu + sign * step) > 0:
                edge = mu + sign * step
                break
            step *= 1.6
        if edge is None:
            bounds.append(sign * math.inf)
        else:
            bounds.append(brentq(profile, *sorted((mu, edge)), xtol=1e-6))
    out.update(median=math.exp(mu), ci_lo=math.exp(bounds[0]),
               ci_hi=math.exp(min(bounds[1], 700.0)), sigma_ln=math.exp(ls), censored=0.0)
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
        _, sd2_l, _ = robust_location_scale(lnl)
        _, sd2_h, _ = robust_location_scale(lnh)
        row = None
        if conditions is not None and not conditions.empty:
            m = conditions[conditions["condition"].astype(str) == name]
            row = m.iloc[-1] if not m.empty else None
        ln_thr = None
        if row is not None and "g_ref_siemens" in row and np.isfinite(row["g_ref_siemens"]) \
                and row["g_ref_siemens"] > 0:
            ln_thr = math.log(float(row["g_ref_siemens"]))
        mu_l, sd_l = facing_tail_lognormal(lnl, "lower", ln_thr)
        mu_h, sd_h = facing_tail_lognormal(lnh, "upper", ln_thr)
        nl = max(np.unique(cl).size, 2)
        nh = max(np.unique(ch).size, 2)
        stderr: dict[str, float] = {}
        ci: dict[str, tuple[float, float]] = {}
        vals: dict[str, float] = {}
        for key, mu, sd, n in (("lrs", mu_l, sd_l, nl), ("hrs", mu_h, sd_h, nh)):
            # median of a normal: se = sqrt(pi/2) sd / sqrt(n); a half-sample sigma: ~sqrt(2)
            # times the full-sample one (one half of the cells informs it)
            se_mu = math.sqrt(math.pi / 2.0) * sd / math.sqrt(n)
            se_sd = sd / math.sqrt(n - 1)
            vals[f"{key}_median_siemens"] = math.exp(mu)
            stderr[f"{key}_median_siemens"] = math.exp(mu) * se_mu
            ci[f"{key}_median_siemens"] = (math.exp(mu - Z95 * se_mu), math.exp(mu + Z95 * se_mu))
            vals[f"{key}_sigma_ln"] = sd
            stderr[f"{key}_sigma_ln"] = se_sd
            ci[f"{key}_sigma_ln"] = (sd - Z95 * se_sd, sd + Z95 * se_sd)
        lc = lit.get(name)
        icc = float(row["icc_a"]) if row is not None else (lc.icc_a if lc else 1e-4)
        v_reset = float(row["v_reset"]) if row is not None else (lc.v_reset if lc else 2.5)
        width = float(row["width_s"]) if row is not None else (lc.width_s if lc else 100e-9)
        thr = (
            float(row["g_ref_siemens"])
            if row is not None and "g_ref_siemens" in row and np.isfinite(row["g_ref_siemens"])
            else math.sqrt(vals["lrs_median_siemens"] * vals["hrs_median_siemens"])
        )
        energy = float(row["energy_per_bit_j"]) if row is not None else (
            lc.energy_per_bit_j if lc else 0.0)
        energy_measured = math.isfinite(energy)
        if not energy_measured:  # a bench without a current probe on the pulse path (NaN)
            energy = lc.energy_per_bit_j if lc else 0.0
        src = sorted(set(stuck.loc[stuck["state"].isin(("stuck_on", "stuck_off")),
                                   "source"].astype(str)))
        notes = [f"{n_stuck} stuck cells excluded ({', '.join(src) or 'none found'})"]
        if not energy_measured:
            notes.append("energy_per_bit_j not measured on this bench (discrete topology): "
                         "literature value kept")
        gof: dict[str, float] = {"stuck_cells_excluded": float(n_stuck),
                                 "lrs_sigma_ln_two_sided": sd2_l,
                                 "hrs_sigma_ln_two_sided": sd2_h}
        probe = BinaryCondition(name=name, icc_a=icc, v_reset=v_reset, width_s=width,
                                threshold_siemens=thr, ber_1t1r=0.0, ber_2t2r=0.0, **vals)
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
                gof["endurance_stuck_excluded"] = est["n_stuck"]
                if est["censored"]:
                    gof["endurance_cycles_lower_bound"] = 1.0
                    why = ("no failures in the measured cycles" if est["n_failed"] == 0 else
                           f"only {est['n_failed']:.0f} of {est['n_cells']:.0f} cells failed")
                    notes.append(f"endurance_cycles: > {endurance:.0f} cycles (lower bound: "
                                 f"{why}, read up to cycle {est['max_cycle']:.0f})")
                else:
                    ci["endurance_cycles"] = (est["ci_lo"], est["ci_hi"])
                    # log-scale interval: stderr of the median by the delta method
                    stderr["endurance_cycles"] = endurance * (
                        math.log(est["ci_hi"] / est["ci_lo"]) / (2 * Z95))
                    gof["endurance_sigma_ln"] = est["sigma_ln"]
                    if est["median"] > est["max_cycle"]:
                        notes.append("endurance median beyond the last read cycle: "
                                     "extrapolated by the censored lognormal fit")
            elif lc:
                notes.append("no endurance data: literature value (paper 003)")
        elif lc:
            notes.append("no endurance data: literature value (paper 003)")
        fit = FitInfo(
            method="trimmed lognormal moments per state; Clopper-Pearson BER; censored "
            "lognormal cycles to failure (persistent window closure), profile-likelihood CI "
            "(working cells)", n=len(b), form="lognormal", gof=gof,
            stderr=stderr, ci95=ci,
            notes="; ".join(notes),
        )
        out.append(BinaryCondition(
            name=name, icc_a=icc, v_reset=v_reset, width_s=width, threshold_siemens=thr,
            energy_per_bit_j=energy, endurance_cycles=float(endurance), source="fit",
            fit=fit, **vals, **bers,
        ))
    return BinaryStates(conditions=tuple(out), source="fit")

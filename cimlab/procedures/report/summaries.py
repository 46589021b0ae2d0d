"""Summary numbers of a run, one recipe per run kind (the plots are in
:mod:`cimlab.procedures.report.plots`, the text in :mod:`cimlab.procedures.report.sections`).

``report(store_path)`` reads every run (or the ones named), computes a summary per run kind from
the tidy tables of docs/architecture.md section 5, and writes PNG plots (matplotlib, Agg canvas,
no pyplot state). Summaries are pandas DataFrames in SI units (conductance in S, time in s);
:func:`format_report` prints them with conductances in uS.

Stuck cells (paper 004: ~1 % of cells, most stuck-on at ~60 uS) would double every spread of
an analog run, so the statistics leave them out (:class:`CellFilter`, :func:`analog_filter`):
a cell is stuck when a fault map in the same store flags it (the rule of :func:`stuck_cells`;
an analog run has no SET/RESET reads of its own to tell). Where the fault map covers every cell
of the run, ``sigma`` is the plain std over the other cells; where it does not, ``sigma`` is a
robust sigma (the flagged cells still left out); imported data (``imported``) keeps the plain
std (the importer sets its outliers apart). ``sigma_raw`` (std over all cells, stuck cells in)
stays as a column; each table's note says how many cells were excluded and on what evidence,
and the plots show ``sigma``.

Definitions (all per group; ``std`` is the sample standard deviation, ddof = 1):

programming_error (``programmed``)
    error = g_siemens - target_siemens; per mode and level: n (cells used), excluded, mean error,
    sigma of
    the error with its 95 % chi-square interval (robust sigma: with the MAD's effective sample
    size 0.37 n), a robust sigma (1.4826 x median absolute deviation), sigma_raw, sigma and
    sigma_raw as fractions of the programmed range (max - min target), mean pulses, success
    rate (if logged); per mode the per-level sigmas pooled. Plots: error histograms per level
    (single-shot vs verify), sigma vs target (linear axes).
read_fluctuation (``reads``, ``smu_reads``)
    per cell: mean and variance over its repeated reads; per level: read sigma = sqrt(mean of
    the per-cell variances) (pure read-to-read noise, programming spread removed; robust:
    sqrt(median over cells of var_i (r - 1) / chi2.median(r - 1)) for r reads), relative
    sigma = read sigma / mean (robust: median) conductance of the level (a per-cell ratio would
    be dominated by the few stuck-off cells near 0 S); sigma_raw and rel_sigma_raw over all
    cells. Plot: absolute and relative sigma vs conductance.
relaxation, imported (``reads``)
    time points: ``time_index`` if the table has it, else reads grouped by time (t = 0 alone;
    times less than 0.1 decade from their neighbour in one point); per level and time point:
    sigma = std of g_siemens across cells (the spread of the level), mean shift = mean(g_siemens -
    g0_siemens),
    sigma of the relaxation alone = std(g_siemens - g0_siemens) (both 1.4826 x MAD on the robust
    basis),
    robust sigma of g_siemens, sigma_raw (std of g_siemens over all cells). Printed: sigma and
    mean shift as level x time tables, and the mid-range figures (levels in the middle half of
    the level indices) with the slope of variance vs log10 time (S^2 per decade, least squares
    over the time points > 0).
    Plots: sigma vs log time per level (colour bar: level), mean shift vs level per time
    point (legend: time, 2 significant digits).
bake_retention (``reads``)
    per temperature, bake step and level: bake time, mean shift = mean over cells of
    (g_siemens - that cell's g_siemens at step 0 of the same temperature), sigma = std of g_siemens
    across cells,
    sigma of the shift (both 1.4826 x MAD on the robust basis), robust sigma, sigma_raw. Plot:
    retention curves (mean g_siemens +- sigma vs cumulative bake time on a log axis, the reads
    before the bake at the tick "0"; colour bar: level).
ber (``bits``, ``conditions``)
    per condition and structure: bits, errors (read_bit != bit), BER with its 95 %
    Clopper-Pearson (exact binomial) interval, plus the condition's icc_a, v_reset, width_s and
    energy_per_bit_j; and the same over working cells (``bits_working``, ``errors_working``,
    ``ber_working`` with its interval, ``excluded_cells``): stuck cells (paper 004, ~1 %)
    hold no bit and dominate the raw BER of strong conditions, so a lab reports both.
    Stuck cells come from a fault map in the same store where it covers the cell, else from
    the BER run's own reads (:func:`stuck_cells`). Printed as narrow tables: raw BER, BER on
    working cells, conditions, energies. Plot: both BERs vs condition with the
    intervals (zero errors: the upper bound).
fault_map (``faults``)
    per state: cells, fraction with its 95 % Clopper-Pearson interval; the share of stuck cells
    that are stuck-on. Plot: map of the cells per tile (geometry from the plan or the station
    snapshot, else 256 x 64).
endurance (``cycles``)
    window = g_lrs_siemens - g_hrs_siemens per cell and cycle; per condition and cycle: cells,
    median window,
    10th percentile, fraction of closed windows (window <= 0), mean g_lrs_siemens and
    g_hrs_siemens. Plot:
    window vs cycle (median and 10-90 % band) per condition.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from cimlab.errors import InsufficientDataError
from cimlab.procedures.cell_states import (
    CellFilter,
    analog_filter,
    stuck_cells,
    working_bits,
)
from cimlab.procedures.report.sections import US_PER_S, Section
from cimlab.stats import CONFIDENCE, MAD_EFFICIENCY, MAD_TO_SIGMA, clopper_pearson, sigma_interval

#: Reads closer than this in log10 time belong to one time point (relaxation without time_index).
TIME_CLUSTER_DECADES = 0.1
_US = US_PER_S


def time_points(df: pd.DataFrame) -> pd.Series:
    """Integer time-point label per row: ``time_index`` if present, else clusters of time_s."""
    if "time_index" in df.columns:
        return df["time_index"].astype(np.int64)
    return pd.Series(cluster_log_times(df["time_s"].to_numpy(float)), index=df.index)


def cluster_log_times(t: np.ndarray, decades: float = TIME_CLUSTER_DECADES) -> np.ndarray:
    """Integer time-point label per time [s]: t = 0 alone (label 0), the times > 0 in
    clusters whose sorted neighbours are less than ``decades`` apart in log10 time (labels
    increasing with time), so measured times scattered around a nominal point are one point."""
    t = np.asarray(t, float)
    uniq = np.unique(t)
    labels = np.empty(uniq.size, np.int64)
    pos = uniq > 0
    labels[~pos] = 0
    lt = np.log10(uniq[pos])
    if lt.size:
        breaks = np.concatenate([[0], np.cumsum(np.diff(lt) > decades)])
        labels[pos] = breaks + (1 if (~pos).any() else 0)
    return labels[np.searchsorted(uniq, t)]


def grouped_robust_sigma(d: pd.DataFrame, keys: list[str], col: str) -> pd.Series:
    """Per group of ``keys``: :func:`cimlab.stats.robust_sigma` of column ``col`` (1.4826 x
    median |x - median|, a sigma that stuck or failed cells, a few percent of outliers, barely
    move), vectorised over the groups."""
    med = d.groupby(keys)[col].transform("median")
    dev = (d[col] - med).abs()
    return dev.groupby([d[k] for k in keys]).median() * MAD_TO_SIGMA


def mid_levels(levels: Iterable[int]) -> np.ndarray:
    """The middle half of the level indices (25th to 75th percentile), the mid-range levels."""
    lv = np.unique(np.asarray(list(levels)))
    lo, hi = np.percentile(lv, [25, 75])
    return lv[(lv >= lo) & (lv <= hi)]



def _sigma_with_interval(plain: Any, robust: Any, n: Any, basis: str
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Headline sigma of a basis and its chi-square interval (robust: effective n)."""
    n = np.asarray(n, float)
    if basis == "robust":
        s = np.asarray(robust, float)
        lo, hi = sigma_interval(s, np.maximum(n * MAD_EFFICIENCY, 2.0))
    else:
        s = np.asarray(plain, float)
        lo, hi = sigma_interval(s, n)
    return s, lo, hi


def _pool(sigma: pd.Series, n: pd.Series, by: pd.Series) -> pd.Series:
    """Pooled sigma over groups: sqrt(sum (n - 1) sigma^2 / sum (n - 1)) per ``by``."""
    dof = (n - 1).clip(lower=0)
    v = (sigma**2 * dof).groupby(by.to_numpy()).sum()
    return np.sqrt(v / dof.groupby(by.to_numpy()).sum())


# =========================================================================== per kind
def summarize_programming_error(df: pd.DataFrame, flt: CellFilter | None = None
                                ) -> tuple[list[Section], dict]:
    flt = flt or analog_filter(df["cell"], None)
    d = df.assign(error_siemens=df["g_siemens"] - df["target_siemens"])
    span = float(d["target_siemens"].max() - d["target_siemens"].min()) or float(
        d["target_siemens"].max()
    )
    keep = flt.keep(d["cell"])
    k = d[keep]
    keys = ["mode", "level"]
    agg = {
        "n": ("error_siemens", "size"),
        "target_siemens": ("target_siemens", "mean"),
        "mean_error_siemens": ("error_siemens", "mean"),
        "sigma_plain_siemens": ("error_siemens", "std"),
    }
    if "pulses" in d.columns:
        agg["pulses"] = ("pulses", "mean")
    if "success" in d.columns:
        agg["success"] = ("success", "mean")
    s = k.groupby(keys, sort=True).agg(**agg)
    s.insert(1, "excluded", (d.groupby(keys).size() - s["n"]).reindex(s.index).fillna(0)
             .astype(np.int64))
    s["sigma_robust_siemens"] = grouped_robust_sigma(k, keys, "error_siemens")
    s["sigma_raw_siemens"] = d.groupby(keys)["error_siemens"].std()
    s = s.reset_index()
    sig, lo, hi = _sigma_with_interval(s["sigma_plain_siemens"], s["sigma_robust_siemens"], s["n"],
                                       flt.basis)
    at = s.columns.get_loc("mean_error_siemens") + 1
    s.insert(at, "sigma_siemens", sig)
    s.insert(at + 1, "sigma_lo_siemens", lo)
    s.insert(at + 2, "sigma_hi_siemens", hi)
    s = s.drop(columns="sigma_plain_siemens")
    s["sigma_frac"] = s["sigma_siemens"] / span
    s["sigma_frac_raw"] = s["sigma_raw_siemens"] / span
    by_mode = k.groupby("mode").agg(
        n=("error_siemens", "size"), mean_error_siemens=("error_siemens", "mean")
    )
    by_mode.insert(1, "excluded", s.groupby("mode")["excluded"].sum())
    for col in ("sigma_siemens", "sigma_robust_siemens", "sigma_raw_siemens"):
        by_mode[col] = _pool(s[col], s["n"], s["mode"])
    by_mode["sigma_frac"] = by_mode["sigma_siemens"] / span
    by_mode["sigma_frac_raw"] = by_mode["sigma_raw_siemens"] / span
    if "pulses" in d.columns:
        by_mode["pulses"] = k.groupby("mode")["pulses"].mean()
    if "success" in d.columns:
        by_mode["success"] = k.groupby("mode")["success"].mean()
    by_mode = by_mode.reset_index()
    cond = (
        "target_siemens",
        "mean_error_siemens",
        "sigma_siemens",
        "sigma_lo_siemens",
        "sigma_hi_siemens",
        "sigma_robust_siemens",
        "sigma_raw_siemens",
    )
    sections = [
        Section(
            "programming error per mode (pooled over levels)",
            by_mode,
            ("mean_error_siemens", "sigma_siemens", "sigma_robust_siemens", "sigma_raw_siemens"),
            f"range (max - min target) = {span * _US:.3g} µS; {flt.note()}",
            shown=tuple(c for c in by_mode.columns if c != "sigma_robust_siemens"),
            labels={"mean_error_uS": "mean_err_uS", "sigma_frac_raw": "frac_raw"},
        ),
        Section(
            "programming error per level",
            s,
            cond,
            shown=(
                "mode",
                "level",
                "n",
                "excluded",
                "target_siemens",
                "mean_error_siemens",
                "sigma_siemens",
                "sigma_lo_siemens",
                "sigma_hi_siemens",
                "sigma_raw_siemens",
                "pulses",
            ),
            labels={"sigma_lo_uS": "lo_uS", "sigma_hi_uS": "hi_uS", "mean_error_uS": "mean_err_uS"},
        ),
    ]
    figures = {
        m: {
            "sigma_siemens": float(r.sigma_siemens),
            "sigma_robust_siemens": float(r.sigma_robust_siemens),
            "sigma_frac": float(r.sigma_frac),
            "sigma_raw_siemens": float(r.sigma_raw_siemens),
            "sigma_frac_raw": float(r.sigma_frac_raw),
            "excluded": int(r.excluded),
        }
        for m, r in by_mode.set_index("mode").iterrows()
    }
    figures["basis"] = flt.basis
    return sections, figures


def _read_sigma(df: pd.DataFrame, flt: CellFilter) -> pd.DataFrame:
    from scipy.stats import chi2

    per_cell = df.groupby(["level", "cell"])["g_siemens"].agg(["mean", "var", "size"])
    per_cell = per_cell[per_cell["size"] > 1]
    cell = per_cell.index.get_level_values("cell")
    kept = per_cell[flt.keep(cell)]
    # median of a sample variance from r reads is sigma^2 chi2.median(r-1)/(r-1)
    kept = kept.assign(var_n=kept["var"] / (chi2.median(kept["size"] - 1) / (kept["size"] - 1)))
    s = kept.groupby("level").agg(
        cells=("mean", "size"),
        repeats=("size", "median"),
        mean_g_siemens=("mean", "mean"),
        median_g_siemens=("mean", "median"),
        var=("var", "mean"),
        var_med=("var_n", "median"),
    )
    s.insert(1, "excluded", (per_cell.groupby("level").size() - s["cells"]).astype(np.int64))
    raw = per_cell.groupby("level").agg(g=("mean", "mean"), var=("var", "mean"))
    if flt.basis == "robust":
        s["sigma_siemens"] = np.sqrt(s["var_med"])
        s["rel_sigma"] = s["sigma_siemens"] / s["median_g_siemens"]
    else:
        s["sigma_siemens"] = np.sqrt(s["var"])
        s["rel_sigma"] = s["sigma_siemens"] / s["mean_g_siemens"]
    s = s.drop(columns=["var", "var_med"])
    s["sigma_raw_siemens"] = np.sqrt(raw["var"])
    s["rel_sigma_raw"] = s["sigma_raw_siemens"] / raw["g"]
    if "target_siemens" in df.columns:
        s.insert(0, "target_siemens", df.groupby("level")["target_siemens"].mean())
    return s.reset_index()


_READ_ROBUST = "sqrt of the median per-cell variance / its chi-square median factor"


def summarize_read_fluctuation(tables: dict[str, pd.DataFrame],
                               faults: pd.DataFrame | None = None
                               ) -> tuple[list[Section], dict]:
    sections = []
    figures: dict[str, Any] = {}
    for name, title in (("reads", "read fluctuation per level (array reads)"),
                        ("smu_reads", "read fluctuation per level (SMU reads)")):
        if name in tables and len(tables[name]):
            flt = analog_filter(tables[name]["cell"], faults)
            s = _read_sigma(tables[name], flt)
            if not (s["repeats"] >= 2).any():  # no spread from one read per cell
                raise InsufficientDataError(
                    f"{name}: one read per cell; a read-fluctuation sigma needs at least 2 "
                    "repeated reads per cell: measure with repeats >= 2")
            center = "median_g_siemens" if flt.basis == "robust" else "mean_g_siemens"
            sections.append(
                Section(
                    title,
                    s,
                    (
                        "target_siemens",
                        "mean_g_siemens",
                        "median_g_siemens",
                        "sigma_siemens",
                        "sigma_raw_siemens",
                    ),
                    f"{flt.note(_READ_ROBUST)}; rel_sigma = sigma / "
                    f"{center.removesuffix('_siemens').replace('_', ' ')}; "
                    f"{int(s['repeats'].median())} reads per cell",
                    shown=(
                        "level",
                        "target_siemens",
                        "cells",
                        "excluded",
                        center,
                        "sigma_siemens",
                        "rel_sigma",
                        "sigma_raw_siemens",
                        "rel_sigma_raw",
                    ),
                )
            )
            figures[name] = {"rel_sigma_min": float(s["rel_sigma"].min()),
                             "rel_sigma_max": float(s["rel_sigma"].max()),
                             "excluded": int(flt.stuck.size), "basis": flt.basis}
    return sections, figures


def sigma_columns(s: pd.DataFrame, kept: pd.DataFrame, every: pd.DataFrame, group: list[str],
                   flt: CellFilter, shift_col: str) -> None:
    """Add ``sigma_robust_siemens`` and ``sigma_raw_siemens`` (all cells, stuck ones included) to
    the
    per-group table ``s``; where ``flt`` has no fault map for the cells, ``sigma_siemens`` and
    ``shift_col`` become robust sigmas (stuck cells cannot inflate them)."""
    s["sigma_robust_siemens"] = grouped_robust_sigma(kept, group, "g_siemens")
    if flt.basis == "robust":
        s["sigma_siemens"] = s["sigma_robust_siemens"]
        s[shift_col] = grouped_robust_sigma(kept, group, "shift_siemens")
    s["sigma_raw_siemens"] = every.groupby(group)["g_siemens"].std()


def relaxation_stats(df: pd.DataFrame, flt: CellFilter | None = None) -> pd.DataFrame:
    """Per level and time point: n, excluded, time_s, target_siemens, mean_g_siemens, sigma_siemens,
    mean_shift_siemens, sigma_relax_siemens, sigma_robust_siemens, sigma_raw_siemens (``flt``: the
    cells left out
    and the basis of sigma_siemens / sigma_relax_siemens, :func:`analog_filter`)."""
    flt = flt or analog_filter(df["cell"], None, "imported")
    d = df.assign(tp=time_points(df).to_numpy(), shift_siemens=df["g_siemens"] - df["g0_siemens"])
    k = d[flt.keep(d["cell"])]
    keys = ["level", "tp"]
    s = k.groupby(keys).agg(
        n=("g_siemens", "size"),
        time_s=("time_s", "median"),
        target_siemens=("target_siemens", "mean"),
        mean_g_siemens=("g_siemens", "mean"),
        sigma_siemens=("g_siemens", "std"),
        mean_shift_siemens=("shift_siemens", "mean"),
        sigma_relax_siemens=("shift_siemens", "std"),
    )
    s.insert(1, "excluded", (d.groupby(keys).size() - s["n"]).astype(np.int64))
    sigma_columns(s, k, d, keys, flt, "sigma_relax_siemens")
    # one label per time point (median over all levels), so the pivots line up
    label = d.groupby("tp")["time_s"].median()
    s = s.reset_index()
    s["time_s"] = label.loc[s["tp"]].to_numpy()
    return s.drop(columns="tp")


def variance_slope(times_s: np.ndarray, sigma_siemens: np.ndarray) -> float:
    """Least-squares slope of sigma^2 vs log10(t) over t > 0 [S^2 per decade]."""
    t = np.asarray(times_s, float)
    v = np.asarray(sigma_siemens, float) ** 2
    ok = t > 0
    if ok.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log10(t[ok]), v[ok], 1)[0])


def summarize_relaxation(df: pd.DataFrame, flt: CellFilter | None = None
                         ) -> tuple[list[Section], dict]:
    flt = flt or analog_filter(df["cell"], None, "imported")
    s = relaxation_stats(df, flt)
    sig = s.pivot(index="level", columns="time_s", values="sigma_siemens")
    shift = s.pivot(index="level", columns="time_s", values="mean_shift_siemens")
    sig.columns = [f"t={t:.3g}s" for t in sig.columns]
    shift.columns = [f"t={t:.3g}s" for t in shift.columns]
    mid = mid_levels(s["level"])
    m = (
        s[s["level"].isin(mid)]
        .groupby("time_s")
        .agg(
            levels=("level", "nunique"),
            n=("n", "sum"),
            sigma_siemens=("sigma_siemens", "mean"),
            mean_shift_siemens=("mean_shift_siemens", "mean"),
            sigma_relax_siemens=("sigma_relax_siemens", "mean"),
            sigma_robust_siemens=("sigma_robust_siemens", "mean"),
            sigma_raw_siemens=("sigma_raw_siemens", "mean"),
        )
    )
    m = m.reset_index()
    slope = variance_slope(m["time_s"], m["sigma_siemens"])
    note = (f"mid-range levels {mid.min()}..{mid.max()}; variance grows by "
            f"{slope * _US**2:.3g} µS² per decade of time (t > 0); {flt.note()}")
    sections = [
        Section(
            "relaxation, mid-range levels, per time point",
            m,
            (
                "sigma_siemens",
                "mean_shift_siemens",
                "sigma_relax_siemens",
                "sigma_robust_siemens",
                "sigma_raw_siemens",
            ),
            note,
        ),
        Section(
            "sigma of g per level (rows) and time point (columns)",
            sig.reset_index(),
            tuple(sig.columns),
        ),
        Section(
            "mean shift g - g0 per level and time point", shift.reset_index(), tuple(shift.columns)
        ),
        Section(
            "relaxation per level and time point",
            s,
            (
                "target_siemens",
                "mean_g_siemens",
                "sigma_siemens",
                "mean_shift_siemens",
                "sigma_relax_siemens",
                "sigma_robust_siemens",
                "sigma_raw_siemens",
            ),
        ),
    ]
    figures = {"mid_levels": [int(mid.min()), int(mid.max())],
               "sigma_siemens": {f"{t:g}": float(v) for t, v in zip(m["time_s"], m["sigma_siemens"],
                                                              strict=True)},
               "variance_slope_s2_per_decade": slope, "excluded": int(flt.stuck.size),
               "basis": flt.basis}
    return sections, figures


def summarize_ber(tables: dict[str, pd.DataFrame], faults: pd.DataFrame | None = None
                  ) -> tuple[list[Section], dict]:
    """BER per condition and structure: raw (every bit) and over working cells (bits whose
    cells :func:`stuck_cells` does not flag, using ``faults`` of a fault_map run when
    given), each with its Clopper-Pearson interval, and the cells excluded."""
    bits = tables["bits"]
    err = (bits["read_bit"].to_numpy() != bits["bit"].to_numpy())
    ok = np.ones(len(bits), dtype=bool)
    excl = np.zeros(len(bits), dtype=np.int64)
    per_cond = []
    cond = bits["condition"].astype(str).to_numpy()
    for name in dict.fromkeys(cond):  # each condition on its own cells (procedures.ber)
        rows = np.flatnonzero(cond == name)
        b = bits.iloc[rows]
        st = stuck_cells(b, faults)
        per_cond.append(st)
        ok[rows] = working_bits(b, st)
        bad = st.index[st["state"].isin(("stuck_on", "stuck_off"))].to_numpy()
        excl[rows] = np.isin(b["cell"].to_numpy().astype(np.int64), bad).astype(np.int64)
        if "cell_b" in b.columns:
            cb = b["cell_b"].to_numpy().astype(np.int64)
            excl[rows] += ((cb >= 0) & np.isin(cb, bad)).astype(np.int64)
    stuck = pd.concat(per_cond)
    d = bits[["condition", "structure", "cycle"]].assign(
        error=err, ok=ok, err_ok=err & ok, excl=np.where(bits["cycle"].to_numpy()
                                                         == bits["cycle"].min(), excl, 0))
    s = d.groupby(["condition", "structure"], sort=False).agg(
        bits=("error", "size"), errors=("error", "sum"), bits_working=("ok", "sum"),
        errors_working=("err_ok", "sum"), excluded_cells=("excl", "sum")).reset_index()
    s["ber"] = s["errors"] / s["bits"]
    lo, hi = clopper_pearson(s["errors"], s["bits"])
    s["ber_lo"], s["ber_hi"] = lo, hi
    with np.errstate(invalid="ignore", divide="ignore"):
        s["ber_working"] = s["errors_working"] / s["bits_working"]
    lo, hi = clopper_pearson(s["errors_working"], s["bits_working"])
    s["ber_working_lo"], s["ber_working_hi"] = lo, hi
    is_stuck = stuck["state"].isin(("stuck_on", "stuck_off"))
    src = stuck.loc[is_stuck, "source"].value_counts()
    how = ", ".join(f"{n} cells by {k}" for k, n in src.items())
    unknown = int((stuck["source"] == "none").sum())
    note = (f"working cells (next table): stuck cells excluded ({how or 'none found'}"
            + (f"; {unknown} cells seen in one state only, kept" if unknown else "") + ")")
    ci = f"{CONFIDENCE:.0%} Clopper-Pearson interval"
    sections = [
        Section(f"bit error rate per condition and structure, all cells ({ci})", s, note=note,
                shown=("condition", "structure", "bits", "errors", "ber", "ber_lo", "ber_hi")),
        Section(f"bit error rate on working cells ({ci})", s,
                shown=("condition", "structure", "excluded_cells", "bits_working",
                       "errors_working", "ber_working", "ber_working_lo", "ber_working_hi"),
                labels={"excluded_cells": "excluded_cells", "bits_working": "bits",
                        "errors_working": "errors", "ber_working": "ber",
                        "ber_working_lo": "ber_lo", "ber_working_hi": "ber_hi"})]
    if "conditions" in tables and len(tables["conditions"]):
        c = tables["conditions"].drop_duplicates("condition")
        s = s.merge(c, on="condition", how="left")
        sections[0].frame = sections[1].frame = s
        c = c.reset_index(drop=True)
        energy = [k for k in c.columns if k.startswith("energy")]
        sections.append(Section("programming conditions", c,
                                ("g_ref_siemens",) if "g_ref_siemens" in c.columns else (),
                                shown=tuple(k for k in c.columns if k not in energy)))
        if energy:
            sections.append(Section("programming energy per condition [J]", c,
                                    shown=("condition", *energy)))
    figures = {f"{r.condition}/{r.structure}": {
        "ber": float(r.ber), "ber_hi": float(r.ber_hi), "ber_working": float(r.ber_working),
        "ber_working_lo": float(r.ber_working_lo), "ber_working_hi": float(r.ber_working_hi),
        "excluded_cells": int(r.excluded_cells)} for r in s.itertuples()}
    return sections, figures


FAULT_STATES = ("ok", "stuck_on", "stuck_off")


def summarize_faults(df: pd.DataFrame) -> tuple[list[Section], dict]:
    n = len(df)
    counts = df["state"].value_counts()
    states = [*FAULT_STATES, *sorted(set(counts.index) - set(FAULT_STATES))]
    k = np.array([int(counts.get(st, 0)) for st in states])
    lo, hi = clopper_pearson(k, np.full(k.size, n))
    s = pd.DataFrame({"state": states, "cells": k, "fraction": k / max(n, 1), "fraction_lo": lo,
                      "fraction_hi": hi})
    stuck = int(k[1] + k[2])
    share_lo, share_hi = clopper_pearson([k[1]], [stuck])
    share = pd.DataFrame({"stuck_cells": [stuck], "stuck_on_share": [k[1] / stuck if stuck
                                                                     else np.nan],
                          "share_lo": share_lo, "share_hi": share_hi})
    sections = [Section(f"fault map ({CONFIDENCE:.0%} Clopper-Pearson intervals)", s),
                Section("stuck cells: share stuck-on", share)]
    return sections, {"stuck_fraction": stuck / max(n, 1)}


def summarize_endurance(df: pd.DataFrame) -> tuple[list[Section], dict]:
    d = df.assign(window_siemens=df["g_lrs_siemens"] - df["g_hrs_siemens"])
    s = (
        d.groupby(["condition", "cycle"], sort=True)
        .agg(
            cells=("window_siemens", "size"),
            median_window_siemens=("window_siemens", "median"),
            p10_window_siemens=("window_siemens", lambda x: float(np.percentile(x, 10))),
            closed=("window_siemens", lambda x: float(np.mean(x <= 0))),
            mean_g_lrs_siemens=("g_lrs_siemens", "mean"),
            mean_g_hrs_siemens=("g_hrs_siemens", "mean"),
        )
        .reset_index()
    )
    shown = []
    for _, g in s.groupby("condition", sort=False):  # at most ~10 cycles per condition printed
        idx = np.unique(np.round(np.geomspace(1, len(g), min(len(g), 10))).astype(int) - 1)
        shown.append(g.iloc[idx])
    cond = (
        "median_window_siemens",
        "p10_window_siemens",
        "mean_g_lrs_siemens",
        "mean_g_hrs_siemens",
    )
    sections = [Section("memory window vs cycle (log-spaced selection)", pd.concat(shown), cond),
                Section("memory window per condition and cycle", s, cond)]
    return sections, {}


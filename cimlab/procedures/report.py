"""Summary tables and plots of the runs in a store, one recipe per run kind.

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
    error = g_s - target_s; per mode and level: n (cells used), excluded, mean error, sigma of
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
    sigma = std of g_s across cells (the spread of the level), mean shift = mean(g_s - g0_s),
    sigma of the relaxation alone = std(g_s - g0_s) (both 1.4826 x MAD on the robust basis),
    robust sigma of g_s, sigma_raw (std of g_s over all cells). Printed: sigma and
    mean shift as level x time tables, and the mid-range figures (levels in the middle half of
    the level indices) with the slope of variance vs log10 time (S^2 per decade, least squares
    over the time points > 0).
    Plots: sigma vs log time per level (colour bar: level), mean shift vs level per time
    point (legend: time, 2 significant digits).
bake_retention (``reads``)
    per temperature, bake step and level: bake time, mean shift = mean over cells of
    (g_s - that cell's g_s at step 0 of the same temperature), sigma = std of g_s across cells,
    sigma of the shift (both 1.4826 x MAD on the robust basis), robust sigma, sigma_raw. Plot:
    retention curves (mean g_s +- sigma vs cumulative bake time on a log axis, the reads
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
    window = g_lrs_s - g_hrs_s per cell and cycle; per condition and cycle: cells, median window,
    10th percentile, fraction of closed windows (window <= 0), mean g_lrs_s and g_hrs_s. Plot:
    window vs cycle (median and 10-90 % band) per condition.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cimlab.errors import InsufficientDataError
from cimlab.stats import MAD_TO_SIGMA

#: Confidence level of every interval in the report.
CONFIDENCE = 0.95
#: Reads closer than this in log10 time belong to one time point (relaxation without time_index).
TIME_CLUSTER_DECADES = 0.1
#: Default array geometry (rows, cols) for fault maps when the run does not record one.
DEFAULT_TILE = (256, 64)
_US = 1e6


@dataclass
class Section:
    """One summary table: SI values in ``frame``; ``conductance`` names its columns in S;
    ``shown``: the columns :func:`format_report` prints (default all; the frame keeps all)."""

    title: str
    frame: pd.DataFrame
    conductance: tuple[str, ...] = ()
    note: str = ""
    shown: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)

    def display(self) -> pd.DataFrame:
        """A copy of the shown columns with conductances in uS (renamed ``*_uS``)."""
        df = self.frame.copy()
        if self.shown:
            df = df[[c for c in self.shown if c in df.columns]]
        rename = {}
        for col in self.conductance:
            if col in df.columns:
                df[col] = df[col] * _US
                rename[col] = (col[:-2] if col.endswith("_s") else col) + "_uS"
        return df.rename(columns=rename).rename(columns=self.labels)


@dataclass
class RunReport:
    """The report of one run."""

    uid: str
    kind: str
    status: str
    sections: list[Section] = field(default_factory=list)
    plots: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    def section(self, title: str) -> Section:
        for s in self.sections:
            if s.title == title:
                return s
        raise KeyError(f"no section {title!r}; sections: {[s.title for s in self.sections]}")


# =========================================================================== statistics
def clopper_pearson(
    k: Any, n: Any, confidence: float = CONFIDENCE
) -> tuple[np.ndarray, np.ndarray]:
    """Exact (Clopper-Pearson) binomial interval for k successes in n trials (vectorised)."""
    from scipy.stats import beta

    k = np.asarray(k, dtype=float)
    n = np.asarray(n, dtype=float)
    a = 1.0 - confidence
    with np.errstate(invalid="ignore", divide="ignore"):
        lo = np.where(k > 0, beta.ppf(a / 2, k, n - k + 1), 0.0)
        hi = np.where(k < n, beta.ppf(1 - a / 2, k + 1, n - k), 1.0)
    return np.nan_to_num(lo), np.where(n > 0, hi, 1.0)


def sigma_interval(
    sigma: Any, n: Any, confidence: float = CONFIDENCE
) -> tuple[np.ndarray, np.ndarray]:
    """Chi-square interval of a normal standard deviation estimated from n samples."""
    from scipy.stats import chi2

    s = np.asarray(sigma, float)
    dof = np.asarray(n, float) - 1
    a = 1.0 - confidence
    with np.errstate(invalid="ignore", divide="ignore"):
        lo = s * np.sqrt(dof / chi2.ppf(1 - a / 2, dof))
        hi = s * np.sqrt(dof / chi2.ppf(a / 2, dof))
    return lo, hi


def time_points(df: pd.DataFrame) -> pd.Series:
    """Integer time-point label per row: ``time_index`` if present, else clusters of time_s."""
    if "time_index" in df.columns:
        return df["time_index"].astype(np.int64)
    t = df["time_s"].to_numpy(float)
    uniq = np.unique(t)
    labels = np.empty(uniq.size, np.int64)
    pos = uniq > 0
    labels[~pos] = 0
    lt = np.log10(uniq[pos])
    if lt.size:
        breaks = np.concatenate([[0], np.cumsum(np.diff(lt) > TIME_CLUSTER_DECADES)])
        labels[pos] = breaks + (1 if (~pos).any() else 0)
    return pd.Series(labels[np.searchsorted(uniq, t)], index=df.index)


#: Normal-consistency factor of the median absolute deviation.


def robust_sigma(d: pd.DataFrame, keys: list[str], col: str) -> pd.Series:
    """Per group: 1.4826 x median |x - median| (a sigma that stuck or failed cells, a few
    percent of outliers, barely move)."""
    med = d.groupby(keys)[col].transform("median")
    dev = (d[col] - med).abs()
    return dev.groupby([d[k] for k in keys]).median() * MAD_TO_SIGMA


def _mid_levels(levels: Iterable[int]) -> np.ndarray:
    lv = np.unique(np.asarray(list(levels)))
    lo, hi = np.percentile(lv, [25, 75])
    return lv[(lv >= lo) & (lv <= hi)]


# =========================================================================== stuck cells
#: Asymptotic efficiency of the MAD sigma relative to the sample std for normal data
#: (Rousseeuw & Croux 1993: 37 %): a robust sigma from n cells is as precise as a plain one
#: from ~0.37 n, which is what its chi-square interval uses.
MAD_EFFICIENCY = 0.3675
STUCK_STATES = ("stuck_on", "stuck_off")


def fault_states(faults: pd.DataFrame) -> pd.Series:
    """State per cell ("ok", "stuck_on", "stuck_off") of a ``fault_map`` ``faults`` table
    (the last row of a cell wins), indexed by cell: rule 1 of :func:`stuck_cells`."""
    fm = faults.drop_duplicates("cell", keep="last").set_index("cell")["state"].astype(str)
    fm.index = fm.index.astype(np.int64)
    return fm


@dataclass(frozen=True)
class CellFilter:
    """Which cells of an analog run the report's statistics leave out as stuck, and why.

    ``basis``: "fault_map" (a fault map lists every cell: sigma = plain std of the cells it
    does not flag), "robust" (some cells unmapped: sigma = 1.4826 x MAD, which ~1 % of stuck
    cells barely move) or "plain" (imported data: the importer already set outliers apart)."""

    stuck: np.ndarray
    cells: int
    covered: int
    basis: str

    def keep(self, cell: Any) -> np.ndarray:
        """Row mask: the cell is not flagged stuck."""
        return ~np.isin(np.asarray(cell).astype(np.int64), self.stuck)

    def note(self, robust: str = "1.4826 x median absolute deviation") -> str:
        """What was excluded and what sigma means (``robust``: how the robust one is made)."""
        if self.covered == 0:
            ex = f"no fault map in this store covers the run's {self.cells} cells"
        else:
            ex = (f"{self.stuck.size} stuck cells excluded (flagged by the fault map, which "
                  f"covers {self.covered} of the run's {self.cells} cells)")
        raw = "sigma_raw = std over all cells (stuck cells included)"
        if self.basis == "fault_map":
            return f"{ex}; sigma = std over the other cells; {raw}"
        if self.basis == "robust":
            return (f"{ex}; sigma = robust sigma ({robust}: stuck cells, ~1 %, barely move "
                    f"it); {raw}")
        return f"{ex}; sigma = std over the cells of the run (imported data); {raw}"


def analog_filter(cells: Any, faults: pd.DataFrame | None, kind: str = "") -> CellFilter:
    """The stuck cells of an analog run (programming error, read fluctuation, relaxation,
    bake): a cell is stuck when a fault map in the same store flags it (the rule of
    :func:`stuck_cells`; an analog run has no SET/RESET reads of its own to decide on)."""
    u = np.unique(np.asarray(cells).astype(np.int64))
    stuck = np.empty(0, np.int64)
    covered = 0
    if faults is not None and len(faults):
        fm = fault_states(faults)
        known = fm.reindex(u)
        covered = int(known.notna().sum())
        stuck = u[known.isin(STUCK_STATES).to_numpy()]
    if covered == u.size and u.size:
        basis = "fault_map"
    else:
        basis = "plain" if kind == "imported" else "robust"
    return CellFilter(stuck=stuck, cells=int(u.size), covered=covered, basis=basis)


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
    d = df.assign(error_s=df["g_s"] - df["target_s"])
    span = float(d["target_s"].max() - d["target_s"].min()) or float(d["target_s"].max())
    keep = flt.keep(d["cell"])
    k = d[keep]
    keys = ["mode", "level"]
    agg = {"n": ("error_s", "size"), "target_s": ("target_s", "mean"),
           "mean_error_s": ("error_s", "mean"), "sigma_plain_s": ("error_s", "std")}
    if "pulses" in d.columns:
        agg["pulses"] = ("pulses", "mean")
    if "success" in d.columns:
        agg["success"] = ("success", "mean")
    s = k.groupby(keys, sort=True).agg(**agg)
    s.insert(1, "excluded", (d.groupby(keys).size() - s["n"]).reindex(s.index).fillna(0)
             .astype(np.int64))
    s["sigma_robust_s"] = robust_sigma(k, keys, "error_s")
    s["sigma_raw_s"] = d.groupby(keys)["error_s"].std()
    s = s.reset_index()
    sig, lo, hi = _sigma_with_interval(s["sigma_plain_s"], s["sigma_robust_s"], s["n"],
                                       flt.basis)
    at = s.columns.get_loc("mean_error_s") + 1
    s.insert(at, "sigma_s", sig)
    s.insert(at + 1, "sigma_lo_s", lo)
    s.insert(at + 2, "sigma_hi_s", hi)
    s = s.drop(columns="sigma_plain_s")
    s["sigma_frac"] = s["sigma_s"] / span
    s["sigma_frac_raw"] = s["sigma_raw_s"] / span
    by_mode = k.groupby("mode").agg(n=("error_s", "size"), mean_error_s=("error_s", "mean"))
    by_mode.insert(1, "excluded", s.groupby("mode")["excluded"].sum())
    for col in ("sigma_s", "sigma_robust_s", "sigma_raw_s"):
        by_mode[col] = _pool(s[col], s["n"], s["mode"])
    by_mode["sigma_frac"] = by_mode["sigma_s"] / span
    by_mode["sigma_frac_raw"] = by_mode["sigma_raw_s"] / span
    if "pulses" in d.columns:
        by_mode["pulses"] = k.groupby("mode")["pulses"].mean()
    if "success" in d.columns:
        by_mode["success"] = k.groupby("mode")["success"].mean()
    by_mode = by_mode.reset_index()
    cond = ("target_s", "mean_error_s", "sigma_s", "sigma_lo_s", "sigma_hi_s", "sigma_robust_s",
            "sigma_raw_s")
    sections = [
        Section("programming error per mode (pooled over levels)", by_mode,
                ("mean_error_s", "sigma_s", "sigma_robust_s", "sigma_raw_s"),
                f"range (max - min target) = {span * _US:.3g} uS; {flt.note()}",
                shown=tuple(c for c in by_mode.columns if c != "sigma_robust_s"),
                labels={"mean_error_uS": "mean_err_uS", "sigma_frac_raw": "frac_raw"}),
        Section("programming error per level", s, cond,
                shown=("mode", "level", "n", "excluded", "target_s", "mean_error_s", "sigma_s",
                       "sigma_lo_s", "sigma_hi_s", "sigma_raw_s", "pulses"),
                labels={"sigma_lo_uS": "lo_uS", "sigma_hi_uS": "hi_uS",
                        "mean_error_uS": "mean_err_uS"}),
    ]
    figures = {m: {"sigma_s": float(r.sigma_s), "sigma_robust_s": float(r.sigma_robust_s),
                   "sigma_frac": float(r.sigma_frac), "sigma_raw_s": float(r.sigma_raw_s),
                   "sigma_frac_raw": float(r.sigma_frac_raw), "excluded": int(r.excluded)}
               for m, r in by_mode.set_index("mode").iterrows()}
    figures["basis"] = flt.basis
    return sections, figures


def _read_sigma(df: pd.DataFrame, flt: CellFilter) -> pd.DataFrame:
    from scipy.stats import chi2

    per_cell = df.groupby(["level", "cell"])["g_s"].agg(["mean", "var", "size"])
    per_cell = per_cell[per_cell["size"] > 1]
    cell = per_cell.index.get_level_values("cell")
    kept = per_cell[flt.keep(cell)]
    # median of a sample variance from r reads is sigma^2 chi2.median(r-1)/(r-1)
    kept = kept.assign(var_n=kept["var"] / (chi2.median(kept["size"] - 1) / (kept["size"] - 1)))
    s = kept.groupby("level").agg(cells=("mean", "size"), repeats=("size", "median"),
                                  mean_g_s=("mean", "mean"), median_g_s=("mean", "median"),
                                  var=("var", "mean"), var_med=("var_n", "median"))
    s.insert(1, "excluded", (per_cell.groupby("level").size() - s["cells"]).astype(np.int64))
    raw = per_cell.groupby("level").agg(g=("mean", "mean"), var=("var", "mean"))
    if flt.basis == "robust":
        s["sigma_s"] = np.sqrt(s["var_med"])
        s["rel_sigma"] = s["sigma_s"] / s["median_g_s"]
    else:
        s["sigma_s"] = np.sqrt(s["var"])
        s["rel_sigma"] = s["sigma_s"] / s["mean_g_s"]
    s = s.drop(columns=["var", "var_med"])
    s["sigma_raw_s"] = np.sqrt(raw["var"])
    s["rel_sigma_raw"] = s["sigma_raw_s"] / raw["g"]
    if "target_s" in df.columns:
        s.insert(0, "target_s", df.groupby("level")["target_s"].mean())
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
            center = "median_g_s" if flt.basis == "robust" else "mean_g_s"
            sections.append(Section(
                title, s, ("target_s", "mean_g_s", "median_g_s", "sigma_s", "sigma_raw_s"),
                f"{flt.note(_READ_ROBUST)}; rel_sigma = sigma / {center[:-2].replace('_', ' ')}; "
                f"{int(s['repeats'].median())} reads per cell",
                shown=("level", "target_s", "cells", "excluded", center, "sigma_s",
                       "rel_sigma", "sigma_raw_s", "rel_sigma_raw")))
            figures[name] = {"rel_sigma_min": float(s["rel_sigma"].min()),
                             "rel_sigma_max": float(s["rel_sigma"].max()),
                             "excluded": int(flt.stuck.size), "basis": flt.basis}
    return sections, figures


def _sigma_columns(s: pd.DataFrame, kept: pd.DataFrame, every: pd.DataFrame, group: list[str],
                   flt: CellFilter, shift_col: str) -> None:
    """Add ``sigma_robust_s`` and ``sigma_raw_s`` (all cells, stuck ones included) to the
    per-group table ``s``; where ``flt`` has no fault map for the cells, ``sigma_s`` and
    ``shift_col`` become robust sigmas (stuck cells cannot inflate them)."""
    s["sigma_robust_s"] = robust_sigma(kept, group, "g_s")
    if flt.basis == "robust":
        s["sigma_s"] = s["sigma_robust_s"]
        s[shift_col] = robust_sigma(kept, group, "shift_s")
    s["sigma_raw_s"] = every.groupby(group)["g_s"].std()


def relaxation_stats(df: pd.DataFrame, flt: CellFilter | None = None) -> pd.DataFrame:
    """Per level and time point: n, excluded, time_s, target_s, mean_g_s, sigma_s,
    mean_shift_s, sigma_relax_s, sigma_robust_s, sigma_raw_s (``flt``: the cells left out
    and the basis of sigma_s / sigma_relax_s, :func:`analog_filter`)."""
    flt = flt or analog_filter(df["cell"], None, "imported")
    d = df.assign(tp=time_points(df).to_numpy(), shift_s=df["g_s"] - df["g0_s"])
    k = d[flt.keep(d["cell"])]
    keys = ["level", "tp"]
    s = k.groupby(keys).agg(
        n=("g_s", "size"), time_s=("time_s", "median"), target_s=("target_s", "mean"),
        mean_g_s=("g_s", "mean"), sigma_s=("g_s", "std"), mean_shift_s=("shift_s", "mean"),
        sigma_relax_s=("shift_s", "std"))
    s.insert(1, "excluded", (d.groupby(keys).size() - s["n"]).astype(np.int64))
    _sigma_columns(s, k, d, keys, flt, "sigma_relax_s")
    # one label per time point (median over all levels), so the pivots line up
    label = d.groupby("tp")["time_s"].median()
    s = s.reset_index()
    s["time_s"] = label.loc[s["tp"]].to_numpy()
    return s.drop(columns="tp")


def variance_slope(times_s: np.ndarray, sigma_s: np.ndarray) -> float:
    """Least-squares slope of sigma^2 vs log10(t) over t > 0 [S^2 per decade]."""
    t = np.asarray(times_s, float)
    v = np.asarray(sigma_s, float) ** 2
    ok = t > 0
    if ok.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log10(t[ok]), v[ok], 1)[0])


def summarize_relaxation(df: pd.DataFrame, flt: CellFilter | None = None
                         ) -> tuple[list[Section], dict]:
    flt = flt or analog_filter(df["cell"], None, "imported")
    s = relaxation_stats(df, flt)
    sig = s.pivot(index="level", columns="time_s", values="sigma_s")
    shift = s.pivot(index="level", columns="time_s", values="mean_shift_s")
    sig.columns = [f"t={t:.3g}s" for t in sig.columns]
    shift.columns = [f"t={t:.3g}s" for t in shift.columns]
    mid = _mid_levels(s["level"])
    m = s[s["level"].isin(mid)].groupby("time_s").agg(
        levels=("level", "nunique"), n=("n", "sum"), sigma_s=("sigma_s", "mean"),
        mean_shift_s=("mean_shift_s", "mean"), sigma_relax_s=("sigma_relax_s", "mean"),
        sigma_robust_s=("sigma_robust_s", "mean"), sigma_raw_s=("sigma_raw_s", "mean"))
    m = m.reset_index()
    slope = variance_slope(m["time_s"], m["sigma_s"])
    note = (f"mid-range levels {mid.min()}..{mid.max()}; variance grows by "
            f"{slope * _US**2:.3g} uS^2 per decade of time (t > 0); {flt.note()}")
    sections = [
        Section("relaxation, mid-range levels, per time point", m,
                ("sigma_s", "mean_shift_s", "sigma_relax_s", "sigma_robust_s", "sigma_raw_s"),
                note),
        Section("sigma of g per level (rows) and time point (columns)",
                sig.reset_index(), tuple(sig.columns)),
        Section("mean shift g - g0 per level and time point", shift.reset_index(),
                tuple(shift.columns)),
        Section("relaxation per level and time point", s,
                ("target_s", "mean_g_s", "sigma_s", "mean_shift_s", "sigma_relax_s",
                 "sigma_robust_s", "sigma_raw_s")),
    ]
    figures = {"mid_levels": [int(mid.min()), int(mid.max())],
               "sigma_s": {f"{t:g}": float(v) for t, v in zip(m["time_s"], m["sigma_s"],
                                                              strict=True)},
               "variance_slope_s2_per_decade": slope, "excluded": int(flt.stuck.size),
               "basis": flt.basis}
    return sections, figures


def summarize_bake(df: pd.DataFrame, flt: CellFilter | None = None
                   ) -> tuple[list[Section], dict]:
    flt = flt or analog_filter(df["cell"], None)
    keys = ["temp_k", "cell"]
    if "temp_index" in df.columns:
        keys = ["temp_index", *keys]
    per = df.groupby([*keys, "level", "step"], sort=True).agg(
        g_s=("g_s", "mean"), bake_time_s=("bake_time_s", "first"), target_s=("target_s", "mean"))
    per = per.reset_index()
    first = per.loc[per.groupby(keys)["step"].idxmin(), [*keys, "g_s"]]
    per = per.merge(first.rename(columns={"g_s": "g_first_s"}), on=keys, how="left")
    per["shift_s"] = per["g_s"] - per["g_first_s"]
    group = [k for k in keys if k != "cell"] + ["step", "level"]
    kept = per[flt.keep(per["cell"])]
    s = kept.groupby(group).agg(
        bake_time_s=("bake_time_s", "first"), cells=("g_s", "size"), target_s=("target_s", "mean"),
        mean_g_s=("g_s", "mean"), sigma_s=("g_s", "std"), mean_shift_s=("shift_s", "mean"),
        sigma_shift_s=("shift_s", "std"))
    s.insert(1, "excluded", (per.groupby(group).size() - s["cells"]).astype(np.int64))
    _sigma_columns(s, kept, per, group, flt, "sigma_shift_s")
    s = s.reset_index()
    group2 = [k for k in keys if k != "cell"] + ["step"]
    by_step = s.groupby(group2).agg(
        bake_time_s=("bake_time_s", "first"), levels=("level", "nunique"),
        cells=("cells", "sum"), mean_shift_s=("mean_shift_s", "mean"),
        sigma_s=("sigma_s", lambda x: float(np.sqrt(np.mean(np.square(x))))),
        sigma_shift_s=("sigma_shift_s", lambda x: float(np.sqrt(np.mean(np.square(x))))),
        sigma_raw_s=("sigma_raw_s", lambda x: float(np.sqrt(np.mean(np.square(x)))))
    ).reset_index()
    cond = ("target_s", "mean_g_s", "sigma_s", "mean_shift_s", "sigma_shift_s", "sigma_robust_s",
            "sigma_raw_s")
    sections = [
        Section("bake retention per bake step (levels pooled: mean shift averaged, sigma RMS)",
                by_step, ("mean_shift_s", "sigma_s", "sigma_shift_s", "sigma_raw_s"), flt.note()),
        Section("bake retention per bake step and level", s, cond),
    ]
    return sections, {"steps": len(by_step), "excluded": int(flt.stuck.size),
                      "basis": flt.basis}


#: A BER-run cell has switched when the median of its reads after SET exceeds the median of
#: its reads after RESET by at least this much [S] ... (see :func:`stuck_cells`)
STUCK_WINDOW_S = 2e-6
#: ... and by at least this fraction of the larger median (a stuck-on cell at ~60 uS reads
#: with ~1 % noise, paper 000: 10 % is > 7 standard deviations of a read difference).
STUCK_WINDOW_REL = 0.1
#: Conductance [S] above which a cell that never switched counts as stuck-on (as the fault
#: map's default ``g_split_s``).
STUCK_SPLIT_S = 10e-6
#: A cell that never switched but lies within this many robust standard deviations (ln g)
#: of the condition's LRS is a working cell the condition's RESET cannot switch.
STUCK_STATE_SIGMAS = 4.0


def _state_reads(bits: pd.DataFrame) -> pd.DataFrame:
    """Long table (cell, after, g) of a BER ``bits`` table: every read of every cell with the
    state it was last pulsed to (``after`` 0: SET / LRS, 1: RESET / HRS)."""
    bit = bits["bit"].to_numpy().astype(np.int64)
    cell = bits["cell"].to_numpy().astype(np.int64)
    parts = [(cell, bit, bits["g_s"].to_numpy(dtype=float))]
    has_b = "cell_b" in bits.columns and "g_b_s" in bits.columns
    if has_b:
        cb = bits["cell_b"].to_numpy().astype(np.int64)
        parts.append((cb, 1 - bit, bits["g_b_s"].to_numpy(dtype=float)))
    if "g_pre_s" in bits.columns:  # the precondition read: the opposite state
        parts.append((cell, 1 - bit, bits["g_pre_s"].to_numpy(dtype=float)))
        if has_b and "g_b_pre_s" in bits.columns:
            parts.append((cb, bit, bits["g_b_pre_s"].to_numpy(dtype=float)))
    c, a, g = (np.concatenate(x) for x in zip(*parts, strict=True))
    ok = (c >= 0) & np.isfinite(g)
    return pd.DataFrame({"cell": c[ok], "after": a[ok], "g": g[ok]})


def stuck_cells(bits: pd.DataFrame, faults: pd.DataFrame | None = None) -> pd.DataFrame:
    """Which cells of a BER run hold no bit (stuck-at faults, paper 004: ~1 % of cells).

    ``bits``: a ``ber`` ``bits`` table (the procedure gives every condition its own cells;
    call it per condition where cells are shared).

    The one rule for the report's working-cell BER and the binary-state fitter
    (:func:`cimlab.models.fit.binary.fit_binary`). Per cell, in this order:

    1. a ``fault_map`` ``faults`` table that lists the cell decides (source "fault_map"):
       stuck_on / stuck_off, or ok;
    2. else the BER run itself (source "ber_run"), when it read the cell after a SET and
       after a RESET (the precondition read ``g_pre_s``, or cycles with both bits): the cell
       switched when ``median(g after SET) - median(g after RESET) >= max(STUCK_WINDOW_S,
       STUCK_WINDOW_REL * the larger median)`` (a cell whose medians differ by that much the
       other way moved too, and is not stuck); one that did not move is stuck (on above
       :data:`STUCK_SPLIT_S`, else off) unless its conductance lies inside the LRS of that
       condition's switching cells (:data:`STUCK_STATE_SIGMAS`): then it is a
       working cell the condition cannot switch (a weak RESET above the cell's floor leaves
       it in the LRS), whose wrong reads are that condition's bit errors. Medians of
       conductances, not read bits: a working cell that was read wrong (a bit error, what
       the BER counts) still moved, so the rule does not remove the errors it counts;
    3. else "unknown" (source "none": seen in one state only), counted as working.

    Returns a DataFrame indexed by cell: state ("ok", "stuck_on", "stuck_off", "unknown"),
    source, g_set_s, g_reset_s (medians; NaN if not seen).
    """
    parts = []
    by = bits.groupby(bits["condition"].astype(str), sort=False) if "condition" in \
        bits.columns else [("", bits)]
    for _, b in by:
        parts.append(_stuck_from_run(_state_reads(b)))
    out = pd.concat(parts)
    out = out[~out.index.duplicated(keep="last")]
    if faults is not None and len(faults):
        fm = fault_states(faults)
        common = out.index.intersection(fm.index)
        out.loc[common, "state"] = fm.loc[common].to_numpy()
        out.loc[common, "source"] = "fault_map"
    return out


def _stuck_from_run(reads: pd.DataFrame) -> pd.DataFrame:
    """Rule 2 of :func:`stuck_cells` on one condition's reads (cell, after, g)."""
    med = reads.groupby(["cell", "after"])["g"].median().unstack("after")
    med = med.reindex(columns=[0, 1])
    g_set = med[0].to_numpy(dtype=float)
    g_reset = med[1].to_numpy(dtype=float)
    seen_both = np.isfinite(g_set) & np.isfinite(g_reset)
    top = np.fmax(g_set, g_reset)
    window = np.maximum(STUCK_WINDOW_S, STUCK_WINDOW_REL * top)
    switched = seen_both & ((g_set - g_reset) >= window)
    level = np.where(seen_both, 0.5 * (g_set + g_reset), np.fmax(g_set, g_reset))
    # a cell that did not switch but sits inside the LRS of the cells that did is
    # a working cell this condition cannot switch (e.g. a weak RESET above the cell's floor,
    # docs/physics.md): its wrong reads are bit errors of the condition, not a fault
    inside = np.zeros(level.size, dtype=bool)
    for col in (g_set,):  # SET pulses (2 V) switch every working cell; RESETs may not
        x = np.log(col[switched & (col > 0)])
        if x.size >= 20:
            mu = np.median(x)
            sd = MAD_TO_SIGMA * np.median(np.abs(x - mu))
            with np.errstate(divide="ignore", invalid="ignore"):
                inside |= np.abs(np.log(level) - mu) <= STUCK_STATE_SIGMAS * max(sd, 1e-3)
    moved = seen_both & (np.abs(g_set - g_reset) >= window)  # either way: not stuck
    state = np.where(~seen_both, "unknown", np.where(
        moved | inside, "ok", np.where(level > STUCK_SPLIT_S, "stuck_on", "stuck_off")))
    out = pd.DataFrame({"state": state, "source": np.where(seen_both, "ber_run", "none"),
                        "g_set_s": g_set, "g_reset_s": g_reset}, index=med.index)
    out.index.name = "cell"
    return out


def working_bits(bits: pd.DataFrame, stuck: pd.DataFrame) -> np.ndarray:
    """Mask of the rows of ``bits`` whose cell (and 2T2R partner) is not stuck."""
    bad = stuck.index[stuck["state"].isin(("stuck_on", "stuck_off"))].to_numpy()
    ok = ~np.isin(bits["cell"].to_numpy().astype(np.int64), bad)
    if "cell_b" in bits.columns:
        cb = bits["cell_b"].to_numpy().astype(np.int64)
        ok &= ~((cb >= 0) & np.isin(cb, bad))
    return ok


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
                                ("g_ref_s",) if "g_ref_s" in c.columns else (),
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
    d = df.assign(window_s=df["g_lrs_s"] - df["g_hrs_s"])
    s = d.groupby(["condition", "cycle"], sort=True).agg(
        cells=("window_s", "size"), median_window_s=("window_s", "median"),
        p10_window_s=("window_s", lambda x: float(np.percentile(x, 10))),
        closed=("window_s", lambda x: float(np.mean(x <= 0))),
        mean_g_lrs_s=("g_lrs_s", "mean"), mean_g_hrs_s=("g_hrs_s", "mean")).reset_index()
    shown = []
    for _, g in s.groupby("condition", sort=False):  # at most ~10 cycles per condition printed
        idx = np.unique(np.round(np.geomspace(1, len(g), min(len(g), 10))).astype(int) - 1)
        shown.append(g.iloc[idx])
    cond = ("median_window_s", "p10_window_s", "mean_g_lrs_s", "mean_g_hrs_s")
    sections = [Section("memory window vs cycle (log-spaced selection)", pd.concat(shown), cond),
                Section("memory window per condition and cycle", s, cond)]
    return sections, {}


# =========================================================================== plots
def _figure(nrows: int = 1, ncols: int = 1, size: tuple[float, float] = (6.4, 4.2)):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def _save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=110)
    return path


#: What a plotted sigma is, per :class:`CellFilter` basis.
_BASIS_LABEL = {"fault_map": "stuck cells excluded", "robust": "robust, 1.4826 MAD",
                "plain": "std"}


#: Programming-error histograms span this many (stuck-free or robust) sigmas either side.
HIST_SIGMAS = 5.0


def _plot_programming_error(df, secs, out: Path, stem: str, flt: CellFilter | None = None
                            ) -> list[Path]:
    flt = flt or analog_filter(df["cell"], None)
    basis = flt.basis
    d = df.assign(error_s=df["g_s"] - df["target_s"])
    d = d[flt.keep(d["cell"])]
    width = secs[1].frame.groupby("level")["sigma_s"].max() * HIST_SIGMAS * _US
    levels = np.unique(d["level"])
    show = levels if levels.size <= 16 else levels[np.linspace(0, levels.size - 1, 16).astype(int)]
    ncols = min(4, show.size)
    nrows = int(np.ceil(show.size / ncols))
    fig, axes = _figure(nrows, ncols, (3.0 * ncols, 2.3 * nrows))
    for ax, lv in zip(axes.flat, show, strict=False):
        sub = d[d["level"] == lv]
        lim = float(width.get(lv, np.nan))
        if not np.isfinite(lim) or lim <= 0:
            lim = float(np.percentile(np.abs(sub["error_s"]), 99.5) * _US) or 1.0
        bins = np.linspace(-lim, lim, 41)
        for mode, g in sub.groupby("mode"):
            ax.hist(g["error_s"] * _US, bins=bins, histtype="step", label=str(mode))
        beyond = int((np.abs(sub["error_s"] * _US) > lim).sum())
        ax.set_title(f"level {lv}" + (f" ({beyond} beyond +-{lim:.2g} uS)" if beyond else ""),
                     fontsize=9)
        ax.set_xlabel("g - target [uS]", fontsize=8)
    for ax in list(axes.flat)[show.size:]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=7)
    if flt.stuck.size:
        fig.suptitle(f"{flt.stuck.size} stuck cells (fault map) left out", fontsize=9)
    paths = [_save(fig, out / f"{stem}_histograms.png")]
    s = secs[1].frame
    fig, axes = _figure()
    ax = axes[0, 0]
    for mode, g in s.groupby("mode"):
        ax.errorbar(g["target_s"] * _US, g["sigma_s"] * _US,
                    yerr=[(g["sigma_s"] - g["sigma_lo_s"]) * _US,
                          (g["sigma_hi_s"] - g["sigma_s"]) * _US], marker="o", ms=3,
                    label=str(mode), capsize=2)
    ax.set_xlabel("target conductance [uS]")
    ax.set_ylabel("sigma of g - target [uS]")
    ax.set_title(f"programming error per level (sigma: {_BASIS_LABEL[basis]})", fontsize=9)
    ax.set_ylim(bottom=0)
    ax.legend(title=f"{CONFIDENCE:.0%} interval", fontsize=8, title_fontsize=8)
    paths.append(_save(fig, out / f"{stem}_sigma_vs_level.png"))
    return paths


def _plot_read_fluctuation(secs, out: Path, stem: str, basis: str = "plain") -> list[Path]:
    fig, axes = _figure(1, 2, (10, 4))
    for sec in secs:
        s = sec.frame
        g = (s["sigma_s"] / s["rel_sigma"]).to_numpy()  # the level's centre (mean or median)
        order = np.argsort(g)
        smu = "SMU" in sec.title
        style = "s" if smu else "o-"
        label = "SMU" if smu else "array"
        axes[0, 0].plot(g[order] * _US, s["sigma_s"].to_numpy()[order] * _US, style, ms=4,
                        label=label)
        axes[0, 1].plot(g[order] * _US, s["rel_sigma"].to_numpy()[order] * 100, style, ms=4,
                        label=label)
    what = {"fault_map": "stuck cells excluded", "robust": "robust: median cell",
            "plain": "all cells"}[basis]
    fig.suptitle(f"read-to-read sigma per level ({what})", fontsize=10)
    axes[0, 0].set_ylabel("read sigma [uS]")
    axes[0, 1].set_ylabel("read sigma / conductance [%]")
    centre = "median" if basis == "robust" else "mean"
    for ax in axes.flat:
        ax.set_xlabel(f"{centre} conductance of the level [uS]")
        ax.set_xlim(left=0)
        ax.set_ylim(bottom=0)
        ax.legend()
    return [_save(fig, out / f"{stem}_read_sigma.png")]


def _time_label(t: float) -> str:
    """A time with 2 significant digits: "0.019 s", "1 s", "1e+04 s"."""
    return f"{float(f'{t:.2g}'):g} s"


def _log_time_axis(ax, times: np.ndarray) -> float:
    """Log time axis; where ``times`` has t = 0, that point is drawn one decade below the
    decade of the first non-zero time, with the tick "0" and a dotted line setting it apart.
    Returns the x to draw t = 0 at."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    t = np.asarray(times, float)
    pos = t[t > 0]
    lo = np.floor(np.log10(pos.min())) if pos.size else -3.0
    hi = np.ceil(np.log10(pos.max()) - 0.02) if pos.size else lo + 1
    x0 = 10.0 ** (lo - 1)
    zero = bool((t == 0).any())
    ax.set_xscale("log")
    ax.set_xlim((x0 if zero else 10.0**lo) / 10**0.3, 10**hi * 10**0.15)
    step = max(1, int(np.ceil((hi - lo + 1) / 8)))  # at most ~8 decade labels
    ticks = list(10.0 ** np.arange(lo, hi + 1, step))
    ax.xaxis.set_major_locator(FixedLocator([x0, *ticks] if zero else ticks))
    ax.xaxis.set_major_formatter(FuncFormatter(
        lambda x, _: "0" if zero and np.isclose(x, x0) else f"$10^{{{round(np.log10(x))}}}$"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    if zero:
        ax.axvline(x0 * 10**0.5, color="0.6", lw=0.8, ls=":")
    return x0


def _level_colours(levels: np.ndarray):
    """Colormap normalised over the level indices, and the mappable for a colorbar."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    norm = Normalize(float(levels.min()), float(max(levels.max(), levels.min() + 1)))
    sm = ScalarMappable(norm=norm, cmap=colormaps["viridis"])
    return (lambda lv: sm.to_rgba(float(lv))), sm


def _plot_relaxation(stats: pd.DataFrame, out: Path, stem: str) -> list[Path]:
    from matplotlib import colormaps

    times = np.unique(stats["time_s"])
    levels = np.unique(stats["level"])
    colour, sm = _level_colours(levels)
    fig, axes = _figure(1, 2, (11.5, 4.4))
    ax = axes[0, 0]
    x0 = _log_time_axis(ax, times)
    for lv in levels:
        g = stats[stats["level"] == lv].sort_values("time_s")
        t = np.where(g["time_s"] > 0, g["time_s"], x0)
        ax.plot(t, g["sigma_s"] * _US, "-", color=colour(lv), lw=0.8)
    mid = stats[stats["level"].isin(_mid_levels(levels))].groupby("time_s")["sigma_s"].mean()
    t = np.where(mid.index > 0, mid.index, x0)
    ax.plot(t, mid.to_numpy() * _US, "k-o", lw=2, label="mid-range levels (mean)")
    ax.set_xlabel("time since programming [s]")
    ax.set_ylabel("sigma of g within a level [uS]")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    fig.colorbar(sm, ax=ax, label="level")
    ax = axes[0, 1]
    tmap = colormaps["plasma"]
    for i, t in enumerate(times):
        g = stats[stats["time_s"] == t].sort_values("level")
        ax.plot(g["target_s"] * _US, g["mean_shift_s"] * _US, "o-", ms=2,
                color=tmap(0.85 * i / max(times.size - 1, 1)), label=_time_label(t))
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xlabel("target conductance [uS]")
    ax.set_ylabel("mean shift g - g0 [uS]")
    ax.legend(fontsize=7, title="time", title_fontsize=7)
    return [_save(fig, out / f"{stem}_sigma_vs_time.png")]


def _plot_bake(stats: pd.DataFrame, out: Path, stem: str, basis: str = "plain") -> list[Path]:
    temps = np.unique(stats["temp_k"])
    levels = np.unique(stats["level"])
    colour, sm = _level_colours(levels)
    fig, axes = _figure(1, temps.size, (5.5 * temps.size + 1.0, 4.4))
    for ax, tk in zip(axes.flat, temps, strict=True):
        sub = stats[stats["temp_k"] == tk]
        x0 = _log_time_axis(ax, sub["bake_time_s"].to_numpy())
        for lv, g in sub.groupby("level"):
            g = g.sort_values("bake_time_s")
            t = g["bake_time_s"].to_numpy()
            x = np.where(t > 0, t, x0)
            y = g["mean_g_s"].to_numpy() * _US
            e = g["sigma_s"].to_numpy() * _US
            c = colour(lv)
            ax.plot(x[t > 0], y[t > 0], "o-", ms=3, color=c, lw=1)
            ax.plot(x[t == 0], y[t == 0], "o", ms=4, mfc="none", color=c)
            ax.fill_between(x, y - e, y + e, color=c, alpha=0.12, lw=0)
        ax.set_xlabel("cumulative bake time [s] (open: before the bake)")
        ax.set_ylabel("mean g +- sigma [uS]")
        ax.set_title(f"{tk - 273.15:.0f} C (sigma: {_BASIS_LABEL[basis]})", fontsize=10)
    fig.colorbar(sm, ax=axes[0, -1], label="level")
    return [_save(fig, out / f"{stem}_retention.png")]


def _plot_ber(s: pd.DataFrame, out: Path, stem: str) -> list[Path]:
    fig, axes = _figure()
    ax = axes[0, 0]
    conds = list(dict.fromkeys(s["condition"]))
    x_of = {c: i for i, c in enumerate(conds)}
    structures = list(dict.fromkeys(s["structure"]))
    series = [("", "errors", "o")]
    if "ber_working" in s.columns:
        series.append(("_working", "errors_working", "s"))
    n_series = len(structures) * len(series)
    for j, (st, g) in enumerate(s.groupby("structure", sort=False)):
        for m, (suffix, errs, marker) in enumerate(series):
            pos = j * len(series) + m
            x = np.array([x_of[c] for c in g["condition"]]) + (pos - (n_series - 1) / 2) * 0.1
            has = g[errs].to_numpy() > 0
            ber = g[f"ber{suffix}"].to_numpy()
            lo, hi = g[f"ber{suffix}_lo"].to_numpy(), g[f"ber{suffix}_hi"].to_numpy()
            label = f"{st}, " + ("working cells" if suffix else "all cells (raw)")
            line = ax.errorbar(x[has], ber[has], yerr=[ber[has] - lo[has], hi[has] - ber[has]],
                               fmt=marker, capsize=3, label=label,
                               mfc="none" if suffix else None)
            if (~has).any():
                ax.plot(x[~has], hi[~has], "v", color=line[0].get_color(),
                        label=f"{label}: no errors (upper bound)")
    ticks = list(conds)
    if "energy_per_bit_j" in s.columns:
        energy = s.drop_duplicates("condition").set_index("condition")["energy_per_bit_j"]
        ticks = [f"{c}\n{energy[c] * 1e12:.3g} pJ/bit" for c in conds]
    ax.set_xticks(range(len(conds)), ticks, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel(f"bit error rate ({CONFIDENCE:.0%} CI)")
    ax.legend(fontsize=7)
    return [_save(fig, out / f"{stem}_ber.png")]


def _find_geometry(*docs: Any) -> tuple[int, int]:
    def walk(x):
        if isinstance(x, dict):
            r, c = x.get("rows"), x.get("cols")
            if isinstance(r, int) and isinstance(c, int) and r > 0 and c > 0:
                return r, c
            geo = x.get("geometry")
            if isinstance(geo, (list, tuple)) and len(geo) == 3 and all(
                    isinstance(v, int) and v > 0 for v in geo):
                return int(geo[1]), int(geo[2])
            for v in x.values():
                found = walk(v)
                if found:
                    return found
        return None

    for doc in docs:
        found = walk(doc)
        if found:
            return found
    return DEFAULT_TILE


#: Fault-map colours per state code (0: not measured, 1 ok, 2 stuck-on, 3 stuck-off, 4 other).
_FAULT_COLOURS = ("#ffffff", "#d9d9d9", "#d62728", "#1f4fd6", "#ff9900")
_FAULT_NAMES = ("not measured", "ok", "stuck-on", "stuck-off", "other state")


def _plot_faults(df: pd.DataFrame, geometry: tuple[int, int], out: Path, stem: str) -> list[Path]:
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    rows, cols = geometry
    cell = df["cell"].to_numpy(np.int64)
    tile = cell // (rows * cols)
    tiles = np.unique(tile)[:4]
    code = df["state"].map({"ok": 1, "stuck_on": 2, "stuck_off": 3}).fillna(4).to_numpy(int)
    fig, axes = _figure(1, tiles.size, (max(2.8 * tiles.size + 0.6, 4.4), 6.6))
    cmap = ListedColormap(list(_FAULT_COLOURS))
    present: set[int] = set()
    for ax, t in zip(axes.flat, tiles, strict=True):
        img = np.zeros((rows, cols), int)  # 0: not measured
        sel = tile == t
        local = cell[sel] - t * rows * cols
        img[local // cols, local % cols] = code[sel]
        present |= set(np.unique(img).tolist())
        ax.imshow(img, cmap=cmap, vmin=0, vmax=4, interpolation="nearest", aspect="auto")
        on, off = int((code[sel] == 2).sum()), int((code[sel] == 3).sum())
        ax.set_title(f"tile {t}: {on} stuck-on, {off} stuck-off", fontsize=9)
        ax.set_xlabel("column")
        ax.set_ylabel("row")
    handles = [Patch(facecolor=_FAULT_COLOURS[k], edgecolor="0.4", label=_FAULT_NAMES[k])
               for k in sorted(present)]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 3),
               fontsize=8, frameon=False)
    return [_save(fig, out / f"{stem}_map.png")]


def _plot_endurance(s: pd.DataFrame, out: Path, stem: str) -> list[Path]:
    fig, axes = _figure()
    ax = axes[0, 0]
    for cond, g in s.groupby("condition", sort=False):
        g = g.sort_values("cycle")
        x = g["cycle"].clip(lower=1)
        ax.plot(x, g["median_window_s"] * _US, "-", label=str(cond))
        ax.fill_between(x, g["p10_window_s"] * _US, g["median_window_s"] * _US, alpha=0.2)
    ax.set_xscale("log")
    ax.set_xlabel("cycle")
    ax.set_ylabel("window g_LRS - g_HRS [uS] (median, 10th pct)")
    ax.legend(fontsize=8)
    return [_save(fig, out / f"{stem}_window.png")]


# =========================================================================== driver
def _summarize_kind(rep: RunReport, run: Any, tables: dict[str, pd.DataFrame],
                    out_dir: Path | None, stem: str, faults: pd.DataFrame | None = None
                    ) -> Callable[[], list[Path]] | None:
    """Fill ``rep`` with the sections of its kind; return the plotting closure."""
    kind = rep.kind
    plot = None
    if kind == "programming_error":
        df = tables["programmed"]
        rep.sections, rep.figures = summarize_programming_error(
            df, analog_filter(df["cell"], faults, kind))
        secs = rep.sections

        flt = analog_filter(df["cell"], faults, kind)

        def plot():
            return _plot_programming_error(df, secs, out_dir, stem, flt)
    elif kind == "read_fluctuation":
        rep.sections, rep.figures = summarize_read_fluctuation(tables, faults)
        secs = rep.sections

        basis = rep.figures.get("reads", {}).get("basis", "plain")

        def plot():
            return _plot_read_fluctuation(secs, out_dir, stem, basis)
    elif kind in ("relaxation", "imported"):
        reads = tables["reads"]
        rep.sections, rep.figures = summarize_relaxation(
            reads, analog_filter(reads["cell"], faults, kind))
        stats = rep.sections[-1].frame
        if "outliers" in tables and len(tables["outliers"]):
            o = tables["outliers"]
            rep.notes.append(f"{len(o)} outlier rows ({o['cell'].nunique()} cells) kept apart "
                             "in table 'outliers', not in these statistics")

        def plot():
            return _plot_relaxation(stats, out_dir, stem)
    elif kind == "bake_retention":
        reads = tables["reads"]
        rep.sections, rep.figures = summarize_bake(reads, analog_filter(reads["cell"], faults))
        stats = rep.sections[-1].frame
        basis = rep.figures["basis"]

        def plot():
            return _plot_bake(stats, out_dir, stem, basis)
    elif kind == "ber":
        rep.sections, rep.figures = summarize_ber(tables, faults)
        s = rep.sections[0].frame

        def plot():
            return _plot_ber(s, out_dir, stem)
    elif kind == "fault_map":
        rep.sections, rep.figures = summarize_faults(tables["faults"])
        geometry = _find_geometry(run.plan, run.snapshot)
        df = tables["faults"]

        def plot():
            return _plot_faults(df, geometry, out_dir, stem)
    elif kind == "endurance":
        rep.sections, rep.figures = summarize_endurance(tables["cycles"])
        s = rep.sections[-1].frame

        def plot():
            return _plot_endurance(s, out_dir, stem)
    return plot


def _tables_section(tables: dict[str, pd.DataFrame]) -> Section:
    return Section("tables", pd.DataFrame(
        {"table": list(tables), "rows": [len(t) for t in tables.values()],
         "columns": [", ".join(t.columns) for t in tables.values()]}))


#: Run kinds whose statistics leave out the stuck cells of a fault map in the same store.
_USES_FAULTS = ("ber", "programming_error", "read_fluctuation", "relaxation", "imported",
                "bake_retention")


def fault_table(store: Any) -> pd.DataFrame | None:
    """The ``faults`` table of the store's fault maps (completed runs, later runs win per
    cell), or None without one."""
    frames = [r.table("faults") for r in sorted(store, key=lambda r: r.uid)
              if r.kind == "fault_map" and r.status == "completed" and "faults" in r.tables]
    frames = [f for f in frames if len(f)]
    if not frames:
        return None
    return pd.concat(frames, ignore_index=True).drop_duplicates("cell", keep="last")


def summarize_run(run: Any, out_dir: Path | None = None,
                  faults: pd.DataFrame | None = None) -> RunReport:
    """Summary (and, with ``out_dir``, plots) of one :class:`cimlab.store.Run`. ``faults``:
    a fault map's table (:func:`fault_table`): the stuck cells it flags are left out of the
    statistics (BER: :func:`stuck_cells`; analog runs: :func:`analog_filter`)."""
    rep = RunReport(uid=run.uid, kind=run.kind, status=run.status)
    tables = {t: run.table(t) for t in run.tables}
    stem = f"{run.uid}_{run.kind}"
    plot: Callable[[], list[Path]] | None = None
    kind = run.kind
    needed = {"programming_error": ["programmed"], "read_fluctuation": ["reads"],
              "relaxation": ["reads"], "imported": ["reads"], "bake_retention": ["reads"],
              "ber": ["bits"], "fault_map": ["faults"], "endurance": ["cycles"]}.get(kind)
    missing = [t for t in (needed or []) if t not in tables or len(tables[t]) == 0]
    if needed is None or missing:
        if missing:
            rep.notes.append(f"no rows yet in table(s) {', '.join(missing)}")
        rep.sections.append(_tables_section(tables))
        return rep
    try:
        plot = _summarize_kind(rep, run, tables, out_dir, stem, faults)
    except KeyError as exc:  # a table without a column of the contract
        rep.sections, rep.figures = [], {}
        rep.notes.append(f"cannot summarize this {kind} run: column {exc} is missing "
                         "(docs/architecture.md section 5 lists the columns)")
        rep.sections.append(_tables_section(tables))
        return rep
    if run.status != "completed":
        rep.notes.append(f"run is {run.status}: figures cover the rows measured so far")
    if out_dir is not None and plot is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        rep.plots = plot()
    return rep


def default_out_dir(store_path: str | Path) -> Path:
    """Where plots go by default: ``<store stem>-report/`` next to the store file."""
    p = Path(store_path)
    return p.parent / f"{p.stem}-report"


def report(store_path: str | Path, out_dir: str | Path | None = None, *,
           uids: Iterable[str] | None = None, plots: bool = True) -> list[RunReport]:
    """Summaries of the runs in a store (all, or ``uids``), with PNG plots in ``out_dir``
    (default :func:`default_out_dir`)."""
    from cimlab.store import Store

    out = None
    if plots:
        out = Path(out_dir) if out_dir is not None else default_out_dir(store_path)
    reports = []
    with Store.open(store_path, "r") as store:
        runs = [store.run(u) for u in uids] if uids else list(store)
        faults = fault_table(store) if any(r.kind in _USES_FAULTS for r in runs) else None
        for run in runs:
            reports.append(summarize_run(run, out, faults))
    return reports


def _fmt(x: float) -> str:
    return f"{x:.4g}"


#: Printed tables and notes stay within this many columns (a 110-column terminal).
TEXT_WIDTH = 110


def format_report(reports: Iterable[RunReport], max_rows: int = 40,
                  width: int = TEXT_WIDTH) -> str:
    """Readable text of the reports (conductances in uS, 4 significant digits); notes wrap
    and a table wider than ``width`` continues below itself."""
    import textwrap

    lines: list[str] = []
    with pd.option_context("display.width", width, "display.max_columns", 30,
                           "display.max_rows", max_rows):
        for rep in reports:
            lines.append(f"=== run {rep.uid}  kind {rep.kind}  ({rep.status}) ===")
            for n in rep.notes:
                lines.extend(textwrap.wrap(f"note: {n}", width, subsequent_indent="      "))
            for sec in rep.sections:
                df = sec.display()
                if len(df) > max_rows:
                    continue  # full tables are in the store; printed ones stay short
                lines.append(f"-- {sec.title}")
                if sec.note:
                    lines.extend(textwrap.wrap(sec.note, width, initial_indent="   ",
                                               subsequent_indent="   "))
                text = df.to_string(index=False, float_format=_fmt)
                if max(map(len, text.splitlines()), default=0) > width:
                    text = df.to_string(index=False, float_format=_fmt, line_width=width)
                lines.append(text)
            lines.extend(f"plot: {p}" for p in rep.plots)
            lines.append("")
    return "\n".join(lines)

"""Bake-retention summaries grouped by temperature as well as bake time.

One run (:func:`summarize_bake`): per temperature, bake step and level, and per temperature and
bake step with the levels pooled. A step's bake time is its nominal time, the median over its
reads (one value in a measured run; imported data whose reads carry per-cell times, e.g. 1.2-2 h
of bake, get one row per step with the range in ``bake_time_lo_s`` .. ``bake_time_hi_s``). A
run without a ``step`` column gets its steps from its bake times, clustered per temperature in
log time (:func:`bake_steps`).

A store (:func:`combine_bake_runs`): the pooled rows of every bake run, one row per (run,
temperature, step), sorted by temperature and time, and the mean shift and sigma as
temperature x bake-time tables (bake times binned in log time, not one column per distinct
time).

Statistics (see :mod:`cimlab.procedures.report.summaries`): mean shift = mean over cells of
(g_siemens - that cell's g_siemens at the first step of the same temperature), sigma = std of
g_siemens across
cells, sigma of the shift (both 1.4826 x MAD on the robust basis), robust sigma, sigma_raw.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from cimlab.procedures.cell_states import CellFilter, analog_filter
from cimlab.procedures.report.sections import RunReport, Section
from cimlab.procedures.report.summaries import cluster_log_times, sigma_columns
from cimlab.units import KELVIN_OFFSET

BY_STEP_TITLE = "bake retention per bake step (levels pooled: mean shift averaged, sigma RMS)"
BY_LEVEL_TITLE = "bake retention per bake step and level"
ALL_RUNS_TITLE = ("bake retention per temperature and bake time, all bake runs (levels "
                  "pooled: mean shift averaged, sigma RMS)")
#: ``kind`` of the store-level report that :func:`combine_bake_runs` returns.
ALL_RUNS_KIND = "bake_by_temperature"


def temperature_keys(df: pd.DataFrame) -> list[str]:
    """Columns that name a bake temperature: ``temp_index`` (the plan's position of the
    temperature, present in measured runs) and ``temp_k``."""
    return ["temp_index", "temp_k"] if "temp_index" in df.columns else ["temp_k"]


def bake_steps(df: pd.DataFrame) -> pd.Series:
    """Bake step per row: the run's ``step`` column, else the bake times of each temperature
    clustered in log time (:func:`cluster_log_times`: 0 before the bake, then one step per
    nominal time whatever the per-cell scatter of the measured times)."""
    if "step" in df.columns:
        return df["step"].astype(np.int64)
    out = np.empty(len(df), np.int64)
    t = df["bake_time_s"].to_numpy(float)
    for idx in df.groupby(temperature_keys(df), sort=False).indices.values():
        out[idx] = cluster_log_times(t[idx])
    return pd.Series(out, index=df.index)


def _rms(x: Any) -> float:
    return float(np.sqrt(np.mean(np.square(x))))


def _temp_c(temp_k: Any) -> np.ndarray:
    """degC, rounded to 1e-6 (423.15 K prints as 150, not 149.99999999999997)."""
    return np.round(np.asarray(temp_k, float) - KELVIN_OFFSET, 6)


def summarize_bake(df: pd.DataFrame, flt: CellFilter | None = None
                   ) -> tuple[list[Section], dict]:
    """Sections (per step with levels pooled, per step and level) and figures of one bake run
    (``reads`` table: cell, level, temp_k, bake_time_s, g_siemens; optional step, temp_index,
    target_siemens)."""
    flt = flt or analog_filter(df["cell"], None)
    temps = temperature_keys(df)
    keys = [*temps, "cell"]
    df = df.assign(step=bake_steps(df).to_numpy())
    if "target_siemens" not in df.columns:
        df = df.assign(target_siemens=np.nan)
    group2 = [*temps, "step"]
    times = df.groupby(group2)["bake_time_s"].agg(["median", "min", "max"])
    per = df.groupby([*keys, "level", "step"], sort=True).agg(
        g_siemens=("g_siemens", "mean"),
        bake_time_s=("bake_time_s", "first"),
        target_siemens=("target_siemens", "mean"),
    )
    per = per.reset_index()
    # every row of a step carries the step's nominal time (the median over its reads)
    per["bake_time_s"] = times["median"].reindex(
        pd.MultiIndex.from_frame(per[group2])).to_numpy()
    first = per.loc[per.groupby(keys)["step"].idxmin(), [*keys, "g_siemens"]]
    per = per.merge(first.rename(columns={"g_siemens": "g_first_siemens"}), on=keys, how="left")
    per["shift_siemens"] = per["g_siemens"] - per["g_first_siemens"]
    group = [*temps, "step", "level"]
    kept = per[flt.keep(per["cell"])]
    s = kept.groupby(group).agg(
        bake_time_s=("bake_time_s", "first"),
        cells=("g_siemens", "size"),
        target_siemens=("target_siemens", "mean"),
        mean_g_siemens=("g_siemens", "mean"),
        sigma_siemens=("g_siemens", "std"),
        mean_shift_siemens=("shift_siemens", "mean"),
        sigma_shift_siemens=("shift_siemens", "std"),
    )
    s.insert(1, "excluded", (per.groupby(group).size() - s["cells"]).astype(np.int64))
    sigma_columns(s, kept, per, group, flt, "sigma_shift_siemens")
    s = s.reset_index()
    s.insert(s.columns.get_loc("temp_k") + 1, "temp_c", _temp_c(s["temp_k"]))
    by_step = s.groupby(group2).agg(
        bake_time_s=("bake_time_s", "first"), levels=("level", "nunique"),
        cells=("cells", "sum"), mean_shift_siemens=("mean_shift_siemens", "mean"),
        sigma_siemens=("sigma_siemens", _rms), sigma_shift_siemens=("sigma_shift_siemens", _rms),
        sigma_raw_siemens=("sigma_raw_siemens", _rms)).reset_index()
    by_step.insert(by_step.columns.get_loc("temp_k") + 1, "temp_c", _temp_c(by_step["temp_k"]))
    note = flt.note()
    if (times["max"] > times["min"]).any():  # per-cell bake times (imported data)
        rng = times[["min", "max"]].reindex(pd.MultiIndex.from_frame(by_step[group2]))
        at = by_step.columns.get_loc("bake_time_s") + 1
        by_step.insert(at, "bake_time_lo_s", rng["min"].to_numpy())
        by_step.insert(at + 1, "bake_time_hi_s", rng["max"].to_numpy())
        note = (f"bake times vary per cell within a step: bake_time_s is the step's median, "
                f"bake_time_lo_s..bake_time_hi_s the range; {note}")
    cond = (
        "target_siemens",
        "mean_g_siemens",
        "sigma_siemens",
        "mean_shift_siemens",
        "sigma_shift_siemens",
        "sigma_robust_siemens",
        "sigma_raw_siemens",
    )
    sections = [
        Section(
            BY_STEP_TITLE,
            by_step,
            ("mean_shift_siemens", "sigma_siemens", "sigma_shift_siemens", "sigma_raw_siemens"),
            note,
            shown=tuple(c for c in by_step.columns if c != "temp_k"),
        ),
        Section(BY_LEVEL_TITLE, s, cond, shown=tuple(c for c in s.columns if c != "temp_k")),
    ]
    figures = {"steps": len(by_step), "excluded": int(flt.stuck.size), "basis": flt.basis,
               "temperatures_c": sorted({float(t) for t in by_step["temp_c"]}),
               "by_temperature": _by_temperature(by_step)}
    return sections, figures


def _by_temperature(by_step: pd.DataFrame) -> dict[str, dict[str, list[float]]]:
    """{"150 C": {"bake_time_s": [...], "mean_shift_siemens": [...], "sigma_siemens": [...]}} in
    time
    order (a temperature baked twice in one run lists both series, in plan order)."""
    out = {}
    for tc, g in by_step.groupby("temp_c", sort=True):
        g = g.sort_values([c for c in ("temp_index", "bake_time_s") if c in g.columns])
        out[f"{tc:g} C"] = {c: [float(v) for v in g[c]]
                            for c in ("bake_time_s", "mean_shift_siemens", "sigma_siemens")}
    return out


def combine_bake_runs(reports: list[RunReport]) -> RunReport | None:
    """A store-level report over the bake runs among ``reports`` (None with fewer than two):
    their per-step rows side by side, sorted by temperature and bake time, and the mean shift
    and sigma as temperature x bake-time tables (bake times binned in log time)."""
    bakes = [r for r in reports if r.kind == "bake_retention" and r.sections
             and r.sections[0].title == BY_STEP_TITLE]
    if len(bakes) < 2:
        return None
    rows = pd.concat([r.sections[0].frame.assign(run=r.uid) for r in bakes], ignore_index=True)
    rows = rows.sort_values(["temp_k", "bake_time_s", "run"], kind="stable")
    rows = rows.reset_index(drop=True)
    bins = cluster_log_times(rows["bake_time_s"].to_numpy(float))
    nominal = rows.groupby(bins)["bake_time_s"].median()
    rows["time_point"] = bins
    sections = [
        Section(
            ALL_RUNS_TITLE,
            rows,
            ("mean_shift_siemens", "sigma_siemens", "sigma_shift_siemens", "sigma_raw_siemens"),
            f"{len(bakes)} bake runs, {rows['temp_c'].nunique()} temperatures",
            shown=(
                "run",
                "temp_c",
                "step",
                "bake_time_s",
                "levels",
                "cells",
                "mean_shift_siemens",
                "sigma_siemens",
                "sigma_shift_siemens",
                "sigma_raw_siemens",
            ),
        )
    ]
    for col, what in (("mean_shift_siemens", "mean shift g - g0"), ("sigma_siemens", "sigma of g")):
        pv = rows.pivot_table(index="temp_c", columns="time_point", values=col,
                              aggfunc="mean")
        pv.columns = [f"t={nominal[c]:.2g}s" for c in pv.columns]
        sections.append(Section(f"{what} per temperature [C] (rows) and bake time (columns, "
                                "binned: median time of each bin)", pv.reset_index(),
                                tuple(pv.columns)))
    figures = {"runs": [r.uid for r in bakes],
               "temperatures_c": sorted({float(t) for t in rows["temp_c"]}),
               "by_temperature": _by_temperature(rows)}
    return RunReport(uid="all bake runs", kind=ALL_RUNS_KIND, status="summary",
                     sections=sections, figures=figures)

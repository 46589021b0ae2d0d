"""Bake reports grouped by temperature as well as time: a store made by the emulated bench with
bake runs at three temperatures (one run at 100 and 150 C, one at 125 C), checked against the
chip's truth; and imported-style bake data (per-cell bake times, no step column)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cimlab.instruments.station import Station
from cimlab.procedures.campaign import run_plan, validate
from cimlab.procedures.characterization import bake_retention
from cimlab.procedures.plan import plan_from_mapping
from cimlab.procedures.report import (
    ALL_RUNS_KIND,
    RunReport,
    format_report,
    report,
    summarize_bake,
)
from cimlab.procedures.report.bake import BY_STEP_TITLE
from cimlab.store import Store
from tests.procedures.bench_util import station_file

TILE = 256 * 64
N_CELLS = 512
SCHEDULE_S = [60.0, 3600.0]
LEVELS = {
    "levels": 8,
    "g_min_siemens": 12e-6,
    "g_max_siemens": 36e-6,
}  # well above the physical floor
PLAN = {
    "plan": {"name": "bake-temps", "seed": 3},
    "experiment": [
        {"kind": "fault_map", "cells": {"start": 0, "count": 2 * N_CELLS}},
        {"kind": "bake_retention", "name": "bake-100-150", "levels": LEVELS,
         "cells": {"start": 0, "count": N_CELLS}, "temps_c": [100.0, 150.0],
         "schedule_s": SCHEDULE_S},
        {"kind": "bake_retention", "name": "bake-125", "levels": LEVELS,
         "cells": {"start": N_CELLS, "count": N_CELLS}, "temps_c": [125.0],
         "schedule_s": SCHEDULE_S},
    ],
}


@pytest.fixture(scope="module")
def bench_store(tmp_path_factory):
    """The store, plus the truth of the first bake run: each cell's programmed conductance
    and the equivalent time of every read since its programming, per (temperature, step)."""
    tmp = tmp_path_factory.mktemp("bake-temps")
    plan = plan_from_mapping(PLAN, source="bake-temps")
    path = tmp / "store.h5"
    truth: dict = {}
    with Station.open(station_file(tmp, seed=9)) as st:
        chip = st.bench.chip
        run_plan(plan, st, path, progress=False, only=["fault_map"])
        cells = validate(plan, st)[1]
        marks: list[tuple[str, float]] = []  # (step starting, chip equivalent time then)
        g_prog: dict[int, np.ndarray] = {}
        e_prog: dict[int, np.ndarray] = {}

        def on_step(step: str) -> None:
            marks.append((step, chip.equivalent_time_s))
            if step.endswith("read-000"):  # just after this temperature's programming
                j = int(step[1:step.index("-")])
                g_prog[j] = chip.truth.programmed(cells)
                e_prog[j] = chip.truth.programmed_time(cells)

        with Store.open(path) as store:
            bake_retention(st, store, plan.experiments[1], cells, plan.seed_of(1),
                           progress=False, on_step=on_step)
        marks.append(("end", chip.equivalent_time_s))
        # a read's equivalent time: the chip's at the next step's start (the read was the
        # last operation before it; programming in between happens at room temperature)
        for i, (step, _) in enumerate(marks[:-1]):
            if "-read-" in step:
                j, k = int(step[1:step.index("-")]), int(step.rsplit("-", 1)[1])
                truth[(j, k)] = marks[i + 1][1] - e_prog[j]
        truth["g_prog"], truth["cells"] = g_prog, cells
        truth["stuck"] = chip.truth.stuck_mask()[cells] != 0
        truth["chip"] = chip
        run_plan(plan, st, path, progress=False, only=["bake-125"])
    reps = report(path, tmp / "plots")
    return {"reps": reps, "truth": truth, "tmp": tmp, "path": path}


def _bake_reports(reps):
    return [r for r in reps if r.kind == "bake_retention"]


def test_one_run_two_temperatures_rows_per_temperature_and_time(bench_store):
    rep = next(r for r in _bake_reports(bench_store["reps"])
               if r.figures["temperatures_c"] == [100.0, 150.0])
    by_step = rep.section(BY_STEP_TITLE).frame
    assert list(zip(by_step["temp_c"], by_step["step"], by_step["bake_time_s"],
                    strict=True)) == [
        (tc, k, t) for tc in (100.0, 150.0) for k, t in enumerate([0.0, *SCHEDULE_S])]
    # cells per row: the working cells of the chip's truth (the fault map agrees with it
    # cell by cell to > 99.9 %: at most one of 512 may differ)
    working = int((~bench_store["truth"]["stuck"]).sum())
    assert np.all(np.abs(by_step["cells"] - working) <= 1), (by_step["cells"], working)
    assert set(rep.figures["by_temperature"]) == {"100 C", "150 C"}
    assert len(rep.plots) == 2 and all(p.exists() for p in rep.plots)


def test_mean_shift_per_temperature_and_time_matches_truth(bench_store):
    """Mean shift (levels averaged) per (temperature, step) = the truth's relaxation mean at
    each read's equivalent time minus that at the first read of the same temperature, within
    5 standard errors from the cells per level (g0 taken at the same temperature)."""
    truth = bench_store["truth"]
    tr = truth["chip"].truth
    rep = next(r for r in _bake_reports(bench_store["reps"])
               if r.figures["temperatures_c"] == [100.0, 150.0])
    s = rep.section("bake retention per bake step and level").frame
    path = bench_store["path"]
    with Store.open(path, "r") as store:
        run = next(r for r in store if r.kind == "bake_retention"
                   and sorted(r.table("reads")["temp_k"].unique().round(2)) == [373.15, 423.15])
        reads = run.table("reads")
    cells = truth["cells"]
    level = reads.drop_duplicates("cell").set_index("cell")["level"].reindex(cells).to_numpy()
    ok = ~truth["stuck"]
    for j, tc in enumerate((100.0, 150.0)):
        g0 = truth["g_prog"][j]
        m0 = tr.relaxation_mean(g0, truth[(j, 0)])
        for k in (1, 2):
            t = truth[(j, k)]
            shift = tr.relaxation_mean(g0, t) - m0
            var = tr.relaxation_var(g0, t) + 2 * tr.read_sigma(g0) ** 2
            want, se2 = [], []
            for lv in np.unique(level):
                m = ok & (level == lv)
                want.append(shift[m].mean())
                se2.append(var[m].mean() / m.sum())
            got = s[(s["temp_c"] == tc) & (s["step"] == k)]["mean_shift_siemens"].mean()
            se = np.sqrt(np.sum(se2)) / len(se2)
            assert abs(got - np.mean(want)) < 5 * se, (tc, k, got, np.mean(want), se)
    # hotter bakes age faster (Arrhenius): every cell's equivalent time is longer at 150 C
    assert np.all(truth[(1, 2)] > truth[(0, 2)])


def test_store_with_several_bake_runs_gets_a_table_by_temperature(bench_store):
    reps = bench_store["reps"]
    combined = [r for r in reps if r.kind == ALL_RUNS_KIND]
    assert len(combined) == 1 and reps[-1] is combined[0]
    c = combined[0]
    rows = c.sections[0].frame
    assert c.figures["temperatures_c"] == [100.0, 125.0, 150.0]
    # one row per (run, temperature, step), sorted by temperature then time
    assert len(rows) == 3 * (1 + len(SCHEDULE_S))
    assert list(rows["temp_c"]) == sorted(rows["temp_c"])
    assert rows.groupby("temp_c")["bake_time_s"].apply(list).to_dict() == {
        tc: [0.0, *SCHEDULE_S] for tc in (100.0, 125.0, 150.0)}
    # the temperature x time tables: one row per temperature, one column per nominal time
    shift = c.sections[1].frame
    assert list(shift["temp_c"]) == [100.0, 125.0, 150.0]
    assert list(shift.columns[1:]) == ["t=0s", "t=60s", "t=3.6e+03s"]
    per_run = {r.uid: r.section(BY_STEP_TITLE).frame for r in _bake_reports(reps)}
    for row in rows.itertuples():
        ref = per_run[row.run]
        ref = ref[(ref["temp_c"] == row.temp_c) & (ref["step"] == row.step)]
        assert float(ref["mean_shift_siemens"].iloc[0]) == row.mean_shift_siemens
    assert len(c.plots) == 1 and c.plots[0].exists()
    text = format_report(reps)
    assert "all bake runs" in text and "t=3.6e+03s" in text


def test_imported_bake_per_cell_times_and_no_step_column():
    """Reads as a lab's bake file gives them (techA: the same cells re-programmed for each
    temperature, a read before and one after 1.2-2 h, the time per cell): one row per
    (temperature, step) with the median time and its range; g0 from the same temperature."""
    rng = np.random.default_rng(4)
    n, levels = 4000, 4
    shift_true = {373.15: -0.5e-6, 453.15: -2.0e-6}  # per temperature [S]
    sd = 1e-6
    rows = []
    for tk, d in shift_true.items():
        cell = np.arange(n)
        lv = cell % levels
        g0 = 10e-6 * (1 + lv) + rng.normal(0, sd, n) + (tk - 373.15) * 1e-8  # new program
        t1 = rng.uniform(4494.0, 7165.0, n)
        g1 = g0 + d + rng.normal(0, sd, n)
        for t, g in ((np.zeros(n), g0), (t1, g1)):
            rows.append({"cell": cell, "level": lv, "temp_k": np.full(n, tk), "bake_time_s": t,
                         "g_siemens": g})
    df = pd.concat([pd.DataFrame(r) for r in rows], ignore_index=True)
    secs, fig = summarize_bake(df)
    by_step = secs[0].frame
    assert fig["temperatures_c"] == [100.0, 180.0]
    assert list(by_step["temp_c"]) == [100.0, 100.0, 180.0, 180.0]
    assert list(by_step["step"]) == [0, 1, 0, 1]
    after = by_step[by_step["step"] == 1]
    for tk, row in zip(shift_true, after.itertuples(), strict=True):
        t1 = df[(df["temp_k"] == tk) & (df["bake_time_s"] > 0)]["bake_time_s"]
        assert row.bake_time_s == pytest.approx(float(np.median(t1)))
        assert (row.bake_time_lo_s, row.bake_time_hi_s) == (t1.min(), t1.max())
        # shift of each cell against its read before THIS temperature's bake: sd sqrt(2)
        se = sd * np.sqrt(2) / np.sqrt(n / levels) / np.sqrt(levels)
        assert abs(row.mean_shift_siemens - shift_true[tk]) < 5 * se, (tk, row.mean_shift_siemens)
    assert "vary per cell" in secs[0].note
    # printed: one row per (temperature, step) and per level, never one per distinct time
    rep = RunReport(uid="x", kind="bake_retention", status="completed", sections=secs)
    text = format_report([rep])
    assert all(len(sec.display()) <= 2 * 2 * levels for sec in secs)
    assert f"{float(np.median(t1)):.4g}" in text and f"{t1.iloc[0]:.4g}" not in text

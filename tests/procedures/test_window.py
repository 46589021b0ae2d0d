"""Levels relative to the chip's measured window (cimlab.procedures.window) on the narrow
(1-25 uS) profile: the window found from a SET/RESET saturation, targets resolved from it and
reached by verify, the measurement reused on a rerun, and plan errors."""

from __future__ import annotations

import numpy as np
import pytest

from cimlab.errors import ConfigError
from cimlab.instruments.station import Station
from cimlab.physics.profile import load_profile, profile_path
from cimlab.procedures.campaign import run_plan
from cimlab.procedures.plan import LevelSet, plan_from_mapping
from cimlab.procedures.window import COVERAGE, window_from_reads
from cimlab.store import Store
from tests.models.test_roundtrip import _station_file

PROFILE = str(profile_path("narrow"))
#: compliance whose SET ceiling I_cc / v_c is the narrow profile's window top (25 uS x 0.5 V)
ICC_TOP = 12.5e-6


def _plan(name: str = "win") -> dict:
    return {"plan": {"name": name, "seed": 1}, "experiment": [
        {"kind": "programming_error", "cells": {"start": 0, "count": 512}, "modes": ["verify"],
         "levels": {"levels": 8, "relative": True, "lo": 0.1, "hi": 0.9,
                    "window_icc_a": ICC_TOP}}]}


def test_relative_levels_follow_the_measured_window(tmp_path):
    prof = load_profile(PROFILE)
    plan = plan_from_mapping(_plan(), source="win")
    with Station.open(_station_file(tmp_path, PROFILE, seed=7)) as st:
        run_plan(plan, st, tmp_path / "s.h5", progress=False)
    with Store.open(tmp_path / "s.h5") as s:
        runs = {r.kind: r for r in s}
        g_lo, g_hi = runs["window"].meta["g_lo_s"], runs["window"].meta["g_hi_s"]
        prog = runs["programming_error"].table("programmed")
    # the RESET end lies at the profile's floor (g_floor_ref exp(-(2.8-2.5)/0.554) = 0.58 uS
    # times the d2d lognormal, 90 % quantile) and the SET end at the ceiling of ICC_TOP
    # (25 uS, d2d lognormal 6 %, 10 % quantile): both inside a factor 1.5 of the profile
    assert prof.window.g_min / 3 < g_lo < prof.window.g_min * 1.5
    assert prof.window.g_max / 1.3 < g_hi < prof.window.g_max * 1.05
    want = LevelSet(levels=8, relative=True, lo=0.1, hi=0.9).resolve(g_lo, g_hi).targets()
    np.testing.assert_allclose(np.sort(prog["target_siemens"].unique()), want, rtol=1e-12)
    ok = prog[prog["success"].astype(bool)]
    assert len(ok) / len(prog) > 0.95
    # verify's +-1 uS tolerance: the recorded verify reads sit inside it for most cells
    assert float((ok["g_siemens"] - ok["target_siemens"]).abs().median()) < 1.0e-6


def test_window_measurement_is_reused_by_a_rerun(tmp_path):
    plan = plan_from_mapping(_plan(), source="win")
    with Station.open(_station_file(tmp_path, PROFILE, seed=7)) as st:
        run_plan(plan, st, tmp_path / "s.h5", progress=False)
        res = run_plan(plan, st, tmp_path / "s.h5", progress=False)
    assert res.skipped == ["programming_error"] or len(res.skipped) == 1
    with Store.open(tmp_path / "s.h5") as s:
        assert sum(r.kind == "window" for r in s) == 1


def test_window_quantiles():
    g_set = np.linspace(10e-6, 30e-6, 101)
    g_reset = np.linspace(0.5e-6, 1.5e-6, 101)
    lo, hi = window_from_reads(g_set, g_reset)
    assert lo == pytest.approx(0.5e-6 + COVERAGE * 1e-6)
    assert hi == pytest.approx(10e-6 + (1 - COVERAGE) * 20e-6)


def test_relative_level_errors():
    with pytest.raises(ConfigError, match="hi"):
        LevelSet(relative=True, lo=0.6, hi=0.4)
    with pytest.raises(ConfigError, match="resolved"):
        LevelSet(relative=True).targets()
    with pytest.raises(ConfigError, match="window"):
        LevelSet(relative=True).resolve(5e-6, 5e-6)
    doc = _plan()
    doc["experiment"][0]["levels"]["lo"] = 1.5
    with pytest.raises(ConfigError, match=r"experiment\[0\]\.levels\.lo"):
        plan_from_mapping(doc, source="win")


def test_window_run_killed_after_set_phase_resumes_at_reset(tmp_path):
    """A window run whose SET phase was committed (then killed) keeps those reads and only
    redoes the RESET phase: the resolved window uses the stored SET reads."""
    from cimlab.procedures.verify_config import ProgramVerifyConfig
    from cimlab.procedures.window import measure_window

    cells = np.arange(64, dtype=np.int64)
    cfg = ProgramVerifyConfig()
    with Station.open(_station_file(tmp_path, PROFILE, seed=7)) as st, \
            Store.open(tmp_path / "s.h5", mode="a") as store:
        first = measure_window(st, store, cells, cfg, "win", icc_a=ICC_TOP)
        run = store.run(first.run_uid)
        g_set = run.table("window").query("phase == 'set'")["g_siemens"].to_numpy()
        # another plan's window run, left as a kill after its SET phase would leave it
        sec_run = store.begin_run("window", dict(run.plan, plan="other"),
                                  snapshot=st.snapshot(), resume=False)
        sec_run.append("window", {"cell": cells, "phase": np.full(cells.size, "set"),
                                  "g_siemens": g_set})
        sec_run.complete_step("set")
        sec_run.append("window", {"cell": cells[:5], "phase": np.full(5, "reset"),
                                  "g_siemens": np.zeros(5)})  # torn phase: not committed
        second = measure_window(st, store, cells, cfg, "other", icc_a=ICC_TOP)
        assert second.run_uid == sec_run.uid
        assert second.g_hi_s == pytest.approx(first.g_hi_s, rel=1e-12)
        t = store.run(second.run_uid).table("window")
        assert (t["phase"] == "reset").sum() == cells.size  # the torn rows are gone

"""Quasi-static I-V loops through the SMU: switching at the emulated cells' thresholds, the
transistor's compliance, limits before anything is sent, resume."""

from __future__ import annotations

import numpy as np
import pytest

from cimlab.errors import LimitError
from cimlab.instruments.station import Station
from cimlab.procedures.iv_sweep import iv_sweep, loop_levels, switching_voltages
from cimlab.procedures.plan import IVSweepExp
from cimlab.procedures.plan_cells import CellSet
from cimlab.store import Store
from tests.procedures.bench_util import station_file

CELLS = np.array([3, 70, 500, 1201], dtype=np.uint32)


def _exp(**kw) -> IVSweepExp:
    return IVSweepExp(cells=CellSet(count=4), cycles=2, **kw)


def test_loop_levels_staircase():
    lv, n_set = loop_levels(1.0, 0.5, 0.25)
    assert lv.tolist() == [0, .25, .5, .75, 1, .75, .5, .25, 0, -.25, -.5, -.25, -0.0]
    assert n_set == 9


def test_switching_voltages_of_an_ideal_loop():
    lv, n_set = loop_levels(1.0, 1.0, 0.1)
    g = np.where(np.arange(lv.size) < n_set, 1e-6, 50e-6)
    g[6:n_set] = 50e-6                  # SET at +0.6 V (index 6)
    neg = np.arange(n_set, lv.size)
    g[neg[lv[neg] <= -0.7]] = 5e-6      # RESET at -0.7 V
    s = switching_voltages(lv, n_set, g * lv, v_read=0.2, set_ratio=2.0, reset_drop=0.1)
    assert s["v_set"] == pytest.approx(0.6) and s["v_reset"] == pytest.approx(-0.7)
    assert s["g_hrs_siemens"] == pytest.approx(1e-6) and s["g_lrs_siemens"] == pytest.approx(50e-6)


def test_iv_loops_switch_at_the_cells_thresholds_under_the_transistor_compliance(tmp_path):
    exp = _exp()
    with Station.open(station_file(tmp_path, smu_v_max=3.0)) as st, \
            Store.open(tmp_path / "iv.h5", "a") as store:
        truth = st.bench.chip.truth
        res = iv_sweep(st, store, exp, CELLS, seed=1, progress=False)
        run = store.run(res.run_uid)
        iv, sw = run.table("iv"), run.table("switching")
        v_gate = res.figures["v_gate"]
    lv, _ = loop_levels(exp.v_set_max, exp.v_reset_max, exp.v_step)
    assert len(iv) == CELLS.size * exp.cycles * lv.size and len(sw) == CELLS.size * exp.cycles
    assert v_gate == pytest.approx(0.5 + np.sqrt(2 * exp.compliance_a / 2e-4))
    d2d = truth.d2d
    tr = truth.profile.transistor
    for c in CELLS:
        s = sw[sw["cell"] == c]
        thr = float(d2d["set_v_th"][c])
        # quasi-static SET: the first step above the threshold (ms dwell, D >> 1)
        assert np.all(s["v_set"] > thr) and np.all(s["v_set"] <= thr + exp.v_step + 1e-9)
        assert np.all(-s["v_reset"] > float(d2d["reset_v_th"][c]))
        # the SET branch is capped at the cell's transistor saturation current
        icc = float(tr.icc(v_gate, float(d2d["transistor_dv_th"][c])))
        rows = iv[(iv["cell"] == c) & (iv["branch"] == "set")]
        assert rows["i_a"].max() == pytest.approx(icc, rel=1e-5)
        assert not rows["limited"].any()  # the SMU limit (1 mA) never trips
        # LRS conductance: I_cc / v_c (the SET ceiling) within the ceiling's spread
        g_ceiling = icc / truth.profile.set.v_c
        assert np.all(np.abs(np.log(s["g_lrs_siemens"] / g_ceiling)) < 0.5)
        assert np.all(s["g_hrs_siemens"] < 0.5 * s["g_lrs_siemens"])


def test_iv_sweep_beyond_the_smu_limit_raises_before_anything_is_sent(tmp_path):
    with Station.open(station_file(tmp_path)) as st, \
            Store.open(tmp_path / "iv.h5", "a") as store:
        g0 = st.bench.chip.truth.conductance(CELLS)
        with pytest.raises(LimitError, match="smu_v_max_v"):
            iv_sweep(st, store, _exp(), CELLS, seed=1, progress=False)
        assert list(store) == []
        assert np.array_equal(st.bench.chip.truth.conductance(CELLS), g0)
        assert st.bench.world.routed_cell is None


def test_iv_sweep_resumes_after_an_abort(tmp_path, monkeypatch):
    import cimlab.procedures.iv_sweep as mod

    exp = _exp()
    real = mod.smu_sweep
    calls = {"n": 0}

    def failing(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:  # the second cell's first loop
            raise KeyboardInterrupt
        return real(*a, **k)

    with Station.open(station_file(tmp_path, smu_v_max=3.0)) as st, \
            Store.open(tmp_path / "iv.h5", "a") as store:
        monkeypatch.setattr(mod, "smu_sweep", failing)
        with pytest.raises(KeyboardInterrupt):
            iv_sweep(st, store, exp, CELLS, seed=1, progress=False)
        assert st.bench.world.routed_cell is None  # deselected on the way out
        monkeypatch.setattr(mod, "smu_sweep", real)
        res = iv_sweep(st, store, exp, CELLS, seed=1, progress=False)
        assert res.steps_skipped == 1 and res.steps_run == 3
        runs = list(store)
        assert len(runs) == 1 and runs[0].status == "completed"
        sw = runs[0].table("switching")
    assert sorted(sw["cell"].tolist()) == sorted(np.repeat(CELLS, exp.cycles).tolist())


def test_iv_report_summarizes_the_switching_voltages(tmp_path):
    from cimlab.procedures.report import report

    exp = _exp()
    with Station.open(station_file(tmp_path, smu_v_max=3.0)) as st, \
            Store.open(tmp_path / "iv.h5", "a") as store:
        iv_sweep(st, store, exp, CELLS[:2], seed=1, progress=False)
        sw = next(iter(store)).table("switching")
    (rep,) = report(tmp_path / "iv.h5", tmp_path / "rep")
    per_cell = rep.section("switching voltages per cell").frame
    assert per_cell["cell"].tolist() == sorted(CELLS[:2].tolist())
    for _, row in per_cell.iterrows():
        s = sw[sw["cell"] == row["cell"]]
        assert row["v_set_median"] == pytest.approx(float(np.median(s["v_set"])))
        assert row["sets_found"] == exp.cycles
    assert [p.name for p in rep.plots] == [f"{rep.uid}_iv_sweep_iv.png"]
    assert rep.plots[0].stat().st_size > 1000

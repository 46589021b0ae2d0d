"""Forming of a pristine emulated chip through the SMU: the forming voltage of every cell
within one ramp step of the emulator's truth, the formed fraction equal to the truth's, the
cells that never form reported, limits before anything is sent, and an interrupted run that
resumes equal to an uninterrupted one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cimlab.errors import LimitError
from cimlab.instruments.station import Station
from cimlab.physics.profile import profile_path
from cimlab.procedures.forming import forming, forming_step, ramp_levels
from cimlab.procedures.plan import FormingExp
from cimlab.procedures.plan_cells import CellSet
from cimlab.store import Store
from tests.procedures.bench_util import station_file

V_STEP = 0.02


def small_pristine(folder: Path) -> Path:
    """The bundled 'pristine' profile on one tile (16,384 cells: quick checkpoints)."""
    p = folder / "pristine-small.toml"
    p.write_text(Path(profile_path("pristine")).read_text() + "\n[geometry]\nn_tiles = 1\n")
    return p


def _station(tmp_path: Path, smu_v_max: float = 3.5) -> Path:
    return station_file(tmp_path, smu_v_max=smu_v_max, profile=str(small_pristine(tmp_path)))


def _cells(truth, n_ok: int = 24) -> np.ndarray:
    """``n_ok`` fault-free cells (they form) and every never-forming cell among the first
    1000 (V_form = +inf in the truth), sorted."""
    vf = truth.forming_voltage(np.arange(1000))
    ok = np.flatnonzero(np.isfinite(vf))[:n_ok]
    never = np.flatnonzero(np.isposinf(vf))
    assert never.size >= 2, "the seed gives too few never-forming cells to test"
    return np.sort(np.concatenate([ok, never])).astype(np.uint32)


def test_ramp_levels_and_the_abort_step():
    assert ramp_levels(1.0, 1.1, 0.02).tolist() == [1.0, 1.02, 1.04, 1.06, 1.08, 1.1]
    i = np.array([1e-7, 2e-7, 5e-6, 1e-5])
    assert forming_step(i, np.zeros(4, bool), 1e-5) == 3
    assert forming_step(i, np.array([0, 0, 1, 0], bool), 1e-5) == 2   # the source's limit
    assert forming_step(i, np.zeros(4, bool), 1e-4) == -1             # never reached


def test_forming_voltages_equal_the_truth_within_one_step(tmp_path):
    exp = FormingExp(cells=CellSet(count=8), v_step=V_STEP, batch=16)
    with Station.open(_station(tmp_path)) as st, \
            Store.open(tmp_path / "f.h5", "a") as store:
        truth = st.bench.chip.truth
        cells = _cells(truth)
        v_true = truth.forming_voltage(cells)
        assert truth.unformed(cells).sum() == np.isfinite(v_true).sum()
        res = forming(st, store, exp, cells, seed=1, progress=False)
        tab = store.run(res.run_uid).table("forming").set_index("cell").loc[cells]
        ramp = store.run(res.run_uid).table("forming_ramp")
        unformed_after = truth.unformed(cells)
        g_true = truth.conductance(cells)
        v_gate = res.figures["v_gate"]
        icc = truth.profile.transistor.icc(v_gate, truth.d2d["transistor_dv_th"][cells])
        v_c = truth.profile.set.v_c
    will = np.isfinite(v_true) & (v_true <= exp.v_max)
    vf = tab["v_form"].to_numpy(float)
    # the first ramp step above the cell's forming voltage
    assert np.all(vf[will] > v_true[will]) and np.all(vf[will] <= v_true[will] + V_STEP + 1e-9)
    assert tab["formed"].to_numpy().tolist() == will.tolist()
    assert res.figures["formed_fraction"] == pytest.approx(will.mean())
    # never-forming cells: the whole ramp without the abort, reported, still pristine
    never = cells[~will]
    assert res.figures["never_formed"] == never.size
    assert res.figures["never_formed_cells"] == never.tolist()
    assert np.all(np.isnan(vf[~will])) and not tab["aborted"].to_numpy()[~will].any()
    assert np.all(tab["steps"].to_numpy()[~will] == ramp_levels(exp.v_start, exp.v_max,
                                                                 V_STEP).size)
    assert not unformed_after.any()  # formed cells formed; never-forming ones are stuck off
    assert np.all(tab["g_after_siemens"].to_numpy()[~will] < 0.1e-6)
    # the ramp ended in the instrument at the abort step, at the SMU's limit
    last = ramp.groupby("cell").tail(1).set_index("cell").loc[cells[will]]
    assert last["limited"].all()
    assert np.allclose(last["i_a"], exp.abort_current_a, rtol=1e-6)
    # the filament: the transistor-limited SET ceiling I_cc / v_c (within its spread)
    g_after = tab["g_after_siemens"].to_numpy()[will]
    assert np.all(np.abs(np.log(g_after / (icc[will] / v_c))) < 0.5)
    assert np.allclose(g_after, g_true[will], rtol=0.05)


def test_a_ramp_beyond_the_smu_limit_raises_before_anything_is_sent(tmp_path):
    with Station.open(_station(tmp_path, smu_v_max=3.0)) as st, \
            Store.open(tmp_path / "f.h5", "a") as store:
        chip = st.bench.chip
        cells = np.arange(8, dtype=np.uint32)
        t0, busy0 = st.bench.world.now_s, dict(st.bench.world.busy_s)
        with pytest.raises(LimitError, match="smu_v_max_v") as err:
            forming(st, store, FormingExp(), cells, seed=1, progress=False)
        assert "v_max" in str(err.value)
        assert list(store) == []
        assert chip.truth.unformed(cells).sum() == np.isfinite(
            chip.truth.forming_voltage(cells)).sum()
        assert st.bench.world.routed_cell is None
        assert st.bench.world.now_s == t0 and dict(st.bench.world.busy_s) == busy0


def _plan(folder: Path) -> Path:
    p = folder / "forming.toml"
    p.write_text('[plan]\nname = "forming"\nseed = 5\n[[experiment]]\nkind = "forming"\n'
                 'cells = { start = 100, count = 12 }\nbatch = 4\nv_step = 0.05\n')
    return p


def _run(station: Path, plan: Path, out: Path) -> None:
    from cimlab.instruments.session import open_station, state_path_for
    from cimlab.procedures.campaign import run_plan
    from cimlab.procedures.plan import load_plan
    from cimlab.procedures.run import reconcile_checkpoint

    reconcile_checkpoint(state_path_for(out), out)
    with open_station(station, state_path_for(out)) as st:
        run_plan(load_plan(plan), st, out, progress=False)


def _tables(out: Path) -> dict[str, pd.DataFrame]:
    with Store.open(out, mode="r") as s:
        (run,) = list(s)
        assert run.status == "completed"
        return {t: run.table(t, committed_only=True) for t in run.tables}


def test_interrupted_forming_resumes_equal_to_an_uninterrupted_run(tmp_path, monkeypatch):
    import cimlab.procedures.forming as mod

    station, plan = _station(tmp_path), _plan(tmp_path)
    _run(station, plan, tmp_path / "clean.h5")
    clean = _tables(tmp_path / "clean.h5")
    real, calls = mod.smu_sweep, {"n": 0}

    def failing(*a, **k):
        calls["n"] += 1
        if calls["n"] == 11:  # batch 1 (cells 104-107), its second cell's ramp: 104 formed
            raise KeyboardInterrupt
        return real(*a, **k)

    out = tmp_path / "resumed.h5"
    monkeypatch.setattr(mod, "smu_sweep", failing)
    with pytest.raises(KeyboardInterrupt):
        _run(station, plan, out)
    monkeypatch.setattr(mod, "smu_sweep", real)
    _run(station, plan, out)
    resumed = _tables(out)
    assert sorted(resumed) == sorted(clean) == ["forming", "forming_ramp"]
    for t in clean:
        pd.testing.assert_frame_equal(resumed[t], clean[t], check_exact=True)
    assert len(clean["forming"]) == 12


def test_forming_report_has_the_distribution_and_summary(tmp_path):
    from cimlab.procedures.report import report

    with Station.open(_station(tmp_path)) as st, \
            Store.open(tmp_path / "f.h5", "a") as store:
        cells = _cells(st.bench.chip.truth, n_ok=6)
        res = forming(st, store, FormingExp(batch=16), cells, seed=1, progress=False)
        tab = store.run(res.run_uid).table("forming")
    (rep,) = report(tmp_path / "f.h5", tmp_path / "rep")
    summ = rep.section("forming summary").frame.iloc[0]
    formed = tab["formed"].to_numpy(bool)
    assert summ["formed_fraction"] == pytest.approx(formed.mean())
    assert summ["v_form_median"] == pytest.approx(float(np.median(tab["v_form"][formed])))
    assert summ["never_formed"] == int((~formed & ~tab["shorted"]).sum())
    never = rep.section("cells that never formed").frame
    assert never["cell"].tolist() == sorted(tab["cell"][~formed & ~tab["shorted"]].tolist())
    assert [p.name for p in rep.plots] == [f"{rep.uid}_forming_vform.png"]
    assert rep.plots[0].stat().st_size > 1000

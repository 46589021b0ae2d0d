"""Gate calibration: the fitted square law matches the emulator's transistor within the
sample's threshold-mismatch error, and a station file that points to the written calibration
uses it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cimlab.errors import ConfigError
from cimlab.instruments.station import Station
from cimlab.procedures.gate_calibration import fit_cell, gate_calibration
from cimlab.procedures.plan import GateCalibrationExp
from cimlab.procedures.plan_cells import CellSet
from cimlab.store import Store
from cimlab.transistor import square_law_current
from tests.procedures.bench_util import station_file

CELLS = np.arange(100, 100 + 12 * 37, 37, dtype=np.uint32)


def test_fit_cell_recovers_a_square_law():
    v = np.linspace(0.4, 1.4, 11)
    k, vth, n, rms = fit_cell(v, square_law_current(v, 3e-4, 0.55), 1e-7)
    assert k == pytest.approx(3e-4, rel=1e-9) and vth == pytest.approx(0.55, abs=1e-9)
    assert n == 9 and rms < 1e-12


def test_gate_calibration_matches_the_emulated_transistor(tmp_path):
    cal = tmp_path / "transistor.toml"
    exp = GateCalibrationExp(cells=CellSet(count=CELLS.size), write_calibration=str(cal))
    with Station.open(station_file(tmp_path, smu_v_max=3.0)) as st, \
            Store.open(tmp_path / "g.h5", "a") as store:
        truth = st.bench.chip.truth
        res = gate_calibration(st, store, exp, CELLS, seed=2, progress=False)
        fits = store.run(res.run_uid).table("gate_fit")
        g_after = truth.conductance(CELLS)
        stuck = truth.stuck_mask()[CELLS] != 0
    tr = truth.profile.transistor
    dv = truth.d2d["transistor_dv_th"][CELLS].astype(float)
    f = res.figures
    assert stuck.sum() == 1  # this cell set holds one stuck cell: left out of the fit
    n = int((~stuck).sum())
    assert f["cells"] == n and f["cells_left_out"] == 1 and len(fits) == CELLS.size
    # per working cell: its own threshold (nominal + mismatch), the common k
    assert np.allclose(fits["v_th_v"][~stuck], (tr.v_th + dv)[~stuck], atol=2e-4)
    assert np.allclose(fits["k_a_per_v2"][~stuck], tr.k_a_per_v2, rtol=2e-3)
    # chip: within 4 standard errors of the nominal threshold, the SE itself near
    # sigma / sqrt(n) (chi distribution with n-1 degrees of freedom: within a factor 2)
    se_truth = tr.v_th_sigma / math.sqrt(n)
    assert abs(f["v_th_v"] - tr.v_th) < 4 * se_truth
    assert 0.5 * se_truth < f["v_th_v_se"] < 2.0 * se_truth
    assert f["k_a_per_v2"] == pytest.approx(tr.k_a_per_v2, rel=2e-3)
    assert np.all(g_after[~stuck] < 40e-6)  # working cells left RESET
    # a station file pointing to the calibration file uses the measured transistor
    text = station_file(tmp_path, name="calibrated.toml").read_text()
    head, _, _ = text.partition("[calibration.transistor]")
    p = tmp_path / "calibrated.toml"
    p.write_text(head + f'[calibration]\nfile = "{cal.name}"\n')
    with Station.open(p) as st:
        c = st.calibration.transistor
        assert c.k_a_per_v2 == f["k_a_per_v2"] and c.v_th_v == f["v_th_v"]
        assert st.gate_voltage_for(55e-6) == pytest.approx(
            f["v_th_v"] + math.sqrt(2 * 55e-6 / f["k_a_per_v2"]))


def test_a_calibration_file_and_an_inline_table_are_refused(tmp_path):
    p = station_file(tmp_path)
    p.write_text(p.read_text().replace("[calibration.transistor]",
                                       '[calibration]\nfile = "x.toml"\n[calibration.transistor]'))
    with pytest.raises(ConfigError, match=r"calibration\.transistor"):
        Station.open(p)


def test_gate_report_has_the_chip_fit_and_a_plot(tmp_path):
    from cimlab.procedures.report import report

    exp = GateCalibrationExp(cells=CellSet(count=3), v_gates=(0.7, 0.9, 1.1, 1.3))
    with Station.open(station_file(tmp_path, smu_v_max=3.0)) as st, \
            Store.open(tmp_path / "g.h5", "a") as store:
        res = gate_calibration(st, store, exp, CELLS[:3], seed=2, progress=False)
    (rep,) = report(tmp_path / "g.h5", tmp_path / "rep")
    chip = rep.section("transistor calibration (chip)").frame
    assert chip["k_a_per_v2"].iloc[0] == res.figures["k_a_per_v2"]
    assert len(rep.section("square-law fit per cell").frame) == 3
    assert rep.plots and rep.plots[0].name.endswith("_gate.png")

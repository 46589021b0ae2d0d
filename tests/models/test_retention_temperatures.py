"""Retention across temperatures (issue 12 item 2): a bake temperature where another failure
mode takes over is detected (predicted from the cooler bakes, it misses), flagged, excluded
from Ea with a warning, never absorbed; the others keep one Arrhenius law whose CI covers
the truth; `model show` prints the per-temperature table; extrapolation refuses above it."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cimlab.models import DeviceModel
from cimlab.models.extrapolate import extrapolate_retention
from cimlab.models.fit import fit_read_noise, fit_relaxation, fit_retention
from cimlab.models.fit.bake_temperatures import FAIL_MEAN_SIGMAS
from tests.models.chipdata import chip_tables

TEMPS = (100.0, 125.0, 150.0, 175.0)


def _fit(fail_at: float | None):
    d = chip_tables("default", n_per_level=200, bake_temps_c=TEMPS)
    p = d["profile"]
    g_ref = p.window.g_max
    rn = fit_read_noise(d["reads"], g_ref)
    rf = fit_relaxation(d["relax"], g_ref, read_noise=rn)
    bake = d["bake"]
    if fail_at is not None:
        # a failure mode above some temperature: filaments lose 15 % of their conductance
        hot = np.isclose(bake["temp_k"], fail_at + 273.15) & (bake["step"] > 0)
        bake = bake.assign(g_siemens=np.where(hot, 0.85 * bake["g_siemens"], bake["g_siemens"]))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ret = fit_retention(bake, rf.effect, g_ref, read_noise=rn, t_ref_k=p.window.t_room_k,
                            programmed=d["bake_programmed"])
    msgs = [str(w.message) for w in caught if "Arrhenius" in str(w.message)]
    return ret, p, msgs


@pytest.fixture(scope="module")
def failing():
    return _fit(175.0)


def test_failing_temperature_flagged_and_excluded(failing):
    ret, p, msgs = failing
    e = ret.effect
    assert e.t_fail_k == pytest.approx(175.0 + 273.15)
    assert msgs and "175 C" in msgs[0] and "excluded from Ea" in msgs[0]
    assert "WARNING" in e.fit.notes and "175 C" in e.fit.notes
    lo, hi = e.fit.ci95["ea_ev"]
    assert lo <= p.retention.ea_ev <= hi  # the failure did not bias Ea
    chk = ret.per_temperature_check
    assert list(chk["excluded"]) == [0.0, 0.0, 0.0, 1.0]
    # the kept temperatures: mean shift within 0.5 sigma, spread within 15 % (medians)
    kept = chk[chk["excluded"] == 0]
    assert (kept["mean_err_sigma"] < 0.5).all() and (kept["sigma_rel_err"] < 0.15).all(), kept
    # the flagged one is clearly off
    assert float(chk["mean_err_sigma"].iloc[-1]) > FAIL_MEAN_SIGMAS


def test_no_failure_no_flag():
    ret, p, msgs = _fit(None)
    assert ret.effect.t_fail_k == 0.0 and not msgs
    lo, hi = ret.effect.fit.ci95["ea_ev"]
    assert lo <= p.retention.ea_ev <= hi


def test_show_table_and_extrapolation_refusal(failing, tmp_path):
    ret, _, _ = failing
    dm = DeviceModel.default().replace(retention=ret.effect, relaxation=ret.relaxation)
    text = dm.summary()
    assert "per bake temperature" in text and "EXCLUDED: off the Arrhenius law" in text
    assert text.count("fitted") >= 3
    path = dm.save(tmp_path / "m.json")
    assert DeviceModel.load(path).retention.t_fail_k == ret.effect.t_fail_k
    with pytest.raises(ValueError, match="left the Arrhenius law at 175 C"):
        extrapolate_retention(dm, 1.0, 200.0, n_draws=200)
    ex = extrapolate_retention(dm, 10.0, 85.0, n_draws=400)
    assert np.all(np.isfinite(ex.mean_shift_ci95)) and np.all(np.isfinite(ex.sigma_ci95))


def test_techa_bakes_alone_reach_the_global_minimum(tmp_path):
    """The real techA bakes (no room-temperature relaxation run: onset, rate law and Ea all
    from the bakes) fitted on all cells: the fit must not stop in the local minimum a single
    start reached (Ea 0.12 eV, chi2_red 122, no interval). With Ea pinned at 0.3 / 0.6 eV the
    same law reaches chi2_red 5.2 / 5.4, so the free fit must do at least as well."""
    from cimlab.models.fit.store import collect, fit_tables
    from cimlab.procedures.importers import import_techa_bake
    from cimlab.store import Store

    bake = Path(__file__).resolve().parents[2] / "data" / "reference" / "techA" / "bake.tsv.gz"
    import_techa_bake(bake, tmp_path / "techa.h5")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Store.open(tmp_path / "techa.h5") as store:
            model = fit_tables(collect(store)).model
    ret = model.retention
    assert ret.fit.gof["chi2_red"] < 5.2
    lo, hi = ret.fit.ci95["ea_ev"]
    assert lo < ret.ea_ev < hi and hi > lo
    assert ret.t_fail_k == pytest.approx(493.15)  # 220 C and above flagged, as before
    # the law fitted inside the retention fit carries its uncertainties (it used to be shown
    # as "fixed / literature"): the rate law's intervals hold its values
    rel = model.relaxation
    assert rel.fit is not None and "bakes only" in rel.fit.method
    for name in ("k_peak", "g_peak", "shape_a"):
        lo, hi = rel.fit.ci95[name]
        assert lo < getattr(rel, name) < hi, name
    # bakes of one duration per temperature do not fix the room-temperature onset: shown so
    from cimlab.models.params import fitted_of
    assert "not determined by these data" in fitted_of(ret, "tau0_s").text()
    assert "not determined by these data" in fitted_of(rel, "t0_s").text()
    assert "±" in fitted_of(rel, "k_peak").text()


def test_bakes_of_a_sixteenth_of_the_techa_cells_fit_without_error():
    """A lab's smaller bake set (every 16th techA cell, ~16 per level and temperature, bakes
    only): the drift's tanh is straight over the measured levels in one of the held-out
    sub-fits and its amplitude used to run off to ~12 mS per decade, outside the model's range,
    so `cimlab fit` failed with "field 'm_max': expected a number in [-0.001, 0.001] S". The
    amplitude is bounded to the model's range; the fit completes with a finite law."""
    import pandas as pd

    from cimlab.models.effects import Relaxation
    from cimlab.models.fit.relaxation import drift_amplitude_bounds_u
    from cimlab.procedures.importers.techa import read_techa_bake

    path = Path(__file__).resolve().parents[2] / "data" / "reference" / "techA" / "bake.tsv.gz"
    reads = pd.DataFrame(read_techa_bake(path)[0])
    reads = reads[reads["cell"] % 16 == 0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_retention(reads, Relaxation(g_ref=240e-6), 240e-6)
    lo, hi = (b * 1e-6 for b in drift_amplitude_bounds_u())
    assert lo <= fit.relaxation.m_max <= hi
    assert np.isfinite(fit.effect.ea_ev) and fit.effect.t_fail_k > 0


# (100, 180): 38 of 64 cells (0.594) on an AMD EPYC machine, >= 0.6 on earlier ones (the
# optimiser path differs with the BLAS); the regression this guards against gave 0.086
@pytest.mark.parametrize(("temps_c", "min_within"), [((140,), 0.6), ((100, 180), 0.5)])
def test_bakes_only_at_one_or_two_temperatures_reproduce_their_bakes(tmp_path, temps_c,
                                                                     min_within):
    """A lab's bakes of a 240 uS technology at one or two temperatures and no room-temperature
    relaxation run (the techA bakes at 140 C, or 100 and 180 C): Ea is not identifiable from
    them (one duration per temperature: Ea trades against the relaxation onset), so it is
    held at the prior and reported with the published range, and the onset and pre-bake
    room time are fitted with it held, so the exported model reproduces the bakes it was
    fitted on (`cimlab validate`). Before: the level dependence of the rate came from the
    literature default (flat in g; techA's spread falls 10x from level 8 to 32) and, with one
    temperature, the model's Ea was the prior while its onset was fitted with another Ea:
    5.7 % / 8.6 % of the (level, temperature) cells within 15 %, median error 73 % / 72 %."""
    import gzip

    from cimlab.models.effects import EA_PRIOR_RANGE_EV
    from cimlab.models.fit import fit_store_report
    from cimlab.models.validate import validate_store
    from cimlab.procedures.importers import import_techa_bake

    src = Path(__file__).resolve().parents[2] / "data" / "reference" / "techA" / "bake.tsv.gz"
    lines = [ln for ln in gzip.open(src, "rt") if float(ln.split("\t")[4]) in temps_c]
    sub = tmp_path / "bake.tsv"
    sub.write_text("".join(lines))
    (tmp_path / "settings.json").write_text((src.parent / "settings.json").read_text())
    store = tmp_path / "a.h5"
    import_techa_bake(sub, store)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dm = fit_store_report(store).model
    ret = dm.retention
    assert ret.ea_ev == pytest.approx(EA_PRIOR_RANGE_EV[0])
    assert ret.fit.ci95["ea_ev"] == pytest.approx(EA_PRIOR_RANGE_EV)
    lo, hi = ret.fit.ci95["tau0_s"]
    assert 0.0 < lo < ret.tau0_s < hi
    assert dm.relaxation.form == "peaked" and dm.relaxation.k_peak > 0.0
    s = validate_store(dm, store, effects=["bake_retention"]).summary()
    assert s["fraction_within"] >= min_within, s


def test_cells_a_verify_did_not_pulse_are_not_samples_of_the_bakes():
    """A cell its verify found in band before a temperature's bakes was not pulsed: its
    relaxation clock still runs from an older programming, so it barely moves in these
    bakes (on the round-trip plan 13 % of the cells at the second temperature, whose
    spread came out 8 % low). Such reads (``g0_time_s`` NaN) are left out of the groups."""
    from cimlab.models.fit.bake_temperatures import bake_groups

    rng = np.random.default_rng(0)
    cells, steps = np.arange(40), np.arange(3)
    c, s = np.repeat(cells, steps.size), np.tile(steps, cells.size)
    reads = pd.DataFrame({
        "cell": c, "level": 0, "target_siemens": 20e-6, "step": s, "temp_k": 448.15,
        "bake_time_s": np.array([0.0, 60.0, 3600.0])[s],
        "g_siemens": 20e-6 + 1e-6 * rng.standard_normal(c.size),
        "g0_time_s": np.where(c < 10, np.nan, 1e-3)})
    _, cum = bake_groups(reads, 40e-6)
    assert set(cum["n"]) == {30}
    _, cum_all = bake_groups(reads.drop(columns="g0_time_s"), 40e-6)  # imported: no column
    assert set(cum_all["n"]) == {40}

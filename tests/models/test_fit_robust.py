"""Fits that do not break (issue 12 item 6), on the narrow profile (1-25 uS, 2 % stuck,
Ea 1.3 eV) through the real bench, and on chip tables built to hit each failure."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from cimlab.instruments.station import Station
from cimlab.models.fit import fit_store_report
from cimlab.physics.profile import profile_path
from cimlab.procedures.campaign import run_plan
from cimlab.procedures.plan import plan_from_mapping
from tests.models.test_roundtrip import _plan, _station_file

NARROW = str(profile_path("narrow"))


def _all_cis(dm):
    for eff in (dm.window, dm.programming, *dm.programming_other, dm.read_noise,
                dm.relaxation, dm.retention, dm.stuck):
        if eff.fit is not None:
            for name, ci in eff.fit.ci95.items():
                yield f"{type(eff).__name__}.{name}", ci


@pytest.fixture(scope="module")
def narrow_seed4(tmp_path_factory):
    """Seed 4 of the narrow profile: its relaxation fit picks a polynomial k(g) that, floated
    inside the retention fit, went negative at 1.5 g_ref ('field k0: expected relaxation
    variance rate k(g) >= 0') and ended `cimlab fit` with an error."""
    tmp = tmp_path_factory.mktemp("narrow4")
    doc = _plan(NARROW)
    doc["plan"]["seed"] = 4
    with Station.open(_station_file(tmp, NARROW, seed=104)) as st:
        run_plan(plan_from_mapping(doc, source="narrow4"), st, tmp / "store.h5", progress=False)
        truth = st.bench.chip.profile
    return fit_store_report(tmp / "store.h5"), truth


def test_narrow_profile_fit_does_not_crash(narrow_seed4):
    rep, truth = narrow_seed4
    assert {"relaxation", "retention", "read_noise"} <= set(rep.fitted)
    ret = rep.model.retention
    lo, hi = ret.fit.ci95["ea_ev"]
    assert lo <= truth.retention.ea_ev <= hi


def test_no_zero_width_or_nan_interval(narrow_seed4):
    rep, _ = narrow_seed4
    for name, (lo, hi) in _all_cis(rep.model):
        assert math.isfinite(lo) and math.isfinite(hi), name
        assert hi > lo, f"{name}: zero-width 95% CI [{lo}, {hi}]"


def test_profile_is_what_the_issue_asks():
    from cimlab.physics.profile import load_profile

    p = load_profile(NARROW)
    assert (p.window.g_min, p.window.g_max) == (1e-6, 25e-6)
    assert p.retention.ea_ev == 1.3 and p.faults.p_stuck == 0.02
    assert Path(NARROW).name == "narrow.toml"
    assert np.isclose(p.window.g_max, 25e-6)


@pytest.mark.parametrize(("profile", "seed"), [(NARROW, 1), (NARROW, 3), ("default", 2)])
def test_drift_has_the_physics_sign_at_the_bottom_of_the_window(profile, seed):
    """These seeds picked a straight-line drift centred far outside the window (g_center
    -95 uS, -3 uS, -400 uS): every level then drifted down, and at g_min the model's drift had
    the opposite sign of the physics' (means relax *up* towards g_attr there). The drift's
    centre is now fitted inside the window and a form whose centre ends at that bound is not
    taken."""
    from cimlab.models.fit import fit_read_noise, fit_relaxation
    from tests.models.chipdata import chip_tables

    d = chip_tables(profile, seed=seed, n_per_level=150)
    p = d["profile"]
    g_ref = p.window.g_max
    rf = fit_relaxation(d["relax"], g_ref, read_noise=fit_read_noise(d["reads"], g_ref))
    r = rf.effect
    assert 0.0 < r.g_center < 1.5 * g_ref
    g_low = p.window.g_min
    assert np.sign(r.drift(g_low)) == np.sign(p.relaxation.mean_rate(g_low))

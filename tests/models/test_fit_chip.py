"""Fitters against tables drawn from cimlab.physics.ReRAMChip, compared with chip.truth.

Where the fitted model form is the physics' form (read noise "quadrature", relaxation
"peaked" variance law, Arrhenius), every parameter's 95 % CI must cover the true value.
Where BIC picks a different form than the physics (the mean drift: the data often cannot
tell the true tanh from a straight line over the measured levels), the fitted *function* is
compared at the measured levels within its 95 % band (delta method) widened by a stated
0.05 uS per decade.
"""

from __future__ import annotations

import numpy as np
import pytest

from cimlab.models.fit import fit_read_noise, fit_relaxation, fit_retention
from cimlab.models.uncertainty import band
from tests.models.chipdata import chip_tables

PROFILES = ("default", "techb")


@pytest.fixture(scope="module", params=PROFILES)
def fitted(request):
    d = chip_tables(request.param)
    p = d["profile"]
    g_ref = p.window.g_max
    rn0 = fit_read_noise(d["reads"], g_ref)
    rf = fit_relaxation(d["relax"], g_ref, read_noise=rn0)
    rn = fit_read_noise(d["reads"], g_ref, relaxation=rf.effect)
    ret = fit_retention(d["bake"], rf.effect, g_ref, read_noise=rn,
                        t_ref_k=p.window.t_room_k, programmed=d["bake_programmed"])
    return {"d": d, "p": p, "rn": rn, "rf": rf, "ret": ret}


def _covers(effect, name, truth):
    lo, hi = effect.fit.ci95[name]
    assert lo <= truth <= hi, f"{name}: truth {truth:.4g} outside 95% CI [{lo:.4g}, {hi:.4g}]"


def test_read_noise_recovers_physics(fitted):
    rn, p = fitted["rn"], fitted["p"]
    assert rn.form == "quadrature"
    _covers(rn, "s0", p.read.sigma_floor)
    _covers(rn, "s1", p.read.rel * rn.g_ref)


def test_relaxation_variance_law_recovers_physics(fitted):
    r, p = fitted["rf"].effect, fitted["p"].relaxation
    assert r.form == "peaked"
    for name, truth in (("t0_s", p.tau_s), ("k_peak", p.b_peak), ("g_peak", p.g_peak),
                        ("shape_a", p.shape_a)):
        _covers(r, name, truth)
    assert r.fit.gof["var_chi2_red"] < 2.0


def test_relaxation_drift_function_matches_physics(fitted):
    """At every level with at least 5 uncensored time points (the drift of a level whose
    spread reaches 0 S after a few seconds is barely measured), the fitted drift per decade
    lies within its 95 % band widened by 0.05 uS/decade of the physics' tanh drift."""
    r, p = fitted["rf"].effect, fitted["p"].relaxation
    gr = fitted["rf"].groups
    per = gr.groupby("level").agg(g=("g_level_siemens", "first"), n=("tkey", "size"))
    g = per.loc[per["n"] >= 5, "g"].to_numpy()
    assert g.size >= 6
    y, _, ci = band(r, "drift", g)
    truth = p.mean_rate(g)
    tol = 0.05e-6
    assert np.all(truth >= ci[:, 0] - tol) and np.all(truth <= ci[:, 1] + tol), (
        np.c_[g, y, truth] * 1e6)


def test_retention_activation_energy(fitted):
    ret, p = fitted["ret"].effect, fitted["p"]
    _covers(ret, "ea_ev", p.retention.ea_ev)
    assert fitted["ret"].effect.fit.gof["arrhenius_chi2_red"] < 4.0
    # prefactor: t0(T_room) = tau0 exp(Ea/kB T_room) equals the physics' relaxation onset
    lo, hi = ret.fit.ci95["tau0_s"]
    import math

    from cimlab.models.effects import K_B_EV

    tau0_true = p.relaxation.tau_s * math.exp(-p.retention.ea_ev / (K_B_EV * ret.t_ref_k))
    assert lo <= tau0_true <= hi

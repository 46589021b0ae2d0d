"""The package's core test: characterize the emulated chip through the real bench (procedures,
PyVISA, SCPI emulator, HDF5 store), fit a DeviceModel to the store, compare with the truth.

Two chip profiles: ``default`` and ``techb`` (a different technology: 1-25 uS, noisier reads,
Ea 1.6 eV, 3 % stuck). Parameters whose fitted form is the physics' form must cover the true
value with their 95 % CI; the others are compared as functions with a stated tolerance (each
test says which). The campaign is reduced (fixed seeds) to keep the suite fast.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cimlab.instruments.station import Station
from cimlab.models import DeviceModel
from cimlab.models.effects import K_B_EV
from cimlab.models.fit import fit_store_report
from cimlab.models.fit._stats import group_moments
from cimlab.models.uncertainty import band
from cimlab.physics import load_profile
from cimlab.procedures.campaign import run_plan
from cimlab.procedures.plan import plan_from_mapping

ROOT = Path(__file__).resolve().parents[2]


def _plan(profile: str) -> dict:
    p = load_profile(profile)
    w = p.window
    levels = {"levels": 12, "g_min_siemens": 2 * w.g_min, "g_max_siemens": w.g_max}
    conds = [{"name": c.name, "icc_a": c.icc_a, "v_reset": c.v_reset, "width_s": c.width_s}
             for c in p.conditions]
    bits = 1536
    # the single-shot gate curve must reach the window's top: SET ends near icc / v_c, so
    # a gate giving 1.25 g_max v_c (the experiment's default 1.05 V reaches ~120 uS, short of
    # techa's 240 uS window; unchanged for the 25-40 uS profiles)
    v_gate_max = max(1.05, float(p.transistor.v_gate_for_icc(1.25 * w.g_max * p.set.v_c)))
    sizes = {"fault_map": 2048, "programming_error": 3072, "read_fluctuation": 1536,
             "relaxation": 3072, "ber": 3 * 3 * bits, "bake_retention": 3072}
    # a profile with 1/f read noise: its spectrum is measured too (2 cells per level, one
    # read every 20 s for 2.3 days: the fit then reaches 1e-4 Hz), so that the relaxation
    # and bake fits count the slow noise between two reads instead of taking it for
    # relaxation
    flicker = p.read.flicker_psd_peak > 0.0
    if flicker:
        sizes["read_noise_series"] = 24
    start, cells = 0, {}
    for kind, n in sizes.items():  # consecutive blocks of fresh cells (26624 in all)
        cells[kind] = {"start": start, "count": n}
        start += n
    series = [{"kind": "read_noise_series", "cells": cells["read_noise_series"],
               "levels": levels, "fs_hz": 0.05, "duration_s": 2e5, "settle_s": 100.0}
              ] if flicker else []
    return {
        "plan": {"name": f"roundtrip-{Path(profile).stem}", "seed": 3},
        "experiment": [
            *series,
            {"kind": "fault_map", "cells": cells["fault_map"]},
            {"kind": "programming_error", "cells": cells["programming_error"],
             "levels": levels, "calibration_cells": 256, "calibration_points": 26,
             "v_gate_max": v_gate_max},
            {"kind": "read_fluctuation", "cells": cells["read_fluctuation"],
             "levels": levels, "repeats": 16, "settle_s": 1e4, "smu_cells": 0},
            {"kind": "relaxation", "cells": cells["relaxation"],
             "levels": levels, "times_s": [0.01, 0.1, 1.0, 10.0, 100.0, 1e3, 1e4, 1e5]},
            {"kind": "ber", "cells": cells["ber"], "bits": bits, "conditions": conds},
            {"kind": "bake_retention", "cells": cells["bake_retention"],
             "levels": levels, "temps_c": [125.0, 175.0],
             "schedule_s": [60.0, 3600.0, 36000.0, 360000.0]},
        ],
    }


def _station_file(tmp: Path, profile: str, seed: int) -> Path:
    text = (ROOT / "instruments" / "emulated.toml").read_text()
    p = load_profile(profile)
    lines = []
    for line in text.splitlines():
        key = line.split("=")[0].strip()
        if key == "profile":
            line = f'profile = "{profile}"'
        elif key == "seed":
            line = f"seed = {seed}"
        elif key == "k_a_per_v2":
            line = f"k_a_per_v2 = {p.transistor.k_a_per_v2}"
        elif key == "v_th_v":
            line = f"v_th_v = {p.transistor.v_th}"
        elif key == "set_wl_max_v":  # techb's weaker transistor needs 3.6 V for 600 uA
            line = "set_wl_max_v = 4.0"
        lines.append(line)
    out = tmp / f"station-{Path(profile).stem}.toml"
    out.write_text("\n".join(lines) + "\n")
    return out


@pytest.fixture(scope="module", params=["default", "techb"])
def roundtrip(request, tmp_path_factory):
    profile = request.param
    tmp = tmp_path_factory.mktemp(f"rt-{profile}")
    plan = plan_from_mapping(_plan(profile), source=f"roundtrip-{Path(profile).stem}")
    with Station.open(_station_file(tmp, profile, seed=21)) as st:
        chip = st.bench.chip
        run_plan(plan, st, tmp / "store.h5", progress=False)
        from cimlab.physics import binary

        truth = {"profile": chip.profile, "g_prog": chip.truth.programmed(np.arange(chip.n_cells)),
                 "faults": chip.truth.fault_codes(),
                 "binary": {c.name: (binary.with_read_noise(chip.profile,
                                                            chip.truth.lrs_distribution(c.name)),
                                     binary.with_read_noise(chip.profile,
                                                            chip.truth.hrs_distribution(c.name)))
                            for c in chip.profile.conditions}}
    rep = fit_store_report(tmp / "store.h5")
    return {"rep": rep, "dm": rep.model, "truth": truth, "tmp": tmp, "profile": profile}


def _covers(effect, name, truth, what=""):
    lo, hi = effect.fit.ci95[name]
    assert lo <= truth <= hi, (f"{what}{name}: truth {truth:.5g} outside 95% CI "
                               f"[{lo:.5g}, {hi:.5g}] (fit {getattr(effect, name):.5g})")


def test_every_effect_fitted_and_exported(roundtrip):
    rep, dm = roundtrip["rep"], roundtrip["dm"]
    assert set(rep.fitted) >= {"window", "programming", "read_noise", "relaxation", "retention",
                               "binary", "stuck"}
    assert dm.provenance.source == "fit" and len(dm.provenance.data_sha256) == 64
    assert len(dm.provenance.run_uids) == 6
    p = dm.save(roundtrip["tmp"] / "model.json")
    assert DeviceModel.load(p) == dm


def test_read_noise(roundtrip):
    rn, p = roundtrip["dm"].read_noise, roundtrip["truth"]["profile"]
    assert rn.form == "quadrature"
    _covers(rn, "s0", p.read.sigma_floor)
    _covers(rn, "s1", p.read.rel * rn.g_ref)


def test_relaxation(roundtrip):
    """Relaxation through the bench (issue 4): every relaxation parameter inside its 95 % CI.

    The procedures time each read from the cell's own last pulse (program-verify records the
    clock at each batched pulse command) and write ``g0_time_s``, so t0 (5 ms default, 1 ms
    techb) is recovered from the store as from exact chip tables (test_fit_chip.py). The
    model BIC selects need not be the physics' form: on this reduced campaign it picks a
    linear drift for the default profile (12 levels: the tanh's curvature costs more BIC than
    it explains, dBIC ~3) and a linear variance rate for techb (9 levels over 2-25 uS do not
    resolve the peak, dBIC ~3). So (1) the selected model's t0 covers the truth and its
    variance law is within 15 % of the physics at every measured level for t >= 100 s (a
    function check that holds whatever form BIC picks), its drift within its band
    + 0.05 uS/decade; (2) the physics' forms (peaked rate, tanh drift) fitted to the same
    store cover every true parameter (t0, k_peak, g_peak, shape_a, m_max, g_center = the
    physics' g_attr, g_width) with their 95 % CIs."""
    from cimlab.models.fit.relaxation import fit_relaxation
    from cimlab.models.fit.store import _relevel, _with_pulse_offset

    rep, dm = roundtrip["rep"], roundtrip["dm"]
    r, p = dm.relaxation, roundtrip["truth"]["profile"].relaxation
    _covers(r, "t0_s", p.tau_s, "selected model: ")
    gr = rep.relaxation.groups
    per = gr.groupby("level").agg(g=("g_level_siemens", "first"), n=("tkey", "size"))
    g_all = per.loc[per["n"] >= 5, "g"].to_numpy()
    t = np.array([100.0, 1e3, 1e4, 1e5])
    G, T = np.meshgrid(g_all, t)
    fit = np.asarray(r.variance(G, T))
    truth = p.var_rate(G) * p.log_time(T)
    rel = fit / truth - 1
    assert np.all(np.abs(rel) < 0.15), np.round(rel, 3)
    _, _, ci = band(r, "drift", g_all)
    truth_d = p.mean_rate(g_all)
    assert np.all(truth_d >= ci[:, 0] - 0.05e-6) and np.all(truth_d <= ci[:, 1] + 0.05e-6)
    # the physics' forms on the same data
    ts = rep.tables
    reads = _relevel(_with_pulse_offset(ts.get("relaxation", "reads"),
                                        ts.get("relaxation", "programmed")))
    phys = fit_relaxation(reads, dm.window.g_max, retention=dm.retention,
                          read_noise=dm.read_noise, forms=("peaked",),
                          mean_forms=("tanh",)).effect
    truth_p = {"t0_s": p.tau_s, "k_peak": p.b_peak, "g_peak": p.g_peak,
               "shape_a": p.shape_a, "m_max": p.m_max, "g_center": p.g_attr,
               "g_width": p.g_width}
    print(f"\n{roundtrip['profile']}: selected {r.form}/{r.mean_form}, t0 {r.t0_s:.4g} s "
          f"CI {r.fit.ci95['t0_s']}; physics forms:")
    for name, true in truth_p.items():
        print(f"  {name:9s} {getattr(phys, name):.4g} CI [{phys.fit.ci95[name][0]:.4g}, "
              f"{phys.fit.ci95[name][1]:.4g}] truth {true:.4g}")
    for name, true in truth_p.items():
        _covers(phys, name, true, "physics forms: ")


def test_retention(roundtrip):
    ret, p = roundtrip["dm"].retention, roundtrip["truth"]["profile"]
    _covers(ret, "ea_ev", p.retention.ea_ev)
    tau0 = p.relaxation.tau_s * math.exp(-p.retention.ea_ev / (K_B_EV * ret.t_ref_k))
    _covers(ret, "tau0_s", tau0)


def test_stuck(roundtrip):
    s, p = roundtrip["dm"].stuck, roundtrip["truth"]["profile"].faults
    _covers(s, "p_stuck_on", p.p_stuck * (1 - p.frac_off))
    _covers(s, "p_stuck_off", p.p_stuck * p.frac_off)


def test_programming_error(roundtrip):
    """Programming sigma is the spread ``time_s`` (ms) after programming (relaxation up to the
    read included, read noise removed; see cimlab.models.fit.programming). Checked two ways:
    (1) it reproduces the measured spread per level (with the read noise added back) within
    30 % (techb: 55 %: its single-shot spread per level follows the slope of the gate curve
    and is not a smooth function of g; the smooth forms cannot follow it, and the fit's
    chi2_red says so; a tabulated per-level form is future work); (2) default profile only:
    it lies within 25 % of the truth at the read: the true conductance right after each
    cell's last pulse (chip state) spread per level, plus the physics' relaxation variance up
    to the read time (stated tolerance: the physics has no sigma(g) formula, and read times
    are known to a few ms). techb relaxes with t0 = 1 ms, so its spread at the read is mostly
    ms-scale relaxation and (2) is not applied."""
    rep, tr, dm = roundtrip["rep"], roundtrip["truth"], roundtrip["dm"]
    df_all = rep.tables.get("programming_error", "programmed")
    df = df_all[tr["faults"][df_all["cell"].to_numpy()] == 0]
    for p in (dm.programming, *dm.programming_other):
        sub = df[df["mode"].astype(str) == p.mode]
        # per-level spread of the fitted data, 10-MAD trimmed as the fitter does
        mom = group_moments(
            df_all[df_all["mode"].astype(str) == p.mode], ["target_siemens"], "g_siemens"
        )
        per = pd.Series(np.sqrt(mom["var"].to_numpy()), index=mom["target_siemens"].to_numpy())
        x = per.index.to_numpy()
        fit = np.sqrt(np.asarray(p.sigma(x)) ** 2 + np.asarray(dm.read_noise.sigma(x)) ** 2)
        rel = fit / per.to_numpy() - 1
        tol = 0.55 if roundtrip["profile"] == "techb" else 0.30
        assert np.all(np.abs(rel) < tol), (p.mode, np.c_[x * 1e6, per * 1e6, fit * 1e6])
        if roundtrip["profile"] == "default":
            err = tr["g_prog"][sub["cell"].to_numpy()] - sub["target_siemens"].to_numpy()
            g = sub.assign(err=err).groupby("target_siemens")
            true0 = g["err"].std().reindex(x).to_numpy()
            t_read = g["time_s"].median().reindex(x).to_numpy()
            relax = tr["profile"].relaxation
            true = np.sqrt(true0**2 + relax.var_rate(x) * relax.log_time(t_read))
            rel = np.asarray(p.sigma(x)) / true - 1
            assert np.all(np.abs(rel) < 0.25), (p.mode, np.c_[x * 1e6, true * 1e6,
                                                              np.asarray(p.sigma(x)) * 1e6])


def test_binary_conditions(roundtrip):
    """LRS/HRS lognormals against the physics' distributions after a full SET / RESET (read
    noise included). The physics' states are not exactly lognormal (a Gauss-Hermite mixture
    over the transistor threshold mismatch; a 100 ns pulse does not always switch fully), so
    the stated tolerances are: medians within 10 % (techb HRS: 40 %, its RESET is partial:
    the measured median of ln g is ~1.3x the full-RESET truth; the old exp(mean ln g) sat
    lower only because of the long low tail), log-widths within 25 % (techb: 60 %). The
    log-width is the facing tail's (the one that decides bit errors), so the BER the fitted
    lognormals predict must be within a factor 2.5 of the physics' BER for the strong and
    weak conditions (before: 5.7x for strong, from the two-sided width). The raw BER
    includes stuck cells (1 % / 3 % of the bits read wrong half the time), so it must be at
    least a third of the stuck fraction the fault map found; the model's BER (working cells)
    is below it."""
    dm = roundtrip["dm"]
    prof = roundtrip["truth"]["profile"]
    techb = roundtrip["profile"] == "techb"
    assert {c.name for c in dm.binary.conditions} == {c.name for c in prof.conditions}
    stuck = dm.stuck.p_stuck_on + dm.stuck.p_stuck_off
    for c in dm.binary.conditions:
        lrs, hrs = roundtrip["truth"]["binary"][c.name]
        for key, d in (("lrs", lrs), ("hrs", hrs)):
            med_tol = 0.4 if (techb and key == "hrs") else 0.10
            sig_tol = 0.6 if techb else 0.25
            med = getattr(c, f"{key}_median_siemens")
            assert abs(med / d.median_siemens - 1) < med_tol, (c.name, key, med, d.median_siemens)
            sig = getattr(c, f"{key}_sigma_ln")
            assert abs(sig / d.sigma - 1) < sig_tol, (c.name, key, sig, d.sigma)
        if c.name in ("strong", "weak"):
            from cimlab.physics import binary as phys_binary

            true_ber = phys_binary.ber(prof, c.name, "1T1R")
            ratio = c.fit.gof["ber_1t1r_model"] / true_ber
            assert 1 / 2.5 < ratio < 2.5, (c.name, c.fit.gof["ber_1t1r_model"], true_ber)
        # the model's BER is over working cells (stuck cells are the stuck effect); the raw
        # BER (stuck cells read wrong half the time) stays in the fit's gof
        assert c.fit.gof["ber_1t1r_raw"] >= stuck / 3
        assert c.ber_1t1r <= c.fit.gof["ber_1t1r_raw"]
        assert c.fit.gof["stuck_cells_excluded"] > 0
        assert c.fit.ci95["ber_1t1r"][0] <= c.ber_1t1r <= c.fit.ci95["ber_1t1r"][1]

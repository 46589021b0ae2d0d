"""Chip-to-chip variation: the random-effects estimators against a known truth (synthetic
per-chip fits, fixed seed, 95 % intervals), chip sampling for the simulator, and the whole path
from stores of emulated chips (same profile: no chip-to-chip spread; two technologies: a
resolved spread)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from cimlab.errors import ConfigError
from cimlab.models import DeviceModel
from cimlab.models.chip_variation import (
    common_sigma_forms,
    fit_chip_variation,
    parameter_variation,
    variation_from_models,
)
from cimlab.models.params import FitInfo
from cimlab.procedures.many_chips import run_plan_on_chips
from cimlab.stats import sigma_interval

ROOT = Path(__file__).resolve().parents[2]


def _chips(rng, k, mu, tau, se):
    """Per-chip fitted read-noise models: s1_k = mu + N(0, tau) + N(0, se)."""
    base = DeviceModel.default()
    out = []
    for v in mu + tau * rng.standard_normal(k) + se * rng.standard_normal(k):
        fit = FitInfo(method="synthetic", n=1000, stderr={"s1": se})
        rn = dataclasses.replace(base.read_noise, s1=float(v), fit=fit)
        out.append(dataclasses.replace(base, read_noise=rn))
    return out


def _with_form(base, form, bics, valid=()):
    """``base`` with a read-noise fit of ``form`` and candidate BICs ``{form: bic}``."""
    cands = {k: {"bic": b, "k": 2.0, **({"valid": 0.0} if k in valid else {})}
             for k, b in bics.items()}
    fit = FitInfo(method="synthetic", n=100, form=form, candidates=cands)
    rn = dataclasses.replace(base.read_noise, fit=fit, form=form,
                             s2=0.0, **({"s0": 0.0} if form == "proportional" else {}))
    return dataclasses.replace(base, read_noise=rn)


def test_common_sigma_form_is_the_one_the_chips_prefer_together():
    base = DeviceModel.default()
    a = _with_form(base, "linear", {"linear": 10.0, "quadrature": 10.5, "constant": 40.0})
    b = _with_form(base, "quadrature", {"linear": 12.0, "quadrature": 11.0, "constant": 9.0},
                   valid=("constant",))
    # summed BIC: linear 22.0, quadrature 21.5; constant is invalid on chip b
    assert common_sigma_forms([a, b]) == {"read_noise": "quadrature"}
    assert common_sigma_forms([a, a]) == {}  # forms agree: nothing to refit
    assert common_sigma_forms([a, base]) == {}  # not fitted on every chip


def test_random_effects_estimators_cover_the_truth():
    rng = np.random.default_rng(2026)
    mu, tau, se, k = 3.4e-7, 3e-8, 1e-8, 60
    cv = variation_from_models(_chips(rng, k, mu, tau, se), [f"c{i}" for i in range(k)])
    p = cv.get("read_noise", "s1")
    assert p.n_chips == k and p.unit == "S" and p.se_within == pytest.approx(se)
    assert p.mean_ci95[0] <= mu <= p.mean_ci95[1]
    assert p.sd_between_ci95[0] <= tau <= p.sd_between_ci95[1]
    assert p.sd_between_ci95[0] > 0  # resolved with 60 chips
    # observed spread = chip-to-chip + estimation noise, in quadrature
    assert p.sd_between == pytest.approx(np.sqrt(p.sd_observed**2 - se**2))
    lo, hi = sigma_interval(np.hypot(tau, se), k)
    assert lo <= p.sd_observed <= hi
    # no chip-to-chip spread: the interval reaches 0
    q = variation_from_models(_chips(rng, k, mu, 0.0, se), ["c"] * k).get("read_noise", "s1")
    assert q.sd_between_ci95[0] == 0.0 and q.sd_between < 0.5 * se
    with pytest.raises(ConfigError, match="stores"):
        parameter_variation("e", "x", "S", [1.0], [0.1])


def test_sample_chip_draws_the_fitted_spread_within_bounds():
    rng = np.random.default_rng(5)
    mu, tau = 3.4e-7, 3e-8
    cv = variation_from_models(_chips(rng, 30, mu, tau, 1e-9), ["c"] * 30)
    p = cv.get("read_noise", "s1")
    base = DeviceModel.default()
    draws = np.array([cv.sample_chip(base, rng).read_noise.s1 for _ in range(2000)])
    lo, hi = sigma_interval(draws.std(ddof=1), draws.size)
    assert lo <= p.sd_between <= hi
    assert abs(draws.mean() - p.mean) < 4 * p.sd_between / np.sqrt(draws.size)
    # parameters without a fitted spread keep the base model's values
    chip = cv.sample_chip(base, rng)
    assert chip.programming == base.programming and chip.read_noise.s0 == base.read_noise.s0
    with pytest.raises(TypeError):
        cv.sample_chip(base, 0)


PLAN = """\
[plan]
name = "cv"
seed = 11

[[experiment]]
kind = "read_fluctuation"
cells = { start = 0, count = 512 }
repeats = 20
settle_s = 3600.0
smu_cells = 0
"""


def test_stores_of_emulated_chips(tmp_path):
    plan = tmp_path / "cv.toml"
    plan.write_text(PLAN)
    station = ROOT / "instruments" / "emulated.toml"
    same = run_plan_on_chips(plan, station, tmp_path / "a", 3, seed=1, wafer="WA")
    cv = fit_chip_variation([c.store_path for c in same])
    assert cv.chips == ("WA-D000", "WA-D001", "WA-D002")
    rn = [p for p in cv.parameters if p.effect == "read_noise"]
    assert rn, cv.table()
    # one profile, one technology: no chip-to-chip spread beyond the cells' sampling
    assert all(p.sd_between_ci95[0] == 0.0 for p in rn), cv.table()
    # two technologies (default: 4-1 % read noise; techb: noisier): a resolved spread
    techb = tmp_path / "techb.toml"
    techb.write_text(station.read_text().replace('profile = "default"', 'profile = "techb"')
                     .replace("k_a_per_v2 = 2e-4", "k_a_per_v2 = 1.2e-4")
                     .replace("v_th_v = 0.5", "v_th_v = 0.45"))  # techb's transistor
    other = run_plan_on_chips(plan, techb, tmp_path / "b", 2, seed=2, wafer="WB")
    mixed = fit_chip_variation([same[0].store_path, same[1].store_path]
                               + [c.store_path for c in other])
    assert any(p.sd_between_ci95[0] > 0 for p in mixed.parameters
               if p.effect == "read_noise"), mixed.table()
    assert "WB-D001" in mixed.table()


def test_cli_fit_chips(tmp_path, capsys):
    import json

    from cimlab.cli.main import main

    plan = tmp_path / "cv.toml"
    plan.write_text(PLAN)
    chips = run_plan_on_chips(plan, ROOT / "instruments" / "emulated.toml", tmp_path / "c", 2,
                              seed=1, wafer="WC")
    out = tmp_path / "var.json"
    assert main(["fit-chips", *[c.store_path for c in chips], "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "2 chips: WC-D000, WC-D001" in text and "read_noise." in text
    data = json.loads(out.read_text())
    assert data["chips"] == ["WC-D000", "WC-D001"] and data["parameters"]
    assert main(["fit-chips", *[c.store_path for c in chips], "--json", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out) == data  # stdout: the one JSON object
    assert main(["fit-chips", chips[0].store_path]) != 0  # one chip: a clear error

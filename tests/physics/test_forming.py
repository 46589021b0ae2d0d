"""The opt-in pristine (unformed) state: off by default (states and draws as before), cells
unformed until a SET-polarity bias above their forming voltage, the forming-voltage
distribution and never-forming fraction against the profile, state round trips."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from cimlab.errors import ConfigError
from cimlab.physics import ReRAMChip, load_profile
from cimlab.physics import faults as fc

from .conftest import ALPHA, small_profile

SET_GATE = 1.5  # V: 100 uA compliance


def _pristine(n_tiles: int = 2) -> ReRAMChip:
    return ReRAMChip(small_profile(n_tiles, base=load_profile("pristine")), seed=4)


def test_default_chip_has_no_forming_state_and_draws_as_before():
    chip = ReRAMChip(small_profile(1), seed=3)
    st = chip.state_dict()
    assert not [k for k in st if k.startswith("forming.")]
    assert np.all(np.isnan(chip.truth.forming_voltage())) and not chip.truth.unformed().any()
    # a state written before the option existed (no 'forming' in its profile) loads as is
    prof = json.loads(st["profile"])
    del prof["forming"]
    old = dict(st, profile=json.dumps(prof))
    again = ReRAMChip.from_state(old)
    cells = np.arange(0, 2000, 7)
    assert np.array_equal(again.read(cells, 1.0), chip.read(cells, 1.0))


def test_pristine_cells_switch_only_above_their_forming_voltage():
    chip = _pristine()
    t = chip.truth
    p = chip.profile
    vf = t.forming_voltage()
    cells = np.flatnonzero(t.unformed())[:400]
    g0 = t.conductance(cells)
    assert np.all(g0 < 0.1e-6)  # pristine: tens of nS
    # SET and RESET pulses at the usual voltages (below V_form) do nothing
    chip.pulse(cells, "set", 1.8, SET_GATE, 1e-6, 1e-3)
    chip.pulse(cells, "reset", 3.0, 3.0, 1e-6, 2e-3)
    assert np.array_equal(t.conductance(cells), g0) and t.unformed(cells).all()
    # a pulse at 2.6 V forms exactly the cells whose V_form lies below it
    chip.pulse(cells, "set", 2.6, SET_GATE, 1e-6, 3e-3)
    below = vf[cells] < 2.6
    assert np.array_equal(~t.unformed(cells), below)
    g = t.conductance(cells)
    ceiling = p.transistor.icc(SET_GATE, t.d2d["transistor_dv_th"][cells]) / p.set.v_c
    assert np.all(np.abs(np.log(g[below] / ceiling[below])) < 0.5)
    assert np.array_equal(g[~below], g0[~below])
    # formed cells are ordinary cells: a RESET lowers them
    chip.pulse(cells[below], "reset", 2.5, 3.0, 1e-6, 4e-3)
    assert np.all(t.conductance(cells[below]) < 0.5 * g[below])


def test_forming_voltages_and_never_forming_fraction_follow_the_profile():
    chip = _pristine(4)
    f = chip.profile.forming
    vf = chip.truth.forming_voltage()
    codes = chip.truth.fault_codes()
    ok = np.isfinite(vf)
    n = ok.sum()
    # mean and std of N(v_form, v_form_sigma^2) within their 1 - ALPHA intervals
    z = stats.norm.ppf(1 - ALPHA / 2)
    assert abs(vf[ok].mean() - f.v_form) < z * f.v_form_sigma / np.sqrt(n)
    assert abs(vf[ok].std(ddof=1) / f.v_form_sigma - 1) < z * np.sqrt(0.5 / n)
    never = np.isposinf(vf)
    assert np.all(codes[never] == fc.STUCK_OFF) and np.all(codes[ok] == fc.OK)
    # never forming: p_never of the manufacture-good cells plus the stuck-off ones
    q = chip.profile.faults
    p_never = q.p_stuck * q.frac_off + (1 - q.p_stuck) * f.p_never
    lo, hi = stats.binom.interval(1 - ALPHA, vf.size, p_never)
    assert lo <= never.sum() <= hi


def test_pristine_state_round_trip_and_bad_forming_state(tmp_path):
    chip = _pristine(1)
    cells = np.flatnonzero(chip.truth.unformed())[:50]
    chip.pulse(cells, "set", 2.6, SET_GATE, 1e-6, 1e-3)
    path = chip.save(tmp_path / "c.npz")
    back = ReRAMChip.load(path)
    assert np.array_equal(back.truth.unformed(), chip.truth.unformed())
    assert np.array_equal(back.truth.forming_voltage(), chip.truth.forming_voltage(),
                          equal_nan=True)
    args = (cells, "set", 3.4, SET_GATE, 1e-6, 2e-3)
    assert np.array_equal(back.pulse(*args), chip.pulse(*args))
    assert np.array_equal(back.read(cells, 3e-3), chip.read(cells, 3e-3))
    st = chip.state_dict()
    del st["forming.unformed"]
    with pytest.raises(ConfigError, match=r"forming\.unformed"):
        ReRAMChip.from_state(st)
    st = chip.state_dict()
    st["forming.unformed"] = np.ones_like(st["forming.unformed"])
    with pytest.raises(ConfigError, match=r"forming\.unformed"):
        ReRAMChip.from_state(st)

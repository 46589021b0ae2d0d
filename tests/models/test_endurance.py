"""Endurance fit against the physics' truth (``chip.truth.endurance_median``).

Cycling tables from cimlab.physics.ReRAMChip (tests/models/chipdata.py: 256 fresh cells per
condition of paper 003, window read at 14 cycles up to 400). Very strong (true median ~100
cycles) must be estimated with a 95 % CI that covers the truth; strong (3e4) and weak (3e6)
must come out as lower bounds below the truth, not as failures of healthy cells.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from cimlab.models.fit.binary import (
    ENDURANCE_CONSECUTIVE_READS,
    endurance_estimate,
    failure_intervals,
    fit_binary,
)
from cimlab.models.report import _effect_lines
from tests.models.chipdata import endurance_table


@pytest.fixture(scope="module")
def table():
    return endurance_table()


def test_very_strong_median_covered(table):
    cy, chip = table
    est = endurance_estimate(cy[cy["condition"] == "very_strong"])
    truth = chip.truth.endurance_median("very_strong")
    assert not est["censored"]
    assert est["ci_lo"] <= truth <= est["ci_hi"], (est, truth)
    # a real interval: a few percent wide with ~250 cells, not zero width
    assert 0.03 < math.log(est["ci_hi"] / est["ci_lo"]) < 0.5


@pytest.mark.parametrize("cond", ["strong", "weak"])
def test_long_endurance_is_a_lower_bound(table, cond):
    cy, chip = table
    sub = cy[cy["condition"] == cond]
    est = endurance_estimate(sub)
    assert est["censored"] == 1.0
    assert est["n_failed"] < 5  # the old single-read ratio rule "failed" 213 of 256 weak cells
    assert est["median"] == sub["cycle"].max() + 1  # survived every measured cycle
    assert est["median"] < chip.truth.endurance_median(cond)


def test_single_low_read_is_not_a_failure():
    # one cell with a closed window at one read only, one frozen from cycle 50 on
    cyc = np.array([0, 9, 49, 99, 199])
    ok = pd.DataFrame({"cell": 0, "cycle": cyc, "g_lrs_siemens": 40e-6,
                       "g_hrs_siemens": [10e-6, 39e-6, 10e-6, 10e-6, 10e-6]})
    worn = pd.DataFrame({"cell": 1, "cycle": cyc, "g_lrs_siemens": 40e-6,
                         "g_hrs_siemens": [10e-6, 10e-6, 40e-6, 40e-6, 40e-6]})
    iv = failure_intervals(pd.concat([ok, worn]), k=ENDURANCE_CONSECUTIVE_READS)
    iv = iv.set_index("cell")
    assert math.isinf(iv.loc[0, "hi"]) and iv.loc[0, "lo"] == 200
    assert (iv.loc[1, "lo"], iv.loc[1, "hi"]) == (10, 50)


def test_fit_binary_reports_lower_bound_and_ci(table):
    cy, chip = table
    # a small BER table beside the cycling one (the states' fit is not what is tested here)
    rng = np.random.default_rng(0)
    n = 200
    bit = np.arange(n) % 2
    g = np.where(bit == 0, 100e-6, 2e-6) * np.exp(0.1 * rng.standard_normal(n))
    bits = pd.concat([pd.DataFrame({"condition": c.name, "structure": "1T1R", "cycle": 0,
                                    "cell": np.arange(n) + 1000 * i, "bit": bit,
                                    "read_bit": bit, "g_siemens": g})
                      for i, c in enumerate(chip.profile.conditions)], ignore_index=True)
    bs = fit_binary(bits, None, cycles=cy)
    by = {c.name: c for c in bs.conditions}
    vs = by["very_strong"]
    lo, hi = vs.fit.ci95["endurance_cycles"]
    assert lo <= chip.truth.endurance_median("very_strong") <= hi
    for name in ("strong", "weak"):
        c = by[name]
        assert c.fit.gof["endurance_cycles_lower_bound"] == 1
        assert "endurance_cycles" not in c.fit.ci95
        assert "> 400 cycles (lower bound: no failures" in c.fit.notes or \
            "> 400 cycles (lower bound: only" in c.fit.notes
        assert "> 400 (lower bound" in "\n".join(_effect_lines(name, c))

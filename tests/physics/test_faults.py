"""Manufacturing stuck-at faults (paper 004): 1% stuck, 16.2% off / 83.8% on."""

import numpy as np

from cimlab.physics import ReRAMChip
from tests.physics.conftest import binom_ci, small_profile


def test_stuck_fractions():
    chip = ReRAMChip(small_profile(32), seed=9)
    f = chip.profile.faults
    mask = chip.truth.stuck_mask()
    n = mask.size
    n_stuck = int((mask != 0).sum())
    lo, hi = binom_ci(n, f.p_stuck)
    assert lo <= n_stuck <= hi
    lo, hi = binom_ci(n_stuck, f.frac_off)
    assert lo <= int((mask == -1).sum()) <= hi


def test_stuck_cells_ignore_pulses_and_are_found_by_a_fault_map(ticker):
    chip = ReRAMChip(small_profile(2), seed=10)
    p = chip.profile
    mask = chip.truth.stuck_mask()
    cells = np.arange(chip.n_cells)
    before = chip.truth.programmed(cells[mask != 0])
    chip.pulse(cells, "set", 2.0, p.transistor.v_gate_for_icc(20e-6), 1e-6, ticker())
    g_set = chip.read(cells, ticker())
    chip.pulse(cells, "reset", 3.0, 3.0, 1e-6, ticker())
    g_reset = chip.read(cells, ticker())
    assert np.array_equal(chip.truth.programmed(cells[mask != 0]), before)
    # a simple fault map: cells that do not switch between SET and RESET, classified by level
    switched = g_set - g_reset > 5e-6
    found = np.where(switched, 0, np.where(g_set > 20e-6, 1, -1))
    agree = (found == mask).mean()
    assert agree > 0.999
    assert np.all(found[mask != 0] == mask[mask != 0])

"""Binary programming conditions (paper 003 Table I): BER, energy, distributions."""

import numpy as np
import pytest

from cimlab.physics import ReRAMChip
from tests.physics.conftest import binom_ci, small_profile


def _program_bits(chip, cond, now):
    """Half the healthy cells LRS (deep RESET, then the condition's SET), half HRS (deep RESET,
    the condition's SET, then its RESET), as truth.ber assumes (a weak RESET can fail and leave
    a cell above the next SET's ceiling, so the history is fixed first).
    Returns (g_lrs, g_hrs, e_set, e_reset)."""
    p = chip.profile
    c = p.condition(cond)
    vg = p.transistor.v_gate_for_icc(c.icc_a)
    ok = np.flatnonzero(chip.truth.stuck_mask() == 0)
    lrs, hrs = ok[::2], ok[1::2]
    chip.pulse(lrs, "reset", p.reset.v_ref, 3.0, c.width_s, now)
    e_set = chip.pulse(lrs, "set", c.v_set, vg, c.width_s, now)
    chip.pulse(hrs, "reset", p.reset.v_ref, 3.0, c.width_s, now)
    chip.pulse(hrs, "set", c.v_set, vg, c.width_s, now)
    e_reset = chip.pulse(hrs, "reset", c.v_reset, vg, c.width_s, now)
    return chip.read(lrs, now), chip.read(hrs, now), e_set, e_reset


@pytest.fixture(scope="module")
def big_chip():
    return ReRAMChip(small_profile(32), seed=77)


@pytest.mark.parametrize("cond", ["weak", "strong", "very_strong"])
def test_ber_1t1r_matches_truth_and_paper(big_chip, cond):
    chip = big_chip
    now = chip.time_s + 1e-6
    g_l, g_h, _, _ = _program_bits(chip, cond, now)
    truth = chip.truth.ber(cond, "1T1R")
    ref = chip.truth.ber_reference(cond)
    n_l, n_h = g_l.size, g_h.size
    err_l, err_h = int((g_l < ref).sum()), int((g_h > ref).sum())
    # each half is binomial with its own probability; compare the total with both CIs
    lrs, hrs = chip.truth.lrs_distribution(cond), chip.truth.hrs_distribution(cond)
    from cimlab.physics import binary

    lrs_r, hrs_r = binary.distributions(chip.profile, cond, include_read_noise=True)
    lo_l, hi_l = binom_ci(n_l, lrs_r.cdf(ref))
    lo_h, hi_h = binom_ci(n_h, 1 - hrs_r.cdf(ref))
    assert lo_l <= err_l <= hi_l
    assert lo_h <= err_h <= hi_h
    assert truth == pytest.approx(0.5 * (lrs_r.cdf(ref) + 1 - hrs_r.cdf(ref)))
    paper = chip.profile.condition(cond).ber_paper
    if cond == "very_strong":
        assert truth < paper
    else:
        assert truth == pytest.approx(paper, rel=0.02)
    assert lrs.median_siemens > hrs.median_siemens


def test_ber_2t2r_weak(big_chip):
    chip = big_chip
    now = chip.time_s + 1e-6
    g_l, g_h, _, _ = _program_bits(chip, "weak", now)
    n = min(g_l.size, g_h.size)
    errors = int((g_l[:n] < g_h[:n]).sum())
    lo, hi = binom_ci(n, chip.truth.ber("weak", "2T2R"))
    assert lo <= errors <= hi


@pytest.mark.parametrize(
    ("cond", "e_set_pj", "e_reset_pj"),
    [("very_strong", 120.0, 150.0), ("strong", 11.0, 13.75), ("weak", 4.0, 3.0)],
)
def test_energy_per_condition(cond, e_set_pj, e_reset_pj):
    chip = ReRAMChip(small_profile(1), seed=3)
    ok = np.flatnonzero(chip.truth.stuck_mask() == 0)
    _, _, e_set, e_reset = _program_bits(chip, cond, 1e-6)
    # V I t at the compliance current (paper 003 Table I: 120/150, 11/14, 4/5 pJ)
    assert np.median(e_set) * 1e12 == pytest.approx(e_set_pj, rel=0.02)
    assert np.median(e_reset) * 1e12 == pytest.approx(e_reset_pj, rel=0.02)
    assert ok.size > 0


def test_endurance_medians_follow_table():
    chip = ReRAMChip(small_profile(1), seed=3)
    t = chip.truth
    assert 50 <= t.endurance_median("very_strong") <= 200
    assert t.endurance_median("strong") > 1e4
    assert t.endurance_median("weak") > 1e6


def test_very_strong_wear_out_fraction():
    """Cycle the very strong condition; the fraction failed after N cycles follows the
    per-cell lognormal damage limit (median 1): P(limit < N d)."""
    from scipy import stats

    chip = ReRAMChip(small_profile(1), seed=5)
    p = chip.profile
    c = p.condition("very_strong")
    vg = p.transistor.v_gate_for_icc(c.icc_a)
    ok = np.flatnonzero(chip.truth.fault_codes() == 0)
    now = 0.0
    n_cycles = 100
    for _ in range(n_cycles):
        now += 1e-6
        chip.pulse(ok, "set", c.v_set, vg, c.width_s, now)
        now += 1e-6
        chip.pulse(ok, "reset", c.v_reset, vg, c.width_s, now)
    worn = chip.truth.fault_codes()[ok] == 2
    d = p.endurance.damage_per_cycle(c.icc_a, c.v_reset)
    p_fail = stats.norm.cdf(np.log(n_cycles * d) / p.endurance.limit_sigma)
    lo, hi = binom_ci(ok.size, p_fail, alpha=1e-3)
    # damage accrues in whole pulses, so allow one cycle of slack on each side
    lo2, _ = binom_ci(ok.size, stats.norm.cdf(np.log((n_cycles - 1) * d)
                                              / p.endurance.limit_sigma), alpha=1e-3)
    assert min(lo, lo2) <= worn.sum() <= hi
    # worn cells ignore pulses
    cells = ok[worn][:100]
    before = chip.truth.programmed(cells)
    chip.pulse(cells, "reset", c.v_reset, 3.0, c.width_s, now + 1e-6)
    assert np.array_equal(chip.truth.programmed(cells), before)
    assert np.all(chip.truth.cycles()[ok[~worn]] == n_cycles)
    # and stay frozen: no relaxation after failure
    g1 = chip.truth.conductance(cells, now + 1.0)
    g2 = chip.truth.conductance(cells, now + 1e4)
    assert np.array_equal(g1, g2) and np.array_equal(g1, chip.truth.programmed(cells))

"""Relaxation form chosen by held-out validation (k-fold over cells), against the physics."""

import pytest

from cimlab.models.fit import fit_read_noise
from cimlab.models.fit.model_choice import choose_relaxation_form
from tests.models.chipdata import chip_tables


def test_cv_prefers_a_level_dependent_law_and_reports_scores():
    d = chip_tables("default", seed=3, n_per_level=150)
    g_ref = d["profile"].window.g_max
    rn = fit_read_noise(d["reads"], g_ref)
    ch = choose_relaxation_form(d["relax"], g_ref, read_noise=rn,
                                forms=("constant", "peaked", "table"))
    assert ch.folds == 5 and set(ch.scores) == {"constant", "peaked", "table"}
    assert ch.scores[ch.form] == min(ch.scores.values())
    # the physics' rate is peaked in g: a constant rate predicts held-out cells worse
    assert ch.scores["peaked"] < ch.scores["constant"]
    assert ch.form != "constant"
    assert 0.0 <= ch.within[ch.form] <= 1.0


def test_cv_needs_enough_cells():
    d = chip_tables("default", seed=3, n_per_level=150)
    few = d["relax"][d["relax"]["cell"] < 20]
    with pytest.raises(ValueError, match="too few"):
        choose_relaxation_form(few, d["profile"].window.g_max)

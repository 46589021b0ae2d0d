"""BER measured by the bench's BER campaign (emulated bench), beside paper 003's Table I."""

from __future__ import annotations

import pytest

from cimlab.mitigation.bench_ber import SOURCE_LABEL, measure_ber


@pytest.fixture(scope="module")
def measured():
    return measure_ber(bits=2048, seed=4)


def test_one_row_per_condition_and_structure_with_the_paper_value(measured):
    assert len(measured) == 6
    assert set(measured["structure"]) == {"1T1R", "2T2R"}
    assert (measured["bits"] == 2048).all()
    assert (measured["source"] == SOURCE_LABEL).all()
    m = measured.set_index(["condition", "structure"])
    assert m.loc[("weak", "1T1R"), "paper_ber"] == pytest.approx(3.3e-2)
    assert m.loc[("strong", "2T2R"), "paper_ber"] != m.loc[("strong", "2T2R"), "paper_ber"]


def test_measured_counts_and_intervals(measured):
    # the BER is a count of read-back errors, with a Clopper-Pearson interval around it
    assert (measured["errors"] <= measured["bits"]).all()
    assert (measured["ber"] == measured["errors"] / measured["bits"]).all()
    assert (measured["ber_lo"] <= measured["ber"]).all()
    assert (measured["ber"] <= measured["ber_hi"]).all()
    m = measured.set_index(["condition", "structure"])["ber_working"]
    # weak programming is the error-prone one on the emulator calibrated to Table I:
    # 3.3e-2 expected, ~68 errors in 2048 bits (+-25 % at 2 sigma); a factor 2 either way
    assert 3.3e-2 / 2 < m[("weak", "1T1R")] < 3.3e-2 * 2
    assert m[("weak", "1T1R")] > m[("strong", "1T1R")]
    assert m[("weak", "2T2R")] < m[("weak", "1T1R")]

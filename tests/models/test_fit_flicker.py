"""1/f read noise in the relaxation and bake fits, on the emulated techa chip through the
real bench (its reads carry the 1/f noise calibrated on the techA series).

Two reads a bake apart differ by the slow 1/f noise between them as well as by relaxation,
by the same amount at every temperature. Taken for relaxation, it flattens the Arrhenius
line: on this plan Ea came out 0.45-0.54 eV for a true 1.1 eV (10 seeds, 0 intervals
covering). With the spectrum measured by a ``read_noise_series`` run, the fits add that
variance to the reads' own (``ReadNoiseSpectrum.flicker_pair_variance``).
"""

from __future__ import annotations

import dataclasses
import math

import pytest

from cimlab.instruments.station import Station
from cimlab.models.fit import fit_tables
from cimlab.models.fit.store import collect
from cimlab.procedures.campaign import run_plan
from cimlab.procedures.plan import plan_from_mapping
from cimlab.store import Store
from tests.models.test_roundtrip import _plan, _station_file


@pytest.fixture(scope="module")
def techa_tables(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("techa_flicker")
    doc = _plan("techa")
    assert doc["experiment"][0]["kind"] == "read_noise_series"  # the plan measures it
    doc["plan"]["seed"] = 0
    with Station.open(_station_file(tmp, "techa", seed=100)) as st:
        run_plan(plan_from_mapping(doc, source="techa"), st, tmp / "s.h5", progress=False)
        truth = st.bench.chip.profile
    with Store.open(tmp / "s.h5", "r") as s:
        ts = collect(s)
    return ts, truth


@pytest.mark.slow
def test_ea_with_the_measured_spectrum_covers_the_truth_and_without_it_does_not(techa_tables):
    ts, truth = techa_tables
    ea = truth.retention.ea_ev
    with_series = fit_tables(ts).model
    assert with_series.read_noise_spectrum.a_peak > 0.0
    lo, hi = with_series.retention.fit.ci95["ea_ev"]
    assert lo <= ea <= hi, (lo, with_series.retention.ea_ev, hi)
    assert "1/f read noise" in with_series.retention.fit.notes
    assert "1/f read noise" in with_series.relaxation.fit.notes
    assert "less the spectrum's 1/f" in with_series.relaxation.fit.notes
    assert "flicker_scale" in with_series.relaxation.fit.gof
    without = dataclasses.replace(
        ts, tables={k: v for k, v in ts.tables.items() if k != "read_noise_series"})
    blind = fit_tables(without).model
    assert blind.read_noise_spectrum.a_peak == 0.0
    lo_b, hi_b = blind.retention.fit.ci95["ea_ev"]
    assert hi_b < ea, (lo_b, blind.retention.ea_ev, hi_b)  # the bias the spectrum removes
    assert math.isfinite(blind.retention.ea_ev)

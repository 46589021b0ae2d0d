"""The read-noise time series experiment on the emulated techa chip (white + 1/f read noise
calibrated on the techA data): the samples table has the imported series' layout, the
samples follow the rate, and the fitted spectrum recovers the profile's 1/f exponent and
level dependence within its intervals; a rate the reads cannot keep up with stops the run
with the figures to change."""

from __future__ import annotations

import numpy as np
import pytest

from cimlab.instruments.station import Station
from cimlab.models.fit import fit_store_report
from cimlab.procedures.campaign import run_plan
from cimlab.procedures.importers.techa import SERIES_COLUMNS
from cimlab.procedures.plan import plan_from_mapping
from cimlab.store import Store
from tests.models.test_roundtrip import _station_file


def _plan(fs_hz: float, duration_s: float, cells: int = 12) -> dict:
    return {"plan": {"name": "series", "seed": 1}, "experiment": [{
        "kind": "read_noise_series", "cells": {"start": 0, "count": cells},
        "levels": {"levels": 12, "g_min_siemens": 15e-6, "g_max_siemens": 240e-6},
        "fs_hz": fs_hz, "duration_s": duration_s, "settle_s": 100.0}]}


@pytest.fixture(scope="module")
def series_store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("series")
    with Station.open(_station_file(tmp, "techa", seed=7)) as st:
        truth = st.bench.chip.profile.read
        run_plan(plan_from_mapping(_plan(1.0, 4096.0), source="series"), st,
                 tmp / "s.h5", progress=False)
    return tmp / "s.h5", truth


def test_samples_have_the_imported_layout_and_the_rate(series_store):
    path, _ = series_store
    with Store.open(path, "r") as s:
        (run,) = list(s)
        df = run.table("samples")
        assert run.kind == "read_noise_series"
    assert list(df.columns[: len(SERIES_COLUMNS)]) == list(SERIES_COLUMNS)
    assert len(df) == 12 * 4096 and set(df["fs_hz"]) == {1.0}
    for _, one in df.groupby("cell"):
        dt = np.diff(one.sort_values("sample")["time_s"].to_numpy())
        assert np.allclose(dt, 1.0, atol=1e-3), dt[:5]


def test_fitted_spectrum_recovers_the_profiles_1_over_f(series_store):
    path, truth = series_store
    sp = fit_store_report(path).model.read_noise_spectrum
    ci = sp.fit.ci95
    assert sp.f_lo_hz < 0.01  # the slow series reaches below techA's 0.1 Hz
    if sp.alpha1 == 0.0:
        assert ci["alpha0"][0] <= truth.flicker_alpha <= ci["alpha0"][1], ci["alpha0"]
    else:  # exponent linear in g: at the 1/f peak
        a = sp.alpha(truth.flicker_g_peak)
        assert abs(a - truth.flicker_alpha) < 0.3, a
    assert ci["g_peak"][0] <= truth.flicker_g_peak <= ci["g_peak"][1], ci["g_peak"]
    assert ci["a_peak"][0] <= truth.flicker_psd_peak <= ci["a_peak"][1], ci["a_peak"]


def test_a_rate_the_reads_cannot_keep_up_with_stops_the_run(tmp_path):
    with Station.open(_station_file(tmp_path, "techa", seed=7)) as st, \
            pytest.raises(RuntimeError, match="lower fs_hz or read fewer cells"):
        run_plan(plan_from_mapping(_plan(1e4, 1.0, cells=4096), source="fast"), st,
                 tmp_path / "s.h5", progress=False)

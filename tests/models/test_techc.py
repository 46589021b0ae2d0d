"""The real techC relaxation data (Levy et al., reference-data/rram-relaxation-techC) fits, and
the fitted model reproduces the measured spread per conductance range and time point.

Measured sigma: the plain standard deviation of g over the cells of a range at a time point
(nothing trimmed). Model: :meth:`DeviceModel.predicted_moments`, the std of
``max(X, 0)`` with ``X ~ N(target + drift, sigma_prog^2 + var_relax)`` (the samplers floor
at 0 S, and so does a conductance), ``sigma_prog`` the verify spread at t = 0 (read noise
included: techC has no separate read-noise measurement, so none is added). The acceptance is 15 %
per (range, time) cell; the number of passing cells and the worst error are printed (run
pytest -s) and documented in docs/device-models.md. The per-cell sampling error of a measured
sigma is itself 4-12 % here (190-530 cells, kurtosis up to 28), which bounds what any model
can reach; a model-free check (each range's own variance law) reaches 146/160. The test
also bootstraps each measured sigma and counts the failing cells that miss the 15 % band by
more than their own 95 % measurement uncertainty (1 of 25: range 0 at 1e5 s).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cimlab.models import DeviceModel
from cimlab.models.fit import fit_tables, tables_from_frames

ROOT = Path(__file__).resolve().parents[2]
#: the real techC data set ships with the repository (data/reference/techC, MIT license)
DATA_FILE = ROOT / "data" / "reference" / "techC" / "relaxdata.min.tsv.gz"
GMAX = 40e-6


def _data_file() -> Path:
    assert DATA_FILE.exists(), f"{DATA_FILE} is missing: it ships with the repository"
    return DATA_FILE


@pytest.fixture(scope="module")
def techc():
    d = pd.read_csv(_data_file(), sep="\t", header=None,
                    names=["addr", "time", "r", "g", "gi", "range", "timept"])
    d = d[d["range"] <= 31]  # rows > 31: verify landed above gmax (outliers, see README)
    reads = pd.DataFrame(
        {
            "cell": d["addr"].to_numpy(),
            "level": d["range"].to_numpy(),
            "target_siemens": (d["range"].to_numpy() + 0.5) / 32 * GMAX,
            "g0_siemens": d["gi"].to_numpy(),
            "time_s": d["timept"].to_numpy(dtype=float),
            "g_siemens": d["g"].to_numpy(),
            "temp_k": 300.0,
        }
    )
    rep = fit_tables(tables_from_frames({"imported": {"reads": reads}}, source="techC"),
                     name="techC")
    return reads, rep


def test_techc_fits(techc, tmp_path):
    _, rep = techc
    dm = rep.model
    assert "relaxation" in rep.fitted and "programming" in rep.fitted
    r = dm.relaxation
    assert r.form == "peaked" and r.mean_form in ("tanh", "linear")
    # every fitted relaxation parameter has a finite CI that contains the value
    for name, (lo, hi) in r.fit.ci95.items():
        assert lo <= getattr(r, name) <= hi, name
    # round trip through JSON keeps everything
    p = dm.save(tmp_path / "techc.json")
    assert DeviceModel.load(p) == dm
    assert dm.programming.mode == "verify"
    # no read-noise measurement in techC: the verify spread holds one read's noise
    assert dm.programming.read_noise == "included"
    assert dm.programming.sigma(20e-6) == pytest.approx(0.35e-6, rel=0.1)


def test_techc_sigma_per_range_and_time(techc):
    reads, rep = techc
    dm = rep.model
    grp = reads[reads["time_s"] > 0].groupby(["level", "time_s"])
    meas = grp["g_siemens"].std()
    g0 = reads.groupby("level")["g0_siemens"].mean()
    target = reads.groupby("level")["target_siemens"].first()
    lv = meas.index.get_level_values(0).to_numpy()
    t = meas.index.get_level_values(1).to_numpy()
    del g0
    # read noise not measured in techC: the verify spread (programming sigma) includes it
    _, pred = dm.predicted_moments(target.reindex(lv).to_numpy(), t, include_read=False)
    rel = pred / meas.to_numpy() - 1.0
    ok = np.abs(rel) <= 0.15
    table = pd.DataFrame({"range": lv, "t": t, "rel": rel}).pivot(
        index="range", columns="t", values="rel")
    print(f"\ntechC: {ok.sum()}/{ok.size} (range, time) cells within 15 %; "
          f"median |error| {np.median(np.abs(rel)):.3f}, worst {np.max(np.abs(rel)):.3f} "
          f"(range {lv[np.argmax(np.abs(rel))]}, t = {t[np.argmax(np.abs(rel))]:g} s)")
    print((table * 100).round(0).to_string())
    assert ok.mean() >= 0.80
    assert np.median(np.abs(rel)) <= 0.08
    # sampling uncertainty of each measured sigma (heavy tails: bootstrap over the cells of
    # the (range, time) group, fixed seed); a failing cell fails beyond its own measurement
    # uncertainty when even the 95 % range of its measured sigma keeps it out of the 15 %
    # band: |rel| - 0.15 > 1.96 se(rel), se(rel) = (pred / meas) se(meas) / meas
    rng = np.random.default_rng(7)
    se = np.empty(meas.size)
    for i, x in enumerate(grp["g_siemens"].apply(np.asarray)):
        idx = rng.integers(0, x.size, (300, x.size))
        se[i] = x[idx].std(axis=1, ddof=1).std()
    se_rel = (pred / meas.to_numpy()) * se / meas.to_numpy()
    beyond = ~ok & (np.abs(rel) - 0.15 > 1.96 * se_rel)
    print(f"measured sigma: bootstrap relative se median {np.median(se / meas):.3f}, max "
          f"{np.max(se / meas):.3f}; {int((~ok).sum())} failing cells, {int(beyond.sum())} "
          "beyond their own 95 % measurement uncertainty:")
    print(pd.DataFrame({"range": lv, "t": t, "rel": rel, "se_rel": se_rel})[beyond]
          .round(3).to_string(index=False))
    # 24 of the 25 failing cells are within their measurement uncertainty; the one beyond
    # is range 0 at 1e5 s (+48 %): its spread is skewed and squeezed against 0 S (median
    # 0.83 uS, 99th percentile 6.6 uS), which a normal law floored at 0 S cannot follow
    assert int(beyond.sum()) <= 2

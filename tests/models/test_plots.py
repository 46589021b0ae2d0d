"""The model-vs-data figures draw the model the fit used, on every group the fit saw."""

from __future__ import annotations

import numpy as np
import pytest

from cimlab.models.fit.retention import bake_groups
from cimlab.models.fit.store import _relevel, collect, fit_store
from cimlab.models.plots import bake_model, plot_model
from cimlab.store import Store
from tests.models.chipdata import chip_tables


@pytest.fixture(scope="module")
def bake_store(tmp_path_factory):
    """Relaxation, read-noise and bake runs drawn from the emulated chip (known physics)."""
    d = chip_tables("default")
    path = tmp_path_factory.mktemp("plots") / "chip.h5"
    with Store.open(path, mode="a") as st:
        for kind, tables in (("relaxation", {"reads": d["relax"], "programmed": d["programmed"]
                                             .drop(columns="g_true_siemens")}),
                             ("read_fluctuation", {"reads": d["reads"]}),
                             ("bake_retention", {"reads": d["bake"],
                                                 "programmed": d["bake_programmed"]})):
            run = st.begin_run(kind=kind, plan={"kind": kind}, snapshot={}, seeds={"p": 1})
            for name, df in tables.items():
                run.append(name, {c: df[c].to_numpy() for c in df.columns})
            run.complete_step("all")
            run.finish("completed")
    return path


def test_bake_model_is_the_fits_and_matches_the_emulator(bake_store):
    dm = fit_store(bake_store)
    with Store.open(bake_store, "r") as s:
        ts = collect(s, include_unfinished=True)
    _, cum = bake_groups(_relevel(ts.get("bake_retention", "reads")), dm.relaxation.g_ref,
                         ts.get("bake_retention", "programmed"),
                         ts.get("bake_retention", "bakes"))
    mean_m, var_m = bake_model(dm, cum)
    sigma = np.sqrt(cum["var"].to_numpy())
    rel = np.abs(np.sqrt(var_m) / sigma - 1.0)
    # each group's sigma from n cells has a relative sampling error ~ 1/sqrt(2 n); the fitted
    # model of the emulator's physics lies within that for the typical group
    n = float(cum["n"].median())
    assert np.median(rel) < 1.0 / np.sqrt(2.0 * n) + 0.02
    # the mean change (drift) is reported, not fitted: within a sigma of the spread
    assert np.median(np.abs(mean_m - cum["mean"].to_numpy()) / sigma) < 0.25


def test_plot_model_writes_every_figure_in_the_format_asked(bake_store, tmp_path):
    import matplotlib

    dm = fit_store(bake_store)
    with matplotlib.rc_context({"savefig.format": "svg"}):
        files = plot_model(dm, bake_store, tmp_path)
    names = sorted(f.name for f in files)
    assert names == ["programming.svg", "read_noise.svg", "relaxation.svg", "retention.svg"]
    assert (tmp_path / "retention.svg").read_text().lstrip().startswith("<?xml")

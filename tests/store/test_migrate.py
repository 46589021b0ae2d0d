"""Store format 1 -> 2: conductance columns ``*_s`` become ``*_siemens``. A format-1 store is
read as it is (names mapped) and upgraded in place when opened for writing."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pandas as pd

from cimlab.store import FORMAT_VERSION, Store
from cimlab.store.table import set_text


def _store_v1(path) -> pd.DataFrame:
    """A store written by today's code, then turned into format 1 the way cimlab 0.1 wrote it
    (columns g_s/target_s; categorical labels under _categories/<column>)."""
    rng = np.random.default_rng(5)
    cols = {"cell": np.arange(6, dtype=np.uint32), "target_siemens": np.full(6, 2e-6),
            "time_s": rng.uniform(0, 1, 6), "g_siemens": rng.normal(2e-6, 1e-7, 6),
            "mode": np.array(["verify", "single_shot"] * 3)}
    with Store.open(path) as store:
        run = store.begin_run("relaxation", {"p": 1}, {}, {"procedure": 1})
        run.append("reads", cols)
        run.complete_step("s0")
        run.finish()
        expected = run.table("reads")
    with h5py.File(path, "a") as f:
        for uid in f["runs"]:
            tg = f["runs"][uid]["tables"]["reads"]
            tg.move("g_siemens", "g_s")
            tg.move("target_siemens", "target_s")
            set_text(tg.attrs, "columns", json.dumps(["cell", "target_s", "time_s", "g_s",
                                                      "mode"]))
        f.attrs["format_version"] = 1
    return expected


def test_format1_store_reads_with_current_names_and_stays_unchanged(tmp_path):
    path = tmp_path / "v1.h5"
    expected = _store_v1(path)
    before = path.read_bytes()
    with Store.open(path, "r") as store:
        assert store.format_version == 1
        run = store.runs()["uid"].iloc[0]
        assert store.run(run).columns("reads") == list(expected.columns)
        pd.testing.assert_frame_equal(store.run(run).table("reads"), expected)
    assert path.read_bytes() == before  # read-only: nothing written


def test_format1_store_is_upgraded_when_opened_for_writing(tmp_path):
    path = tmp_path / "v1.h5"
    expected = _store_v1(path)
    with Store.open(path, "a") as store:
        assert store.format_version == FORMAT_VERSION == 2
    with h5py.File(path, "r") as f:
        assert f.attrs["format_version"] == 2
        tg = f["runs"][next(iter(f["runs"]))]["tables"]["reads"]
        assert {"g_siemens", "target_siemens"} <= set(tg) and "g_s" not in tg
    with Store.open(path, "r") as store:
        uid = store.runs()["uid"].iloc[0]
        pd.testing.assert_frame_equal(store.run(uid).table("reads"), expected)
    # upgrading is idempotent: a second writable open changes nothing
    with Store.open(path, "a") as store:
        pd.testing.assert_frame_equal(store.run(uid).table("reads"), expected)

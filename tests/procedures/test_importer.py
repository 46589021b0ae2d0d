"""Importer: the real techC set, tidy files with mappings and units, errors with line numbers."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cimlab.errors import ConfigError
from cimlab.procedures.importer import (
    READ_COLUMNS,
    TidyFormat,
    import_techc,
    import_tidy,
)
from cimlab.store import Store

ROOT = Path(__file__).resolve().parents[2]
TECHC = ROOT / "data" / "reference" / "techC" / "relaxdata.min.tsv.gz"


@pytest.fixture(scope="module")
def techc_store(tmp_path_factory):
    assert TECHC.exists(), f"{TECHC} is missing: the techC data ships with the repository"
    path = tmp_path_factory.mktemp("techc") / "techC.h5"
    result = import_techc(TECHC, path)
    return path, result


def test_techc_import_counts_and_mapping(techc_store):
    path, res = techc_store
    raw = pd.read_csv(TECHC, sep="\t", header=None,
                      names=["addr", "time", "r", "g", "gi", "range", "timept"])
    keep = raw["range"] <= 31
    assert (res.rows, res.outlier_rows) == (int(keep.sum()), int((~keep).sum()))
    assert (res.rows, res.outlier_rows, res.outlier_cells) == (88746, 369, 69)
    assert res.cells == 16223 and res.levels == 32
    assert res.time_points == (0.0, 0.01, 0.1, 1.0, 4.0, 100000.0)
    with Store.open(path, "r") as store:
        run = store.run(res.uid)
        assert run.kind == "imported" and run.status == "completed"
        assert run.plan["source_sha256"] == hashlib.sha256(TECHC.read_bytes()).hexdigest()
        reads = run.table("reads")
        outliers = run.table("outliers")
    assert list(reads.columns[:7]) == list(READ_COLUMNS)
    assert list(outliers.columns) == list(reads.columns)
    src = raw[keep].sort_values(["range", "addr", "timept"], kind="stable")
    got = reads.sort_values(["level", "cell", "time_s"], kind="stable")
    np.testing.assert_array_equal(got["cell"].to_numpy(), src["addr"].to_numpy())
    np.testing.assert_array_equal(got["g_s"].to_numpy(), src["g"].to_numpy())
    np.testing.assert_array_equal(got["g0_s"].to_numpy(), src["gi"].to_numpy())
    np.testing.assert_array_equal(got["time_s"].to_numpy(), src["timept"].to_numpy())
    np.testing.assert_array_equal(got["time_measured_s"].to_numpy(), src["time"].to_numpy())
    gmax = json.loads((TECHC.parent / "settings.json").read_text())["gmax"]
    np.testing.assert_allclose(reads["target_s"], (reads["level"] + 0.5) / 32 * gmax)
    assert (reads["temp_k"] == 300.0).all()
    assert (outliers["level"] > 31).all()
    # the target is the centre of the verify band: mean after verify within 0.15 uS of it
    t0 = reads[(reads["time_s"] == 0) & reads["level"].between(1, 31)]
    err = t0.groupby("level").apply(lambda d: (d.g_s - d.target_s).mean(), include_groups=False)
    assert np.abs(err).max() < 0.15e-6


def test_techc_reimport_adds_no_copy(techc_store):
    path, res = techc_store
    again = import_techc(TECHC, path)
    assert again.already_imported and again.uid == res.uid
    with Store.open(path, "r") as store:
        assert len(store.runs()) == 1


def _tidy_frame(rng) -> pd.DataFrame:
    cells = np.arange(60)
    targets_us = np.array([5.0, 10.0, 20.0])[cells % 3]
    rows = []
    for t_ms in (0.0, 10.0, 1000.0):
        g_us = targets_us + rng.normal(0, 0.5, cells.size)
        rows.append(pd.DataFrame({"addr": cells, "t_ms": t_ms, "G_uS": g_us,
                                  "target_uS": targets_us, "T_C": 85.0}))
    return pd.concat(rows[::-1], ignore_index=True)  # latest reads first: g0 is by time


def test_tidy_import_with_mapping_and_units(tmp_path):
    df = _tidy_frame(np.random.default_rng(4))
    src = tmp_path / "lab.csv"
    df.to_csv(src, index=False)
    fmt = TidyFormat(cell="addr", time="t_ms", g="G_uS", level=None, target="target_uS",
                     temp="T_C", g_unit="uS", time_unit="ms", temp_unit="C")
    res = import_tidy(src, tmp_path / "s.h5", fmt)
    assert (res.rows, res.cells, res.levels) == (180, 60, 3)
    with Store.open(tmp_path / "s.h5", "r") as store:
        reads = store.run(res.uid).table("reads")
    # rows are written level by level (one committed step each), in file order within a level
    level = np.searchsorted([5, 10, 20], df["target_uS"])
    df = df.iloc[np.argsort(level, kind="stable")].reset_index(drop=True)
    np.testing.assert_allclose(reads["g_s"], df["G_uS"] * 1e-6)
    np.testing.assert_allclose(reads["time_s"], df["t_ms"] * 1e-3)
    np.testing.assert_allclose(reads["temp_k"], 358.15)
    np.testing.assert_array_equal(reads["level"], np.searchsorted([5, 10, 20], df["target_uS"]))
    first = df[df["t_ms"] == 0].set_index("addr")["G_uS"] * 1e-6
    np.testing.assert_allclose(reads["g0_s"], first.loc[df["addr"]].to_numpy())


def test_tidy_no_header_level_step_tsv(tmp_path):
    src = tmp_path / "plain.tsv"
    src.write_text("3\t2\t0.5\t1.1e-5\n4\t2\t0.5\t0.9e-5\n3\t2\t0\t1.0e-5\n")
    fmt = TidyFormat(cell="0", level="1", time="2", g="3", header=False, level_step_s=5e-6)
    res = import_tidy(src, tmp_path / "s.h5", fmt)
    with Store.open(tmp_path / "s.h5", "r") as store:
        reads = store.run(res.uid).table("reads")
    np.testing.assert_allclose(reads["target_s"], 10e-6)
    np.testing.assert_allclose(reads["g0_s"], [1.0e-5, 0.9e-5, 1.0e-5])
    assert reads["temp_k"].tolist() == [300.0] * 3


@pytest.mark.parametrize(
    ("text", "where", "expected"),
    [
        ("cell,level,time_s,g_s\n1,0,0,1e-6\n2,0,0,abc\n", 'line 3, column "g_s"', "number"),
        ("cell,level,time_s,g_s\n1,0,0,1e-6\n2,0,,1e-6\n", 'line 3, column "time_s"',
         "empty field"),
        ("cell,level,time_s,g_s\n1.5,0,0,1e-6\n", 'line 2, column "cell"', "integer"),
        ("cell,level,time_s,g_s\n1,0,-1,1e-6\n", 'line 2, column "time_s"', ">= 0"),
        ("cell,level,time,g_s\n1,0,0,1e-6\n", "column 'time_s'", "--time-col"),
    ],
)
def test_tidy_errors_name_file_line_column_and_write_nothing(tmp_path, text, where, expected):
    src = tmp_path / "bad.csv"
    src.write_text(text)
    store = tmp_path / "s.h5"
    with pytest.raises(ConfigError) as info:
        import_tidy(src, store, TidyFormat(level_step_s=1e-6))
    msg = str(info.value)
    assert str(src) in msg and where in msg and expected in msg
    assert not store.exists()


def test_mapping_errors():
    with pytest.raises(ConfigError, match="level column, a target column"):
        TidyFormat(level=None, target=None)
    with pytest.raises(ConfigError, match="g_unit"):
        TidyFormat(g_unit="microsiemens", target="t")
    with pytest.raises(ConfigError, match="level_step_s"):
        TidyFormat(level="level", target=None)


def test_techc_needs_settings(tmp_path):
    src = tmp_path / "x.tsv"
    src.write_text("1\t0.0\t1e5\t1e-5\t1e-5\t8\t0.0\n")
    with pytest.raises(ConfigError, match=r"settings\.json"):
        import_techc(src, tmp_path / "s.h5")
    (tmp_path / "settings.json").write_text('{"gmax": "40u"}')
    with pytest.raises(ConfigError, match="gmax"):
        import_techc(src, tmp_path / "s.h5")
    assert not (tmp_path / "s.h5").exists()

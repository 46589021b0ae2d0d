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
    np.testing.assert_array_equal(got["g_siemens"].to_numpy(), src["g"].to_numpy())
    np.testing.assert_array_equal(got["g0_siemens"].to_numpy(), src["gi"].to_numpy())
    np.testing.assert_array_equal(got["time_s"].to_numpy(), src["timept"].to_numpy())
    np.testing.assert_array_equal(got["time_measured_s"].to_numpy(), src["time"].to_numpy())
    gmax = json.loads((TECHC.parent / "settings.json").read_text())["gmax"]
    np.testing.assert_allclose(reads["target_siemens"], (reads["level"] + 0.5) / 32 * gmax)
    assert (reads["temp_k"] == 300.0).all()
    assert (outliers["level"] > 31).all()
    # the target is the centre of the verify band: mean after verify within 0.15 uS of it
    t0 = reads[(reads["time_s"] == 0) & reads["level"].between(1, 31)]
    err = t0.groupby("level").apply(
        lambda d: (d.g_siemens - d.target_siemens).mean(), include_groups=False
    )
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
    np.testing.assert_allclose(reads["g_siemens"], df["G_uS"] * 1e-6)
    np.testing.assert_allclose(reads["time_s"], df["t_ms"] * 1e-3)
    np.testing.assert_allclose(reads["temp_k"], 358.15)
    np.testing.assert_array_equal(reads["level"], np.searchsorted([5, 10, 20], df["target_uS"]))
    first = df[df["t_ms"] == 0].set_index("addr")["G_uS"] * 1e-6
    np.testing.assert_allclose(reads["g0_siemens"], first.loc[df["addr"]].to_numpy())


def test_tidy_no_header_level_step_tsv(tmp_path):
    src = tmp_path / "plain.tsv"
    src.write_text("3\t2\t0.5\t1.1e-5\n4\t2\t0.5\t0.9e-5\n3\t2\t0\t1.0e-5\n")
    fmt = TidyFormat(cell="0", level="1", time="2", g="3", header=False, level_step_siemens=5e-6)
    res = import_tidy(src, tmp_path / "s.h5", fmt)
    with Store.open(tmp_path / "s.h5", "r") as store:
        reads = store.run(res.uid).table("reads")
    np.testing.assert_allclose(reads["target_siemens"], 10e-6)
    np.testing.assert_allclose(reads["g0_siemens"], [1.0e-5, 0.9e-5, 1.0e-5])
    assert reads["temp_k"].tolist() == [300.0] * 3


@pytest.mark.parametrize(
    ("text", "where", "expected"),
    [
        (
            "cell,level,time_s,g_siemens\n1,0,0,1e-6\n2,0,0,abc\n",
            'line 3, column "g_siemens"',
            "number",
        ),
        (
            "cell,level,time_s,g_siemens\n1,0,0,1e-6\n2,0,,1e-6\n",
            'line 3, column "time_s"',
            "empty field",
        ),
        ("cell,level,time_s,g_siemens\n1.5,0,0,1e-6\n", 'line 2, column "cell"', "integer"),
        ("cell,level,time_s,g_siemens\n1,0,-1,1e-6\n", 'line 2, column "time_s"', ">= 0"),
        ("cell,level,time,g_siemens\n1,0,0,1e-6\n", "column 'time_s'", "--time-col"),
    ],
)
def test_tidy_errors_name_file_line_column_and_write_nothing(tmp_path, text, where, expected):
    src = tmp_path / "bad.csv"
    src.write_text(text)
    store = tmp_path / "s.h5"
    with pytest.raises(ConfigError) as info:
        import_tidy(src, store, TidyFormat(level_step_siemens=1e-6))
    msg = str(info.value)
    assert str(src) in msg and where in msg and expected in msg
    assert not store.exists()


def test_mapping_errors():
    with pytest.raises(ConfigError, match="level column, a target column"):
        TidyFormat(level=None, target=None)
    with pytest.raises(ConfigError, match="g_unit"):
        TidyFormat(g_unit="furlong", target="t")
    with pytest.raises(ConfigError, match="g_unit"):
        TidyFormat(g_unit="s", target="t")  # a time is not a conductance
    with pytest.raises(ConfigError, match="temp_unit"):
        TidyFormat(temp_unit="coulomb", target="t")


def test_techc_needs_settings(tmp_path):
    src = tmp_path / "x.tsv"
    src.write_text("1\t0.0\t1e5\t1e-5\t1e-5\t8\t0.0\n")
    with pytest.raises(ConfigError, match=r"settings\.json") as info:
        import_techc(src, tmp_path / "s.h5")
    # the message says how to fix it on the command line, not a Python keyword
    assert "--settings" in str(info.value) and "settings=" not in str(info.value)
    (tmp_path / "settings.json").write_text('{"gmax": "40u"}')
    with pytest.raises(ConfigError, match="gmax"):
        import_techc(src, tmp_path / "s.h5")
    assert not (tmp_path / "s.h5").exists()


# --------------------------------------------------------------------------- issue 12 fixes
def test_missing_level_column_is_named_not_level_step(tmp_path, capsys):
    """Old code: a file without a 'level' column failed with "field 'level_step_siemens'"."""
    from cimlab.cli.main import main

    src = tmp_path / "no_level.csv"
    src.write_text("cell,time_s,g_siemens\n1,0,1e-6\n")
    rc = main(["import", str(src), "--out", str(tmp_path / "s.h5")])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and len(err.splitlines()) == 1
    assert str(src) in err and "column 'level'" in err and "--level-col" in err
    assert "level_step_siemens" not in err
    assert not (tmp_path / "s.h5").exists()


def test_techc_column_count_is_counted(tmp_path):
    """Old code: "expected 7 tab-separated columns ..., got '7'" for a 6-column file."""
    src = tmp_path / "x.tsv"
    src.write_text("1\t0.0\t1e5\t1e-5\t1e-5\t8\n")
    (tmp_path / "settings.json").write_text('{"gmax": 4e-05}')
    with pytest.raises(ConfigError) as info:
        import_techc(src, tmp_path / "s.h5")
    assert "expected 7 tab-separated columns" in str(info.value)
    assert "got '6 columns'" in str(info.value)


def test_summary_shows_time_points_with_counts_not_every_time(tmp_path):
    """Old code printed every distinct time (80,000 of them for techA's per-cell times)."""
    rng = np.random.default_rng(3)
    n = 200
    df = pd.DataFrame({"cell": np.arange(n), "level": 0, "time_s": rng.uniform(1, 100, n),
                       "g_siemens": 1e-5})
    df = pd.concat([df.assign(time_s=0.0), df], ignore_index=True)
    src = tmp_path / "t.csv"
    df.to_csv(src, index=False)
    res = import_tidy(src, tmp_path / "s.h5", TidyFormat(level_step_siemens=1e-6))
    text = res.summary()
    assert len(text.splitlines()) <= 5 and "201 distinct times from 0 to" in text
    nominal = df.assign(time_s=np.where(df["time_s"] > 0, 10.0, 0.0))
    nominal.to_csv(src, index=False)
    res = import_tidy(src, tmp_path / "s2.h5", TidyFormat(level_step_siemens=1e-6))
    assert "0 s (200), 10 s (200)" in res.summary()


def test_g0_comes_from_the_same_temperature(tmp_path):
    """Cell ids repeat across temperatures: old code took every row's g0 from the cell's
    earliest read at any temperature (here the 85 C read for the 25 C rows)."""
    rows = []
    for temp_c, g0_us in ((25.0, 10.0), (85.0, 20.0)):
        for t, dg in ((0.0, 0.0), (60.0, 1.0)):
            t_file = t if temp_c == 25.0 else t - 0.0
            rows += [{"cell": c, "level": 1, "time_s": t_file, "g_uS": g0_us + c + dg,
                      "T": temp_c} for c in range(3)]
    df = pd.DataFrame(rows)
    # the 85 C reads come first and a 25 C row is the latest: order must not matter
    df = df.iloc[::-1]
    src = tmp_path / "two_temps.csv"
    df.to_csv(src, index=False)
    fmt = TidyFormat(g="g_uS", g_unit="µS", temp="T", temp_unit="C", level_step_siemens=10e-6)
    res = import_tidy(src, tmp_path / "s.h5", fmt)
    with Store.open(tmp_path / "s.h5", "r") as store:
        reads = store.run(res.uid).table("reads")
    want = np.where(reads["temp_k"] < 300, 10e-6, 20e-6) + reads["cell"] * 1e-6
    np.testing.assert_allclose(reads["g0_siemens"], want)


@pytest.mark.parametrize(("unit", "factor", "resistance"), [
    ("uS", 1e-6, False), ("µS", 1e-6, False), ("mS", 1e-3, False), ("S", 1.0, False),
    ("nS", 1e-9, False), ("kohm", 1e3, True), ("kΩ", 1e3, True), ("Mohm", 1e6, True),
    ("ohm", 1.0, True), ("Ω", 1.0, True),
])
def test_units_parsed_with_pint(tmp_path, unit, factor, resistance):
    vals = np.array([2.0, 5.0, 8.0])
    df = pd.DataFrame({"cell": [0, 1, 2], "level": [0, 1, 2], "time_s": 0.0, "x": vals})
    src = tmp_path / "u.csv"
    df.to_csv(src, index=False)
    res = import_tidy(
        src, tmp_path / "s.h5", TidyFormat(g="x", g_unit=unit, level_step_siemens=1e-6)
    )
    with Store.open(tmp_path / "s.h5", "r") as store:
        g = store.run(res.uid).table("reads")["g_siemens"].to_numpy()
    want = 1.0 / (vals * factor) if resistance else vals * factor
    np.testing.assert_allclose(g, want, rtol=1e-12)


def test_time_units_with_pint(tmp_path):
    df = pd.DataFrame({"cell": [0, 0, 0], "level": 0, "t": [0.0, 1.5, 2.0], "g_siemens": 1e-5})
    src = tmp_path / "u.csv"
    df.to_csv(src, index=False)
    res = import_tidy(src, tmp_path / "s.h5", TidyFormat(time="t", time_unit="min",
                                                          level_step_siemens=1e-6))
    assert res.time_points == (0.0, 90.0, 120.0)


# --------------------------------------------------------------------------- techA (real data)
TECHA = ROOT / "data" / "reference" / "techA"
GMAX_A = 240e-6


def _techa_raw() -> pd.DataFrame:
    f = TECHA / "bake.tsv.gz"
    assert f.exists(), f"{f} is missing: the techA data ships with the repository"
    return pd.read_csv(f, sep="\t", header=None, names=["addr", "time", "r", "g", "temp"])


@pytest.fixture(scope="module")
def techa_store(tmp_path_factory):
    from cimlab.procedures.importers import import_techa_bake

    raw = _techa_raw()
    path = tmp_path_factory.mktemp("techa") / "techA.h5"
    return path, import_techa_bake(TECHA / "bake.tsv.gz", path), raw


def test_techa_bake_is_a_bake_retention_run(techa_store):
    path, res, raw = techa_store
    assert res.kind == "bake_retention"
    with Store.open(path, "r") as store:
        run = store.run(res.uid)
        reads, outliers, bakes = run.table("reads"), run.table("outliers"), run.table("bakes")
    assert res.rows + res.outlier_rows == len(raw) == 163840
    assert (res.rows, res.outlier_rows, res.outlier_cells) == (162514, 1326, 358)
    # the contract columns of a characterize bake run, in order
    assert list(reads.columns[:7]) == ["cell", "level", "target_siemens", "step", "temp_k",
                                       "bake_time_s", "g_siemens"]
    assert sorted(reads["level"].unique()) == list(range(32))
    assert sorted(reads["temp_index"].unique()) == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(np.sort(reads["temp_k"].unique()) - 273.15,
                               [100, 140, 180, 220, 260])
    assert set(reads["step"]) == {0, 1} and (reads["repeat"] == 0).all()
    assert (reads.loc[reads["step"] == 0, "bake_time_s"] == 0).all()
    assert (reads.loc[reads["step"] == 1, "bake_time_s"] > 4000).all()
    # g0: the reference read of the same cell at the SAME temperature, never another one
    ref = raw[raw["time"] == 0].set_index(["addr", "temp"])["g"]
    key = pd.MultiIndex.from_arrays([reads["cell"].astype(int),
                                     (reads["temp_k"] - 273.15).round().astype(int)])
    np.testing.assert_array_equal(reads["g0_siemens"].to_numpy(), ref.reindex(key).to_numpy())
    # level: the band of the reference read; target its centre
    step = GMAX_A / 32
    np.testing.assert_array_equal(reads["level"], np.floor(reads["g0_siemens"] / step))
    np.testing.assert_allclose(reads["target_siemens"], (reads["level"] + 0.5) * step)
    assert ((outliers["g0_siemens"] >= GMAX_A) | (outliers["g0_siemens"] < 0)).all()
    # bakes: one segment per temperature, the median bake time of its (kept) reads
    assert len(bakes) == 5 and (bakes["step"] == 1).all()
    med = reads[reads["step"] == 1].groupby("temp_index")["bake_time_s"].median().to_numpy()
    np.testing.assert_allclose(bakes.sort_values("temp_index")["soak_s"], med)
    lines = res.summary().splitlines()
    assert len(lines) < 12 and any("at 260 C" in x for x in lines)


def test_techa_bake_reimport_adds_no_copy(techa_store):
    from cimlab.procedures.importers import import_techa_bake

    path, res, _ = techa_store
    again = import_techa_bake(TECHA / "bake.tsv.gz", path)
    assert again.already_imported and again.uid == res.uid


def test_tidy_expresses_the_techa_bake(techa_store, tmp_path):
    """The same bakes as a tidy CSV in other units (kohm, h, C) give the same reads."""
    path, res, raw = techa_store
    sub = raw[raw["addr"] < 80300]
    tidy = pd.DataFrame({"addr": sub["addr"], "t_h": sub["time"] / 3600.0,
                         "R_kohm": 1.0 / sub["g"] / 1e3, "T_C": sub["temp"]})
    src = tmp_path / "bakes.csv"
    tidy.to_csv(src, index=False, float_format="%.17g")
    fmt = TidyFormat(cell="addr", g="R_kohm", g_unit="kohm", bake_time="t_h", time_unit="h",
                     temp="T_C", temp_unit="C", level=None, level_step_siemens=GMAX_A / 32,
                     n_levels=32)
    out = import_tidy(src, tmp_path / "t.h5", fmt)
    assert out.kind == "bake_retention"
    with Store.open(tmp_path / "t.h5", "r") as store:
        got = store.run(out.uid).table("reads")
    with Store.open(path, "r") as store:
        want = store.run(res.uid).table("reads")
    want = want[want["cell"] < 80300]
    cols = ["temp_index", "cell", "step"]
    got, want = (d.sort_values(cols).reset_index(drop=True) for d in (got, want))
    for c in ("cell", "level", "step", "temp_index", "repeat"):
        np.testing.assert_array_equal(got[c], want[c], err_msg=c)
    for c in ("g_siemens", "g0_siemens", "target_siemens", "bake_time_s", "temp_k"):
        np.testing.assert_allclose(got[c], want[c], rtol=1e-9, err_msg=c)


def test_tidy_bake_reprogrammed_cycles_and_missing_reference(tmp_path):
    """Two programmings at the same temperature (a cycle column): each has its own reference;
    a cell without a reference read is named with its line."""
    rows = []
    for cycle, g0 in ((0, 10.0), (1, 30.0)):
        for t in (0.0, 1.0, 2.0):
            rows += [{"c": c, "cyc": cycle, "tb": t, "g": g0 + c + t, "T": 150.0}
                     for c in range(4)]
    df = pd.DataFrame(rows)
    src = tmp_path / "cyc.csv"
    df.to_csv(src, index=False)
    fmt = TidyFormat(cell="c", g="g", g_unit="uS", bake_time="tb", time_unit="h", temp="T",
                     temp_unit="C", cycle="cyc", level=None, level_step_siemens=5e-6)
    res = import_tidy(src, tmp_path / "s.h5", fmt)
    with Store.open(tmp_path / "s.h5", "r") as store:
        reads = store.run(res.uid).table("reads")
    np.testing.assert_allclose(reads["g0_siemens"], np.where(reads["temp_index"] == 0, 10e-6, 30e-6)
                               + reads["cell"] * 1e-6)
    np.testing.assert_array_equal(reads["step"], reads["bake_time_s"] / 3600)
    bad = df[~((df["c"] == 2) & (df["cyc"] == 1) & (df["tb"] == 0))]
    bad.to_csv(src, index=False)
    with pytest.raises(ConfigError) as info:
        import_tidy(src, tmp_path / "bad.h5", fmt)
    msg = str(info.value)
    line = 2 + int(np.flatnonzero((bad["c"] == 2).to_numpy() & (bad["cyc"] == 1).to_numpy()
                                  & (bad["tb"] == 1.0).to_numpy())[0])
    assert f'line {line}, column "tb"' in msg and "reference read" in msg
    assert not (tmp_path / "bad.h5").exists()


def test_techa_time_series(tmp_path):
    from cimlab.procedures.importers import SERIES_COLUMNS, import_tsdata

    f = TECHA / "tsdata.min.tsv.gz"
    assert f.exists(), f"{f} is missing: the techA data ships with the repository"
    raw = np.loadtxt(f, delimiter="\t")
    res = import_tsdata(f, tmp_path / "ts.h5")
    assert res.kind == "read_noise_series" and (res.rows, res.cells) == (500000, 5)
    with Store.open(tmp_path / "ts.h5", "r") as store:
        run = store.run(res.uid)
        df = run.table("samples")
        assert run.meta["fs_hz"] == 400.0
    assert tuple(df.columns) == SERIES_COLUMNS
    for i, row in enumerate(raw):
        s = df[df["cell"] == i].sort_values("sample")
        assert (s["level"] == int(row[0])).all()
        np.testing.assert_array_equal(s["g_siemens"].to_numpy(), row[2:])
        np.testing.assert_allclose(s["time_s"].to_numpy(), np.arange(100000) / 400.0)
    assert sorted(df["level"].unique()) == [0, 8, 16, 24, 31]
    # --fs overrides the settings; a bad sample names its line and field
    res2 = import_tsdata(f, tmp_path / "ts2.h5", fs_hz=100.0)
    with Store.open(tmp_path / "ts2.h5", "r") as store:
        assert store.run(res2.uid).table("samples")["time_s"].max() == pytest.approx(999.99)
    bad = tmp_path / "ts.tsv"
    bad.write_text("0\t0\t1e-5\t2e-5\n8\t0\t1e-5\tx\n")
    (tmp_path / "settings.json").write_text('{"gmax": 2.4e-4}')
    with pytest.raises(ConfigError) as info:
        import_tsdata(bad, tmp_path / "b.h5")
    assert "field 'fs'" in str(info.value) and "--fs" in str(info.value)
    with pytest.raises(ConfigError, match=r"line 2, field 4'.*a number"):
        import_tsdata(bad, tmp_path / "b.h5", fs_hz=400.0)
    assert not (tmp_path / "b.h5").exists()


def test_cli_imports_techa(tmp_path, capsys):
    from cimlab.cli.main import main

    rc = main(["import", str(TECHA / "bake.tsv.gz"), "--format", "techa-bake", "--out",
               str(tmp_path / "a.h5")])
    out = capsys.readouterr().out
    assert rc == 0 and "bake_retention" in out and "at 100 C: 16171 cells" in out
    rc = main(["import", str(TECHA / "tsdata.min.tsv.gz"), "--format", "tsdata", "--out",
               str(tmp_path / "a.h5")])
    assert rc == 0 and "at 400 Hz" in capsys.readouterr().out
    rc = main(["import", str(TECHA / "bake.tsv.gz"), "--level-step", "7.5 furlongs",
               "--out", str(tmp_path / "b.h5")])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and len(err.splitlines()) == 1 and "--level-step" in err


@pytest.mark.parametrize(("text", "where", "expected"), [
    ("80000\t0.0\t1e5\t1e-5\n", "field 'columns'", "got '4 columns'"),
    ("80000\t0.0\t1e5\t1e-5\t100\n80000\t7000\t1e5\t1e-5\thot\n", 'line 2, column "temp"',
     "a bake temperature in C"),
    ("80000\t7000\t1e5\t1e-5\t100\n", 'line 1, column "time"', "reference read at bake time 0"),
    ("80000\t-1\t1e5\t1e-5\t100\n", 'line 1, column "time"', ">= 0 s"),
])
def test_techa_bake_errors_name_file_line_column(tmp_path, text, where, expected):
    from cimlab.procedures.importers import import_techa_bake

    src = tmp_path / "bake.tsv"
    src.write_text(text)
    (tmp_path / "settings.json").write_text('{"gmax": 2.4e-4, "fs": 400}')
    with pytest.raises(ConfigError) as info:
        import_techa_bake(src, tmp_path / "s.h5")
    msg = str(info.value)
    assert str(src) in msg and where in msg and expected in msg
    assert len(msg.splitlines()) == 1 and not (tmp_path / "s.h5").exists()


def test_killed_bake_import_resumes_to_the_same_tables(tmp_path, monkeypatch):
    """An import killed after its first bake resumes on the next run of the same command and
    ends equal, value for value, to an uninterrupted one."""
    from cimlab.store.run import Run

    rng = np.random.default_rng(1)
    rows = []
    for temp in (100.0, 150.0, 200.0):
        g0 = rng.uniform(1, 39, 40)
        rows.append(pd.DataFrame({"cell": np.arange(40), "tb": 0.0, "g": g0, "T": temp}))
        rows.append(pd.DataFrame({"cell": np.arange(40), "tb": 3600.0,
                                  "g": g0 + rng.normal(0, 1, 40), "T": temp}))
    src = tmp_path / "b.csv"
    pd.concat(rows).to_csv(src, index=False)
    fmt = TidyFormat(g="g", g_unit="uS", bake_time="tb", temp="T", temp_unit="C", level=None,
                     level_step_siemens=4e-6, n_levels=10)
    whole = import_tidy(src, tmp_path / "whole.h5", fmt)
    real_append = Run.append
    calls = []

    def dying_append(self, name, columns):
        calls.append(name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_append(self, name, columns)

    monkeypatch.setattr(Run, "append", dying_append)
    with pytest.raises(KeyboardInterrupt):
        import_tidy(src, tmp_path / "cut.h5", fmt)
    monkeypatch.setattr(Run, "append", real_append)
    again = import_tidy(src, tmp_path / "cut.h5", fmt)
    assert not again.already_imported
    with Store.open(tmp_path / "whole.h5", "r") as a, Store.open(tmp_path / "cut.h5", "r") as b:
        assert len(b.runs()) == 1 and b.run(again.uid).status == "completed"
        ra, rb = a.run(whole.uid), b.run(again.uid)
        assert set(ra.tables) == set(rb.tables) == {"reads", "bakes"}  # no outliers here
        for table in ra.tables:
            pd.testing.assert_frame_equal(ra.table(table), rb.table(table))

"""Export of a store to NetCDF / Parquet / CSV: committed rows only, values round-trip exactly,
units and station snapshot travel along, the documented raw-h5py reader agrees."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cimlab.cli import exportcmd
from cimlab.cli.main import main
from cimlab.store import Store, StoreError
from cimlab.store import export as ex
from cimlab.store.columns import column_unit

xr = pytest.importorskip("xarray")
ROOT = Path(__file__).resolve().parents[2]

SNAPSHOT = {"station": {"name": "bench 3", "file": "st.toml"},
            "limits": {"read_v_max_v": 0.5, "set_icc_max_a": 7e-4}, "emulated": True}


def _write_store(path: Path, *, finish: bool) -> str:
    """A run with 3 committed steps (mixed column types) and one uncommitted tail."""
    gen = np.random.default_rng(4)
    with Store.open(path, "a") as store:
        run = store.begin_run("relaxation", {"levels": 3}, snapshot=SNAPSHOT,
                              seeds={"procedure": 11})
        for k in range(3):
            n = 7 + k
            run.append("reads", {
                "cell": np.arange(n, dtype=np.uint32) + 100 * k, "level": k,
                "g_siemens": gen.uniform(2e-6, 4e-5, n), "time_s": gen.uniform(0, 1e4, n),
                "temp_k": 300.0, "mode": ["verify", "single_shot"][k % 2],
                "success": gen.random(n) > 0.3,
            })
            if k == 1:
                run.append("conditions", {"condition": "strong", "icc_a": 55e-6,
                                          "energy_per_bit_j": 1.2e-11})
            run.add_instrument_time(2.5)
            run.complete_step(f"level-{k}")
        if finish:
            run.finish("completed")
        else:  # a writer killed mid-step: rows appended, never committed
            run.append("reads", {"cell": np.arange(5, dtype=np.uint32), "level": 9,
                                 "g_siemens": 1.0, "time_s": -1.0, "temp_k": 0.0, "mode": "junk",
                                 "success": False})
        return run.uid


@pytest.fixture
def killed_store(tmp_path):
    path = tmp_path / "chip.h5"
    uid = _write_store(path, finish=False)
    return path, uid


def _committed(path: Path, uid: str) -> dict[str, pd.DataFrame]:
    with Store.open(path, "r") as store:
        run = store.run(uid)
        assert run.n_rows("reads") > run.committed_rows()["reads"]  # the tail exists
        return ex.committed_tables(run)


def test_netcdf_opens_with_xarray_and_round_trips_committed_rows(killed_store, tmp_path):
    path, uid = killed_store
    expected = _committed(path, uid)
    assert len(expected["reads"]) == 7 + 8 + 9
    files = ex.export_store(path, "netcdf", tmp_path / "out")
    assert files == [tmp_path / "out" / f"{uid}.nc"]
    with xr.open_dataset(files[0]) as ds:
        assert ds.sizes["reads_row"] == 24 and ds.sizes["conditions_row"] == 1
        for name, df in expected.items():
            got = ex.dataset_table(ds, name)
            assert list(got.columns) == list(df.columns)
            for col in df.columns:
                a, b = np.asarray(got[col]), np.asarray(df[col])
                if b.dtype.kind in "biuf":
                    assert a.dtype == b.dtype, col
                    np.testing.assert_array_equal(a, b)      # exact, bit for bit
                else:
                    assert [str(x) for x in a] == [str(x) for x in b], col
        assert "junk" not in set(ds["reads__mode"].values)
        assert ds["reads__g_siemens"].attrs["units"] == "S"
        assert ds["reads__time_s"].attrs["units"] == "s"
        assert ds["reads__temp_k"].attrs["units"] == "K"
        assert ds["conditions__icc_a"].attrs["units"] == "A"
        assert ds["conditions__energy_per_bit_j"].attrs["units"] == "J"
        assert ds.attrs["uid"] == uid and ds.attrs["kind"] == "relaxation"
        assert ds.attrs["status"] == "running"
        assert ds.attrs["instrument_time_s"] == pytest.approx(7.5)
        assert ds.attrs["snapshot.limits.read_v_max_v"] == 0.5
        assert ds.attrs["snapshot.station.name"] == "bench 3"
        assert ds.attrs["snapshot.emulated"] == 1
        assert ds.attrs["seed.procedure"] == 11
        assert json.loads(ds.attrs["snapshot_json"]) == SNAPSHOT
        assert json.loads(ds.attrs["completed_steps_json"]) == ["level-0", "level-1", "level-2"]


def test_parquet_and_csv_round_trip(killed_store, tmp_path):
    pytest.importorskip("pyarrow")
    path, uid = killed_store
    expected = _committed(path, uid)
    ex.export_store(path, "parquet", tmp_path / "pq")
    ex.export_store(path, "csv", tmp_path / "csv")
    for name, df in expected.items():
        pq = pd.read_parquet(tmp_path / "pq" / uid / f"{name}.parquet")
        csv = pd.read_csv(tmp_path / "csv" / uid / f"{name}.csv")
        for col in df.columns:
            if df[col].dtype.kind in "biuf":
                np.testing.assert_array_equal(pq[col].to_numpy(), df[col].to_numpy())
                np.testing.assert_array_equal(csv[col].to_numpy(), df[col].to_numpy())
                assert pq[col].dtype == df[col].dtype
            else:
                assert list(pq[col]) == list(df[col]) == list(csv[col])
    import pyarrow.parquet as papq

    schema = papq.read_schema(tmp_path / "pq" / uid / "reads.parquet")
    assert schema.field("g_siemens").metadata[b"unit"] == b"S"
    meta = json.loads(schema.metadata[b"cimlab"])
    assert meta["uid"] == uid and meta["snapshot"] == SNAPSHOT and meta["table"] == "reads"
    record = json.loads((tmp_path / "csv" / uid / "run.json").read_text())
    assert record["units"]["reads"]["time_s"] == "s"
    assert record["committed_rows"] == {"conditions": 1, "reads": 24}


def test_cli_export_selects_runs_and_prints_json(tmp_path, capsys):
    path = tmp_path / "two.h5"
    first = _write_store(path, finish=True)
    second = _write_store(path, finish=True)
    assert first != second
    out = tmp_path / "nc"
    assert main(["export", str(path), "--to", "netcdf", "--out", str(out), "--run", second,
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["files"] == [str(out / f"{second}.nc")]
    assert sorted(p.name for p in out.iterdir()) == [f"{second}.nc"]
    assert main(["export", str(path), "--to", "csv"]) == 0      # default folder, every run
    assert sorted(p.name for p in (tmp_path / "two-export").iterdir()) == sorted([first, second])


def test_cli_bad_store_and_run_are_one_line_errors(tmp_path, capsys):
    path = tmp_path / "x.h5"
    assert main(["export", str(path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0]
    _write_store(path, finish=True)
    assert main(["export", str(path), "--run", "nope", "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such run" in err[0]
    assert not (tmp_path / "o").exists()
    with pytest.raises(StoreError, match="--to"):
        ex.export_store(path, "xlsx")


def test_cli_formats_match_the_library():
    assert exportcmd.FORMATS == ex.FORMATS


@pytest.mark.parametrize(
    "name, unit",
    [
        ("g_siemens", "S"),
        ("g0_siemens", "S"),
        ("target_siemens", "S"),
        ("g_lrs_siemens", "S"),
        ("g_after_set_siemens", "S"),
        ("g_b_pre_siemens", "S"),
        ("time_s", "s"),
        ("bake_time_s", "s"),
        ("width_s", "s"),
        ("soak_s", "s"),
        ("temp_k", "K"),
        ("icc_a", "A"),
        ("i_a", "A"),
        ("v", "V"),
        ("v_reset", "V"),
        ("energy_j", "J"),
        ("fs_hz", "Hz"),
        ("cell", "1"),
        ("level", "1"),
        ("at_unix", "s"),
        ("temp_c", "degC"),
    ],
)
def test_column_units_follow_the_naming_rule(name, unit):
    assert column_unit(name) == unit


def test_documented_raw_h5py_reader_honours_the_commit_log(killed_store):
    """The reader in docs/export.md (run verbatim) returns exactly the committed rows."""
    path, uid = killed_store
    text = (ROOT / "docs" / "export.md").read_text()
    code = re.search(r"<!-- raw-reader -->\s*```python\n(.*?)```", text, re.S).group(1)
    scope: dict = {}
    exec(compile(code, "docs/export.md", "exec"), scope)
    raw = scope["committed_table"](str(path), uid, "reads")
    expected = _committed(path, uid)["reads"]
    assert set(raw) == set(expected.columns)
    for col in expected.columns:
        if expected[col].dtype.kind in "biuf":
            np.testing.assert_array_equal(raw[col], expected[col].to_numpy())
        else:
            assert list(raw[col]) == list(expected[col])


def test_imported_techc_store_round_trips_through_netcdf(tmp_path):
    """The real techC set (89,115 rows) imported, exported, opened with xarray: every value
    of every table equal."""
    from cimlab.procedures.importers import import_techc

    path = tmp_path / "techC.h5"
    import_techc(ROOT / "data" / "reference" / "techC" / "relaxdata.min.tsv.gz", path)
    (nc,) = ex.export_store(path, "netcdf", tmp_path / "nc")
    with Store.open(path, "r") as store:
        run = store.run("last")
        expected = ex.committed_tables(run)
        kind = run.kind
    with xr.open_dataset(nc) as ds:
        assert ds.attrs["kind"] == kind == "imported"
        assert ds["reads__g0_siemens"].attrs["units"] == "S"
        assert ds["reads__time_measured_s"].attrs["units"] == "s"
        for name, df in expected.items():
            got = ex.dataset_table(ds, name)
            assert len(got) == len(df) > 0
            for col in df.columns:
                np.testing.assert_array_equal(np.asarray(got[col]), df[col].to_numpy())

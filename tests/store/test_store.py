"""Run store: metadata, tables, resume semantics, validation and damaged files."""

from __future__ import annotations

import hashlib

import h5py
import numpy as np
import pandas as pd
import pytest

from cimlab.errors import CimlabError, ConfigError
from cimlab.store import Store, StoreError

PLAN = {"levels": [1, 2, 3], "repeats": 4, "temp_c": 25.0}
SNAP = {"array": {"idn": "cimlab,emulated-array"}, "limits": {"v_max": 3.0}}


def _reads(level: int, n: int = 8, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed + level)
    return {
        "cell": np.arange(n, dtype=np.uint32),
        "level": level,
        "target_siemens": level * 1e-6,
        "time_s": rng.uniform(0, 1, n),
        "g_siemens": rng.normal(level * 1e-6, 1e-7, n),
        "mode": np.where(np.arange(n) % 2 == 0, "verify", "single_shot"),
        "ok": np.arange(n) % 3 == 0,
    }


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_round_trip_metadata_and_tables(tmp_path):
    path = tmp_path / "c.h5"
    with Store.open(path) as store:
        run = store.begin_run("read_fluctuation", PLAN, SNAP, {"procedure": 7})
        for level in (1, 2, 3):
            run.append("reads", _reads(level))
            run.add_instrument_time(1.25)
            run.complete_step(f"level-{level}")
        run.set_meta("summary", {"sigma_siemens": 1e-7})
        run.finish()
        uid = run.uid
    with Store.open(path, "r") as store:
        runs = store.runs()
        assert list(runs.columns[:8]) == ["uid", "kind", "status", "cells", "started", "stopped",
                                          "duration_s", "instrument_time_s"]
        row = runs.iloc[0]
        assert (row.uid, row.kind, row.status, row.cells) == (uid, "read_fluctuation",
                                                              "completed", 8)
        assert row.instrument_time_s == pytest.approx(3.75)
        assert row.duration_s >= 0 and row.steps == 3
        run = store.run(uid[:10])
        assert run.plan == PLAN and run.snapshot == SNAP and run.seeds == {"procedure": 7}
        assert run.versions["h5py"] == h5py.__version__ and "cimlab" in run.versions
        assert run.steps == ["level-1", "level-2", "level-3"]
        assert run.meta == {"summary": {"sigma_siemens": 1e-7}}
        df = run.table("reads")
        want = pd.concat([pd.DataFrame(_reads(lv)) for lv in (1, 2, 3)], ignore_index=True)
        pd.testing.assert_frame_equal(df, want, check_dtype=False)
        assert df.cell.dtype == np.uint32 and df.level.dtype == np.int64
        assert df.ok.dtype == bool and df.g_siemens.dtype == np.float64
        assert list(df["mode"].unique()) == ["verify", "single_shot"]
        cat = run.table("reads", categorical=True)
        assert isinstance(cat["mode"].dtype, pd.CategoricalDtype)
        assert run.metadata["tables"] == {"reads": 24}


def test_resume_drops_unfinished_step_and_keeps_committed(tmp_path):
    path = tmp_path / "c.h5"
    with Store.open(path) as store:
        run = store.begin_run("relaxation", PLAN, SNAP, {"procedure": 3})
        run.append("reads", _reads(1))
        run.add_instrument_time(2.0)
        run.complete_step("level-1")
        run.append("reads", _reads(2))  # a step that a crash interrupts
        run.add_instrument_time(5.0)
        uid = run.uid
    with Store.open(path) as store:  # the procedure runs again
        run = store.begin_run("relaxation", PLAN, SNAP, {"procedure": 99}, resume=True)
        assert run.uid == uid and run.status == "running"
        assert run.completed_steps == {"level-1"}
        assert run.n_rows("reads") == 8 and run.instrument_time_s == pytest.approx(2.0)
        assert run.seeds == {"procedure": 3}  # the seeds the run started with
        assert run.resumes[0]["dropped_rows"] == 8
        for level in (1, 2, 3):
            if f"level-{level}" in run.completed_steps:
                continue
            run.append("reads", _reads(level))
            run.complete_step(f"level-{level}")
        run.finish()
        df = run.table("reads")
        want = pd.concat([pd.DataFrame(_reads(lv)) for lv in (1, 2, 3)], ignore_index=True)
        pd.testing.assert_frame_equal(df, want, check_dtype=False)
        # a completed run is never resumed; another plan or resume=False starts a new run
        assert store.begin_run("relaxation", PLAN, resume=True).uid != uid
        assert len(store.runs()) == 2


def test_resume_matches_kind_and_plan_and_aborted_runs(tmp_path):
    with Store.open(tmp_path / "c.h5") as store:
        with pytest.raises(KeyboardInterrupt), store.begin_run("ber", PLAN) as run:
            run.append("bits", {"cell": [1, 2], "bit": [0, 1]})
            raise KeyboardInterrupt
        assert run.status == "aborted"
        # the rows of the unfinished step stay readable but are not committed
        assert run.n_rows("bits") == 2 and run.committed_rows() == {"bits": 0}
        assert store.begin_run("ber", {**PLAN, "repeats": 5}).uid != run.uid
        assert store.begin_run("fault_map", PLAN).uid != run.uid
        again = store.begin_run("ber", PLAN)
        assert again.uid == run.uid and again.status == "running"
        assert again.n_rows("bits") == 0  # cut on resume: the step is measured again
        assert again.resumes[0]["dropped_rows"] == 2


def test_aborted_run_keeps_committed_steps_and_resumes_without_duplicates(tmp_path):
    with Store.open(tmp_path / "c.h5") as store:
        with pytest.raises(KeyboardInterrupt), store.begin_run("ber", PLAN) as run:
            run.append("bits", {"cell": [1, 2], "bit": [0, 1]})
            run.complete_step("cycle-0")
            run.append("bits", {"cell": [3, 4], "bit": [1, 1]})  # cycle 1, interrupted
            raise KeyboardInterrupt
        assert run.status == "aborted" and run.steps == ["cycle-0"]
        with store.begin_run("ber", PLAN) as again:
            assert again.uid == run.uid and again.completed_steps == {"cycle-0"}
            again.append("bits", {"cell": [3, 4], "bit": [1, 1]})
            again.complete_step("cycle-1")
        assert again.status == "completed"
        assert again.table("bits")["cell"].tolist() == [1, 2, 3, 4]
        assert store.begin_run("ber", PLAN, resume=False).uid != run.uid


def test_append_validation_writes_nothing(tmp_path):
    with Store.open(tmp_path / "c.h5") as store:
        run = store.begin_run("read_fluctuation", PLAN)
        run.append("reads", _reads(1))
        bad = [
            {k: v for k, v in _reads(1).items() if k != "g_siemens"},  # missing column
            {**_reads(1), "extra": 1.0},  # unknown column
            {**_reads(1), "g_siemens": np.zeros(3)},  # unequal length
            {**_reads(1), "g_siemens": ["a"] * 8},  # text into a number column
            {**_reads(1), "level": 1.5},  # non-integral into an int column
            {**_reads(1), "cell": -1},  # negative into uint32
            {**_reads(1), "mode": 3.0},  # number into a label column
            {**_reads(1), "g_siemens": np.zeros((8, 2))},  # 2-D
        ]
        for columns in bad:
            with pytest.raises(StoreError) as info:
                run.append("reads", columns)
            assert str(tmp_path / "c.h5") in str(info.value) and "reads" in str(info.value)
        assert run.n_rows("reads") == 8
        run.append("pairs", {"a": ["x"], "b": ["y"], "v": [1.0]})
        with pytest.raises(StoreError, match="128 bytes"):  # new label in a, bad label in b
            run.append("pairs", {"a": ["new"], "b": ["z" * 200], "v": [2.0]})
        pairs = run.table("pairs", categorical=True)
        assert list(pairs["a"].cat.categories) == ["x"]  # "new" was not added
        assert list(pairs["b"].cat.categories) == ["y"] and run.n_rows("pairs") == 1
        with pytest.raises(StoreError, match="_private"):
            run.append("t", {"_private": [1]})
        run.complete_step("a")
        with pytest.raises(StoreError, match="not completed before"):
            run.complete_step("a")
        run.finish()
        with pytest.raises(StoreError, match="running run"):
            run.append("reads", _reads(2))


def test_read_only_and_lookup_errors(tmp_path):
    path = tmp_path / "c.h5"
    with Store.open(path) as store:
        store.begin_run("x", PLAN).finish()
    with Store.open(path, "r") as store:
        run = store.run("last")
        with pytest.raises(StoreError, match="read-only"):
            run.append("t", {"a": [1]})
        with pytest.raises(StoreError, match="begin a run"):
            store.begin_run("x", PLAN)
        with pytest.raises(StoreError, match="no such run"):
            store.run("nope")
        with pytest.raises(StoreError, match="it has: none"):
            run.table("reads")
    with pytest.raises(StoreError, match="no such file"):
        Store.open(tmp_path / "missing.h5", "r")
    with pytest.raises(StoreError, match="never truncated"):
        Store.open(path, "w")
    with pytest.raises(StoreError, match="file exists"):
        Store.open(path, "x")


@pytest.mark.parametrize("damage", ["empty", "garbage", "truncated", "not_a_store"])
def test_damaged_file_gives_clear_error_and_is_not_touched(tmp_path, damage):
    path = tmp_path / "d.h5"
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "garbage":
        path.write_bytes(np.random.default_rng(0).bytes(5000))
    elif damage == "truncated":
        with Store.open(path) as store:
            run = store.begin_run("x", PLAN)
            run.append("reads", _reads(1, n=50_000))
            run.finish()
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        with h5py.File(path, "w") as f:
            f["x"] = 1
    before = sha(path)
    for mode in ("a", "r", "r+"):
        with pytest.raises(StoreError) as info:
            Store.open(path, mode)
        err = info.value
        assert isinstance(err, ConfigError) and isinstance(err, CimlabError)
        assert str(path) in str(err)
        expected_words = {"empty": "empty", "garbage": "signature", "truncated": "truncated",
                          "not_a_store": "cimlab-store"}[damage]
        assert expected_words in str(err)
    assert sha(path) == before


def test_torn_commit_record_is_not_a_commit(tmp_path):
    path = tmp_path / "c.h5"
    with Store.open(path) as store:
        run = store.begin_run("x", PLAN)
        for k in range(3):
            run.append("reads", _reads(k))
            run.complete_step(f"s{k}")
        uid = run.uid
    with h5py.File(path, "a") as f:  # damage the last commit's checksum
        f[f"runs/{uid}/steps/crc"][2] ^= 1
    with Store.open(path) as store:
        assert store.run(uid).steps == ["s0", "s1"]
        run = store.begin_run("x", PLAN)
        assert run.uid == uid and run.n_rows("reads") == 16
        run.append("reads", _reads(2))
        run.complete_step("s2")
        assert run.steps == ["s0", "s1", "s2"] and run.n_rows("reads") == 24


def test_unborn_run_group_is_ignored(tmp_path):
    path = tmp_path / "c.h5"
    with Store.open(path) as store:
        store.begin_run("x", PLAN).finish()
    with h5py.File(path, "a") as f:  # begin_run killed before writing the uid attribute
        f["runs"].create_group("20990101T000000Z-000000")
    with Store.open(path) as store:
        assert len(store.runs()) == 1
        store.begin_run("x", {"other": 1})
        assert len(store.runs()) == 2


def test_reading_while_another_process_writes(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "live.h5"
    with Store.open(path) as store:
        run = store.begin_run("x", PLAN)
        run.append("reads", _reads(1))
        run.complete_step("s1")
    code = (
        "import sys, time\n"
        "from cimlab.store import Store\n"
        f"s = Store.open({str(path)!r}, 'a')\n"
        "print('ready', flush=True)\n"
        "sys.stdin.readline()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        with Store.open(path, "r") as store:
            assert store.live
            assert store.run("last").steps == ["s1"]
        with pytest.raises(StoreError, match="locked"):
            Store.open(path, "a")
    finally:
        proc.communicate("\n", timeout=30)


def test_damaged_run_inside_a_readable_file(tmp_path):
    path = tmp_path / "c.h5"
    with Store.open(path) as store:
        good = store.begin_run("x", PLAN)
        good.append("reads", _reads(1))
        good.finish()
        bad = store.begin_run("y", PLAN)
        bad.append("reads", _reads(1))
        bad.finish()
        good_uid, bad_uid = good.uid, bad.uid
    with h5py.File(path, "a") as f:
        del f[f"runs/{bad_uid}/tables/reads/g_siemens"]
    with Store.open(path, "r") as store:
        runs = store.runs().set_index("uid")
        assert runs.loc[good_uid, "status"] == "completed"
        assert runs.loc[bad_uid, "status"].startswith("damaged")
        with pytest.raises(StoreError, match=f"{bad_uid}/tables/reads"):
            store.run(bad_uid).table("reads")
        assert len(store.run(good_uid).table("reads")) == 8

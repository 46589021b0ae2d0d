"""``cimlab compact``: a finished store becomes smaller with every value and attribute equal; runs
that could still append are refused; a failure at any point leaves the store as it was."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from cimlab.cli.main import main
from cimlab.store import Store, StoreError
from cimlab.store import compact as cp

N_STEPS = 12
ROWS = 4096


def _write(path: Path, *, finish: bool = True) -> None:
    """A relaxation-like run: quantised conductances (as an instrument with a finite resolution
    returns them), repeated cells and levels: the redundancy compression finds in real stores."""
    gen = np.random.default_rng(7)
    with Store.open(path, "a") as store:
        run = store.begin_run("relaxation", {"levels": N_STEPS}, seeds={"procedure": 3})
        for k in range(N_STEPS):
            g = np.round(gen.normal(20e-6 + k * 1e-6, 0.8e-6, ROWS) / 1e-8) * 1e-8
            run.append("reads", {"cell": np.arange(ROWS, dtype=np.uint32), "level": k,
                                 "g_siemens": g, "time_s": float(k * 60), "temp_k": 300.0,
                                 "mode": ["verify", "single_shot"][k % 2]})
            run.complete_step(f"level-{k}")
        if finish:
            run.finish("completed")


def _tables(path: Path) -> dict[str, pd.DataFrame]:
    with Store.open(path, "r") as store:
        return {f"{r.uid}/{t}": r.table(t) for r in store for t in r.tables}


def test_compact_in_place_is_smaller_and_equal(tmp_path: Path) -> None:
    path = tmp_path / "s.h5"
    _write(path)
    before = _tables(path)
    with Store.open(path, "r") as store:
        meta_before = [r.metadata for r in store]
    size = path.stat().st_size
    result = cp.compact(path)
    assert result.written == path and result.bytes_before == size
    assert result.bytes_after == path.stat().st_size < size / 2
    assert result.columns_compressed >= 6  # 6 columns + the labels of 'mode'
    after = _tables(path)
    assert before.keys() == after.keys()
    for key in before:
        pd.testing.assert_frame_equal(before[key], after[key])
    with Store.open(path, "r") as store:
        assert [r.metadata for r in store] == meta_before
    with h5py.File(path, "r") as f:
        tg = next(iter(f["runs"].values()))["tables"]["reads"]
        assert tg["g_siemens"].compression == "gzip" and tg["g_siemens"].shuffle
    assert not list(tmp_path.glob("*.compact-tmp"))


def test_compacted_store_takes_new_runs_uncompressed(tmp_path: Path) -> None:
    path = tmp_path / "s.h5"
    _write(path)
    cp.compact(path)
    with Store.open(path, "a") as store:
        run = store.begin_run("read_fluctuation", {"n": 1})
        run.append("reads", {"cell": np.arange(3, dtype=np.uint32), "g_siemens": 1e-5})
        run.complete_step("s0")
        run.finish("completed")
        uid = run.uid
    with h5py.File(path, "r") as f:
        assert f["runs"][uid]["tables"]["reads"]["g_siemens"].compression is None
    with Store.open(path, "r") as store:
        assert len(store) == 2 and store.run(uid).n_rows("reads") == 3


def test_out_leaves_the_original(tmp_path: Path) -> None:
    path, out = tmp_path / "s.h5", tmp_path / "small.h5"
    _write(path)
    raw = path.read_bytes()
    cp.compact(path, out)
    assert path.read_bytes() == raw
    pd.testing.assert_frame_equal(*(next(iter(_tables(p).values())) for p in (path, out)))
    with pytest.raises(StoreError, match=r"out.*no file exists"):
        cp.compact(path, out)


@pytest.mark.parametrize("finish", [False, "aborted"])
def test_runs_that_may_append_are_refused(tmp_path: Path, finish: object) -> None:
    path = tmp_path / "s.h5"
    _write(path, finish=False)
    if finish == "aborted":
        with Store.open(path, "a") as store:
            next(iter(store)).finish("aborted")
    raw = path.read_bytes()
    status = "aborted" if finish else "running"
    with pytest.raises(StoreError, match=f"status '{status}'"):
        cp.compact(path)
    assert path.read_bytes() == raw


def test_failure_before_the_rename_leaves_the_store(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "s.h5"
    _write(path)
    raw = path.read_bytes()

    def interrupted(*_a: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cp.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        cp.compact(path)
    assert path.read_bytes() == raw
    assert not list(tmp_path.glob("*.compact-tmp"))


def test_a_copy_that_differs_is_found(tmp_path: Path) -> None:
    path, out = tmp_path / "s.h5", tmp_path / "c.h5"
    _write(path)
    cp.compact(path, out)
    with h5py.File(path, "r") as a, h5py.File(out, "r+") as b:
        assert cp._differences(a, b) is None
        ds = next(iter(b["runs"].values()))["tables"]["reads"]["g_siemens"]
        ds[5] = ds[5] + 1e-9
        assert cp._differences(a, b).endswith("/g_siemens")


def test_no_room_is_one_error_and_changes_nothing(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "s.h5"
    _write(path)
    raw = path.read_bytes()
    monkeypatch.setattr(cp.space, "free_bytes", lambda _p: 1000)
    with pytest.raises(StoreError, match="1000 bytes free"):
        cp.compact(path)
    assert path.read_bytes() == raw


def test_cli_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "s.h5"
    _write(path)
    assert main(["compact", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["bytes_after"] < out["bytes_before"] and out["ratio"] > 2
    assert out["written"] == str(path)

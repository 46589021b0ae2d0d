"""Free-space checks of the store: a full disk stops a run before its step is written, in one
clear error, and the run resumes exactly after space is freed."""

from __future__ import annotations

import errno

import numpy as np
import pandas as pd
import pytest

from cimlab.store import DiskFullError, Store, space, table

PLAN = {"kind": "test"}


def _rows(step: int, n: int = 5000) -> dict:
    rng = np.random.default_rng(step)
    return {
        "cell": np.arange(n, dtype=np.uint32),
        "step": step,
        "g_siemens": rng.normal(1e-5, 1e-6, n),
        "mode": np.where(np.arange(n) % 2 == 0, "a", "b"),
    }


def _write(path, steps, fail_at: int | None = None, monkeypatch=None) -> None:
    with Store.open(path) as store:
        run = store.begin_run("test", PLAN)
        with run:
            for k in steps:
                if f"s{k}" in run.completed_steps:
                    continue
                if k == fail_at:
                    monkeypatch.setattr(space, "free_bytes", lambda path: 10_000)
                run.append("reads", _rows(k))
                run.complete_step(f"s{k}")


def test_append_needs_the_chunks_it_allocates_plus_the_reserve():
    assert space.append_bytes(1, 0, {"a": 8, "b": 4}, 8192) == 8192 * 12
    assert space.append_bytes(10, 5, {"a": 8}, 8192) == 0  # inside the allocated chunk
    assert space.append_bytes(8192, 8191, {"a": 8}, 8192) == 8192 * 8
    assert space.needed_bytes(1000) == 2000 + space.RESERVE_BYTES


def test_disk_full_stops_before_the_step_and_resume_equals_a_clean_write(tmp_path,
                                                                            monkeypatch):
    clean = tmp_path / "clean.h5"
    _write(clean, range(6))
    full = tmp_path / "full.h5"
    with monkeypatch.context() as m, pytest.raises(DiskFullError) as exc:
        _write(full, range(6), fail_at=3, monkeypatch=m)
    msg = str(exc.value)
    assert "disk full at step 4" in msg and "nothing after step 3 ('s2') was committed" in msg
    assert "re-run" in msg and "\n" not in msg
    with Store.open(full, "r") as store:
        run = store.run("last")
        assert run.status == "aborted" and run.steps == ["s0", "s1", "s2"]
        assert run.n_rows("reads") == 3 * 5000  # nothing of step 3 was written
    _write(full, range(6))  # space freed: the same loop resumes
    with Store.open(full, "r") as a, Store.open(clean, "r") as b:
        ra, rb = a.run("last"), b.run("last")
        assert ra.steps == rb.steps and ra.status == "completed"
        pd.testing.assert_frame_equal(ra.table("reads"), rb.table("reads"))


def test_enospc_from_hdf5_is_the_same_clean_stop(tmp_path, monkeypatch):
    def no_space(*args, **kwargs):  # what h5py raises when a write hits a full disk
        raise OSError(errno.ENOSPC, "Can't write data (file write failed: errno = 28, "
                      "error message = 'No space left on device')")

    path = tmp_path / "s.h5"
    with Store.open(path) as store:
        run = store.begin_run("test", PLAN)
        run.append("reads", _rows(0))
        run.complete_step("s0")
        monkeypatch.setattr(table, "append", no_space)
        with pytest.raises(DiskFullError, match="disk full at step 2"):
            run.append("reads", _rows(1))
        monkeypatch.undo()
        run.finish("aborted")
    with Store.open(path, "r") as store:
        assert store.run("last").steps == ["s0"]

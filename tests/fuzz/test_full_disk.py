"""A full disk during ``characterize``: one line naming the step, nothing of that step
committed, and a re-run after freeing space that resumes to the same data as a clean run.

The disk is filled by injection (``os.statvfs`` reports little free space from a chosen
call on, as a disk filling up under the run would) and, where this process may mount file
systems (root in a sandbox), by a real 3 MB tmpfs."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cimlab.cli.main import main
from cimlab.store import Store
from tests.fuzz.mutate import one_clear_line

ROOT = Path(__file__).resolve().parents[2]
STATION = str(ROOT / "instruments" / "emulated.toml")

FAULT_MAP = """[plan]
name = "fm"
seed = 3
[[experiment]]
kind = "fault_map"
cells = { tiles = [0, 1] }
"""
RELAXATION = """[plan]
name = "rx"
seed = 5
[[experiment]]
kind = "relaxation"
cells = { start = 0, count = 512 }
times_s = [0.1, 1.0, 10.0, 100.0]
"""

_REAL_STATVFS = os.statvfs


class _Statvfs:
    def __init__(self, free: int):
        self.f_bavail, self.f_frsize = free, 1


def _fill_disk_after(monkeypatch, n_calls: int, free: int = 100_000) -> None:
    """``os.statvfs`` answers truthfully ``n_calls`` times, then reports ``free`` bytes."""
    calls = [0]

    def fake(path):  # type: ignore[no-untyped-def]
        calls[0] += 1
        return _REAL_STATVFS(path) if calls[0] <= n_calls else _Statvfs(free)

    monkeypatch.setattr(os, "statvfs", fake)


def _characterize(plan: Path, out: Path, capsys) -> tuple[int, str]:
    code = main(["characterize", str(plan), "--station", STATION, "--out", str(out),
                 "--quiet"])
    return code, capsys.readouterr().err


def _tables(path: Path) -> tuple[list[str], dict[str, pd.DataFrame]]:
    with Store.open(path, "r") as store:
        run = store.run("last")
        return run.steps, {t: run.table(t) for t in run.tables}


@pytest.fixture(scope="module")
def plans(tmp_path_factory):
    """The plan files and the store of an uninterrupted run of each (same seed)."""
    d = tmp_path_factory.mktemp("plans")
    out = {}
    for name, text in (("fm", FAULT_MAP), ("rx", RELAXATION)):
        p = d / f"{name}.toml"
        p.write_text(text)
        out[name] = p
        out[f"{name}-clean"] = d / f"{name}-clean.h5"
        assert main(["characterize", str(p), "--station", STATION, "--out",
                     str(out[f"{name}-clean"]), "--quiet"]) == 0
    return out


def test_fault_map_on_a_full_disk_stops_in_one_line_and_resumes_exactly(
        tmp_path, plans, monkeypatch, capsys, tally):
    tally.tried("full disk (injected)")
    clean = plans["fm-clean"]
    full = tmp_path / "full.h5"
    with monkeypatch.context() as m:
        _fill_disk_after(m, 0)
        code, err = _characterize(plans["fm"], full, capsys)
    assert code == 1 and one_clear_line(err), err
    assert "disk full at step 1" in err and "re-run" in err
    steps, tables = _tables(full)
    assert steps == [] and all(len(t) == 0 for t in tables.values())  # nothing committed
    # space freed: the same command resumes, and the data equal a clean run value for value
    assert _characterize(plans["fm"], full, capsys)[0] == 0
    steps, tables = _tables(full)
    clean_steps, clean_tables = _tables(clean)
    assert steps == clean_steps and tables.keys() == clean_tables.keys()
    for name, df in clean_tables.items():
        pd.testing.assert_frame_equal(tables[name], df)
    faults = tables["faults"]
    assert len(faults) == 2 * 256 * 64 and faults["cell"].is_unique
    assert (faults["g_after_set_siemens"] != 0).all()  # no row left unmeasured (zeros)
    tally.handled("full disk (injected)")


@pytest.mark.parametrize("fill_after", [2, 4])
def test_relaxation_full_disk_mid_run_keeps_every_committed_row(
        tmp_path, plans, monkeypatch, capsys, tally, fill_after):
    tally.tried("full disk (injected)")
    full = tmp_path / "full.h5"
    with monkeypatch.context() as m:
        _fill_disk_after(m, fill_after)
        code, err = _characterize(plans["rx"], full, capsys)
    assert code == 1 and one_clear_line(err), err
    steps_before, before = _tables(full)
    n = len(steps_before)
    assert f"disk full at step {n + 1}" in err
    if n:
        assert f"nothing after step {n} ('{steps_before[-1]}') was committed" in err
    with Store.open(full, "r") as store:
        committed = store.run("last").committed_rows()
    assert _characterize(plans["rx"], full, capsys)[0] == 0
    steps, after = _tables(full)
    assert steps[:n] == steps_before  # the committed steps are kept, not measured again
    for name, rows in committed.items():  # and their rows are unchanged, value for value
        pd.testing.assert_frame_equal(after[name].iloc[:rows], before[name].iloc[:rows])
    clean_steps, clean_tables = _tables(plans["rx-clean"])
    assert steps == clean_steps
    for name, df in clean_tables.items():  # nothing lost, nothing duplicated
        assert len(after[name]) == len(df), name
    reads = after["reads"]
    assert not reads.duplicated(["cell", "time_index"]).any()
    assert np.isfinite(reads["g_siemens"]).all() and (reads["g_siemens"] != 0).all()
    tally.handled("full disk (injected)")


def _mount_tmpfs(where: Path, size: str) -> bool:
    if os.geteuid() != 0:
        return False
    where.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                       capture_output=True)
    return r.returncode == 0


def test_a_real_small_file_system(tmp_path, plans, capsys, tally):
    fs = tmp_path / "fs"
    if not _mount_tmpfs(fs, "2m"):
        pytest.skip("cannot mount a tmpfs here (needs root); the injected tests cover it")
    try:
        tally.tried("full disk (tmpfs)")
        out = fs / "fm.h5"
        code, err = _characterize(plans["fm"], out, capsys)
        assert code == 1 and one_clear_line(err) and "disk full at step 1" in err, err
        # room for the store and two checkpoints of the emulated chip (~45 MB each, kept
        # next to the store at every committed step so that a resume continues on it)
        subprocess.run(["mount", "-o", "remount,size=160m", str(fs)], check=True)
        assert _characterize(plans["fm"], out, capsys)[0] == 0
        for name, df in _tables(plans["fm-clean"])[1].items():
            pd.testing.assert_frame_equal(_tables(out)[1][name], df)
        tally.handled("full disk (tmpfs)")
    finally:
        subprocess.run(["umount", str(fs)], capture_output=True)


def test_report_into_a_read_only_place_is_one_line(tmp_path, plans, monkeypatch, capsys,
                                                     tally):
    import errno

    tally.tried("read-only place")
    store = plans["fm-clean"]

    def read_only(self, *a, **k):  # type: ignore[no-untyped-def]
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))

    monkeypatch.setattr(Path, "mkdir", read_only)
    code = main(["report", str(store), "--out", str(tmp_path / "rep")])
    err = capsys.readouterr().err
    assert code == 1 and one_clear_line(err), err
    assert "Read-only file system" in err and "--out" in err
    tally.handled("read-only place")

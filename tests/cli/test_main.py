"""The ``cimlab`` entry point: Ctrl-C, a closed output pipe, errors in the user's terms, and
``cimlab runs`` ordering and columns."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import pytest

from cimlab.cli import campaign, storecmd
from cimlab.cli.main import EXIT_BROKEN_PIPE, main
from cimlab.store import Store

ROOT = Path(__file__).resolve().parents[2]


def _interrupt(args):
    raise KeyboardInterrupt


@pytest.mark.parametrize(("argv", "resumable"), [
    (["characterize", "plan.toml"], True),
    (["runs", "store.h5"], False),
])
def test_ctrl_c_exits_130_and_says_how_to_resume(monkeypatch, capsys, argv, resumable):
    monkeypatch.setattr(campaign, "_characterize", _interrupt)
    monkeypatch.setattr(storecmd, "_runs", _interrupt)
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert err.startswith("cimlab: interrupted (outputs were switched off)")
    assert ("re-run the same command to resume" in err) == resumable


def _store_with_runs(path: Path, n: int = 3) -> list[str]:
    with Store.open(path, "a") as store:
        uids = []
        for i in range(n):
            with store.begin_run("fault_map", {"plan": f"p{i}"}) as run:
                run.append("faults", {"cell": [i], "state": ["ok"]})
                run.complete_step("batch-0000")
            uids.append(run.uid)
    return uids


def test_runs_into_a_closed_pipe_exits_quietly(tmp_path):
    """``cimlab runs FILE | head``: the reader goes away; no BrokenPipeError traceback."""
    store = tmp_path / "s.h5"
    _store_with_runs(store)
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    r, w = os.pipe()
    os.close(r)  # the reader is gone before cimlab writes anything
    try:
        proc = subprocess.run([sys.executable, "-m", "cimlab.cli.main", "runs", str(store)],
                              cwd=ROOT, env=env, stdout=w, stderr=subprocess.PIPE, timeout=60)
    finally:
        os.close(w)
    err = proc.stderr.decode(errors="replace")
    assert proc.returncode == EXIT_BROKEN_PIPE, err
    assert "Traceback" not in err and "BrokenPipeError" not in err and "Exception" not in err


def test_runs_lists_by_start_time_with_resumes(tmp_path, capsys):
    store = tmp_path / "s.h5"
    uids = _store_with_runs(store)
    # same-second runs: the random uid suffix must not decide the order. Give the runs
    # start times in the reverse of their uid order.
    by_uid = sorted(uids)
    with h5py.File(store, "a") as f:
        for k, uid in enumerate(reversed(by_uid)):
            f["runs"][uid].attrs["started_unix"] = 1.7e9 + k
    with Store.open(store, "a") as s:
        assert s.uids == list(reversed(by_uid))
        assert s.run("last").uid == by_uid[0]
        # an interrupted run resumed twice shows its resumes
        with pytest.raises(KeyboardInterrupt), s.begin_run("ber", {"b": 1}) as run:
            raise KeyboardInterrupt
        ber_uid = run.uid
        s.begin_run("ber", {"b": 1}).finish("aborted")
        s.begin_run("ber", {"b": 1}).finish("completed")
    assert main(["runs", str(store)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    end = lines[0].index("resumes") + len("resumes")  # right-aligned column
    rows = [ln for ln in lines[1:] if ln[:8].isdigit()]
    assert [r.split()[0] for r in rows] == [*reversed(by_uid), ber_uid]
    assert [r[end - 3: end].strip() for r in rows] == ["0", "0", "0", "2"]
    assert "resumes:" in out  # the footnote explains the columns


@pytest.mark.parametrize(("flags", "want"), [
    (["--g-max-us", "4000"], ["--g-max-us", "1000] uS", "got 4000"]),
    (["--g-min-us", "50"], ["--g-max-us", "above --g-min-us = 50 uS", "got 40"]),
    (["--tolerance-us", "0"], ["--tolerance-us", "uS", "got 0"]),
    (["--n-reads", "0"], ["--n-reads", "got 0"]),
])
def test_program_verify_flag_errors_use_the_flag_and_its_unit(capsys, flags, want):
    assert main(["program-verify", *flags, "--no-progress"]) == 1
    err = capsys.readouterr().err
    for w in want:
        assert w in err
    for si in ("g_max_siemens", "g_min_siemens", "tolerance_siemens", "n_reads", "0.004"):
        assert si not in err


@pytest.mark.parametrize("hold", ["1,abc", "-5", "inf"])
def test_program_verify_hold_delays_are_checked_before_the_bench(capsys, hold):
    with pytest.raises(SystemExit) as exc:
        main(["program-verify", "--hold", hold])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--hold" in err and ("seconds separated by commas" in err or "delays >= 0" in err)

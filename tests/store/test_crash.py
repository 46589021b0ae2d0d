"""SIGKILL a writer at random points many times; the store must stay readable, keep every
committed row, and resume to exactly the expected rows (no duplicates, no loss)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cimlab.store import Store
from tests.store.crash_writer import aux_data, step_data

ROOT = Path(__file__).resolve().parents[2]
N_STEPS = int(os.environ.get("CIMLAB_CRASH_STEPS", "150"))
#: Kills per test run; raise with CIMLAB_CRASH_KILLS for a longer soak.
N_KILLS = int(os.environ.get("CIMLAB_CRASH_KILLS", "16"))


def expected(steps: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    ks = [int(s.split("-")[1]) for s in steps]
    reads = [pd.DataFrame(step_data(k, p)) for k in ks for p in range(3)]
    aux = [pd.DataFrame(aux_data(k)) for k in ks if k % 3 == 0]
    return (pd.concat(reads, ignore_index=True) if reads else None,
            pd.concat(aux, ignore_index=True) if aux else None)


def check_committed(path: Path) -> int:
    """Open read-only, check every committed row; return the number of completed steps."""
    with Store.open(path, "r") as store:
        runs = store.runs()
        assert len(runs) <= 1, "a resume must never start a second run"
        if len(runs) == 0:
            return 0
        run = store.run(runs.uid[0])
        steps = run.steps
        assert steps == sorted(steps) and len(set(steps)) == len(steps)
        want_reads, want_aux = expected(steps)
        committed = run.committed_rows()
        if want_reads is None:
            assert committed.get("reads", 0) == 0
            return 0
        got = run.table("reads", committed_only=True)
        pd.testing.assert_frame_equal(got, want_reads, check_dtype=False)
        assert run.n_rows("reads") >= len(want_reads)  # uncommitted rows may follow
        if want_aux is not None:
            pd.testing.assert_frame_equal(run.table("aux", committed_only=True), want_aux,
                                          check_dtype=False)
        return len(steps)


def _start(path: Path) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-m", "tests.store.crash_writer", str(path), str(N_STEPS)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")
def test_sigkill_at_random_points_then_resume(tmp_path):
    path = tmp_path / "crash.h5"
    rng = np.random.default_rng(20261123)
    progress = []
    for i in range(N_KILLS):
        proc = _start(path)
        if i % 4 == 0:
            delay = rng.uniform(0.0, 0.3)  # also kill during start-up / begin_run / resume
            time.sleep(delay)
        else:
            line = proc.stdout.readline()  # blocks until the run is begun
            assert line.strip() == "ready", proc.stderr.read()
            for _ in range(rng.integers(0, 6)):  # let it commit a few steps ...
                if not proc.stdout.readline():
                    break
            time.sleep(rng.uniform(0.0, 0.03))  # ... then kill anywhere in what follows
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        progress.append(check_committed(path) if path.exists() else 0)
    print("progress", progress)
    assert progress[-1] > 0, f"the writer never committed a step: {progress}"
    assert progress[-1] < N_STEPS, "kills came too late to interrupt the run"

    proc = _start(path)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    with Store.open(path, "r") as store:
        assert len(store.runs()) == 1
        run = store.run("last")
        assert run.status == "completed"
        assert run.steps == [f"step-{k:04d}" for k in range(N_STEPS)]
        want_reads, want_aux = expected(run.steps)
        pd.testing.assert_frame_equal(run.table("reads"), want_reads, check_dtype=False)
        pd.testing.assert_frame_equal(run.table("aux"), want_aux, check_dtype=False)
        assert run.instrument_time_s == pytest.approx(0.5 * N_STEPS)
        assert len(run.resumes) >= 1

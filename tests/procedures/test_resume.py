"""A bake campaign SIGKILLed mid-bake and re-run ends with the same data as an uninterrupted
one: same cells, the same number of reads per step, no duplicates.

The emulated bench runs in this test process (like a real bench, it survives the crash of the
host script); ``cimlab characterize`` runs as a real subprocess and is killed with SIGKILL
while the oven is ramping for the third bake segment.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cimlab.instruments.emulator import EmulatedBench
from cimlab.instruments.station import Station
from cimlab.procedures.campaign import run_plan
from cimlab.procedures.plan import load_plan
from cimlab.store import Store
from tests.procedures.bench_util import station_file

ROOT = Path(__file__).resolve().parents[2]
SEED = 7
N_CELLS = 512
SCHEDULE = [60.0, 600.0, 3600.0, 36000.0, 180000.0, 360000.0]

PLAN = f"""
[plan]
name = "bake-resume"
seed = 3

[[experiment]]
kind = "bake_retention"
cells = {{ start = 16384, count = {N_CELLS} }}
temps_c = [150.0]
schedule_s = {SCHEDULE}
reads_per_step = 2
"""


def _characterize(plan: Path, station: Path, out: Path) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-m", "cimlab.cli.main", "characterize", str(plan), "--station",
         str(station), "--out", str(out), "--no-progress"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _kill_during_bake(proc: subprocess.Popen, world, segment: int, timeout_s: float = 120.0
                      ) -> None:
    """SIGKILL ``proc`` while the oven heats up for bake segment ``segment`` (1-based)."""
    edges, was_on = 0, False
    ambient = world.ambient_k
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace")
            pytest.fail(f"characterize ended before the kill (rc {proc.returncode}):\n{out}")
        on = bool(world.oven_output)
        if on and not was_on:
            edges += 1
        was_on = on
        if edges >= segment and on and world.oven_temp_k > ambient + 20.0:
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
            return
        time.sleep(0.0005)
    proc.kill()
    pytest.fail("the bake segment never started")


def _tables(path: Path) -> dict:
    with Store.open(path, mode="r") as s:
        runs = [r for r in s if r.kind == "bake_retention"]
        assert len(runs) == 1
        run = runs[0]
        return {"status": run.status, "steps": run.steps, "resumes": run.resumes,
                "bench_resumes": run.meta.get("bench_resumes", []),
                "reads": run.table("reads"), "bakes": run.table("bakes"),
                "programmed": run.table("programmed")}


@pytest.mark.slow
def test_sigkill_mid_bake_then_rerun_equals_uninterrupted(tmp_path):
    plan = tmp_path / "bake.toml"
    plan.write_text(PLAN)
    killed_store = tmp_path / "killed.h5"
    bench = EmulatedBench("default", seed=SEED).start()
    try:
        station = station_file(tmp_path, addresses=bench.addresses, name="external.toml")
        proc = _characterize(plan, station, killed_store)
        _kill_during_bake(proc, bench.world, segment=3)
        assert proc.returncode == -signal.SIGKILL
        mid = _tables(killed_store)
        assert mid["status"] == "running"
        assert "T0-read-002" in mid["steps"] and "T0-bake-003" not in mid["steps"]
        # the killed run's log (STORE.log) holds every line written before the kill
        log_text = (tmp_path / "killed.h5.log").read_text()
        assert "step T0-read-002 committed" in log_text and "cimlab.scpi: " in log_text
        # re-run the same command: resumes and completes
        proc = _characterize(plan, station, killed_store)
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out.decode(errors="replace")
        log_text = (tmp_path / "killed.h5.log").read_text()
        assert re.search(r"resuming run \S+ \(bake_retention\) after \d+ committed steps "
                         r"\(last T0-read-002\)", log_text), log_text[-3000:]
    finally:
        bench.stop()
    # the same campaign, never interrupted, on a fresh bench with the same chip seed
    clean_store = tmp_path / "clean.h5"
    with Station.open(station_file(tmp_path, seed=SEED, name="inproc.toml")) as st:
        run_plan(load_plan(plan), st, clean_store, progress=False)

    killed, clean = _tables(killed_store), _tables(clean_store)
    assert killed["status"] == clean["status"] == "completed"
    assert len(killed["resumes"]) == 1
    # a served bench outlives the process like a real one: the resume records the gap and
    # the oven at resume, and which rows were measured after it (docs/safety.md)
    (gap,) = killed["bench_resumes"]
    assert gap["gap_s"] >= 0 and "oven_temp_c" in gap and "oven_heater_on" in gap
    assert gap["rows_before"]["reads"] == 3 * 2 * N_CELLS  # steps 0-2 committed
    assert clean["bench_resumes"] == []
    assert killed["steps"] == clean["steps"]
    for name in ("reads", "bakes", "programmed"):
        a, b = killed[name], clean[name]
        assert list(a.columns) == list(b.columns)
        assert len(a) == len(b), name
    ra, rb = killed["reads"], clean["reads"]
    key = ["temp_index", "step", "repeat", "cell"]
    assert not ra.duplicated(key).any() and not rb.duplicated(key).any()
    assert sorted(ra["step"].unique()) == list(range(len(SCHEDULE) + 1))
    for step in range(len(SCHEDULE) + 1):
        ca = np.sort(ra.loc[ra["step"] == step, "cell"].to_numpy())
        cb = np.sort(rb.loc[rb["step"] == step, "cell"].to_numpy())
        assert ca.size == cb.size == 2 * N_CELLS
        assert np.array_equal(ca, cb)
    assert np.array_equal(np.sort(ra["bake_time_s"].unique()), [0.0, *SCHEDULE])
    assert killed["bakes"]["step"].tolist() == list(range(1, len(SCHEDULE) + 1))
    assert killed["programmed"]["cell"].is_unique

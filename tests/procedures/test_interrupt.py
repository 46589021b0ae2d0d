"""Ctrl-C during ``cimlab characterize``: the run ends ``aborted`` (not ``running``), the
command says how to resume, and re-running it completes the run with the same rows as an
uninterrupted campaign.

As in test_resume.py, the emulated bench runs in this test process (a real bench outlives the
host script) and ``cimlab characterize`` runs as a real subprocess; it gets SIGINT (what
Ctrl-C sends) while it is cycling the cells of the endurance experiment, between two of its
read points.
"""

from __future__ import annotations

import os
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
SEED = 5
CYCLES = 300

PLAN = f"""
[plan]
name = "interrupt"
seed = 2

[[experiment]]
kind = "fault_map"
cells = {{ start = 0, count = 128 }}

[[experiment]]
kind = "endurance"
cells = {{ start = 4096, count = 128 }}
cycles = {CYCLES}
read_points = 6
conditions = [{{ name = "strong", icc_a = 55e-6, v_reset = 2.5, width_s = 1e-7 }}]
"""


def _characterize(plan: Path, station: Path, out: Path) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-m", "cimlab.cli.main", "characterize", str(plan), "--station",
         str(station), "--out", str(out)],  # progress on: tqdm must stay quiet in a pipe
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _pulses(bench: EmulatedBench) -> int:
    return sum(m.startswith("ARR:PULS") for m in bench.log("array"))


def _interrupt_after(proc: subprocess.Popen, bench: EmulatedBench, pulses: int,
                     timeout_s: float = 60.0) -> None:
    """Send SIGINT once the array has received ``pulses`` pulse commands."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"characterize ended before the interrupt (rc {proc.returncode}):\n"
                        f"{out.decode(errors='replace')}{err.decode(errors='replace')}")
        if _pulses(bench) >= pulses:
            proc.send_signal(signal.SIGINT)
            return
        time.sleep(0.002)
    proc.kill()
    pytest.fail(f"the array never received {pulses} pulses")


def _runs(path: Path) -> dict:
    with Store.open(path, mode="r") as s:
        return {r.kind: {"status": r.status, "steps": r.steps, "resumes": len(r.resumes),
                         "table": r.table("cycles" if r.kind == "endurance" else "faults"),
                         "uid": r.uid}
                for r in s}


@pytest.mark.slow
def test_sigint_aborts_the_run_and_rerun_resumes_to_the_uninterrupted_rows(tmp_path):
    plan = tmp_path / "plan.toml"
    plan.write_text(PLAN)
    store = tmp_path / "interrupted.h5"
    bench = EmulatedBench("default", seed=SEED).start()
    try:
        station = station_file(tmp_path, addresses=bench.addresses, name="external.toml")
        proc = _characterize(plan, station, store)
        # the fault map takes 4 pulse commands; the endurance reads at cycles 0, 2, 9, 30,
        # 95, 299: interrupt while it cycles towards the read at cycle 95
        _interrupt_after(proc, bench, 4 + 2 * 60)
        out, err = proc.communicate(timeout=60)
        out, err = out.decode(errors="replace"), err.decode(errors="replace")
        assert proc.returncode == 130, out + err
        assert "Traceback" not in err
        assert "interrupted" in err and "re-run the same command to resume" in err
        assert "\r" not in err and "\x1b[" not in err  # no progress-bar debris in a pipe
        mid = _runs(store)
        assert mid["fault_map"]["status"] == "completed"
        assert mid["endurance"]["status"] == "aborted"
        assert "strong-to-000000030" in mid["endurance"]["steps"]
        assert "strong-to-000000095" not in mid["endurance"]["steps"]

        proc = _characterize(plan, station, store)  # the same command again
        out, err = proc.communicate(timeout=120)
        out = out.decode(errors="replace")
        assert proc.returncode == 0, out + err.decode(errors="replace")
        assert "completed before" in out and "+4r" in out  # 4 read points were kept
        assert "steps N+Mr: N steps measured now, M steps completed by an earlier" in out
    finally:
        bench.stop()

    clean_store = tmp_path / "clean.h5"
    with Station.open(station_file(tmp_path, seed=SEED, name="inproc.toml")) as st:
        run_plan(load_plan(plan), st, clean_store, progress=False)

    resumed, clean = _runs(store), _runs(clean_store)
    assert resumed["endurance"]["uid"] == mid["endurance"]["uid"]  # the same run, continued
    assert resumed["endurance"]["status"] == "completed"
    assert resumed["endurance"]["resumes"] == 1
    for kind in ("fault_map", "endurance"):
        assert resumed[kind]["steps"] == clean[kind]["steps"]
        a, b = resumed[kind]["table"], clean[kind]["table"]
        assert list(a.columns) == list(b.columns)
        assert len(a) == len(b), kind
    a, b = resumed["endurance"]["table"], clean["endurance"]["table"]
    key = ["condition", "cycle", "cell"]
    assert not a.duplicated(key).any()
    assert np.array_equal(a[key].to_numpy(), b[key].to_numpy())
    assert sorted(a["cycle"].unique()) == [0, 2, 9, 30, 95, CYCLES - 1]

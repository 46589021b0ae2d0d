"""Kill a ``cimlab characterize`` at a committed-step point, re-run it, and compare the store
with an uninterrupted one value for value (used by tests/fuzz/test_kill_resume.py and
benchmarks/kill_resume_soak.py).

The station is the default kind: an in-process emulator (``[emulator] start = true``), on a
small chip (the default profile with 2 tiles: 32,768 cells) so that every run and its per-step
checkpoints are quick. Kill points are counted in checkpoints: the state file next to the
store (``<store>.chip.npz``) is replaced once per committed step, and a pending checkpoint
(``.pending``) exists while that step's store commit is being written; a kill is sent right
after the N-th commit or while the N-th pending checkpoint exists (between the world's save
and the store's commit, the narrowest window)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]

#: one tiny plan per experiment kind (every kind of cimlab.procedures.characterization)
PLANS: dict[str, str] = {
    "fault_map": """
[[experiment]]
kind = "fault_map"
cells = { start = 0, count = 2048 }
batch = 256
""",
    "programming_error": """
[[experiment]]
kind = "programming_error"
cells = { start = 0, count = 256 }
levels = { levels = 4 }
calibration_cells = 32
calibration_points = 4
batch = 64
verify = { max_pulses = 6, calibration_cells = 32, calibration_rounds = 1 }
""",
    "read_fluctuation": """
[[experiment]]
kind = "read_fluctuation"
cells = { start = 0, count = 128 }
levels = { levels = 4 }
repeats = 6
settle_s = 1.0
smu_cells = 2
smu_repeats = 2
verify = { scheme = "ispp", max_pulses = 6 }
""",
    "read_noise_series": """
[[experiment]]
kind = "read_noise_series"
cells = { start = 0, count = 8 }
levels = { levels = 4 }
fs_hz = 10.0
duration_s = 250.0
settle_s = 1.0
verify = { scheme = "ispp", max_pulses = 6 }
""",
    "relaxation": """
[[experiment]]
kind = "relaxation"
cells = { start = 0, count = 256 }
levels = { levels = 4 }
times_s = [0.1, 1.0, 10.0, 100.0, 1000.0]
verify = { scheme = "ispp", max_pulses = 8 }
""",
    "bake_retention": """
[[experiment]]
kind = "bake_retention"
cells = { start = 0, count = 128 }
levels = { levels = 4 }
temps_c = [150.0]
schedule_s = [60.0, 600.0, 3600.0, 36000.0]
verify = { scheme = "ispp", max_pulses = 6 }
""",
    "ber": """
[[experiment]]
kind = "ber"
cells = { start = 0, count = 1024 }
bits = 256
cycles = 3
structures = ["1T1R"]
conditions = [{ name = "strong", icc_a = 55e-6, v_reset = 2.5, width_s = 1e-7 }]
""",
    "endurance": """
[[experiment]]
kind = "endurance"
cells = { start = 0, count = 128 }
cycles = 60
read_points = 5
conditions = [{ name = "strong", icc_a = 55e-6, v_reset = 2.5, width_s = 1e-7 }]
""",
    # the first procedures a lab runs (per cell through the SMU): one committed step per cell
    # (per batch for forming)
    "forming": """
[[experiment]]
kind = "forming"
cells = { start = 0, count = 24 }
v_step = 0.05
batch = 4
""",
    "iv_sweep": """
[[experiment]]
kind = "iv_sweep"
cells = { start = 100, count = 4 }
cycles = 2
v_step = 0.1
compliance_a = 30e-6
""",
    "gate_calibration": """
[[experiment]]
kind = "gate_calibration"
cells = { start = 200, count = 4 }
repeats = 2
""",
}

#: chip profile per kind (default: the default profile on 2 tiles); forming needs a pristine chip
PROFILES: dict[str, str] = {"forming": "pristine"}

STATION = """
[station]
name = "kill-resume bench"
clock = "virtual"
[emulator]
start = true
profile = "{profile}"
seed = {seed}
[instruments.array]
address = "emulator"
[instruments.smu]
address = "emulator"
[instruments.oven]
address = "emulator"
[instruments.clock]
address = "emulator"
[limits]
set_bl_max_v = 3.0
set_wl_max_v = 3.5
reset_sl_max_v = 3.0
reset_wl_max_v = 5.0
set_icc_max_a = 700e-6
pulse_width_max_s = 1e-3
read_v_max_v = 0.5
mvm_v_max_v = 0.5
smu_v_max_v = 3.5
smu_i_max_a = 1e-3
oven_temp_max_c = 200.0
[calibration.transistor]
model = "square_law"
k_a_per_v2 = 2e-4
v_th_v = 0.5
"""


def small_profile(folder: Path, name: str = "default") -> Path:
    """The bundled profile ``name`` with 2 tiles (32,768 cells)."""
    from cimlab.physics.profile import profile_path

    text = Path(profile_path(name)).read_text()
    lines = [("n_tiles = 2" if ln.strip().startswith("n_tiles") else ln)
             for ln in text.splitlines()]
    if not any(ln.strip().startswith("n_tiles") for ln in lines):
        lines += ["", "[geometry]", "n_tiles = 2"]
    p = folder / f"small-{name}.toml"
    p.write_text("\n".join(lines) + "\n")
    return p


def setup(folder: Path, kind: str, seed: int = 11) -> tuple[Path, Path]:
    """(plan, station) files for ``kind`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    plan = folder / f"{kind}.toml"
    plan.write_text(f'[plan]\nname = "{kind}"\nseed = {seed}\n' + PLANS[kind])
    profile = PROFILES.get(kind, "default")
    station = folder / f"station-{profile}.toml"
    if not station.exists():
        station.write_text(STATION.format(profile=small_profile(folder, profile), seed=seed))
    return plan, station


def characterize(plan: Path, station: Path, out: Path) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, "-m", "cimlab.cli.main", "characterize", str(plan), "--station",
         str(station), "--out", str(out), "--quiet"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def run_to_end(plan: Path, station: Path, out: Path, timeout_s: float = 300.0) -> str:
    proc = characterize(plan, station, out)
    text, _ = proc.communicate(timeout=timeout_s)
    text = text.decode(errors="replace")
    if proc.returncode != 0:
        raise AssertionError(f"characterize failed (rc {proc.returncode}):\n{text}")
    return text


def _ino(p: Path) -> int | None:
    try:
        return os.stat(p).st_ino
    except FileNotFoundError:
        return None


def kill_at(plan: Path, station: Path, out: Path, commits: int, *, pending: bool,
            sig: int = signal.SIGKILL, timeout_s: float = 300.0) -> bool:
    """Run characterize and send ``sig`` after ``commits`` committed steps (``pending``: while
    the next step's checkpoint is pending, before its store commit). False when the run ended
    before the kill point (nothing killed)."""
    from cimlab.instruments.session import pending_path_for, state_path_for

    state = state_path_for(out)
    pend = pending_path_for(state)
    proc = characterize(plan, station, out)
    seen, last = 0, _ino(state)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return False
            if pending and seen >= commits and pend.exists():
                break
            ino = _ino(state)
            if ino != last and ino is not None:
                seen, last = seen + 1, ino
                if not pending and seen >= commits:
                    break
            time.sleep(0.0002)
        else:
            raise AssertionError("kill point never reached")
        proc.send_signal(sig)
        proc.communicate(timeout=60)
        return True
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def tables(path: Path) -> dict[str, pd.DataFrame]:
    """Every table of every run, by (run kind, table)."""
    from cimlab.store import Store

    out: dict[str, pd.DataFrame] = {}
    with Store.open(path, mode="r") as s:
        for run in s:
            assert run.status == "completed", (run.kind, run.status)
            for t in run.tables:
                out[f"{run.kind}/{t}"] = run.table(t, committed_only=True)
    return out


def differences(a: dict[str, pd.DataFrame], b: dict[str, pd.DataFrame]) -> int:
    """Values that differ between two stores' tables (a missing table or a row-count
    mismatch counts every value of the larger one); NaN equals NaN."""
    n = 0
    for key in sorted(set(a) | set(b)):
        if key not in a or key not in b:
            n += int((a.get(key, b.get(key))).size)
            continue
        x, y = a[key], b[key]
        if list(x.columns) != list(y.columns) or len(x) != len(y):
            n += max(x.size, y.size)
            continue
        for c in x.columns:
            u, v = x[c].to_numpy(), y[c].to_numpy()
            if u.dtype.kind in "fc" and v.dtype.kind in "fc":
                n += int(np.sum(~((u == v) | (np.isnan(u) & np.isnan(v)))))
            else:
                n += int(np.sum(u != v))
    return n


def negative_times(t: dict[str, pd.DataFrame]) -> int:
    """Rows with a negative time in any ``*time_s`` column."""
    n = 0
    for df in t.values():
        for c in df.columns:
            if c.endswith("time_s") and df[c].dtype.kind in "fi":
                n += int(np.sum(df[c].to_numpy() < 0))
    return n

"""A killed or interrupted ``cimlab characterize`` on the default kind of station (an
in-process emulator) resumes on the same chip: the resumed store equals an uninterrupted one
with the same seed, row for row and value for value, for every experiment kind.

Each kind: an uninterrupted run (in this process, through the same station and plan files),
then ``cimlab characterize`` as a subprocess SIGKILLed twice at seeded random committed-step
points (once while a step's checkpoint is pending, before its store commit; once right after a
commit), re-run to the end, and every table compared. SIGINT variants (Ctrl-C: exit 130, run
"aborted") for the time-sensitive kinds check also that no row has a negative time (before:
973 such rows). The tally (kills survived / values different) is printed at the end; the long
version is benchmarks/kill_resume_soak.py."""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest

from tests.fuzz import kill_resume as kr

KINDS = sorted(kr.PLANS)
TALLY = {"kills": 0, "survived": 0, "values_different": 0}


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    print(f"\nkill/resume: {TALLY['kills']} kills, {TALLY['survived']} survived, "
          f"{TALLY['values_different']} values different after resume")


def _clean(folder: Path, kind: str) -> tuple[Path, Path, dict, int]:
    """Plan, station, the uninterrupted store's tables and its committed step count."""
    from cimlab.instruments.session import open_station, state_path_for
    from cimlab.procedures.campaign import run_plan
    from cimlab.procedures.plan import load_plan
    from cimlab.store import Store

    plan, station = kr.setup(folder, kind)
    clean = folder / "clean.h5"
    with open_station(station, state_path_for(clean)) as st:
        run_plan(load_plan(plan), st, clean, progress=False)
    with Store.open(clean, mode="r") as s:
        n_steps = sum(len(r.steps) for r in s)
    return plan, station, kr.tables(clean), n_steps


@pytest.mark.parametrize("kind", KINDS)
def test_sigkill_twice_then_resume_equals_uninterrupted(tmp_path, kind):
    plan, station, clean, n_steps = _clean(tmp_path / "clean", kind)
    assert n_steps >= 3, f"{kind}: the plan needs 3 or more steps to kill between"
    rng = np.random.default_rng(KINDS.index(kind))
    first = int(rng.integers(1, n_steps - 1))            # while step first+1 is pending
    second = int(rng.integers(1, n_steps - first))       # after commits of the re-run
    out = tmp_path / "killed.h5"
    assert kr.kill_at(plan, station, out, first, pending=True), "ended before the kill"
    TALLY["kills"] += 1
    assert kr.kill_at(plan, station, out, second, pending=False), "ended before the kill"
    TALLY["kills"] += 1
    kr.run_to_end(plan, station, out)
    resumed = kr.tables(out)
    diff = kr.differences(clean, resumed)
    TALLY["survived"] += 2 if diff == 0 else 0
    TALLY["values_different"] += diff
    assert diff == 0, f"{kind}: {diff} values differ from the uninterrupted run"
    assert sorted(resumed) == sorted(clean)


@pytest.mark.parametrize("kind", ["relaxation", "bake_retention"])
def test_ctrl_c_then_resume_equals_uninterrupted_without_negative_times(tmp_path, kind):
    plan, station, clean, n_steps = _clean(tmp_path / "clean", kind)
    out = tmp_path / "interrupted.h5"
    assert kr.kill_at(plan, station, out, n_steps // 2, pending=False, sig=signal.SIGINT)
    TALLY["kills"] += 1
    from cimlab.store import Store

    with Store.open(out, mode="r") as s:
        assert [r.status for r in s] == ["aborted"]
    kr.run_to_end(plan, station, out)
    resumed = kr.tables(out)
    assert kr.negative_times(resumed) == 0
    diff = kr.differences(clean, resumed)
    TALLY["survived"] += 1 if diff == 0 else 0
    TALLY["values_different"] += diff
    assert diff == 0, f"{kind}: {diff} values differ from the uninterrupted run"


def test_resume_on_another_chip_is_refused_in_one_line(tmp_path):
    """The world of the last committed step is gone (state file deleted): the re-run refuses
    to resume instead of appending data of a fresh chip to the run."""
    from cimlab.instruments.session import state_path_for

    plan, station = kr.setup(tmp_path, "relaxation")
    out = tmp_path / "killed.h5"
    assert kr.kill_at(plan, station, out, 2, pending=False)
    state_path_for(out).unlink()
    proc = kr.characterize(plan, station, out)
    text, _ = proc.communicate(timeout=300)
    text = text.decode(errors="replace")
    assert proc.returncode == 1, text
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) == 1 and "fresh chip" in lines[0] and "Start over" in lines[0], text

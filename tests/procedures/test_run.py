"""ProcedureRun, the shape of every bench procedure's run: steps commit their rows, a failed
call closes the run "aborted", the next call with the same plan record resumes it and skips
the committed steps, and the instrument time of each step is charged once."""

from __future__ import annotations

import numpy as np
import pytest

from cimlab.instruments.station import Station
from cimlab.procedures.run import ProcedureRun
from cimlab.store import Store
from tests.procedures.bench_util import station_file

PLAN = {"what": "a two-step test procedure"}
CELLS = np.arange(10, 20, dtype=np.uint32)


def _open(station, store, **kw):
    return ProcedureRun(station, store, kind="test_procedure", label="test", plan=PLAN,
                        cells=CELLS, seed=7, progress=False, **kw)


def test_abort_resume_skip_and_instrument_time(tmp_path):
    with Station.open(station_file(tmp_path)) as st, Store.open(tmp_path / "s.h5", "a") as s:
        with pytest.raises(RuntimeError, match="stop here"), _open(st, s) as run:
            assert not run.skip("one")
            st.clock.sleep(5.0)
            run.append("rows", {"cell": CELLS, "step": np.full(CELLS.size, 1)})
            run.complete("one")
            run.append("rows", {"cell": CELLS, "step": np.full(CELLS.size, 2)})
            st.clock.sleep(3.0)
            raise RuntimeError("stop here")
        first = s.run("last")
        assert first.status == "aborted"
        assert first.instrument_time_s == pytest.approx(5.0, abs=1e-9)  # step two uncommitted

        with _open(st, s) as run:
            assert run.run.uid == first.uid and run.resumed_steps == ["one"]
            assert run.skip("one") and not run.skip("two")
            assert run.has_rows("rows", step=1) and not run.has_rows("rows", step=2)
            run.append("rows", {"cell": CELLS, "step": np.full(CELLS.size, 2)})
            st.clock.sleep(2.0)
            run.complete("two")
            result = run.finish(answer=42)
        done = s.run(first.uid)
        assert done.status == "completed"
        rows = done.table("rows")
        assert rows["step"].tolist() == [1] * CELLS.size + [2] * CELLS.size
        # 5 s (step one) + 2 s (step two); the 3 s of the aborted, uncommitted attempt at
        # step two are not charged: that step's work was cut back and measured again
        assert done.instrument_time_s == pytest.approx(7.0, abs=1e-9)
        assert result.steps_run == 1 and result.steps_skipped == 1
        assert result.figures == {"answer": 42} and result.run_uid == first.uid
        assert done.seeds == {"procedure": 7}


def test_pulse_and_read_are_batched_and_counted(tmp_path):
    with Station.open(station_file(tmp_path)) as st, Store.open(tmp_path / "s.h5", "a") as s:
        with _open(st, s, seeds={"mine": 3}) as run:
            e = run.pulse(CELLS, 1, 2.0, 1.2, 1e-7)   # one SET command for every cell
            g = run.read(CELLS, n_reads=2)            # one read command, two reads per cell
            result = run.finish()
        assert e.shape == g.shape == (CELLS.size,) and np.all(e > 0)
        assert result.round_trips == 2
        assert result.cell_operations == CELLS.size * 3
        assert s.run(result.run_uid).seeds == {"mine": 3}


def test_program_checks_the_whole_ispp_staircase_before_the_first_pulse(tmp_path):
    """The ISPP staircase climbs to v_set_max = 2.0 V; with a 1.5 V SET limit nothing is sent
    (before: pulses went out until the staircase reached the limit)."""
    from cimlab.errors import LimitError
    from cimlab.procedures.verify_config import ProgramVerifyConfig

    path = station_file(tmp_path)
    path.write_text(path.read_text().replace("set_bl_max_v = 3.0", "set_bl_max_v = 1.5"))
    with Station.open(path) as st, Store.open(tmp_path / "s.h5", "a") as s:
        with pytest.raises(LimitError, match="set_bl_max_v"), _open(st, s) as run:
            run.program(CELLS, np.full(CELLS.size, 20e-6), ProgramVerifyConfig(scheme="ispp"))
        assert not any(m.startswith("ARR:PULS") for m in st.bench.log("array"))


def test_resume_on_a_bench_without_checkpoints_records_the_uncontrolled_gap(tmp_path):
    """A served emulator stands for a real bench (the chip lives on): a resume cannot restore
    the chip, so it records the gap, the oven at resume and the committed rows before it
    (rows after them were measured after the gap) in the run's metadata."""
    from cimlab.instruments.emulator import EmulatedBench

    with EmulatedBench("default", seed=4) as bench:
        path = station_file(tmp_path, addresses=bench.addresses)
        with Station.open(path) as st, Store.open(tmp_path / "s.h5", "a") as s:
            assert st.checkpoints is None
            with pytest.raises(RuntimeError), _open(st, s) as run:
                run.append("rows", {"cell": CELLS, "step": np.full(CELLS.size, 1)})
                run.complete("one")
                run.append("rows", {"cell": CELLS, "step": np.full(CELLS.size, 2)})
                raise RuntimeError("stop")
            st.oven.setpoint_c = 80.0
            st.oven.heater_enabled = True
            st.clock.sleep(600.0)  # the bench lives on while nobody watches
            with _open(st, s) as run:
                gaps = run.run.meta["bench_resumes"]
            assert len(gaps) == 1
            g = gaps[0]
            assert g["committed_steps"] == 1 and g["rows_before"] == {"rows": CELLS.size}
            assert g["gap_s"] >= 0 and g["oven_heater_on"] is True
            assert g["oven_temp_c"] > 30.0 and "after an uncontrolled gap" in g["reference"]


@pytest.mark.parametrize(("record", "kept"), [
    ({"steps": 2}, True),                     # killed after the store commit, before the rename
    ({"steps": 3}, False),                    # killed before the store commit
    ({"steps": 2, "finished": True}, False),  # the run's finish was not committed
])
def test_a_pending_checkpoint_is_kept_only_when_its_step_is_committed(tmp_path, record, kept):
    import json

    from cimlab.instruments.session import pending_path_for
    from cimlab.procedures.run import reconcile_checkpoint

    store_path = tmp_path / "s.h5"
    with Store.open(store_path, "a") as s:
        run = s.begin_run(kind="test_procedure", plan=PLAN)
        for step in ("one", "two"):
            run.append("rows", {"cell": CELLS})
            run.complete_step(step)
        uid = str(run.uid)
    state = tmp_path / "s.h5.chip.npz"
    np.savez(state, checkpoint=json.dumps({"run": uid, "steps": 1}))
    pending = pending_path_for(state)
    with open(pending, "wb") as fh:
        np.savez(fh, checkpoint=json.dumps({"run": uid, **record}))
    reconcile_checkpoint(state, store_path)
    assert not pending.exists()
    with np.load(state) as z:
        got = json.loads(str(z["checkpoint"]))
    assert got["steps"] == (record["steps"] if kept else 1)


def test_small_batches_calibrate_on_the_whole_pool(tmp_path):
    """A plan whose batches are smaller than ``calibration_cells`` used to measure the pulse
    response on its first batch alone (16 cells: 7.5 pulses per cell and 91 % success on the
    quick plan's programming error, against 3.1 and 99 % with one batch); with the pool the
    response is measured on ``calibration_cells`` cells of the run."""
    from cimlab.procedures.verify_config import ProgramVerifyConfig

    pool = np.arange(4096, 4096 + 512, dtype=np.uint32)
    cfg = ProgramVerifyConfig(scheme="adaptive", calibration_cells=128)
    with Station.open(station_file(tmp_path)) as st, Store.open(tmp_path / "s.h5", "a") as s:
        for with_pool in (False, True):
            with ProcedureRun(st, s, kind="test_procedure", label="test",
                              plan={**PLAN, "pool": with_pool}, cells=pool, seed=7,
                              progress=False) as run:
                run.program(pool[:16], np.full(16, 20e-6), cfg,
                            calibration_pool=pool if with_pool else None)
                assert run.response is not None
                assert run.response.n_cells == (128 if with_pool else 16)
                run.finish()

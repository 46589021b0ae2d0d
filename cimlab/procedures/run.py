"""The shape of one procedure run: :class:`ProcedureRun`, what every bench procedure gets.

A procedure (a characterization experiment, program-verify of a campaign, programming a
network) is cut into named steps. :class:`ProcedureRun` opens (or resumes) the procedure's run
in the store and gives the procedure:

* ``skip(step)`` / ``complete(step)``: resumability. A step's rows are appended as they are
  measured (``append``: flushed at once) and the step is committed by ``complete``; on resume
  the store cuts every table back to the last committed step, ``done`` holds the committed
  steps and ``skip`` says which to leave out, so nothing is measured twice or lost
  (:class:`cimlab.store.Run`);
* abort: used as a context manager, an exception or Ctrl-C inside closes the run "aborted"
  (resumable like a killed run) and propagates; ``finish`` closes it "completed";
* instrument-time accounting: the bench clock's time since the last committed step is charged
  to the run with each step (``Run.add_instrument_time``), so a resumed run's total counts
  every step once; :class:`ProcedureResult` holds round trips, cell operations, instrument
  and host time;
* batched array access counting round trips (``pulse``, ``read``, ``ops``: an
  :class:`~cimlab.procedures.array_ops.ArrayOps`), the clock, a seeded generator ``rng``
  and progress bars (``bar``: :class:`~cimlab.procedures.progress.Progress`: tqdm on a
  terminal, periodic lines on stderr when configured, the same lines in the log);
* a log (``cimlab.procedures.run``, INFO): the run begun or resumed (with its committed
  steps), each step started and committed (rows, instrument time), finished or aborted.

A run is found again for resuming by its kind and plan record: for an experiment the plan
section (:func:`plan_section`: plan name, settings, the resolved cells' hash).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cimlab.errors import ConfigError
from cimlab.instruments.limits import check_pulse_extremes
from cimlab.params import to_dict
from cimlab.procedures.array_ops import ArrayOps
from cimlab.procedures.program_verify import program_verify
from cimlab.procedures.progress import Progress, duration
from cimlab.procedures.protocols import Bench, RunStore
from cimlab.procedures.pulse_response import (
    ResponseModel,
    measure_pulse_response,
    response_from_dict,
)
from cimlab.procedures.verify_config import ProgramVerifyConfig
from cimlab.procedures.verify_result import ProgramVerifyResult

log = logging.getLogger(__name__)


@dataclass
class ProcedureResult:
    """What a procedure did: the run uid, steps run/skipped, round trips, times, figures."""

    kind: str
    name: str
    run_uid: str
    steps_run: int = 0
    steps_skipped: int = 0
    round_trips: int = 0
    cell_operations: int = 0          # cell-pulses + cell-reads
    instrument_time_s: float = 0.0
    host_time_s: float = 0.0
    figures: dict[str, Any] = field(default_factory=dict)


def plan_section(plan_name: str, exp: Any, cells: np.ndarray, extra: dict | None = None
                 ) -> dict[str, Any]:
    """The plan record of an experiment's run: plan name, experiment, its settings and the
    resolved cells (count and SHA-1), which identify the run for resuming."""
    cells = np.asarray(cells, dtype=np.uint32)
    return {
        "plan": plan_name,
        "experiment": exp.label,
        "section": to_dict(exp),
        "cells_n": int(cells.size),
        "cells_sha1": hashlib.sha1(cells.tobytes()).hexdigest(),
        **(extra or {}),
    }


class ProcedureRun:
    """One resumable run of a bench procedure (module docstring).

    ``kind``: the run kind in the store; ``label``: a human name (progress bars, results);
    ``plan``: the plan record that identifies the run for resuming; ``cells``: the cells the
    procedure works on; ``seeds``: recorded with the run (default ``{"procedure": seed}``);
    ``resume``: continue the unfinished (running or aborted) run of the same kind and plan.
    For a plan experiment use :meth:`for_experiment`.

    Use it as a context manager (``with ProcedureRun(...) as run:``): an exception or Ctrl-C
    (KeyboardInterrupt) inside closes the run as "aborted" and propagates; the committed
    steps stay and the next call with the same plan record resumes the run.
    """

    def __init__(self, station: Bench, store: RunStore, *, kind: str, label: str,
                 plan: dict[str, Any], cells: np.ndarray, seed: int,
                 seeds: dict[str, int] | None = None, progress: bool = True,
                 resume: bool = True):
        self.station = station
        self.kind = kind
        self.label = label
        self.cells = np.asarray(cells, dtype=np.uint32)
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)
        self.ops = ArrayOps(station.array)
        self.clock = station.clock
        self.progress = progress
        self.other_ops = 0        # cell operations outside the array ops (SMU reads)
        self.response: ResponseModel | None = None
        self.run = store.begin_run(kind=kind, plan=plan, snapshot=station.snapshot(),
                                   seeds=seeds if seeds is not None
                                   else {"procedure": self.seed}, resume=resume)
        self.done: set[str] = set(self.run.completed_steps)
        #: the steps already committed when this call began (a resumed run: non-empty)
        self.resumed_steps: list[str] = sorted(self.done)
        #: per-step checkpoints of an in-process emulated world (None: a real/served bench)
        self._ck = getattr(station, "checkpoints", None)
        if self._ck is not None:
            try:
                self._continue_same_chip()
            except BaseException:
                self.abort()
                raise
        elif self.resumed_steps:
            self._record_uncontrolled_gap()
        self.result = ProcedureResult(kind=kind, name=label, run_uid=str(self.run.uid))
        self._t_host = time.perf_counter()
        self._t_inst = self.clock.now()
        self._t_charged = self._t_inst  # instrument time up to here is charged to the run
        self._t_step = self._t_inst
        self._bars: list[Any] = []
        self.rows = 0               # rows appended by this call
        self._step_rows = 0         # rows appended since the last commit
        if self.resumed_steps:
            log.info("%s: resuming run %s (%s) after %d committed steps (last %s); instrument "
                     "time so far %s", label, self.run.uid, kind, len(self.resumed_steps),
                     self.run.steps[-1] if self.run.steps else "-",
                     duration(self.run.instrument_time_s))
        else:
            log.info("%s: run %s (%s) begins on %d cells, seed %d", label, self.run.uid, kind,
                     self.cells.size, self.seed)

    @classmethod
    def for_experiment(cls, station: Bench, store: RunStore, exp: Any, cells: np.ndarray,
                       seed: int, *, plan_name: str = "", progress: bool = True,
                       extra: dict | None = None) -> ProcedureRun:
        """The run of one plan experiment ``exp`` (its ``kind`` and ``label``) on ``cells``,
        identified by :func:`plan_section`; always resumes an unfinished one."""
        section = plan_section(plan_name, exp, cells, extra)
        return cls(station, store, kind=exp.kind, label=exp.label, plan=section, cells=cells,
                   seed=seed, progress=progress)

    # --------------------------------------------------------------- resuming
    def _continue_same_chip(self) -> None:
        """An in-process emulated world: a resumed run continues on the world saved with its
        last committed step (and the procedure's generator and pulse response as they were),
        so the resumed store equals an uninterrupted one value for value; any other world is
        refused (ConfigError saying why and what to do)."""
        ck, k, uid = self._ck, len(self.run.steps), str(self.run.uid)
        rec = ck.record or {}
        if k == 0 and rec.get("run") != uid:
            pass  # nothing committed yet: the world is the one this run started on
        elif rec.get("run") != uid or rec.get("steps") != k or rec.get("finished"):
            what = ("a fresh chip (no checkpoint)" if not rec else
                    f"the chip at step {rec.get('steps')} of run {rec.get('run')}")
            raise ConfigError(
                ck.path, "checkpoint",
                f"the emulated chip as run {uid} ({self.kind}) left it at its committed step "
                f"{k} to resume that run; this state file holds {what}, so the resumed data "
                f"would come from another chip. Start over: delete the store's unfinished run "
                f"(or write to a new --out store) and {ck.path.name}")
        if rec.get("run") == uid:
            if rec.get("rng") is not None:
                self.rng.bit_generator.state = rec["rng"]
            if rec.get("response") is not None:
                self.response = response_from_dict(rec["response"])
        ck.uncommitted = True

    def _checkpoint_record(self, steps: int, finished: bool = False) -> dict[str, Any]:
        return {"run": str(self.run.uid), "kind": self.kind, "steps": int(steps),
                "finished": finished, "rng": self.rng.bit_generator.state,
                "response": None if self.response is None else self.response.to_dict()}

    def _prepare_checkpoint(self, record: dict[str, Any]) -> None:
        """Write the pending checkpoint; a full disk stops like the store's own writes
        (DiskFullError: "disk full at step N ...; free space and re-run to resume")."""
        from cimlab.store import space

        try:
            self._ck.prepare(record)
        except OSError as exc:
            if space.is_disk_full(exc):
                self.run._disk_full(self._ck.bench_bytes())
            raise

    def _record_uncontrolled_gap(self) -> None:
        """A resumed run on a real (or served) bench: the chip was not under control since
        the last committed step. Record the gap, the oven at resume and each table's row count
        at resume (rows from there on were measured after the gap) in the run's metadata
        (``bench_resumes``): the data are marked, never silently mixed."""
        log = self.run._log()
        last_unix = max((r.at_unix for r in log), default=float("nan"))
        entry: dict[str, Any] = {
            "at_unix": time.time(), "last_commit_unix": last_unix,
            "gap_s": time.time() - last_unix, "committed_steps": len(self.run.steps),
            "rows_before": {t: int(n) for t, n in self.run.committed_rows().items()},
            "clock": type(self.clock).__name__,
            "reference": "not re-measured: rows from rows_before on were measured after an "
                         "uncontrolled gap of gap_s (cells relaxed, an oven cooled)",
        }
        oven = getattr(self.station, "oven", None)
        if oven is not None:
            try:
                entry["oven_temp_c"] = float(oven.temperature_c)
                entry["oven_heater_on"] = bool(oven.heater_enabled)
            except Exception as exc:  # a gap record must not stop the run
                entry["oven"] = f"not readable: {exc!r}"
        previous = self.run.meta.get("bench_resumes", [])
        self.run.set_meta("bench_resumes", [*previous, entry][-50:])

    def __enter__(self) -> ProcedureRun:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        for bar in self._bars:
            bar.close()
        if exc_type is not None:
            log.warning("%s: run %s stopped by %s: %s (committed steps are kept; the same "
                        "call resumes it)", self.label, self.run.uid, exc_type.__name__, exc,
                        extra={"stderr": False})  # the command says it on stderr itself
            self.abort()

    def abort(self) -> None:
        """Close the run as "aborted" (resumable) unless it was finished; never raises, so the
        exception that stopped the procedure is the one the caller sees."""
        try:
            if self.run.status == "running":
                self.run.finish("aborted")
        except Exception:  # the store itself may be what failed
            pass

    # --------------------------------------------------------------- steps
    def skip(self, step: str) -> bool:
        """True (and counted as skipped) when ``step`` was committed by an earlier call."""
        if step in self.done:
            self.result.steps_skipped += 1
            return True
        log.info("%s: step %s starts", self.label, step)
        return False

    def complete(self, step: str) -> None:
        """Commit ``step`` (its rows and the instrument time since the last commit)."""
        now = self.now()  # the step's instrument time is committed with the step
        self.run.add_instrument_time(max(0.0, now - self._t_charged))
        self._t_charged = now
        if self._ck is not None:  # the world of this step, then the store, then the rename
            self._prepare_checkpoint(self._checkpoint_record(len(self.run.steps) + 1))
            self.run.complete_step(step)
            self._ck.commit()
        else:
            self.run.complete_step(step)
        self.done.add(step)
        self.result.steps_run += 1
        log.info("%s: step %s committed (%d rows, step instrument time %s, run total %s)",
                 self.label, step, self._step_rows, duration(now - self._t_step),
                 duration(self.run.instrument_time_s))
        self._step_rows = 0
        self._t_step = now

    def append(self, table: str, columns: dict[str, Any]) -> None:
        """Append rows to ``table`` of the run (flushed; committed with the next step)."""
        arrays = {k: np.asarray(v) for k, v in columns.items()}
        self.run.append(table, arrays)
        n = max((a.shape[0] if a.ndim else 1 for a in arrays.values()), default=0)
        self.rows += n
        self._step_rows += n

    def has_rows(self, table: str, **match: Any) -> bool:
        """True when the run's (committed) ``table`` holds rows matching ``match``."""
        if table not in self.run.tables:
            return False
        df = self.run.table(table)
        if len(df) == 0:
            return False
        m = np.ones(len(df), dtype=bool)
        for k, v in match.items():
            m &= df[k].to_numpy() == v
        return bool(m.any())

    # --------------------------------------------------------------- instrument access
    def pulse(self, cells: Any, direction: Any, v_pulse: Any, v_gate: Any,
              width_s: float) -> np.ndarray:
        """One batched pulse (``direction`` +1 SET / -1 RESET, scalar or per cell): energy [J]."""
        cells = np.asarray(cells, dtype=np.uint32)
        n = cells.size
        return self.ops.pulse(cells, np.broadcast_to(direction, (n,)),
                              np.broadcast_to(np.asarray(v_pulse, float), (n,)),
                              np.broadcast_to(np.asarray(v_gate, float), (n,)), width_s)

    def read(self, cells: Any, n_reads: int = 1) -> np.ndarray:
        """One batched read of ``cells`` (``n_reads`` averaged) [S]."""
        return self.ops.read(np.asarray(cells, dtype=np.uint32), n_reads)

    def program(self, cells: np.ndarray, target: np.ndarray, cfg: ProgramVerifyConfig,
                calibration_pool: np.ndarray | None = None, progress: bool | None = None
                ) -> ProgramVerifyResult:
        """Program-verify ``cells``; the adaptive pulse response is measured once per run, on
        ``cfg.calibration_cells`` cells drawn from ``cells`` or, when this batch has fewer,
        from ``calibration_pool`` (the cells the run programs with this configuration: a plan
        with small batches would otherwise calibrate on its first batch alone).
        The scheme's whole pulse schedule (the ISPP staircase up to its maximum, the adaptive
        candidates, the deep RESET) is checked against the station's limits first.
        ``progress``: a bar for this verify (default: the run's setting; a procedure that
        shows a bar over many batches passes False)."""
        limits = getattr(self.station, "limits", None)
        if limits is not None:
            check_pulse_extremes(
                limits, cfg, context=f"{self.label}: program-verify ({cfg.scheme})",
                calibration=getattr(getattr(self.station, "calibration", None), "transistor",
                                    None), station=getattr(self.station, "path", None))
        if cfg.scheme == "adaptive" and self.response is None:
            pool = cells
            if calibration_pool is not None and cells.size < cfg.calibration_cells:
                pool = np.asarray(calibration_pool)
            sub = pool if pool.size <= cfg.calibration_cells else np.sort(
                self.rng.choice(pool, cfg.calibration_cells, replace=False))
            self.response = measure_pulse_response(self.ops, sub, cfg, self.rng)
            self.run.set_meta("pulse_response", self.response.to_dict())
        return program_verify(self.ops, cells, target, cfg, clock=self.clock, rng=self.rng,
                              progress=self.progress if progress is None else progress,
                              response=self.response, timestamps=True)

    def now(self) -> float:
        """The bench clock [s]."""
        return float(self.clock.now())

    def bar(self, total: int, desc: str) -> Progress:
        """A progress bar (closed with the run): tqdm on a terminal, periodic lines with the
        steps committed, rows and instrument time (:mod:`cimlab.procedures.progress`)."""
        bar = Progress(total, f"{self.label}: {desc}", enabled=self.progress,
                       status=self._status)
        self._bars.append(bar)
        return bar

    def _status(self) -> dict[str, Any]:
        """Fields of a progress line, from what this run already knows (no round trip)."""
        return {"steps committed": len(self.done), "rows": self.rows,
                "instrument": duration(self._t_charged - self._t_inst)}

    def finish(self, **figures: Any) -> ProcedureResult:
        """Close the run "completed"; the result with ``figures`` added."""
        if self._ck is not None:
            self._prepare_checkpoint(self._checkpoint_record(len(self.run.steps), finished=True))
            self.run.finish("completed")
            self._ck.commit()
            self._ck.uncommitted = False
        else:
            self.run.finish("completed")
        r = self.result
        r.round_trips = self.ops.round_trips
        r.cell_operations = self.ops.cell_ops + self.other_ops
        r.host_time_s = time.perf_counter() - self._t_host
        r.instrument_time_s = self.now() - self._t_inst
        r.figures.update(figures)
        log.info("%s: run %s completed: %d steps now (%d before), %d rows, instrument time %s "
                 "(run total %s)", self.label, self.run.uid, r.steps_run, r.steps_skipped,
                 self.rows, duration(r.instrument_time_s), duration(self.run.instrument_time_s))
        return r


def reconcile_checkpoint(state_path: str | os.PathLike, store_path: str | os.PathLike) -> None:
    """Before a station opens with ``state_path``: a pending checkpoint left by a kill
    between writing it and renaming it (:class:`~cimlab.instruments.session.EmulatorCheckpoints`)
    becomes the state if the store committed its step, else it is deleted (the state file
    then holds the world of the store's last committed step)."""
    from cimlab.instruments.session import pending_path_for, read_checkpoint_record
    from cimlab.store import Store

    state_path = Path(state_path)
    pending = pending_path_for(state_path)
    if not pending.exists():
        return
    rec = read_checkpoint_record(pending)
    keep = False
    if rec is not None and Path(store_path).exists():
        with Store.open(Path(store_path), mode="r") as store:
            for run in store:
                if str(run.uid) == rec.get("run"):
                    if rec.get("finished"):
                        keep = run.status == "completed"
                    else:
                        keep = len(run.steps) == rec.get("steps")
                    break
    if keep:
        os.replace(pending, state_path)
    else:
        pending.unlink()


__all__ = ["ProcedureResult", "ProcedureRun", "plan_section", "reconcile_checkpoint"]

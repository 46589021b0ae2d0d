"""Characterization procedures: typed functions over (station, store, plan section).

Each procedure

* is vectorised over cells: one batched pulse and one batched read per iteration (plus the
  clock), never a round trip per cell (the SMU precision reads are per cell by nature);
* writes the tidy tables of ``docs/architecture.md`` as it measures (``run.append`` flushes);
* is resumable: work is cut into named steps; a step's rows are appended as they are measured
  and the step is completed (committed) right after; on resume the store cuts every table
  back to the last committed step and the procedure skips the completed steps, so nothing is
  measured twice or lost (``cimlab.store.Run``);
* shows tqdm progress bars (on a terminal only);
* ends its run "completed", or "aborted" on an exception or Ctrl-C (resumable like a killed
  run);
* never looks at the emulated chip: only at what the instruments answer.

The run metadata records the plan section, the resolved cell set (hash), the station snapshot
and the seeds, so :meth:`Store.begin_run` with ``resume=True`` finds the unfinished run of the
same experiment.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cimlab.params import to_dict
from cimlab.procedures.plan import (
    BakeRetentionExp,
    BerExp,
    BinaryCondition,
    EnduranceExp,
    FaultMapExp,
    ProgrammingErrorExp,
    ReadFluctuationExp,
    RelaxationExp,
)
from cimlab.procedures.program_verify import (
    RESET,
    SET,
    ArrayOps,
    GateCurve,
    ProgramVerifyConfig,
    ProgramVerifyResult,
    PulseResponse,
    measure_gate_curve,
    measure_pulse_response,
    program_single_shot,
    program_verify,
)
from cimlab.stats import MAD_TO_SIGMA
from cimlab.units import KELVIN_OFFSET

#: Room temperature assumed for reads outside the oven when the station reports none [K].
ROOM_TEMPERATURE_K = 298.15


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


class _Context:
    """Bookkeeping shared by the procedures: run, ops counter, clock, progress, timing.

    Use it as a context manager (``with _Context(...) as ctx:``): an exception or Ctrl-C
    (KeyboardInterrupt) inside closes the run as "aborted" and propagates; the committed steps
    stay and the next call with the same plan section resumes the run
    (``Store.begin_run(resume=True)`` picks up running or aborted runs)."""

    def __init__(self, station: Any, store: Any, exp: Any, cells: np.ndarray, seed: int,
                 *, plan_name: str = "", progress: bool = True, extra: dict | None = None):
        self.station = station
        self.exp = exp
        self.cells = np.asarray(cells, dtype=np.uint32)
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)
        self.ops = ArrayOps(station.array)
        self.clock = station.clock
        self.progress = progress
        self.other_ops = 0        # cell operations outside the array ops (SMU reads)
        self.response: PulseResponse | None = None
        section = plan_section(plan_name, exp, self.cells, extra)
        self.run = store.begin_run(kind=exp.kind, plan=section, snapshot=station.snapshot(),
                                   seeds={"procedure": self.seed}, resume=True)
        self.done: set[str] = set(self.run.completed_steps)
        self.result = ProcedureResult(kind=exp.kind, name=exp.label, run_uid=str(self.run.uid))
        self._t_host = time.perf_counter()
        self._t_inst = self.clock.now()
        self._t_charged = self._t_inst  # instrument time up to here is charged to the run
        self._bars: list[Any] = []

    def __enter__(self) -> _Context:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        for bar in self._bars:
            bar.close()
        if exc_type is not None:
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
        if step in self.done:
            self.result.steps_skipped += 1
            return True
        return False

    def complete(self, step: str) -> None:
        now = self.now()  # the step's instrument time is committed with the step
        self.run.add_instrument_time(max(0.0, now - self._t_charged))
        self._t_charged = now
        self.run.complete_step(step)
        self.done.add(step)
        self.result.steps_run += 1

    def append(self, table: str, columns: dict[str, Any]) -> None:
        self.run.append(table, {k: np.asarray(v) for k, v in columns.items()})

    # --------------------------------------------------------------- instrument access
    def pulse(self, cells, direction, v_pulse, v_gate, width_s) -> np.ndarray:
        cells = np.asarray(cells, dtype=np.uint32)
        n = cells.size
        return self.ops.pulse(cells, np.broadcast_to(direction, (n,)),
                              np.broadcast_to(np.asarray(v_pulse, float), (n,)),
                              np.broadcast_to(np.asarray(v_gate, float), (n,)), width_s)

    def read(self, cells, n_reads: int = 1) -> np.ndarray:
        return self.ops.read(np.asarray(cells, dtype=np.uint32), n_reads)

    def program(self, cells: np.ndarray, target: np.ndarray, cfg: ProgramVerifyConfig
                ) -> ProgramVerifyResult:
        """Program-verify ``cells``; the adaptive pulse response is measured once per run."""
        if cfg.scheme == "adaptive" and self.response is None:
            sub = cells if cells.size <= cfg.calibration_cells else np.sort(
                self.rng.choice(cells, cfg.calibration_cells, replace=False))
            self.response = measure_pulse_response(self.ops, sub, cfg, self.rng)
            self.run.set_meta("pulse_response", self.response.to_dict())
        return program_verify(self.ops, cells, target, cfg, clock=self.clock, rng=self.rng,
                              progress=self.progress, response=self.response, timestamps=True)

    def now(self) -> float:
        return float(self.clock.now())

    def bar(self, total: int, desc: str):
        from tqdm.auto import tqdm

        # disable=None: tqdm switches itself off when stderr is not a terminal (a log file)
        bar = tqdm(total=total, desc=f"{self.exp.label}: {desc}",
                   disable=None if self.progress else True, leave=False)
        self._bars.append(bar)
        return bar

    def finish(self, **figures: Any) -> ProcedureResult:
        self.run.finish("completed")
        r = self.result
        r.round_trips = self.ops.round_trips
        r.cell_operations = self.ops.cell_ops + self.other_ops
        r.host_time_s = time.perf_counter() - self._t_host
        r.instrument_time_s = self.now() - self._t_inst
        r.figures.update(figures)
        return r


def _has_rows(ctx: _Context, table: str, **match: Any) -> bool:
    """True when the run's (committed) ``table`` holds rows matching ``match``."""
    if table not in ctx.run.tables:
        return False
    df = ctx.run.table(table)
    if len(df) == 0:
        return False
    m = np.ones(len(df), dtype=bool)
    for k, v in match.items():
        m &= df[k].to_numpy() == v
    return bool(m.any())


def _since(t_clock: float, pulse_time: np.ndarray) -> np.ndarray:
    """Time [s] from each cell's last pulse to ``t_clock`` (NaN where the pulse is unknown).

    Relaxation runs on a log clock from the cell's own last programming pulse with an onset
    of ~1-5 ms (docs/physics.md), so every procedure times its reads from that pulse, not
    from the end of the batch (a 16k-cell verify iteration alone lasts ~20 ms)."""
    return float(t_clock) - np.asarray(pulse_time, dtype=float)


def _levels(exp: Any, cells: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Level index and target conductance [S] per cell."""
    level = exp.levels.assign(cells.size, seed)
    return level, exp.levels.targets()[level]


def _verify_program_and_log(ctx: _Context, cells: np.ndarray, level: np.ndarray,
                            target: np.ndarray, cfg: ProgramVerifyConfig, step: str
                            ) -> ProgramVerifyResult | None:
    """Program-verify ``cells`` (one step) and log it in the ``programmed`` table."""
    if ctx.skip(step):
        return None
    res = ctx.program(cells, target, cfg)
    ctx.append("programmed", {
        "cell": cells, "level": level, "target_s": target, "g_s": res.g_verify_s,
        "pulses": res.pulses, "mode": np.full(cells.size, "verify"),
        "time_s": res.g0_time_s(), "success": res.success,
        "energy_j": res.energy_j, "pulse_time_s": res.last_pulse_time_s})
    ctx.complete(step)
    ctx.result.figures.setdefault("program_verify", []).append(res.summary())
    return res


# =========================================================================== programming error
def programming_error(station: Any, store: Any, exp: ProgrammingErrorExp, cells: np.ndarray,
                      seed: int, *, plan_name: str = "", progress: bool = True
                      ) -> ProcedureResult:
    """Programming error over ``exp.levels`` targets, single-shot and/or with program-verify.

    Writes ``programmed`` (cell, level, target_s, g_s, pulses, mode, time_s: the read after
    the cell's last pulse, NaN where a verify needed no pulse; + pulse_time_s, the clock time
    of that pulse) and, for
    single-shot, ``gate_curve`` (v_gate, g_mean_s, g_std_s, n_cells). The cells are split in
    two halves when both modes are requested (each cell is programmed once).
    """
    with _Context(station, store, exp, cells, seed, plan_name=plan_name,
                  progress=progress) as ctx:
        level, target = _levels(exp, ctx.cells, seed)
        modes = list(exp.modes)
        parts = np.array_split(np.arange(ctx.cells.size), len(modes))
        for mode, idx in zip(modes, parts, strict=True):
            c, lv, tg = ctx.cells[idx], level[idx], target[idx]
            batches = [np.arange(i, min(i + exp.batch, c.size))
                       for i in range(0, c.size, exp.batch)]
            curve = None
            if mode == "single_shot":
                curve = _gate_curve(ctx, exp, c)
            bar = ctx.bar(len(batches), mode)
            for b, sel in enumerate(batches):
                step = f"{mode}-batch-{b:04d}"
                if ctx.skip(step):
                    bar.update(1)
                    continue
                if mode == "single_shot":
                    res = program_single_shot(ctx.ops, c[sel], tg[sel], curve, v_set=exp.v_set,
                                              v_reset=exp.v_reset, v_gate_reset=exp.v_gate_reset,
                                              width_s=exp.width_s, clock=ctx.clock,
                                              tolerance_s=exp.verify.tolerance_s)
                    ctx.clock.sleep(exp.read_delay_s)
                    t_read = ctx.now()
                    g = ctx.read(c[sel])
                    ctx.append("programmed", {
                        "cell": c[sel], "level": lv[sel], "target_s": tg[sel], "g_s": g,
                        "pulses": res.pulses,
                        "mode": np.full(sel.size, "single_shot"),
                        "time_s": _since(t_read, res.last_pulse_time_s),
                        "success": np.abs(g - tg[sel]) <= exp.verify.tolerance_s,
                        "energy_j": res.energy_j, "pulse_time_s": res.last_pulse_time_s})
                else:
                    res = ctx.program(c[sel], tg[sel], exp.verify)
                    ctx.clock.sleep(exp.read_delay_s)
                    t_read = ctx.now()
                    g = ctx.read(c[sel])
                    ctx.append("programmed", {
                        "cell": c[sel], "level": lv[sel], "target_s": tg[sel], "g_s": g,
                        "pulses": res.pulses, "mode": np.full(sel.size, "verify"),
                        "time_s": _since(t_read, res.last_pulse_time_s), "success": res.success,
                        "energy_j": res.energy_j, "pulse_time_s": res.last_pulse_time_s})
                    ctx.result.figures.setdefault("program_verify", []).append(res.summary())
                ctx.complete(step)
                bar.update(1)
            bar.close()
        return ctx.finish()


def _gate_curve(ctx: _Context, exp: ProgrammingErrorExp, cells: np.ndarray) -> GateCurve:
    """Measure (or, on resume, reload) the gate-voltage -> mean-G curve on a cell subset."""
    step = "gate-curve"
    if step in ctx.done or _has_rows(ctx, "gate_curve", n_cells=exp.calibration_cells):
        df = ctx.run.table("gate_curve")
        ctx.done.add(step)
        return GateCurve(df["v_gate"].to_numpy(), df["g_mean_s"].to_numpy(),
                         df["g_std_s"].to_numpy(), int(df["n_cells"].iloc[0]))
    sub = np.sort(np.random.default_rng(ctx.seed + 1).choice(
        cells, min(exp.calibration_cells, cells.size), replace=False))
    v_gates = np.linspace(exp.v_gate_min, exp.v_gate_max, exp.calibration_points)
    curve = measure_gate_curve(ctx.ops, sub, v_gates, v_set=exp.v_set, v_reset=exp.v_reset,
                               v_gate_reset=exp.v_gate_reset, width_s=exp.width_s)
    ctx.append("gate_curve", {"v_gate": curve.v_gate, "g_mean_s": curve.g_mean_s,
                              "g_std_s": curve.g_std_s,
                              "n_cells": np.full(v_gates.size, sub.size)})
    ctx.complete(step)
    return curve


# =========================================================================== read fluctuation
def read_fluctuation(station: Any, store: Any, exp: ReadFluctuationExp, cells: np.ndarray,
                     seed: int, *, plan_name: str = "", progress: bool = True
                     ) -> ProcedureResult:
    """Repeated reads per cell at each level as a time series, plus SMU precision reads.

    Program-verify all cells, wait ``settle_s``, then ``repeats`` batched reads of all cells
    (``reads``: cell, level, target_s, repeat, time_s, g_s; time_s since the cell's own last
    pulse, NaN for a cell the verify did not need to pulse). A subset
    of ``smu_cells`` cells is read with the SMU (``smu_reads``: cell, level, target_s, repeat,
    v, i_a, g_s) after routing each cell with ``array.select``.
    """
    with _Context(station, store, exp, cells, seed, plan_name=plan_name,
                  progress=progress) as ctx:
        level, target = _levels(exp, ctx.cells, seed)
        res = _verify_program_and_log(ctx, ctx.cells, level, target, exp.verify, "program")
        _program_time(ctx)
        t_pulse, _ = _pulse_record(ctx, res)
        chunk = max(1, min(exp.repeats, 200_000 // max(ctx.cells.size, 1) or 1))
        bar = ctx.bar(exp.repeats, "reads")
        if "settled" not in ctx.done:
            ctx.clock.sleep(exp.settle_s)
            ctx.complete("settled")
        for r0 in range(0, exp.repeats, chunk):
            r1 = min(exp.repeats, r0 + chunk)
            step = f"reads-{r0:06d}-{r1:06d}"
            if ctx.skip(step):
                bar.update(r1 - r0)
                continue
            gs, ts = [], []
            for _r in range(r0, r1):
                if exp.interval_s and _r > 0:
                    ctx.clock.sleep(exp.interval_s)
                ts.append(_since(ctx.now(), t_pulse))
                gs.append(ctx.read(ctx.cells))
                bar.update(1)
            n = ctx.cells.size
            ctx.append("reads", {
                "cell": np.tile(ctx.cells, r1 - r0), "level": np.tile(level, r1 - r0),
                "target_s": np.tile(target, r1 - r0),
                "repeat": np.repeat(np.arange(r0, r1), n),
                "time_s": np.concatenate(ts), "g_s": np.concatenate(gs)})
            ctx.complete(step)
        bar.close()
        if exp.smu_cells and not ctx.skip("smu"):
            sub_idx = np.sort(np.random.default_rng(ctx.seed + 2).choice(
                ctx.cells.size, exp.smu_cells, replace=False))
            rows = smu_precision_reads(ctx, ctx.cells[sub_idx], exp.smu_repeats, exp.smu_v,
                                       exp.smu_compliance_a)
            rows["level"] = np.repeat(level[sub_idx], exp.smu_repeats)
            rows["target_s"] = np.repeat(target[sub_idx], exp.smu_repeats)
            ctx.append("smu_reads", {k: rows[k] for k in
                                     ("cell", "level", "target_s", "repeat", "v", "i_a", "g_s")})
            ctx.complete("smu")
        return ctx.finish()


def smu_precision_reads(ctx: _Context, cells: np.ndarray, repeats: int, v: float,
                        compliance_a: float) -> dict[str, np.ndarray]:
    """Route each cell to the SMU (``array.select``) and read its DC current ``repeats`` times
    at bias ``v`` with PyMeasure's Keithley2450 driver; outputs off afterwards."""
    st = ctx.station
    smu = st.smu
    out: dict[str, list] = {"cell": [], "repeat": [], "v": [], "i_a": [], "g_s": []}
    smu.apply_voltage(compliance_current=compliance_a)
    smu.measure_current(current=compliance_a, auto_range=True)
    smu.source_voltage = 0.0
    smu.enable_source()
    bar = ctx.bar(cells.size, "SMU reads")
    try:
        for c in cells:
            st.array.select(int(c))
            smu.source_voltage = v
            for r in range(repeats):
                i = float(smu.current)
                out["cell"].append(int(c))
                out["repeat"].append(r)
                out["v"].append(v)
                out["i_a"].append(i)
                out["g_s"].append(i / v)
            smu.source_voltage = 0.0
            bar.update(1)
    finally:
        smu.source_voltage = 0.0
        smu.disable_source()
        _deselect(st.array)
        bar.close()
    ctx.other_ops += cells.size * repeats
    return {k: np.asarray(v_) for k, v_ in out.items()}


def _deselect(array: Any) -> None:
    for name in ("deselect", "route_off", "unroute"):
        f = getattr(array, name, None)
        if callable(f):
            f()
            return
    try:
        array.select(None)
    except (TypeError, ValueError):
        pass


def _pulse_record(ctx: _Context, res: ProgramVerifyResult | None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(clock time of each cell's last pulse, time of its verify read after that pulse) [s],
    from the verify just run or, on resume, from the run's ``programmed`` table (the last
    programming of each cell). NaN where a cell needed no pulse."""
    if res is not None:
        return res.last_pulse_time_s, res.g0_time_s()
    df = ctx.run.table("programmed").drop_duplicates("cell", keep="last").set_index("cell")
    idx = ctx.cells.astype(np.int64)
    if "pulse_time_s" not in df.columns:  # a run begun before pulse times were recorded
        t = np.full(idx.size, _program_time(ctx))
        return t, np.zeros(idx.size)
    return (df["pulse_time_s"].reindex(idx).to_numpy(dtype=float),
            df["time_s"].reindex(idx).to_numpy(dtype=float))


def _program_time(ctx: _Context) -> float:
    """Clock time at the end of programming, stored so a resumed run keeps its time origin."""
    if "t-programmed" in ctx.done or _has_rows(ctx, "clock", what="programmed"):
        df = ctx.run.table("clock")
        ctx.done.add("t-programmed")
        return float(df.loc[df["what"] == "programmed", "time_s"].iloc[-1])
    t = ctx.now()
    ctx.append("clock", {"what": np.array(["programmed"]), "time_s": np.array([t])})
    ctx.complete("t-programmed")
    return t


# =========================================================================== relaxation
def relaxation(station: Any, store: Any, exp: RelaxationExp, cells: np.ndarray, seed: int, *,
               plan_name: str = "", progress: bool = True) -> ProcedureResult:
    """Reads at ``times_s`` after program-verify, with the station clock (virtual or real).

    The read schedule ``times_s`` counts from the end of programming; ``reads``: cell, level,
    target_s, g0_s (last verify read), time_s (since the cell's own last pulse), g0_time_s
    (time of the g0 read after that pulse), g_s, temp_k, time_index. A time point already
    past when resuming is read at once (time_s records the true time).
    """
    with _Context(station, store, exp, cells, seed, plan_name=plan_name,
                  progress=progress) as ctx:
        level, target = _levels(exp, ctx.cells, seed)
        res = _verify_program_and_log(ctx, ctx.cells, level, target, exp.verify, "program")
        t_prog = _program_time(ctx)
        t_pulse, g0_time = _pulse_record(ctx, res)
        g0 = res.g_verify_s if res is not None else _programmed_g(ctx)
        temp_k = _ambient_k(station)
        bar = ctx.bar(len(exp.times_s), "relaxation")
        for i, t in enumerate(exp.times_s):
            step = f"t-{i:03d}"
            if ctx.skip(step):
                bar.update(1)
                continue
            wait = t_prog + t - ctx.now()
            if wait > 0:
                ctx.clock.sleep(wait)
            t_read = ctx.now()
            g = ctx.read(ctx.cells)
            n = ctx.cells.size
            ctx.append("reads", {"cell": ctx.cells, "level": level, "target_s": target, "g0_s": g0,
                                 "time_s": _since(t_read, t_pulse), "g0_time_s": g0_time,
                                 "g_s": g, "temp_k": np.full(n, temp_k),
                                 "time_index": np.full(n, i)})
            ctx.complete(step)
            bar.update(1)
        bar.close()
        return ctx.finish()


def _programmed_g(ctx: _Context) -> np.ndarray:
    df = ctx.run.table("programmed")
    m = dict(zip(df["cell"].to_numpy(), df["g_s"].to_numpy(), strict=True))
    return np.array([m[int(c)] for c in ctx.cells])


def _ambient_k(station: Any) -> float:
    oven = getattr(station, "oven", None)
    for name in ("ambient_k", "temperature_k"):
        v = getattr(oven, name, None)
        if isinstance(v, (int, float)):
            return float(v)
    for name in ("ambient_c", "temperature_c", "temperature"):
        v = getattr(oven, name, None)
        if isinstance(v, (int, float)):
            return float(v) + KELVIN_OFFSET
    return ROOM_TEMPERATURE_K


# =========================================================================== bake retention
def bake_retention(station: Any, store: Any, exp: BakeRetentionExp, cells: np.ndarray,
                   seed: int, *, plan_name: str = "", progress: bool = True,
                   on_step: Callable[[str], None] | None = None) -> ProcedureResult:
    """Program levels, bake at each temperature on the schedule, read after each bake step.

    ``reads``: cell, level, target_s, step, temp_k, bake_time_s (cumulative at temperature),
    g_s (+ ``repeat``, ``temp_index``, ``time_s`` since the cell's last pulse on the station
    clock, bakes included, and ``g0_time_s`` of its verify read); ``bakes``: temp_index,
    step, temp_k, soak_s and the clock times of each bake (start, soak start/end, back at
    ambient). Every bake segment and every read is its own step, so a run killed anywhere
    resumes without repeating a read or a bake: a bake segment whose completion was recorded
    is not baked again; one that was interrupted is baked again in full after the chamber
    was brought back to the ambient temperature recorded when the run began
    (``docs/procedures.md`` discusses what this means for the thermal budget). ``on_step``
    is called with each step name as it
    starts (progress reporting, tests).
    """
    with _Context(station, store, exp, cells, seed, plan_name=plan_name,
                  progress=progress) as ctx:
        level, target = _levels(exp, ctx.cells, seed)
        n = ctx.cells.size
        oven = station.oven
        meta = ctx.run.meta
        if "ambient_c" not in meta:
            ctx.run.set_meta("ambient_c", float(oven.temperature_c))
        elif ctx.done:
            # resumed (e.g. after a crash mid-bake): heater off, back to the recorded ambient
            oven.heater_enabled = False
            oven.wait_until(ctx.clock, float(meta["ambient_c"]))
        n_steps = len(exp.temps_c) * (1 + 2 * len(exp.schedule_s))
        bar = ctx.bar(n_steps, "bake")
        for j, temp_c in enumerate(exp.temps_c):
            temp_k = temp_c + KELVIN_OFFSET
            res = _verify_program_and_log(ctx, ctx.cells, level, target, exp.verify,
                                          f"T{j}-program")
            t_pulse, g0_time = _pulse_record(ctx, res)
            times = (0.0, *exp.schedule_s)
            for k, t_cum in enumerate(times):
                if k > 0:
                    step = f"T{j}-bake-{k:03d}"
                    if not ctx.skip(step):
                        if on_step:
                            on_step(step)
                        rec = oven.bake(temp_c, t_cum - times[k - 1], ctx.clock)
                        ctx.append("bakes", {
                            "temp_index": np.array([j]), "step": np.array([k]),
                            "temp_k": np.array([temp_k]),
                            "soak_s": np.array([t_cum - times[k - 1]]),
                            **{f"{a}": np.array([float(getattr(rec, a, np.nan))])
                               for a in ("start_s", "soak_start_s", "soak_end_s", "end_s")}})
                        ctx.complete(step)
                    bar.update(1)
                step = f"T{j}-read-{k:03d}"
                if ctx.skip(step):
                    bar.update(1)
                    continue
                if on_step:
                    on_step(step)
                gs, ts = [], []
                for _ in range(exp.reads_per_step):
                    ts.append(_since(ctx.now(), t_pulse))
                    gs.append(ctx.read(ctx.cells))
                r = exp.reads_per_step
                ctx.append("reads", {
                    "cell": np.tile(ctx.cells, r), "level": np.tile(level, r),
                    "target_s": np.tile(target, r), "step": np.full(n * r, k),
                    "temp_k": np.full(n * r, temp_k), "bake_time_s": np.full(n * r, t_cum),
                    "g_s": np.concatenate(gs), "repeat": np.repeat(np.arange(r), n),
                    "temp_index": np.full(n * r, j), "time_s": np.concatenate(ts),
                    "g0_time_s": np.tile(g0_time, r)})
                ctx.complete(step)
                bar.update(1)
        bar.close()
        return ctx.finish()


# =========================================================================== BER
def _set_gate(station: Any, cond: BinaryCondition) -> float:
    return float(station.gate_voltage_for(cond.icc_a))


def _reset_gate(cond: BinaryCondition, v_gate_set: float) -> float:
    """RESET word-line voltage: the condition's, or the SET one (RESET current ~ I_cc)."""
    return float(cond.v_gate_reset) if cond.v_gate_reset is not None else v_gate_set


def sense_reference(g_lrs: np.ndarray, g_hrs: np.ndarray) -> float:
    """1T1R read reference [S] from measured LRS and HRS conductances: the threshold that
    minimises the bit error rate of two lognormal states (paper 003 Fig. 1: resistance
    distributions are lognormal) fitted robustly (median and MAD of ln G, so the ~1 % stuck
    cells do not bend it) -- what a sense-amplifier reference trim does."""
    from scipy.optimize import minimize_scalar
    from scipy.special import ndtr

    def fit(g: np.ndarray) -> tuple[float, float]:
        x = np.log(np.maximum(g, 1e-12))
        mu = float(np.median(x))
        return mu, max(float(MAD_TO_SIGMA * np.median(np.abs(x - mu))), 1e-6)

    (mu_l, s_l), (mu_h, s_h) = fit(g_lrs), fit(g_hrs)
    if mu_l <= mu_h:
        return float(np.exp(0.5 * (mu_l + mu_h)))

    def ber_at(x: float) -> float:
        return 0.5 * (float(ndtr((x - mu_l) / s_l)) + float(ndtr(-(x - mu_h) / s_h)))

    res = minimize_scalar(ber_at, bounds=(mu_h, mu_l), method="bounded",
                          options={"xatol": 1e-9})
    return float(np.exp(res.x))


def ber(station: Any, store: Any, exp: BerExp, cells: np.ndarray, seed: int, *,
        plan_name: str = "", progress: bool = True) -> ProcedureResult:
    """Bit error rate under each programming condition, 1T1R and 2T2R (paper 003, Table I).

    Cells are split per condition (fresh cells, so wear from one condition does not bias
    another) and per structure. Each cycle writes a new random pattern: with ``precondition``
    every cell is first put in the state opposite to its bit (so each programmed bit is a
    switching event, as in paper 003's cycled arrays), then programmed (SET = LRS = bit 0 at
    ``gate_voltage_for(icc)``, RESET = HRS = bit 1) and read: one batched command per
    polarity and one batched read. 1T1R reads against a reference conductance ``g_ref_s``
    (default: :func:`sense_reference` fitted to cycle 0 of that condition, what a
    sense-amplifier reference trim does), 2T2R compares the two cells (paper 003 ref. [9]).

    ``bits``: condition, structure, cycle, cell, bit, read_bit, g_s (+ cell_b, g_b_s for the
    complementary cell of a 2T2R pair; -1/NaN for 1T1R; + g_pre_s, g_b_pre_s: the read after
    the precondition pulse, in the opposite state; NaN without ``precondition``), from which
    :func:`cimlab.procedures.report.stuck_cells` finds the cells that never switched.
    ``conditions``: condition, icc_a,
    v_reset, width_s, energy_per_bit_j (mean programming energy of one bit; 1T1R: one pulse,
    2T2R: two), energy_set_j, energy_reset_j, v_gate, g_ref_s.
    """
    with _Context(station, store, exp, cells, seed, plan_name=plan_name,
                  progress=progress) as ctx:
        per_cond = np.array_split(ctx.cells[: exp.cells_needed()], len(exp.conditions))
        bar = ctx.bar(len(exp.conditions) * exp.cycles, "BER")
        totals = {}
        for ci, cond in enumerate(exp.conditions):
            cc = per_cond[ci]
            layout = {}
            pos = 0
            for s in exp.structures:
                k = exp.bits * (1 if s == "1T1R" else 2)
                layout[s] = cc[pos: pos + k]
                pos += k
            v_gate_set = _set_gate(station, cond)
            g_ref = exp.g_ref_s
            stats = {"e_set": [], "e_reset": [], "e_bit_1t1r": [], "e_bit_2t2r": []}
            if g_ref is None and _has_rows(ctx, "conditions", condition=cond.name):
                df = ctx.run.table("conditions")
                g_ref = float(df.loc[df["condition"] == cond.name, "g_ref_s"].iloc[-1])
            for cyc in range(exp.cycles):
                step = f"{cond.name}-cycle-{cyc:06d}"
                if ctx.skip(step):
                    bar.update(1)
                    continue
                rng = np.random.default_rng([ctx.seed, ci, cyc])
                prog_cells, prog_dir = [], []
                bits = {}
                for s, sc in layout.items():
                    b = rng.integers(0, 2, exp.bits).astype(np.int8)
                    bits[s] = b
                    if s == "1T1R":
                        prog_cells.append(sc)
                        prog_dir.append(np.where(b == 0, SET, RESET))
                    else:
                        a, bb = sc[0::2], sc[1::2]
                        prog_cells += [a, bb]
                        prog_dir += [np.where(b == 0, SET, RESET), np.where(b == 0, RESET, SET)]
                pc = np.concatenate(prog_cells)
                pd = np.concatenate(prog_dir)
                vp = np.where(pd > 0, cond.v_set, cond.v_reset)
                v_gate_reset = _reset_gate(cond, v_gate_set)
                vg = np.where(pd > 0, v_gate_set, v_gate_reset)
                g_pre = np.full(pc.size, np.nan)
                if exp.precondition:  # every programmed bit is a switching event
                    ctx.pulse(pc, -pd, np.where(pd > 0, cond.v_reset, cond.v_set),
                              np.where(pd > 0, v_gate_reset, v_gate_set), cond.width_s)
                    # read the opposite state too (one batched read): every cell is then seen
                    # after a SET and after a RESET in each cycle, so cells that never switch
                    # (stuck, paper 004) are found from this run alone (report.stuck_cells)
                    g_pre = ctx.read(pc)
                e = ctx.pulse(pc, pd, vp, vg, cond.width_s)
                g = ctx.read(pc)
                # map back (pc is the concatenation in layout order)
                off = 0
                cols: dict[str, list] = {k: [] for k in ("condition", "structure", "cycle", "cell",
                                                         "bit", "read_bit", "g_s", "cell_b",
                                                         "g_b_s", "g_pre_s", "g_b_pre_s")}
                stats["e_set"].append(e[pd > 0])
                stats["e_reset"].append(e[pd < 0])
                for s in exp.structures:
                    b = bits[s]
                    if s == "1T1R":
                        gi = g[off: off + exp.bits]
                        ei = e[off: off + exp.bits]
                        off += exp.bits
                        if g_ref is None:
                            g_ref = sense_reference(gi[b == 0], gi[b == 1])
                        rb = (gi < g_ref).astype(np.int8)
                        cols["cell"].append(layout[s])
                        cols["g_s"].append(gi)
                        cols["cell_b"].append(np.full(exp.bits, -1, dtype=np.int64))
                        cols["g_b_s"].append(np.full(exp.bits, np.nan))
                        cols["g_pre_s"].append(g_pre[off - exp.bits: off])
                        cols["g_b_pre_s"].append(np.full(exp.bits, np.nan))
                        stats["e_bit_1t1r"].append(ei)
                    else:
                        ga = g[off: off + exp.bits]
                        gb = g[off + exp.bits: off + 2 * exp.bits]
                        ea = e[off: off + exp.bits]
                        eb = e[off + exp.bits: off + 2 * exp.bits]
                        off += 2 * exp.bits
                        rb = (ga < gb).astype(np.int8)
                        cols["cell"].append(layout[s][0::2])
                        cols["g_s"].append(ga)
                        cols["cell_b"].append(layout[s][1::2].astype(np.int64))
                        cols["g_b_s"].append(gb)
                        cols["g_pre_s"].append(g_pre[off - 2 * exp.bits: off - exp.bits])
                        cols["g_b_pre_s"].append(g_pre[off - exp.bits: off])
                        stats["e_bit_2t2r"].append(ea + eb)
                    cols["condition"].append(np.full(exp.bits, cond.name))
                    cols["structure"].append(np.full(exp.bits, s))
                    cols["cycle"].append(np.full(exp.bits, cyc))
                    cols["bit"].append(b)
                    cols["read_bit"].append(rb)
                if cyc == 0 and not _has_rows(ctx, "conditions", condition=cond.name):
                    e1 = np.concatenate(stats["e_bit_1t1r"]) if stats["e_bit_1t1r"] else None
                    e2 = np.concatenate(stats["e_bit_2t2r"]) if stats["e_bit_2t2r"] else None
                    ctx.append("conditions", {
                        "condition": np.array([cond.name]), "icc_a": np.array([cond.icc_a]),
                        "v_reset": np.array([cond.v_reset]), "width_s": np.array([cond.width_s]),
                        "energy_per_bit_j": np.array([float(np.mean(e1 if e1 is not None else
                                                                     e2 / 2))]),
                        "energy_per_bit_2t2r_j": np.array([float(np.mean(e2)) if e2 is not None
                                                           else np.nan]),
                        "energy_set_j": np.array([float(np.mean(np.concatenate(stats["e_set"])))]),
                        "energy_reset_j": np.array([float(np.mean(
                            np.concatenate(stats["e_reset"])))]),
                        "v_gate": np.array([v_gate_set]),
                        "g_ref_s": np.array([g_ref if g_ref is not None else np.nan])})
                ctx.append("bits", {k: np.concatenate(v) for k, v in cols.items()})
                ctx.complete(step)
                bar.update(1)
            totals[cond.name] = g_ref
        bar.close()
        return ctx.finish(g_ref_s=totals)


# =========================================================================== fault map
def fault_map(station: Any, store: Any, exp: FaultMapExp, cells: np.ndarray, seed: int, *,
              plan_name: str = "", progress: bool = True) -> ProcedureResult:
    """Find stuck-on / stuck-off cells with ``repeats`` strong SET/RESET probes.

    A cell that never opens a window of ``min_window_s`` between its SET and RESET reads is
    stuck: stuck-on above ``g_split_s``, stuck-off below. ``faults``: cell, state
    ("ok"/"stuck_on"/"stuck_off"), g_after_set_s, g_after_reset_s (last probe).
    """
    with _Context(station, store, exp, cells, seed, plan_name=plan_name,
                  progress=progress) as ctx:
        cond = exp.condition
        v_gate_set = _set_gate(station, cond)
        batches = [ctx.cells[i: i + exp.batch] for i in range(0, ctx.cells.size, exp.batch)]
        bar = ctx.bar(len(batches), "fault map")
        for b, c in enumerate(batches):
            step = f"batch-{b:04d}"
            if ctx.skip(step):
                bar.update(1)
                continue
            switched = np.zeros(c.size, dtype=bool)
            for _ in range(exp.repeats):
                ctx.pulse(c, SET, cond.v_set, v_gate_set, cond.width_s)
                g_set = ctx.read(c)
                ctx.pulse(c, RESET, cond.v_reset, _reset_gate(cond, v_gate_set), cond.width_s)
                g_reset = ctx.read(c)
                switched |= (g_set - g_reset) >= exp.min_window_s
            level = 0.5 * (g_set + g_reset)
            state = np.where(switched, "ok", np.where(level > exp.g_split_s, "stuck_on",
                                                      "stuck_off"))
            ctx.append("faults", {"cell": c, "state": state, "g_after_set_s": g_set,
                                  "g_after_reset_s": g_reset})
            ctx.complete(step)
            bar.update(1)
        bar.close()
        return ctx.finish()


# =========================================================================== endurance
def endurance(station: Any, store: Any, exp: EnduranceExp, cells: np.ndarray, seed: int, *,
              plan_name: str = "", progress: bool = True) -> ProcedureResult:
    """SET/RESET cycling per condition; window (G_LRS, G_HRS) read at log-spaced cycles.

    Cells are split per condition. ``cycles``: condition, cycle, cell, g_lrs_s, g_hrs_s.
    A cycle without a read costs two round trips (SET batch, RESET batch), one with a read
    four.
    """
    with _Context(station, store, exp, cells, seed, plan_name=plan_name,
                  progress=progress) as ctx:
        per_cond = np.array_split(ctx.cells, len(exp.conditions))
        reads = set(exp.read_cycles().tolist())
        marks = sorted(reads)
        bar = ctx.bar(len(exp.conditions) * exp.cycles, "endurance")
        for ci, cond in enumerate(exp.conditions):
            c = per_cond[ci]
            vg = _set_gate(station, cond)
            start = 0
            for m in marks:
                step = f"{cond.name}-to-{m:09d}"
                if ctx.skip(step):
                    bar.update(m + 1 - start)
                    start = m + 1
                    continue
                for cyc in range(start, m + 1):
                    ctx.pulse(c, SET, cond.v_set, vg, cond.width_s)
                    if cyc == m:
                        g_lrs = ctx.read(c)
                    ctx.pulse(c, RESET, cond.v_reset, _reset_gate(cond, vg), cond.width_s)
                    if cyc == m:
                        g_hrs = ctx.read(c)
                ctx.append("cycles", {"condition": np.full(c.size, cond.name),
                                      "cycle": np.full(c.size, m), "cell": c, "g_lrs_s": g_lrs,
                                      "g_hrs_s": g_hrs})
                ctx.complete(step)
                bar.update(m + 1 - start)
                start = m + 1
        bar.close()
        return ctx.finish()


PROCEDURES: dict[str, Callable[..., ProcedureResult]] = {
    "programming_error": programming_error,
    "read_fluctuation": read_fluctuation,
    "relaxation": relaxation,
    "bake_retention": bake_retention,
    "ber": ber,
    "fault_map": fault_map,
    "endurance": endurance,
}

"""Programming-error experiment and the steps the other experiments share: assigning
levels, program-verify logged as a step, the time of each cell's last pulse.

See :mod:`cimlab.procedures.characterization` for what every procedure guarantees."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from cimlab.procedures.plan import ProgrammingErrorExp
from cimlab.procedures.program_verify import (
    GateCurve,
    ProgramVerifyConfig,
    ProgramVerifyResult,
    measure_gate_curve,
    program_single_shot,
)
from cimlab.procedures.protocols import Bench, RunStore
from cimlab.procedures.run import ProcedureResult, ProcedureRun


def since(t_clock: float, pulse_time: np.ndarray) -> np.ndarray:
    """Time [s] from each cell's last pulse to ``t_clock`` (NaN where the pulse is unknown).

    Relaxation runs on a log clock from the cell's own last programming pulse with an onset
    of ~1-5 ms (docs/physics.md), so every procedure times its reads from that pulse, not
    from the end of the batch (a 16k-cell verify iteration alone lasts ~20 ms)."""
    return float(t_clock) - np.asarray(pulse_time, dtype=float)


def assign_levels(exp: Any, cells: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Level index and target conductance [S] per cell."""
    level = exp.levels.assign(cells.size, seed)
    return level, exp.levels.targets()[level]


def verify_program_and_log(ctx: ProcedureRun, cells: np.ndarray, level: np.ndarray,
                           target: np.ndarray, cfg: ProgramVerifyConfig, step: str
                           ) -> ProgramVerifyResult | None:
    """Program-verify ``cells`` (one step) and log it in the ``programmed`` table; on an
    array with ``verify_batch_cells`` (:func:`timing_batch`) batch by batch."""
    if ctx.skip(step):
        return None
    nb = max(1, timing_batch(ctx.ops.array, cells.size))
    parts = [ctx.program(cells[i:i + nb], target[i:i + nb], cfg, calibration_pool=cells,
                         progress=ctx.progress and nb == cells.size)
             for i in range(0, cells.size, nb)]
    res = ProgramVerifyResult.concatenate(parts)
    ctx.append("programmed", {
        "cell": cells, "level": level, "target_siemens": target, "g_siemens": res.g_verify_siemens,
        "pulses": res.pulses, "mode": np.full(cells.size, "verify"),
        "time_s": res.g0_time_s(), "success": res.success,
        "energy_j": res.energy_j, "pulse_time_s": res.last_pulse_time_s})
    ctx.complete(step)
    ctx.result.figures.setdefault("program_verify", []).append(res.summary())
    return res


def pulse_record(ctx: ProcedureRun, res: ProgramVerifyResult | None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(clock time of each cell's last pulse, time of its verify read after that pulse) [s],
    from the verify just run or, on resume, from the run's ``programmed`` table (the last
    programming of each cell). NaN where a cell needed no pulse."""
    if res is not None:
        return res.last_pulse_time_s, res.g0_time_s()
    df = ctx.run.table("programmed").drop_duplicates("cell", keep="last").set_index("cell")
    idx = ctx.cells.astype(np.int64)
    if "pulse_time_s" not in df.columns:  # a run begun before pulse times were recorded
        t = np.full(idx.size, program_time(ctx))
        return t, np.zeros(idx.size)
    return (df["pulse_time_s"].reindex(idx).to_numpy(dtype=float),
            df["time_s"].reindex(idx).to_numpy(dtype=float))


def timing_batch(array: Any, batch: int) -> int:
    """Cells per program-and-read-back batch: the plan's ``batch``, capped by the array's
    ``verify_batch_cells`` where it has one (a bench that works cell by cell, whose verify
    read would otherwise come seconds after the pulse: :data:`cimlab.instruments.
    discrete_array.VERIFY_BATCH_CELLS`)."""
    cap = getattr(array, "verify_batch_cells", None)
    return min(int(batch), int(cap)) if isinstance(cap, int) and cap > 0 else int(batch)


def program_time(ctx: ProcedureRun) -> float:
    """Clock time at the end of programming, stored so a resumed run keeps its time origin."""
    if "t-programmed" in ctx.done or ctx.has_rows("clock", what="programmed"):
        df = ctx.run.table("clock")
        ctx.done.add("t-programmed")
        return float(df.loc[df["what"] == "programmed", "time_s"].iloc[-1])
    t = ctx.now()
    ctx.append("clock", {"what": np.array(["programmed"]), "time_s": np.array([t])})
    ctx.complete("t-programmed")
    return t


class ProgrammedLevels(NamedTuple):
    """What :func:`program_levels` did: per cell its level index, target [S], the
    program-verify result (None on resume: the step was done), and the clock times [s] of the
    end of programming and of each cell's last pulse, with its verify read's time after that
    pulse (NaN where the verify needed no pulse)."""

    level: np.ndarray
    target: np.ndarray
    result: ProgramVerifyResult | None
    t_prog: float
    t_pulse: np.ndarray
    g0_time: np.ndarray


def program_levels(ctx: ProcedureRun, exp: Any, seed: int) -> ProgrammedLevels:
    """The start the relaxation, read-fluctuation and read-noise-series experiments share:
    assign ``exp.levels`` to the run's cells, program-verify them (step "program"), store the
    end of programming (:func:`program_time`) and each cell's last pulse
    (:func:`pulse_record`), so a resumed run keeps its time origin."""
    level, target = assign_levels(exp, ctx.cells, seed)
    res = verify_program_and_log(ctx, ctx.cells, level, target, exp.verify, "program")
    t_prog = program_time(ctx)
    t_pulse, g0_time = pulse_record(ctx, res)
    return ProgrammedLevels(level, target, res, t_prog, t_pulse, g0_time)


def programmed_g(ctx: ProcedureRun) -> np.ndarray:
    df = ctx.run.table("programmed")
    m = dict(zip(df["cell"].to_numpy(), df["g_siemens"].to_numpy(), strict=True))
    return np.array([m[int(c)] for c in ctx.cells])


# =========================================================================== programming error
def programming_error(station: Bench, store: RunStore, exp: ProgrammingErrorExp, cells: np.ndarray,
                      seed: int, *, plan_name: str = "", progress: bool = True
                      ) -> ProcedureResult:
    """Programming error over ``exp.levels`` targets, single-shot and/or with program-verify.

    Writes ``programmed`` (cell, level, target_siemens, g_siemens, pulses, mode, time_s: the read
    after
    the cell's last pulse, NaN where a verify needed no pulse; + pulse_time_s, the clock time
    of that pulse) and, for
    single-shot, ``gate_curve`` (v_gate, g_mean_siemens, g_std_siemens, n_cells). The cells are
    split in
    two halves when both modes are requested (each cell is programmed once).
    """
    with ProcedureRun.for_experiment(station, store, exp, cells, seed, plan_name=plan_name,
                                     progress=progress) as ctx:
        level, target = assign_levels(exp, ctx.cells, seed)
        modes = list(exp.modes)
        parts = np.array_split(np.arange(ctx.cells.size), len(modes))
        for mode, idx in zip(modes, parts, strict=True):
            c, lv, tg = ctx.cells[idx], level[idx], target[idx]
            nb = timing_batch(ctx.ops.array, exp.batch)
            batches = [np.arange(i, min(i + nb, c.size)) for i in range(0, c.size, nb)]
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
                                              tolerance_siemens=exp.verify.tolerance_siemens)
                    ctx.clock.sleep(exp.read_delay_s)
                    t_read = ctx.now()
                    g = ctx.read(c[sel])
                    ctx.append("programmed", {
                        "cell": c[sel], "level": lv[sel], "target_siemens": tg[sel], "g_siemens": g,
                        "pulses": res.pulses,
                        "mode": np.full(sel.size, "single_shot"),
                        "time_s": since(t_read, res.last_pulse_time_s),
                        "success": np.abs(g - tg[sel]) <= exp.verify.tolerance_siemens,
                        "energy_j": res.energy_j, "pulse_time_s": res.last_pulse_time_s})
                else:
                    res = ctx.program(c[sel], tg[sel], exp.verify, calibration_pool=c,
                                      progress=ctx.progress and len(batches) == 1)
                    ctx.clock.sleep(exp.read_delay_s)
                    t_read = ctx.now()
                    g = ctx.read(c[sel])
                    ctx.append("programmed", {
                        "cell": c[sel], "level": lv[sel], "target_siemens": tg[sel], "g_siemens": g,
                        "pulses": res.pulses, "mode": np.full(sel.size, "verify"),
                        "time_s": since(t_read, res.last_pulse_time_s), "success": res.success,
                        "energy_j": res.energy_j, "pulse_time_s": res.last_pulse_time_s})
                    ctx.result.figures.setdefault("program_verify", []).append(res.summary())
                ctx.complete(step)
                bar.update(1)
            bar.close()
        return ctx.finish()


def _gate_curve(ctx: ProcedureRun, exp: ProgrammingErrorExp, cells: np.ndarray) -> GateCurve:
    """Measure (or, on resume, reload) the gate-voltage -> mean-G curve on a cell subset."""
    step = "gate-curve"
    if step in ctx.done or ctx.has_rows("gate_curve", n_cells=exp.calibration_cells):
        df = ctx.run.table("gate_curve")
        ctx.done.add(step)
        return GateCurve(df["v_gate"].to_numpy(), df["g_mean_siemens"].to_numpy(),
                         df["g_std_siemens"].to_numpy(), int(df["n_cells"].iloc[0]))
    sub = np.sort(np.random.default_rng(ctx.seed + 1).choice(
        cells, min(exp.calibration_cells, cells.size), replace=False))
    v_gates = np.linspace(exp.v_gate_min, exp.v_gate_max, exp.calibration_points)
    curve = measure_gate_curve(ctx.ops, sub, v_gates, v_set=exp.v_set, v_reset=exp.v_reset,
                               v_gate_reset=exp.v_gate_reset, width_s=exp.width_s)
    ctx.append("gate_curve", {"v_gate": curve.v_gate, "g_mean_siemens": curve.g_mean_siemens,
                              "g_std_siemens": curve.g_std_siemens,
                              "n_cells": np.full(v_gates.size, sub.size)})
    ctx.complete(step)
    return curve



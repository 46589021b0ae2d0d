"""Retention experiments: relaxation after programming at room temperature (reads on the
station clock) and bake retention (reads between bakes in the oven)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from cimlab.procedures.plan import BakeRetentionExp, RelaxationExp
from cimlab.procedures.programming import (
    assign_levels,
    program_levels,
    programmed_g,
    pulse_record,
    since,
    verify_program_and_log,
)
from cimlab.procedures.protocols import Bench, RunStore
from cimlab.procedures.run import ProcedureResult, ProcedureRun
from cimlab.units import KELVIN_OFFSET

#: Room temperature assumed for reads outside the oven when the station reports none [K].
ROOM_TEMPERATURE_K = 298.15


# =========================================================================== relaxation
def relaxation(station: Bench, store: RunStore, exp: RelaxationExp, cells: np.ndarray, seed: int, *,
               plan_name: str = "", progress: bool = True) -> ProcedureResult:
    """Reads at ``times_s`` after program-verify, with the station clock (virtual or real).

    The read schedule ``times_s`` counts from the end of programming; ``reads``: cell, level,
    target_siemens, g0_siemens (last verify read), time_s (since the cell's own last pulse),
    g0_time_s
    (time of the g0 read after that pulse), g_siemens, temp_k, time_index. A time point already
    past when resuming is read at once (time_s records the true time).
    """
    with ProcedureRun.for_experiment(station, store, exp, cells, seed, plan_name=plan_name,
                                     progress=progress) as ctx:
        level, target, res, t_prog, t_pulse, g0_time = program_levels(ctx, exp, seed)
        g0 = res.g_verify_siemens if res is not None else programmed_g(ctx)
        temp_k = ambient_k(station)
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
            ctx.append(
                "reads",
                {
                    "cell": ctx.cells,
                    "level": level,
                    "target_siemens": target,
                    "g0_siemens": g0,
                    "time_s": since(t_read, t_pulse),
                    "g0_time_s": g0_time,
                    "g_siemens": g,
                    "temp_k": np.full(n, temp_k),
                    "time_index": np.full(n, i),
                },
            )
            ctx.complete(step)
            bar.update(1)
        bar.close()
        return ctx.finish()


def ambient_k(station: Bench) -> float:
    """Temperature [K] of reads outside a bake: the oven's reading (a chamber at ambient),
    else :data:`ROOM_TEMPERATURE_K`."""
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
def bake_retention(station: Bench, store: RunStore, exp: BakeRetentionExp, cells: np.ndarray,
                   seed: int, *, plan_name: str = "", progress: bool = True,
                   on_step: Callable[[str], None] | None = None) -> ProcedureResult:
    """Program levels, bake at each temperature on the schedule, read after each bake step.

    ``reads``: cell, level, target_siemens, step, temp_k, bake_time_s (cumulative at temperature),
    g_siemens (+ ``repeat``, ``temp_index``, ``time_s`` since the cell's last pulse on the station
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
    with ProcedureRun.for_experiment(station, store, exp, cells, seed, plan_name=plan_name,
                                     progress=progress) as ctx:
        level, target = assign_levels(exp, ctx.cells, seed)
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
            res = verify_program_and_log(ctx, ctx.cells, level, target, exp.verify,
                                          f"T{j}-program")
            t_pulse, g0_time = pulse_record(ctx, res)
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
                    ts.append(since(ctx.now(), t_pulse))
                    gs.append(ctx.read(ctx.cells))
                r = exp.reads_per_step
                ctx.append("reads", {
                    "cell": np.tile(ctx.cells, r), "level": np.tile(level, r),
                    "target_siemens": np.tile(target, r), "step": np.full(n * r, k),
                    "temp_k": np.full(n * r, temp_k), "bake_time_s": np.full(n * r, t_cum),
                    "g_siemens": np.concatenate(gs), "repeat": np.repeat(np.arange(r), n),
                    "temp_index": np.full(n * r, j), "time_s": np.concatenate(ts),
                    "g0_time_s": np.tile(g0_time, r)})
                ctx.complete(step)
                bar.update(1)
        bar.close()
        return ctx.finish()



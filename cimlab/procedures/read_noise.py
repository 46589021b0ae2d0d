"""Read-fluctuation experiment: repeated batched reads per level as a time series, and
SMU precision reads of single routed cells; read-noise time series at a fixed sample rate
(the spectrum's data)."""

from __future__ import annotations

import numpy as np

from cimlab.procedures.importers.techa import SERIES_COLUMNS
from cimlab.procedures.plan import ReadFluctuationExp, ReadNoiseSeriesExp
from cimlab.procedures.programming import program_levels, since
from cimlab.procedures.protocols import Bench, CellArray, RunStore
from cimlab.procedures.retention import ambient_k
from cimlab.procedures.run import ProcedureResult, ProcedureRun

#: Samples written (and committed) per step of a read-noise series: a killed run loses at
#: most this many and resumes on the same sample schedule.
SERIES_CHUNK = 2048
#: A sample read later than this fraction of the sample period after its scheduled time
#: stops the run: the series would not be evenly spaced, which its spectrum assumes.
SERIES_LATE = 0.5


# =========================================================================== read fluctuation
def read_fluctuation(station: Bench, store: RunStore, exp: ReadFluctuationExp, cells: np.ndarray,
                     seed: int, *, plan_name: str = "", progress: bool = True
                     ) -> ProcedureResult:
    """Repeated reads per cell at each level as a time series, plus SMU precision reads.

    Program-verify all cells, wait ``settle_s``, then ``repeats`` batched reads of all cells
    (``reads``: cell, level, target_siemens, repeat, time_s, g_siemens; time_s since the cell's own
    last
    pulse, NaN for a cell the verify did not need to pulse). A subset
    of ``smu_cells`` cells is read with the SMU (``smu_reads``: cell, level, target_siemens, repeat,
    v, i_a, g_siemens) after routing each cell with ``array.select``.
    """
    with ProcedureRun.for_experiment(station, store, exp, cells, seed, plan_name=plan_name,
                                     progress=progress) as ctx:
        level, target, _, _, t_pulse, _ = program_levels(ctx, exp, seed)
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
                ts.append(since(ctx.now(), t_pulse))
                gs.append(ctx.read(ctx.cells))
                bar.update(1)
            ctx.append("reads", _batch_reads(ctx.cells, level, target, "repeat", r0, r1,
                                             ts, gs))
            ctx.complete(step)
        bar.close()
        if exp.smu_cells and not ctx.skip("smu"):
            sub_idx = np.sort(np.random.default_rng(ctx.seed + 2).choice(
                ctx.cells.size, exp.smu_cells, replace=False))
            rows = smu_precision_reads(ctx, ctx.cells[sub_idx], exp.smu_repeats, exp.smu_v,
                                       exp.smu_compliance_a)
            rows["level"] = np.repeat(level[sub_idx], exp.smu_repeats)
            rows["target_siemens"] = np.repeat(target[sub_idx], exp.smu_repeats)
            ctx.append(
                "smu_reads",
                {
                    k: rows[k]
                    for k in ("cell", "level", "target_siemens", "repeat", "v", "i_a", "g_siemens")
                },
            )
            ctx.complete("smu")
        return ctx.finish()


def _batch_reads(cells: np.ndarray, level: np.ndarray, target: np.ndarray, index: str,
                 i0: int, i1: int, ts: list[np.ndarray], gs: list[np.ndarray]
                 ) -> dict[str, np.ndarray]:
    """Columns of reads ``i0 .. i1-1`` of all ``cells`` (one read of every cell each; ``ts``
    [s] and ``gs`` [S] per read): cell, level, target_siemens, ``index`` (the read's number),
    time_s, g_siemens, cell-fastest."""
    m, n = i1 - i0, cells.size
    return {"cell": np.tile(cells, m), "level": np.tile(level, m),
            "target_siemens": np.tile(target, m), index: np.repeat(np.arange(i0, i1), n),
            "time_s": np.concatenate(ts), "g_siemens": np.concatenate(gs)}


def smu_precision_reads(ctx: ProcedureRun, cells: np.ndarray, repeats: int, v: float,
                        compliance_a: float) -> dict[str, np.ndarray]:
    """Route each cell to the SMU (``array.select``) and read its DC current ``repeats`` times
    at bias ``v`` with PyMeasure's Keithley2450 driver; outputs off afterwards."""
    st = ctx.station
    smu = st.smu
    out: dict[str, list] = {"cell": [], "repeat": [], "v": [], "i_a": [], "g_siemens": []}
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
                out["g_siemens"].append(i / v)
            smu.source_voltage = 0.0
            bar.update(1)
    finally:
        smu.source_voltage = 0.0
        smu.disable_source()
        _deselect(st.array)
        bar.close()
    ctx.other_ops += cells.size * repeats
    return {k: np.asarray(v_) for k, v_ in out.items()}


def _deselect(array: CellArray) -> None:
    for name in ("deselect", "route_off", "unroute"):
        f = getattr(array, name, None)
        if callable(f):
            f()
            return
    try:
        array.select(None)
    except (TypeError, ValueError):
        pass


# =========================================================================== read-noise series
def read_noise_series(station: Bench, store: RunStore, exp: ReadNoiseSeriesExp,
                      cells: np.ndarray, seed: int, *, plan_name: str = "",
                      progress: bool = True) -> ProcedureResult:
    """Program-verify the cells, wait ``settle_s``, then read all of them at ``fs_hz`` for
    ``duration_s``: sample ``i`` at ``start + i / fs_hz`` on the station clock (``start``
    stored, so a resumed run keeps the schedule). Table ``samples``
    (:data:`~cimlab.procedures.importers.techa.SERIES_COLUMNS`: cell, level,
    target_siemens, sample, time_s since the cell's last pulse, g_siemens, fs_hz, temp_k),
    the layout ``cimlab import --format tsdata`` writes. A read that cannot keep up with the
    rate (more than half a period late) stops the run with the figures to change."""
    with ProcedureRun.for_experiment(station, store, exp, cells, seed, plan_name=plan_name,
                                     progress=progress) as ctx:
        level, target, _, t_prog, t_pulse, _ = program_levels(ctx, exp, seed)
        start = t_prog + exp.settle_s
        period = 1.0 / exp.fs_hz
        temp_k = ambient_k(station)
        n_samples, n = exp.samples, ctx.cells.size
        bar = ctx.bar(n_samples, "samples")
        for s0 in range(0, n_samples, SERIES_CHUNK):
            s1 = min(n_samples, s0 + SERIES_CHUNK)
            step = f"samples-{s0:08d}"
            if ctx.skip(step):
                bar.update(s1 - s0)
                continue
            gs, ts = [], []
            for i in range(s0, s1):
                due = start + i * period
                wait = due - ctx.now()
                if wait > 0:
                    ctx.clock.sleep(wait)
                elif -wait > SERIES_LATE * period:
                    raise RuntimeError(
                        f"read_noise_series: sample {i} came {-wait:.3g} s late at "
                        f"fs_hz = {exp.fs_hz:g} ({n} cells per read): lower fs_hz or read "
                        "fewer cells, so that one read of all cells fits in 1 / fs_hz")
                ts.append(since(ctx.now(), t_pulse))
                gs.append(ctx.read(ctx.cells))
                bar.update(1)
            m = s1 - s0
            cols = _batch_reads(ctx.cells, level, target, "sample", s0, s1, ts, gs)
            cols.update(fs_hz=np.full(n * m, exp.fs_hz), temp_k=np.full(n * m, temp_k))
            ctx.append("samples", {k: cols[k] for k in SERIES_COLUMNS})
            ctx.complete(step)
        bar.close()
        return ctx.finish()

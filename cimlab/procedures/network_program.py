"""Program a network's cells onto the chip: a resumable bench procedure on arrays.

The network side (which weight goes to which cell, the network's parameters) is built in
:mod:`cimlab.sim.program_net` and reaches this layer as a :class:`ChipImage`: NumPy arrays
and plain records, no torch. :func:`program_image` writes one run of kind
``"network_program"`` with a :class:`~cimlab.procedures.run.ProcedureRun`:

==============  ======================================================================
step            what happens (each a committed step: a killed run resumes after the last)
==============  ======================================================================
``placement``   the image's tables (``placement``: one row per cell: layer, slice, sign,
                out, row, chip tile, tile_row, col, cell, target_siemens; ``state``: the
                network's parameters and buffers) and its run metadata, so the store alone
                rebuilds the network
``erase``       one deep RESET of every cell of the logical tiles' regions (one command):
                every weight cell starts from a known state and is freshly programmed
                (a cell that verify would accept untouched keeps an old, already relaxed
                state, which the device model's "programmed at t = 0" does not describe),
                and the cells that hold no weight are parked at the bottom of the window
                (table ``parked``: cell, g_siemens)
``verify``      program-verify of ALL network cells at once
                (:func:`cimlab.procedures.program_verify.program_verify`: one pulse command
                and one read command per iteration); table ``programmed``: cell, level
                (layer index), target_siemens, g_siemens (last verify read), pulses, energy_j,
                success, stuck, mode ("verify"), time_s (0: at the end of programming)
``readback``    one read of every cell (table ``readback``: cell, target_siemens, g_siemens, time_s)
==============  ======================================================================

Run meta: the image's (``placement``, ``network``, ...), ``erase``, ``program_verify`` (the
summary figures), ``program_end_s`` (station clock at the end of programming). A resumed
``verify`` step re-runs program-verify on every cell: cells still inside the band pass at the
first read, so it only costs one read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cimlab.errors import ConfigError
from cimlab.instruments.limits import GateCalibration, check_pulse_extremes
from cimlab.params import to_dict
from cimlab.procedures.program_verify import ProgramVerifyConfig, program_verify
from cimlab.procedures.protocols import Bench, RunStore
from cimlab.procedures.run import ProcedureRun

RUN_KIND = "network_program"


@dataclass(frozen=True)
class ChipImage:
    """What a network becomes on the chip, as arrays (built by the simulator side).

    ``cells``: chip cell index of every weight cell, in placement order; ``target_siemens``: its
    target conductance [S]; ``layer``: its layer index; ``parked``: cells of the used regions
    that hold no weight (erased and read, not programmed); ``geometry``: the chip
    ``(n_tiles, rows, cols)`` the placement was made for; ``chip_tiles``: chip tiles used;
    ``plan``: the run's plan record (identifies it for resuming); ``tables`` and ``meta``:
    written in the first step (``placement``, ``state``; the network spec, ...).
    """

    geometry: tuple[int, int, int]
    cells: np.ndarray
    target_siemens: np.ndarray
    layer: np.ndarray
    parked: np.ndarray
    chip_tiles: int
    plan: dict[str, Any]
    tables: Mapping[str, Mapping[str, np.ndarray]] = field(default_factory=dict)
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = np.asarray(self.cells).size
        for name in ("target_siemens", "layer"):
            m = np.asarray(getattr(self, name)).size
            if m != n:
                raise ConfigError(None, f"image.{name}", f"{n} values (one per cell)", m)


@dataclass
class ChipProgramResult:
    """What :func:`program_image` did: per-cell outcome and the summary figures."""

    run_uid: str
    summary: dict[str, Any]
    g_verify_siemens: np.ndarray
    g_readback_siemens: np.ndarray
    pulses: np.ndarray
    success: np.ndarray
    stuck: np.ndarray
    program_end_s: float
    resumed_steps: list[str] = field(default_factory=list)


def format_program_summary(s: Mapping[str, Any]) -> str:
    """The summary figures of a network programming run as a two-column text table."""
    rows = [
        ("network cells", f"{s['cells']}"),
        ("chip tiles used", f"{s['chip_tiles']}"),
        ("success within +-1 uS [%]", f"{100 * s['success_rate']:.3f}"),
        ("stuck cells detected", f"{s['stuck_detected']}"),
        ("pulses/cell mean", f"{s['pulses_mean']:.2f}"),
        ("energy total [uJ]", f"{1e6 * s['energy_total_j']:.3f}"),
        ("  + erase pulse [uJ]", f"{1e6 * s.get('erase_energy_j', 0.0):.3f}"),
        ("energy/cell [pJ]", f"{1e12 * s['energy_per_cell_j']:.2f}"),
        ("round trips", f"{s['round_trips']}"),
        ("instrument time [s]", f"{s['instrument_time_s']:.3f}"),
        ("host time [s]", f"{s['host_time_s']:.2f}"),
        ("read-back within +-1 uS [%]", f"{100 * s['readback_within_tol']:.2f}"),
    ]
    return "\n".join(f"{a:30s} {b:>12s}" for a, b in rows)


def check_network_program(station: Bench, geometry: tuple[int, int, int],
                          pv_config: ProgramVerifyConfig | None = None) -> None:
    """What :func:`program_image` checks before it writes or sends anything: the placement
    was made for ``station``'s chip (``geometry``), and program-verify's extreme voltages lie
    within the station's limits (ConfigError / LimitError)."""
    chip = tuple(int(g) for g in station.array.geometry)
    if chip != tuple(geometry):
        raise ConfigError(None, "placement.geometry", f"the station's chip {chip}",
                          tuple(geometry))
    calibration = getattr(getattr(station, "calibration", None), "transistor", None)
    check_limits(station.limits, station.path, pv_config or ProgramVerifyConfig(), calibration)


def check_limits(lim: Any, station_path: Any, cfg: ProgramVerifyConfig,
                 calibration: GateCalibration | None = None) -> None:
    """Program-verify's (``cfg``) extreme pulses against a station's limits ``lim``
    (:class:`~cimlab.instruments.limits.StationLimits`), before any pulse: LimitError. The one
    limits vocabulary (:func:`cimlab.instruments.limits.check_pulse_extremes`); with the
    station's transistor ``calibration`` the SET compliance current is checked too."""
    check_pulse_extremes(lim, cfg, calibration=calibration, context="program-verify",
                         station=station_path)


def program_image(station: Bench, image: ChipImage, store: RunStore, *,
                  pv_config: ProgramVerifyConfig | None = None, seed: int = 0,
                  progress: bool = True, resume: bool = True) -> ChipProgramResult:
    """Program ``image`` onto ``station``'s chip, into ``store`` (module docstring).
    ``pv_config``: default adaptive, +-1 uS. Limits and geometry are checked before the first
    pulse (:func:`check_network_program`)."""
    cfg = pv_config or ProgramVerifyConfig()
    check_network_program(station, image.geometry, cfg)
    plan = {**image.plan, "program_verify": to_dict(cfg)}
    cells = np.asarray(image.cells)
    targets = np.asarray(image.target_siemens, dtype=float)
    with ProcedureRun(station, store, kind=RUN_KIND, label="program network", plan=plan,
                      cells=cells, seed=seed, seeds={"program_verify": int(seed)},
                      progress=progress, resume=resume) as ctx:
        run = ctx.run
        if not ctx.skip("placement"):
            for name, columns in image.tables.items():
                run.append(name, columns)
            for k, v in image.meta.items():
                run.set_meta(k, v)
            ctx.complete("placement")
        if not ctx.skip("erase"):
            parked = np.asarray(image.parked)
            region = np.concatenate([cells, parked])
            e = np.asarray(station.array.pulse(region, "reset", cfg.v_reset_max,
                                               cfg.v_gate_reset, cfg.width_s), dtype=float)
            run.set_meta("erase", {"cells": int(region.size),
                                   "energy_network_cells_j": float(e[:cells.size].sum()),
                                   "energy_total_j": float(e.sum())})
            if parked.size:
                g_p = np.asarray(station.array.read(parked), dtype=float)
                run.append("parked", {"cell": parked.astype(np.int64), "g_siemens": g_p})
            ctx.complete("erase")
        if not ctx.skip("verify"):
            rng = np.random.default_rng(int(run.seeds.get("program_verify", seed)))
            res = program_verify(station.array, cells, targets, cfg, clock=station.clock,
                                 rng=rng, progress=progress)
            run.append("programmed", {
                "cell": cells.astype(np.int64), "level": np.asarray(image.layer),
                "target_siemens": targets, "g_siemens": res.g_verify_siemens, "pulses": res.pulses,
                "energy_j": res.energy_j, "success": res.success.astype(np.int64),
                "stuck": res.stuck.astype(np.int64), "mode": "verify", "time_s": 0.0})
            run.set_meta("program_verify", res.summary())
            run.set_meta("program_end_s", float(station.clock.now()))
            ctx.complete("verify")
        if not ctx.skip("readback"):
            t_end = float(run.meta.get("program_end_s", station.clock.now()))
            g_rb = np.asarray(station.array.read(cells), dtype=float)
            run.append("readback", {"cell": cells.astype(np.int64), "target_siemens": targets,
                                    "g_siemens": g_rb, "time_s": station.clock.now() - t_end})
            ctx.complete("readback")
        prog = run.table("programmed")
        summ = dict(run.meta["program_verify"])
        g_rb = run.table("readback")["g_siemens"].to_numpy(dtype=float)
        summ["readback_within_tol"] = float(
            np.mean(np.abs(g_rb - targets) <= cfg.tolerance_siemens)
        )
        summ["chip_tiles"] = int(image.chip_tiles)
        summ["erase_energy_j"] = float(run.meta.get("erase", {}).get("energy_network_cells_j",
                                                                     0.0))
        run.set_meta("program_verify", summ)
        program_end_s = float(run.meta["program_end_s"])
        ctx.finish()
    return ChipProgramResult(
        run_uid=run.uid, summary=summ, g_verify_siemens=prog["g_siemens"].to_numpy(dtype=float),
        g_readback_siemens=g_rb, pulses=prog["pulses"].to_numpy(),
        success=prog["success"].to_numpy().astype(bool),
        stuck=prog["stuck"].to_numpy().astype(bool), program_end_s=program_end_s,
        resumed_steps=ctx.resumed_steps)


__all__ = ["RUN_KIND", "ChipImage", "ChipProgramResult", "check_limits",
           "check_network_program", "format_program_summary", "program_image"]

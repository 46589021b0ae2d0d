"""Program-verify: bring many cells to target conductances, vectorised over all of them.

Every iteration is exactly ONE batched pulse command and ONE batched read command. cimlab's
array-controller protocol takes one polarity per pulse command (``ARR:PULS? SET|RESET,...``,
per-cell amplitudes and gate voltages), so an iteration pulses either the cells that need a
SET or those that need a RESET; when both groups are non-empty the loop alternates between
them (a cell's pulse count is unaffected; the iteration count at most doubles, and the
per-command instrument time is small against the per-cell time). Verify reads are averaged
over ``n_reads`` reads taken in that one read command (the cell list repeated ``n_reads``
times: the protocol allows repeated cells in ``ARR:READ?``).

A cell is done when its verify read lies within ``+- tolerance_siemens`` of its target; it fails
when it reaches ``max_pulses``, ``max_alternations`` SET/RESET direction changes, or does not
respond to ``stuck_after`` strong pulses in a row (stuck-at fault, paper 004).

Schemes (``ProgramVerifyConfig.scheme``):

``ispp``
    Incremental-step pulse programming as in NeuRRAM (Wan et al., Nature 608, 2022): SET
    pulses on the bit line at a fixed word-line voltage, RESET pulses on the source line, each
    consecutive pulse in the same direction ``step_v`` (0.1 V) higher, the staircase
    restarting after a direction change; amplitudes capped at ``v_set_max``/``v_reset_max``.
``adaptive``
    Model-predictive choice of each cell's next pulse. A short batched sweep on a subset of
    the cells fits the chip's mean pulse response (:class:`PulseResponse`): the conductance a
    saturating SET leaves at each word-line voltage (the 1T1R compliance sets the LRS,
    R = V_C / I_C, Ielmini 2011), the fraction of the way to it a SET of each amplitude moves,
    and for RESET the fraction and the floor per amplitude. For every unfinished cell the loop
    predicts mean and spread of the outcome of each candidate pulse (SET landing at a ceiling
    equal to the target, partial SET steps, partial RESET steps, a deep RESET) and applies the
    one most likely to land inside the band; per-cell factors learned from the cell's own
    responses (its ceiling factor and its SET/RESET step gains) absorb device-to-device spread
    (10-30 %). In the spirit of RADAR-style adaptive programming (~8.7 pulses/cell, DESIGN.md).
``single_shot``
    One SET pulse from the RESET state at the word-line voltage a measured gate-voltage ->
    mean-G curve maps to the target (:func:`program_single_shot`; what a lab does without
    verify).

Published references (DESIGN.md): ISPP ~24 pulses/cell (99.2 %), fixed-pulse verify ~16
(99.7 %), adaptive RADAR ~8.7 (99.8 %) at 2 bits/cell; NeuRRAM leaves 0.2-0.8 % of cells
outside +-1 uS.
"""


from __future__ import annotations

import time

import numpy as np
from scipy.special import ndtr

from cimlab.procedures.array_ops import ArrayOps
from cimlab.procedures.protocols import CellArray, Clock
from cimlab.procedures.pulse_response import (
    PulseResponse,
    ResponseModel,
    measure_pulse_response,
)
from cimlab.procedures.pulse_table import TabulatedResponse
from cimlab.procedures.single_shot import GateCurve, measure_gate_curve, program_single_shot
from cimlab.procedures.verify_config import RESET, SET, ProgramVerifyConfig
from cimlab.procedures.verify_result import ProgramVerifyResult, format_report


def program_verify(
    array: CellArray | ArrayOps,
    cells: np.ndarray,
    target_siemens: np.ndarray,
    cfg: ProgramVerifyConfig,
    *,
    clock: Clock | None = None,
    response: ResponseModel | None = None,
    rng: np.random.Generator | None = None,
    progress: bool = False,
    final_read: bool = False,
    timestamps: bool = False,
    require_pulse: bool = False,
) -> ProgramVerifyResult:
    """Program ``cells`` to ``target_siemens`` [S] with the ``cfg.scheme`` verify loop.

    ``array`` is the station's array driver (anything with batched ``pulse`` and ``read``) or
    an :class:`ArrayOps`. ``clock`` (the station clock) is queried before and after for the
    instrument time and, with ``timestamps``, right before each batched pulse and each batched
    read command (clock queries, not array round trips): the result then holds each cell's
    last-pulse time (``last_pulse_time_s``) and the time of its verify read
    (``verify_read_time_s``), from which relaxation is timed. The time of a batch is the
    clock at the start of its command: the emulator applies a batch at that instant; a real
    board works through the batch's cells within the command's duration (one pulse width plus
    overhead per cell, e.g. ~1 us x the cells pulsed), which bounds the error of the
    record. ``iteration_times_s`` (clock after each iteration) is kept too. The adaptive
    scheme measures its pulse response on a subset of the cells first unless ``response`` is
    given. ``final_read`` adds one read of all cells after the loop (``g_final_siemens``).
    ``require_pulse``: every cell gets at least one pulse, even one already within tolerance
    of its target (a re-aimed cell, e.g. drift pre-compensated, must restart its relaxation:
    without this the loop would accept it untouched, issue 13).
    """
    if cfg.scheme == "single_shot":
        raise ValueError("single_shot has no verify loop; use program_single_shot()")
    cells = np.asarray(cells, dtype=np.uint32)
    target = np.broadcast_to(np.asarray(target_siemens, dtype=float), cells.shape).copy()
    rng = rng if rng is not None else np.random.default_rng(0)
    ops = array if isinstance(array, ArrayOps) else ArrayOps(array)
    t_host0 = time.perf_counter()
    t_inst0 = clock.now() if clock is not None else 0.0
    rt_start = ops.round_trips
    calib_rt = 0
    if cfg.scheme == "adaptive" and response is None:
        sub = cells if cells.size <= cfg.calibration_cells else np.sort(
            rng.choice(cells, cfg.calibration_cells, replace=False))
        response = measure_pulse_response(ops, sub, cfg, rng)
        calib_rt = response.round_trips
    loop = _VerifyLoop(ops, cells, target, cfg, response,
                       clock=clock if timestamps else None, require_pulse=require_pulse)
    iter_times: list[float] = []
    bar = None
    if progress:
        from cimlab.procedures.progress import Progress

        # tqdm on a terminal; periodic lines when configured (cimlab.procedures.progress)
        bar = Progress(cells.size, f"program-verify ({cfg.scheme})", unit="cell",
                       status=lambda: {"iterations": loop.it})
    try:
        loop.start()
        if bar is not None:
            bar.update(int(loop.done.sum()))
        while True:
            newly = loop.iterate()
            if newly is None:
                break
            if timestamps and clock is not None:
                iter_times.append(clock.now())
            if bar is not None:
                bar.update(newly)
    finally:
        if bar is not None:
            bar.close()
    g_final = ops.read(cells) if final_read else None
    t_inst1 = clock.now() if clock is not None else 0.0
    return ProgramVerifyResult(
        scheme=cfg.scheme, cells=cells, target_siemens=target, g_verify_siemens=loop.g,
        pulses=loop.pulses, energy_j=loop.energy, success=loop.done,
        tolerance_siemens=cfg.tolerance_siemens, iterations=loop.it,
        round_trips=ops.round_trips - rt_start, instrument_time_s=t_inst1 - t_inst0,
        host_time_s=time.perf_counter() - t_host0, stuck=loop.stuck,
        alternations=loop.alternations, last_pulse_iteration=loop.last_iter,
        iteration_times_s=np.asarray(iter_times), g_final_siemens=g_final,
        calibration_round_trips=calib_rt, last_pulse_time_s=loop.pulse_time,
        verify_read_time_s=loop.read_time)


class _VerifyLoop:
    """State of a program-verify run; :meth:`iterate` is one pulse command + one read."""

    def __init__(self, ops: ArrayOps, cells: np.ndarray, target: np.ndarray,
                 cfg: ProgramVerifyConfig, response: ResponseModel | None,
                 clock: Clock | None = None, require_pulse: bool = False):
        self.require_pulse = require_pulse
        self.ops, self.cells, self.target, self.cfg, self.resp = ops, cells, target, cfg, response
        self.clock = clock
        n = cells.size
        # clock time of each cell's last pulse and of its last verify read (NaN: unknown)
        self.pulse_time = np.full(n, np.nan)
        self.read_time = np.full(n, np.nan)
        self.pulses = np.zeros(n, dtype=np.int64)
        self.energy = np.zeros(n)
        self.alternations = np.zeros(n, dtype=np.int64)
        self.last_dir = np.zeros(n, dtype=np.int64)
        self.stair = np.zeros(n, dtype=np.int64)
        self.last_iter = np.full(n, -1, dtype=np.int64)
        self.no_response = np.zeros(n, dtype=np.int64)
        self.stuck = np.zeros(n, dtype=bool)
        self.failed = np.zeros(n, dtype=bool)
        # adaptive per-cell knowledge
        self.kappa = np.ones(n)           # ceiling factor (cell ceiling / mean ceiling)
        self.kappa_n = np.zeros(n)        # observations behind kappa
        self.gain_set = np.ones(n)
        self.gain_reset = np.ones(n)
        self.n_set_obs = np.zeros(n)
        self.n_reset_obs = np.zeros(n)
        # per-cell escalation of partial pulses (grid steps) after pulses that moved nothing:
        # a device whose threshold or RESET floor lies far from the chip's mean
        self.boost_set = np.zeros(n, dtype=np.int64)
        self.boost_reset = np.zeros(n, dtype=np.int64)
        self.it = 0
        self.next_dir = SET
        self.set_amps = cfg.set_amplitudes()
        self.reset_amps = cfg.reset_amplitudes()

    def _now(self) -> float:
        return float(self.clock.now()) if self.clock is not None else np.nan

    def start(self) -> None:
        self.read_time[:] = self._now()
        self.g = self.ops.read(self.cells, self.cfg.n_reads)
        self.done = np.abs(self.g - self.target) <= self.cfg.tolerance_siemens
        if self.require_pulse:
            self.done[:] = False

    # ------------------------------------------------------------------ one iteration
    def iterate(self) -> int | None:
        cfg = self.cfg
        active = np.flatnonzero(~self.done & ~self.failed)
        if active.size == 0:
            return None
        err = self.target[active] - self.g[active]
        want = np.where(err > 0, SET, RESET)
        has = {SET: bool((want == SET).any()), RESET: bool((want == RESET).any())}
        d = self.next_dir if has[self.next_dir] else -self.next_dir
        self.next_dir = -d
        sel = active[want == d]
        err = self.target[sel] - self.g[sel]
        changed = (self.last_dir[sel] != 0) & (self.last_dir[sel] != d)
        self.alternations[sel] += changed
        self.stair[sel] = np.where(changed | (self.last_dir[sel] == 0), 0, self.stair[sel] + 1)
        over = self.alternations[sel] > cfg.max_alternations
        if over.any():
            self.failed[sel[over]] = True
            sel, err = sel[~over], err[~over]
            if sel.size == 0:
                self.it += 1
                return 0
        if cfg.scheme == "ispp":
            amps = self.set_amps if d == SET else self.reset_amps
            vp = amps[np.minimum(self.stair[sel], amps.size - 1)]
            vg = np.full(sel.size, cfg.v_gate_set if d == SET else cfg.v_gate_reset)
            strong = vp >= amps[-1]
            pred = None
        else:
            vp, vg, pred, strong = self._adaptive(sel, err, d)
        self.pulse_time[sel] = self._now()
        e = self.ops.pulse(self.cells[sel], d, vp, vg, cfg.width_s)
        self.energy[sel] += e
        self.pulses[sel] += 1
        self.last_dir[sel] = d
        self.last_iter[sel] = self.it
        self.read_time[sel] = self._now()
        g_new = self.ops.read(self.cells[sel], cfg.n_reads)
        obs = g_new - self.g[sel]
        if pred is not None:
            self._learn(sel, d, vg, g_new, obs, pred)
        # stuck detection: strong pulses that move nothing
        moved = np.abs(obs) > 0.5 * cfg.tolerance_siemens
        still = strong & ~moved & (np.abs(err) > 3 * cfg.tolerance_siemens)
        self.no_response[sel] = np.where(still, self.no_response[sel] + 1, 0)
        self.g[sel] = g_new
        ok = np.abs(g_new - self.target[sel]) <= cfg.tolerance_siemens
        self.done[sel[ok]] = True
        stuck = ~ok & (self.no_response[sel] >= cfg.stuck_after)
        self.stuck[sel[stuck]] = True
        self.failed[sel[stuck]] = True
        capped = ~ok & (self.pulses[sel] >= cfg.max_pulses)
        self.failed[sel[capped]] = True
        self.it += 1
        return int(ok.sum())

    # ------------------------------------------------------------------ adaptive choice
    def _adaptive(self, sel: np.ndarray, err: np.ndarray, d: int):
        """Per cell, the candidate pulse most likely to land inside the band.

        Returns amplitudes, gate voltages, predicted outcome info and a 'strong' mask (pulses
        that must move any working cell: used for stuck detection).
        """
        r, cfg = self.resp, self.cfg
        assert r is not None
        tol = cfg.tolerance_siemens
        g = self.g[sel]
        tgt = self.target[sel]
        read_sd = 0.01 * np.abs(g) + 0.1e-6
        if d == SET:
            kappa = self.kappa[sel]
            k_sd = r.ceiling_rel_sd / np.sqrt(1.0 + self.kappa_n[sel])
            # candidate 0: saturating SET landing at a ceiling equal to the target
            vg_land = r.gate_for_ceiling(tgt / kappa)
            land_ok = np.isfinite(vg_land)
            vg_land = np.where(land_ok, vg_land, r.gate_v[-1])
            sd_land = np.hypot(tgt * k_sd, read_sd)
            p_land = np.where(land_ok, 2 * ndtr(tol / sd_land) - 1, 0.0)
            # candidates 1..k: partial SETs (the model's settings)
            vps, vgs, step, s_sd = r.set_candidates(g, tgt, kappa, self.gain_set[sel],
                                                    self.n_set_obs[sel], tol)
            sd = np.sqrt(s_sd ** 2 + read_sd[:, None] ** 2)
            mu = g[:, None] + step - tgt[:, None]
            p = ndtr((tol - mu) / sd) - ndtr((-tol - mu) / sd)
            k = p.argmax(axis=1)
            rows = np.arange(sel.size)
            p_part = p[rows, k]
            use_land = p_land >= p_part
            k = r.bump(SET, k, self.boost_set[sel])
            # far below the target: land (one big move) unless a partial step is clearly better
            vp = np.where(use_land, r.v_set_sat, vps[rows, k])
            vg = np.where(use_land, vg_land, vgs[rows, k])
            pred_step = np.where(use_land, np.maximum(kappa * r.ceiling_at(vg_land) - g, 0.0),
                                 step[rows, k])
            strong = use_land & (tgt - g > 3 * tol)
            return vp, vg, {"step": pred_step, "land": use_land}, strong
        # RESET: partial steps at each amplitude, or a deep RESET below the target
        amps, step, s_sd = r.reset_candidates(g, self.gain_reset[sel], self.n_reset_obs[sel])
        sd = np.sqrt(s_sd ** 2 + read_sd[:, None] ** 2)
        mu = g[:, None] + step - tgt[:, None]
        p = ndtr((tol - mu) / sd) - ndtr((-tol - mu) / sd)
        k = p.argmax(axis=1)
        rows = np.arange(sel.size)
        p_best = p[rows, k]
        # deep RESET: land well below the target, the next SET lands at the target's ceiling.
        # Worth it when no partial step is likely to hit and the landing precision is good.
        land_sd = np.hypot(tgt * r.ceiling_rel_sd / np.sqrt(1.0 + self.kappa_n[sel]),
                           read_sd)
        p_next_land = 2 * ndtr(tol / land_sd) - 1
        deep = p_best < 0.5 * p_next_land
        # a deep RESET is only a plan when a SET may follow: with the cell's last pulse it
        # would leave the cell far below its target (issue 13: one-pulse corrections landed
        # > 5 uS low ~25 % of the time)
        deep &= self.pulses[sel] + 1 < cfg.max_pulses
        k = r.bump(RESET, k, self.boost_reset[sel])
        v_deep, deep_step = r.deep_reset(g)
        vp = np.where(deep, v_deep, amps[k])
        pred_step = np.where(deep, deep_step, step[rows, k])
        vg = np.full(sel.size, cfg.v_gate_reset)
        strong = deep & (g - tgt > 3 * tol)
        return vp, vg, {"step": pred_step, "land": deep}, strong

    def _learn(self, sel: np.ndarray, d: int, vg: np.ndarray, g_new: np.ndarray,
               obs: np.ndarray, pred: dict) -> None:
        """Update per-cell ceiling factors and step gains from the observed responses."""
        r, rate = self.resp, self.cfg.gain_rate
        tol = self.cfg.tolerance_siemens
        # escalate partial pulses that moved nothing, back off after an overshoot
        boost = self.boost_set if d == SET else self.boost_reset
        err_before = self.target[sel] - (g_new - obs)
        err_after = self.target[sel] - g_new
        partial = ~pred["land"]
        idle = partial & (np.abs(obs) < 0.3 * tol) & (np.abs(err_after) > tol)
        over = partial & (np.sign(err_after) != np.sign(err_before)) & (np.abs(err_after) > tol)
        boost[sel[idle]] += max(1, round(self.cfg.step_v / self.cfg.fine_step_v))
        boost[sel[over]] = np.maximum(boost[sel[over]] - 1, 0)
        if rate <= 0:
            return
        if d == SET:
            land = pred["land"] & (obs > 0.5 * tol)
            if land.any():
                c = r.ceiling_at(vg[land])
                k_obs = g_new[land] / np.maximum(c, 1e-12)
                i = sel[land]
                n = self.kappa_n[i]
                self.kappa[i] = np.clip((self.kappa[i] * n + k_obs) / (n + 1)
                                        if True else k_obs, 0.3, 3.0)
                self.kappa[i] = np.where(n == 0, np.clip(k_obs, 0.3, 3.0), self.kappa[i])
                self.kappa_n[i] = n + 1
            part = ~pred["land"] & (pred["step"] > 0.5 * tol)
            gains, nobs = self.gain_set, self.n_set_obs
        else:
            part = ~pred["land"] & (pred["step"] < -0.5 * tol)
            gains, nobs = self.gain_reset, self.n_reset_obs
        if part.any():
            ratio = obs[part] / pred["step"][part]
            ratio = np.clip(ratio, 0.2, 5.0)
            i = sel[part]
            gains[i] = np.clip(gains[i] * ratio ** rate, 0.1, 10.0)
            nobs[i] += 1


__all__ = ["RESET", "SET", "ArrayOps", "GateCurve", "ProgramVerifyConfig", "ProgramVerifyResult",
           "PulseResponse", "ResponseModel", "TabulatedResponse", "format_report",
           "measure_gate_curve", "measure_pulse_response", "program_single_shot",
           "program_verify"]

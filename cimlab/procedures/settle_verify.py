"""Relaxation-aware programming: verify, let the tile settle, re-pulse only the cells worth it.

Every programming pulse restarts a cell's conductance relaxation: a random walk in the
log-time ``L(t) = log10(1 + t/tau)`` since the pulse, with a level-dependent mean drift
(docs/physics.md). A verify read a few ms after the pulse therefore says little about what
the cell holds an hour later, and any corrective pulse starts the walk again. The monitored
settle (:func:`program_settle_verify`) works with that law instead of against it:

1. program every cell with the adaptive verify loop (:func:`program_verify`);
2. wait (room temperature, ``clock.sleep``; or an accelerated settle: a bake in the oven,
   its soak chosen so that it equals the wait in room-temperature time via Arrhenius);
3. read the tile (``n_reads`` averaged) and learn, per target level, the drift per decade
   ``m`` and the variance per decade ``b`` of the walk from the cells' own history (change
   since their verify read over the decades elapsed since their last pulse; no emulator
   equation is used, only the log-time law with the onset time ``relax_tau_s`` of the
   fitted model);
4. for every cell, the probability that it is within tolerance when used (``use_delay_s``
   after the tile is finished) if left alone, ``P_keep`` (its present error carried forward
   by the drift and spread of the decades still to come), against the probability that a
   fresh pulse aimed at the drift-compensated target ends within tolerance, ``P_redo``
   (the spread of all decades from the pulse to the use); cells with
   ``P_keep < redo_factor * P_redo`` are re-pulsed (each at least once, :func:`program_verify`
   ``require_pulse``), aimed at ``target - m L(remaining + use) - c``, within a per-cell and
   (optionally) a tile-mean pulse budget; ``c`` is the learned mean miss of earlier aims per
   level (the re-pulsed cells' projected error at use, integral control);
5. repeat, with the checks densest near the end (schedule ``"end"``, the default): the time
   left after check ``j`` is ``total_wait_s / check_ratio**j``, down to ``last_gap_s``, then a
   last check when the tile is finished. A cell kept at a check then ages from ``A`` to about
   ``A (1 + 1/(check_ratio - 1))`` before the next one, a fixed fraction of a decade of its
   log-time, so every check is as informative as the last and re-pulsed cells still get a
   long settle; the time left when a cell is used changes its log-time little. Growing waits
   (schedule ``"geometric"``, dense at the start: the first version) spend the checks where
   every cell still moves by several uS before use: on the default profile 46.8 % of the cells
   within +-1 uS a minute after the tile was finished against 79.4 % with the end-dense
   schedule (docs/procedures.md, benchmarks/program_verify.py).

Tempered bakes (``bake_soak_s`` > 0, issue 13's accelerated settle). Relaxation is
thermally activated (Arrhenius, ``ea_ev`` of the fitted model), so the same end-dense schedule
can run over far more room-temperature-equivalent time than a day: every wait longer than
``room_wait_max_s`` is a bake whose ramps (at ``bake_ramp_k_per_s``) and ``bake_soak_s`` soak
give exactly that wait, at the coolest temperature that does (:meth:`SettleConfig.bake_plan`;
at most ``bake_temp_c``; a hot bake's ramps alone are ~1e7 s at 150 C and 0.5 K/s, so short
waits need cool bakes), the last waits at room temperature; each check reads the cooled tile.
A cell kept after ~1e8 s of equivalent time has a log-time past 10 decades and barely moves in
the hour after the tile is finished, so the 1 h figure no longer falls with the last re-pulses
of a one-day settle: on the default profile 85.9 % / 83.3 % of the cells within +-1 uS at 60 s
/ 1 h with ISPP's pulses (13.58) and 4.7 h of clock time (1e8 s equivalent), against 79.4 % /
68.0 % after a one-day room-temperature settle (benchmarks/program_verify.py). Each cell has
aged ~3 years-equivalent when used; the chip has seen up to 150 C (paper 000's bake
temperature), which a technology with a high-temperature failure mode (techA above 180 C)
must not exceed.

The result reports every pulse (calibration sweep included), instrument time and waiting
time; what the cells hold is measured afterwards by
:func:`cimlab.procedures.delayed_tolerance.within_tolerance_at`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np
from scipy.special import ndtr

from cimlab.errors import ConfigError
from cimlab.params import check, param
from cimlab.procedures.array_ops import ArrayOps
from cimlab.procedures.program_verify import program_verify
from cimlab.procedures.protocols import (
    BakeRecordLike,
    CellArray,
    Clock,
    TemperatureChamber,
)
from cimlab.procedures.pulse_response import ResponseModel, measure_pulse_response
from cimlab.procedures.verify_config import ProgramVerifyConfig
from cimlab.units import K_B_EV, KELVIN_OFFSET

#: Oven poll interval of a tempered bake [s]: the soak starts at the first poll within
#: 0.5 K of the setpoint, so a poll of 1 s at a 0.5 K/s ramp overshoots the plan by <= 1 s
BAKE_POLL_S = 1.0
#: Cells a level's aim correction counts as prior weight at 0 (a level seen in fewer re-pulsed
#: cells than this moves its aim less than its mean miss).
AIM_SHRINK_CELLS = 20.0


@dataclass(frozen=True)
class SettleConfig:
    """Settings of the monitored settle. Times [s], temperatures [C], conductances [S]."""

    schedule: str = param("end", choices=("end", "geometric"),
                          doc="check times: 'end' (densest near the end, module docstring) or "
                          "'geometric' (growing waits from first_wait_s, 'rounds' of them)")
    check_ratio: float = param(1.5, unit="1", lo=1.0, lo_open=True, hi=100.0,
                               doc="'end': time left shrinks by this factor from check to check")
    last_gap_s: float = param(1.0, unit="s", lo=0.0, lo_open=True,
                              doc="'end': least time left at a check before the last one")
    rounds: int = param(6, unit="1", lo=1, hi=100, doc="'geometric': settle-and-check rounds")
    first_wait_s: float = param(1.0, unit="s", lo=0.0, lo_open=True,
                                doc="'geometric': first wait (room-temperature-equivalent time)")
    total_wait_s: float = param(86400.0, unit="s", lo=0.0, lo_open=True,
                                doc="sum of the waits (room-temperature-equivalent time)")
    use_delay_s: float = param(60.0, unit="s", lo=0.0,
                               doc="delay after the tile is finished the keep rule aims at")
    redo_factor: float = param(0.6, unit="1", lo=0.0, lo_open=True, hi=10.0,
                               doc="re-pulse a cell when P_keep < redo_factor x P_redo (< 1: "
                               "keep borderline cells, since later checks can still catch them)")
    pulses_per_round: int = param(2, unit="1", lo=1, hi=1000,
                                  doc="most pulses per re-pulsed cell and round (a re-pulse "
                                  "lands within ~1 uS; relaxation then spreads it by several "
                                  "uS, so pulses buy more as attempts than as precision)")
    first_max_pulses: int = param(0, unit="1", lo=0, hi=1000,
                                  doc="most pulses of the first verify pass (0: the verify "
                                  "config's max_pulses); a long first settle spreads every cell "
                                  "by several uS, so the first pass's precision is mostly lost")
    n_reads: int = param(8, unit="1", lo=1, hi=64, doc="reads averaged per check")
    pulse_budget: int = param(40, unit="1", lo=1, hi=10_000,
                              doc="a cell is re-pulsed only while its pulses (first verify "
                              "and re-pulses) stay within this budget (the mean over the "
                              "tile is far lower: most cells are kept after 0-2 re-pulses)")
    mean_pulse_budget: float = param(0.0, unit="1", lo=0.0,
                                     doc="most pulses per cell over the tile, calibration "
                                     "sweep and first verify included (0: no cap); a round "
                                     "that would pass it re-pulses only the cells with the "
                                     "most to gain (P_redo - P_keep)")
    relax_tau_s: float = param(5e-3, unit="s", lo=0.0, lo_open=True,
                               doc="onset time of the log-time law (fitted model, techC)")
    bake_temp_c: float = param(0.0, unit="C", lo=0.0, hi=300.0,
                               doc="bake temperature of an accelerated settle (0: room "
                               "temperature, waits by clock.sleep); with bake_soak_s > 0 the "
                               "hottest bake, each bake as cool as its wait allows")
    bake_soak_s: float = param(0.0, unit="s", lo=0.0,
                               doc="0: every wait is a bake at bake_temp_c (the soak makes up "
                               "what the ramps do not give); > 0: each bake soaks this long at "
                               "the temperature (<= bake_temp_c) whose ramps + soak equal the "
                               "wait (module docstring, 'tempered bakes')")
    room_wait_max_s: float = param(0.0, unit="s", lo=0.0,
                                   doc="with a bake: waits up to this long (room-temperature "
                                   "time) are slept at room temperature, not baked")
    bake_ramp_k_per_s: float = param(0.0, unit="K/s", lo=0.0, hi=10.0,
                                     doc="oven ramp rate set before the first bake (0: leave "
                                     "the chamber's rate as it is)")
    ea_ev: float = param(1.1, unit="eV", lo=0.1, hi=4.0,
                         doc="activation energy of relaxation for the bake equivalence "
                         "(fitted Arrhenius law; HfOx 1.1-2.25 eV, DESIGN.md)")
    room_c: float = param(25.0, unit="C", lo=-50.0, hi=100.0, doc="room temperature")

    def __post_init__(self) -> None:
        check(self)
        if self.schedule == "geometric" and self.total_wait_s < self.first_wait_s:
            raise ConfigError(None, "total_wait_s", f">= first_wait_s = {self.first_wait_s:g} s",
                              self.total_wait_s)
        if 0.0 < self.bake_temp_c <= self.room_c:
            raise ConfigError(None, "bake_temp_c", f"0 or > room_c = {self.room_c:g} C",
                              self.bake_temp_c)
        if self.bake_soak_s > 0 and self.bake_temp_c <= 0:
            raise ConfigError(None, "bake_soak_s", "0 without a bake (bake_temp_c = 0)",
                              self.bake_soak_s)

    def waits_s(self) -> np.ndarray:
        """The waits [s] before each check, summing to ``total_wait_s``: 'end' (time left
        ``total_wait_s / check_ratio**j`` down to ``last_gap_s``, then 0) or 'geometric'
        (growing from ``first_wait_s``)."""
        if self.schedule == "end":
            n = int(np.floor(np.log(self.total_wait_s / self.last_gap_s)
                             / np.log(self.check_ratio) + 1e-9))
            left = self.total_wait_s / self.check_ratio ** np.arange(1, max(n, 0) + 1)
            checks = np.concatenate([self.total_wait_s - left, [self.total_wait_s]])
            return np.diff(checks, prepend=0.0)
        n = self.rounds
        if n == 1:
            return np.array([self.total_wait_s])
        ratio = _geometric_ratio(self.first_wait_s, self.total_wait_s, n)
        return self.first_wait_s * ratio ** np.arange(n)

    def acceleration(self) -> float:
        """Room-temperature seconds per second of bake (Arrhenius, ``ea_ev``)."""
        if self.bake_temp_c <= 0.0:
            return 1.0
        return float(arrhenius_factor(self.bake_temp_c, self.ea_ev, self.room_c))

    def bake_plan(self, wait_eq_s: float, ambient_c: float, rate_k_per_s: float
                  ) -> tuple[float, float] | None:
        """How to spend ``wait_eq_s`` of room-temperature time with tempered bakes: (bake
        temperature [C], soak [s]) whose ramps (linear at ``rate_k_per_s`` up from and back to
        ``ambient_c``) and soak give it, or None for a room-temperature wait (a short wait,
        or one the ramps of the coolest useful bake, 1 K above ambient, would overshoot)."""
        if self.bake_temp_c <= 0.0 or wait_eq_s <= self.room_wait_max_s:
            return None

        def eq(temp_c: float, soak_s: float) -> float:
            return (ramp_equivalent_s(temp_c, ambient_c, rate_k_per_s, self.ea_ev, self.room_c)
                    + soak_s * float(arrhenius_factor(temp_c, self.ea_ev, self.room_c)))

        soak = self.bake_soak_s
        hot = self.bake_temp_c
        if eq(hot, soak) <= wait_eq_s:          # hottest bake, longer soak
            extra = wait_eq_s - eq(hot, soak)
            return hot, soak + extra / float(arrhenius_factor(hot, self.ea_ev, self.room_c))
        lo = ambient_c + 1.0
        if lo >= hot or eq(lo, soak) >= wait_eq_s:
            return None
        for _ in range(60):                      # eq is increasing in the temperature
            mid = 0.5 * (lo + hot)
            lo, hot = (mid, hot) if eq(mid, soak) < wait_eq_s else (lo, mid)
        return 0.5 * (lo + hot), soak


#: Calibration cells of the tempered-bake settle's pulse-response sweep: the pulses saved
#: against the default 1024 pay for re-pulses after the long waits (benchmarks/program_verify.py)
TEMPERED_BAKE_CALIBRATION_CELLS = 512


def tempered_bake_settle(ea_ev: float = 1.1, **overrides) -> SettleConfig:
    """The tempered-bake settle of the module docstring, as measured in
    ``benchmarks/program_verify.py``: end-dense checks over 1e8 s of room-temperature-
    equivalent time (~3.2 years), waits over 1 h baked (<= 150 C, 60 s soak, 0.5 K/s ramps,
    as cool as each wait allows), a first pass of at most 3 pulses, re-pulse rule 0.4.
    ``ea_ev`` [eV]: the fitted model's activation energy; ``overrides``: any other field."""
    kw: dict = dict(total_wait_s=1e8, bake_temp_c=150.0, bake_soak_s=60.0,
                    room_wait_max_s=3600.0, bake_ramp_k_per_s=0.5, redo_factor=0.4,
                    first_max_pulses=3, ea_ev=ea_ev)
    kw.update(overrides)
    return SettleConfig(**kw)


def _geometric_ratio(first: float, total: float, n: int) -> float:
    """r with first (1 + r + ... + r^(n-1)) = total (bisection; r >= 1 when total >= n first)."""
    lo, hi = 1e-6, 1e6
    for _ in range(200):
        mid = np.sqrt(lo * hi)
        s = first * (mid ** n - 1) / (mid - 1) if abs(mid - 1) > 1e-12 else first * n
        lo, hi = (mid, hi) if s < total else (lo, mid)
    return float(np.sqrt(lo * hi))


@dataclass
class SettleResult:
    """Outcome of :func:`program_settle_verify`. Per cell: ``pulses`` (all, verify and
    re-pulses; the calibration sweep's pulses are in ``calibration_pulses``), ``energy_j``
    [J], ``g_check_s`` the last averaged check read [S], ``redo_rounds`` times re-pulsed."""

    cells: np.ndarray
    target_siemens: np.ndarray
    pulses: np.ndarray
    energy_j: np.ndarray
    g_check_s: np.ndarray
    redo_rounds: np.ndarray
    stuck: np.ndarray
    calibration_pulses: int
    calibration_energy_j: float
    instrument_time_s: float
    wait_time_s: float
    equivalent_wait_s: float
    finished_at_s: float
    host_time_s: float
    verify_read_success: float
    history: list[dict] = field(default_factory=list)
    scheme: str = "settle"

    def pulses_per_cell(self) -> float:
        """All pulses (calibration sweep included) per programmed cell."""
        return float((self.pulses.sum() + self.calibration_pulses) / max(self.cells.size, 1))

    def energy_per_cell_j(self) -> float:
        return float((self.energy_j.sum() + self.calibration_energy_j)
                     / max(self.cells.size, 1))

    def detected_stuck(self) -> np.ndarray:
        """Per cell: detected stuck by the verify loop."""
        return self.stuck

    def summary(self) -> dict:
        """Figures for the report table (keys as :meth:`ProgramVerifyResult.summary` where
        they mean the same; ``success_rate`` is the first pass's verify read, the loop's
        stopping rule, not what the cells hold)."""
        resp = ~self.stuck
        return {
            "scheme": self.scheme, "cells": int(self.cells.size),
            "success_rate": self.verify_read_success,
            "stuck_detected": int(self.stuck.sum()),
            "pulses_mean": float(self.pulses.mean()) if self.pulses.size else 0.0,
            "pulses_mean_responsive": float(self.pulses[resp].mean()) if resp.any() else 0.0,
            "pulses_median": float(np.median(self.pulses)) if self.pulses.size else 0.0,
            "pulses_max": int(self.pulses.max()) if self.pulses.size else 0,
            "calibration_pulses": int(self.calibration_pulses),
            "energy_per_cell_j": self.energy_per_cell_j(),
            "energy_total_j": float(self.energy_j.sum() + self.calibration_energy_j),
            "redo_rounds_mean": float(self.redo_rounds.mean()) if self.redo_rounds.size else 0.0,
            "checks": len(self.history),
            "instrument_time_s": float(self.instrument_time_s),
            "wait_time_s": float(self.wait_time_s),
            "equivalent_wait_s": float(self.equivalent_wait_s),
            "host_time_s": float(self.host_time_s),
        }


def arrhenius_factor(temp_c: float | np.ndarray, ea_ev: float, room_c: float):
    """Room-temperature seconds per second at ``temp_c`` (Arrhenius, ``ea_ev`` [eV])."""
    t = np.asarray(temp_c, dtype=float) + KELVIN_OFFSET
    return np.exp(ea_ev / K_B_EV * (1.0 / (room_c + KELVIN_OFFSET) - 1.0 / t))


def _mean_ramp_factor(temp_c: float, ambient_c: float, ea_ev: float, room_c: float) -> float:
    """Mean Arrhenius factor over a linear ramp between ``ambient_c`` and ``temp_c``."""
    f = arrhenius_factor(ambient_c + (temp_c - ambient_c) * np.linspace(0.0, 1.0, 401),
                         ea_ev, room_c)
    return float(np.mean(0.5 * (f[1:] + f[:-1])))          # trapezoid rule on [0, 1]


def ramp_equivalent_s(temp_c: float, ambient_c: float, rate_k_per_s: float, ea_ev: float,
                      room_c: float) -> float:
    """Room-temperature-equivalent seconds [s] of a linear ramp from ``ambient_c`` to
    ``temp_c`` and back at ``rate_k_per_s`` (no soak)."""
    return (2.0 * abs(temp_c - ambient_c) / rate_k_per_s
            * _mean_ramp_factor(temp_c, ambient_c, ea_ev, room_c))


def bake_equivalent_s(record: BakeRecordLike, temp_c: float, ambient_c: float, ea_ev: float,
                      room_c: float) -> float:
    """Room-temperature-equivalent seconds of one bake [s]: the soak at ``temp_c`` plus the
    ramp up from ``ambient_c`` and the cool-down back to it, each taken as linear in time
    between the record's clock times (how chamber controllers ramp; a passive exponential
    cool-down is slower at the bottom, where it adds little)."""
    mean_ramp = _mean_ramp_factor(temp_c, ambient_c, ea_ev, room_c)
    ramps = (record.soak_start_s - record.start_s) + (record.end_s - record.soak_end_s)
    soak = record.soak_end_s - record.soak_start_s
    return float(ramps * mean_ramp + soak * arrhenius_factor(temp_c, ea_ev, room_c))


def _log_time(t_s: np.ndarray, tau_s: float) -> np.ndarray:
    return np.log10(1.0 + np.maximum(np.asarray(t_s, dtype=float), 0.0) / tau_s)


def _learn_relaxation(levels: np.ndarray, level_of: np.ndarray, dg: np.ndarray,
                      dl: np.ndarray, read_var: np.ndarray, ok: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Per target level: drift per decade ``m`` [S] (least squares through 0 of dg on dl)
    and variance per decade ``b`` [S^2] (residual variance minus read variance, over dl)."""
    m = np.zeros(levels.size)
    b = np.zeros(levels.size)
    for k in range(levels.size):
        s = ok & (level_of == k) & (dl > 0.1)
        if s.sum() < 8:
            continue
        x, y = dl[s], dg[s]
        m[k] = float(np.sum(x * y) / np.sum(x * x))
        res = y - m[k] * x
        b[k] = max(float(np.mean(np.maximum(res ** 2 - read_var[s], 0.0) / x)), 0.0)
    # levels without data: nearest level with data
    have = b > 0
    if have.any() and not have.all():
        idx = np.flatnonzero(have)
        near = idx[np.abs(levels[:, None] - levels[idx][None, :]).argmin(axis=1)]
        m = np.where(have, m, m[near])
        b = np.where(have, b, b[near])
    return m, b


def program_settle_verify(
    array: CellArray | ArrayOps,
    cells: np.ndarray,
    target_siemens: np.ndarray,
    cfg: ProgramVerifyConfig,
    settle: SettleConfig,
    *,
    clock: Clock,
    oven: TemperatureChamber | None = None,
    response: ResponseModel | None = None,
    rng: np.random.Generator | None = None,
    read_rel_sd: float = 0.01,
    read_floor_s: float = 0.1e-6,
    progress: bool = False,
) -> SettleResult:
    """Program ``cells`` to ``target_siemens`` [S] with the monitored settle (module docstring).

    ``oven`` is required when ``settle.bake_temp_c`` > 0. ``read_rel_sd`` and
    ``read_floor_s`` [S] describe one read's noise (the station's measured read noise) for the
    keep rule. The adaptive pulse response is measured first on up to
    ``cfg.calibration_cells`` cells unless ``response`` is given; its pulses count.
    ``progress``: a bar over the checks (tqdm on a terminal, periodic lines when configured,
    :mod:`cimlab.procedures.progress`) with the last check's within-tolerance fraction and
    the waiting so far: on a real bench the settle takes hours.
    """
    if cfg.scheme != "adaptive":
        raise ValueError("the monitored settle uses the adaptive verify loop (scheme='adaptive')")
    if settle.bake_temp_c > 0 and oven is None:
        raise ValueError("bake_temp_c > 0 needs the station's oven (oven=station.oven)")
    cells = np.asarray(cells, dtype=np.uint32)
    target = np.broadcast_to(np.asarray(target_siemens, dtype=float), cells.shape).copy()
    rng = rng if rng is not None else np.random.default_rng(0)
    ops = array if isinstance(array, ArrayOps) else ArrayOps(array)
    host0 = time.perf_counter()
    t0 = clock.now()
    p0, e0 = ops.pulses_sent, ops.energy_j
    if response is None:
        sub = cells if cells.size <= cfg.calibration_cells else np.sort(
            rng.choice(cells, cfg.calibration_cells, replace=False))
        response = measure_pulse_response(ops, sub, cfg, rng)
    cal_pulses, cal_energy = ops.pulses_sent - p0, ops.energy_j - e0
    tol = cfg.tolerance_siemens
    levels, level_of = np.unique(target, return_inverse=True)

    first_cfg = (replace(cfg, max_pulses=settle.first_max_pulses)
                 if settle.first_max_pulses > 0 else cfg)
    res = program_verify(ops, cells, target, first_cfg, clock=clock, response=response, rng=rng,
                         timestamps=True)
    verify_success = float(res.success.mean())
    pulses = res.pulses.astype(np.int64)
    energy = res.energy_j.copy()
    stuck = res.stuck.copy()
    # equivalent (room-temperature) time bookkeeping: e(t) = clock time + bake surplus
    eq_extra = 0.0
    t_pulse_eq = np.where(np.isfinite(res.last_pulse_time_s), res.last_pulse_time_s, t0)
    g_ref = res.g_verify_siemens.copy()            # read right after each cell's last pulse
    redo_rounds = np.zeros(cells.size, dtype=np.int64)
    waits = settle.waits_s()
    wait_time = 0.0
    history: list[dict] = []
    g = g_ref
    fresh = np.ones(cells.size, dtype=bool)     # pulsed since the last check
    m = np.zeros(levels.size)
    b = np.zeros(levels.size)
    n_learn = np.zeros(levels.size)
    aim_bias = np.zeros(levels.size)
    ramp_eq = 0.0           # equivalent time the last bake's ramps gave [s]
    eq_waited = 0.0
    tempered = settle.bake_temp_c > 0 and settle.bake_soak_s > 0
    if settle.bake_temp_c > 0 and settle.bake_ramp_k_per_s > 0:
        assert oven is not None
        oven.ramp_rate_k_per_s = settle.bake_ramp_k_per_s
    checks_eq = np.cumsum(waits)
    bar = None
    if progress:
        from cimlab.procedures.progress import Progress, duration

        bar = Progress(len(waits), "settle" + (" (tempered bakes)" if tempered else ""),
                       unit="check", status=lambda: {
                           "within tol": f"{100 * history[-1]['within_tol']:.1f} %"
                           if history else "-",
                           "waited": duration(wait_time),
                           "equivalent": duration(eq_waited)})
    for k, w_eq in enumerate(waits):
        if bar is not None and k:
            bar.update(1)
        tw = clock.now()
        if tempered:
            assert oven is not None
            # catch up with the schedule (a bake's last poll overshoots a little)
            want = max(float(checks_eq[k]) - eq_waited, 0.0)
            ambient_c = float(oven.temperature_c)
            plan = settle.bake_plan(want, ambient_c, float(oven.ramp_rate_k_per_s))
            if plan is None:
                if want > 0:
                    clock.sleep(want)
                eq_waited += want
            else:
                rec = oven.bake(plan[0], plan[1], clock, poll_s=BAKE_POLL_S)
                got = bake_equivalent_s(rec, plan[0], ambient_c, settle.ea_ev, settle.room_c)
                eq_extra += got - (clock.now() - tw)
                eq_waited += got
        elif settle.bake_temp_c > 0:
            assert oven is not None
            ambient_c = float(oven.temperature_c)
            # the ramps age the cells too (at 150 C with a 0.1 K/s oven, far more than the
            # soak): the soak makes up what the last bake's ramps did not give
            soak = max(w_eq - ramp_eq, 0.0) / settle.acceleration()
            rec = oven.bake(settle.bake_temp_c, soak, clock)
            got = bake_equivalent_s(rec, settle.bake_temp_c, ambient_c, settle.ea_ev,
                                    settle.room_c)
            ramp_eq = got - soak * settle.acceleration()
            eq_extra += got - (clock.now() - tw)
            eq_waited += got
        else:
            clock.sleep(float(w_eq))
            eq_waited += float(w_eq)
        wait_time += clock.now() - tw
        now_eq = clock.now() + eq_extra
        g = ops.read(cells, settle.n_reads)
        read_var1 = (read_rel_sd * g) ** 2 + read_floor_s ** 2
        age = now_eq - t_pulse_eq
        l_now = _log_time(age, settle.relax_tau_s)
        # learn from the cells pulsed since the last check only: the cells kept at a check
        # were selected for being close to their targets, their later walk is not a sample
        # of the law (selection bias would shrink b and push good cells into re-pulses)
        m_k, b_k = _learn_relaxation(levels, level_of, g - g_ref, l_now,
                                     read_var1 * (1 + 1 / settle.n_reads), ~stuck & fresh)
        n_k = np.bincount(level_of[~stuck & fresh], minlength=levels.size).astype(float)
        n_k = np.where(b_k > 0, n_k, 0.0)
        m = (m * n_learn + m_k * n_k) / np.maximum(n_learn + n_k, 1.0)
        b = (b * n_learn + b_k * n_k) / np.maximum(n_learn + n_k, 1.0)
        n_learn = n_learn + n_k
        remaining = (max(float(checks_eq[-1]) - eq_waited, 0.0) if tempered
                     else float(np.maximum(waits[k + 1:], ramp_eq).sum()))
        l_use = _log_time(age + remaining + settle.use_delay_s, settle.relax_tau_s)
        m_c, b_c = m[level_of], b[level_of]
        dl = l_use - l_now
        mu = g + m_c * dl - target
        sd = np.sqrt(b_c * dl + read_var1 / settle.n_reads) + 1e-12
        p_keep = ndtr((tol - mu) / sd) - ndtr((-tol - mu) / sd)
        l_fresh = _log_time(remaining + settle.use_delay_s, settle.relax_tau_s)
        sd_new = np.sqrt(b_c * l_fresh + (0.5 * tol) ** 2 / 3)
        p_redo = 2 * ndtr(tol / sd_new) - 1
        redo = ((p_keep < settle.redo_factor * p_redo) & ~stuck
                & (pulses + settle.pulses_per_round <= settle.pulse_budget))
        if settle.mean_pulse_budget > 0:
            left = settle.mean_pulse_budget * cells.size - cal_pulses - pulses.sum()
            allowed = max(int(left // settle.pulses_per_round), 0)
            if redo.sum() > allowed:
                gain = np.where(redo, settle.redo_factor * p_redo - p_keep, -np.inf)
                redo = np.zeros_like(redo)
                redo[np.argsort(-gain, kind="stable")[:allowed]] = True
        was_fresh = fresh & ~stuck
        entry = {"fresh_within_tol": float(np.mean(np.abs(g - target)[was_fresh] <= tol))
                 if was_fresh.any() else float("nan"),
                 "round": k, "wait_s": float(w_eq), "within_tol": float(
            np.mean(np.abs(g - target)[~stuck] <= tol)), "redo": int(redo.sum()),
            "m_per_decade_s": m.tolist(), "b_per_decade_s2": b.tolist()}
        if was_fresh.any():
            # the projected error at use of the cells pulsed since the last check, per level,
            # is what their aims missed by (a re-pulse of a few pulses lands high on average,
            # +0.5-1 uS on the default chip; errors of the learned drift law): fed back into
            # the next aims (integral control, shrunk towards 0 for small counts)
            s_mu = np.bincount(level_of[was_fresh], weights=mu[was_fresh], minlength=levels.size)
            n_mu = np.bincount(level_of[was_fresh], minlength=levels.size)
            aim_bias = aim_bias + s_mu / (n_mu + AIM_SHRINK_CELLS)
        if was_fresh.sum() > 1:
            err = (g - target - m_c * l_now)[was_fresh]
            entry["fresh_err_mean_siemens"] = float(err.mean())
            entry["fresh_err_sd_siemens"] = float(err.std())
            entry["fresh_pred_sd_siemens"] = float(np.sqrt(np.mean((b_c * l_now)[was_fresh])))
        history.append(entry)
        fresh = redo.copy()
        if not redo.any():
            continue
        idx = np.flatnonzero(redo)
        aim = target[idx] - m_c[idx] * l_fresh - aim_bias[level_of[idx]]
        sub_cfg = replace(cfg, max_pulses=settle.pulses_per_round)
        r2 = program_verify(ops, cells[idx], aim, sub_cfg, clock=clock, response=response,
                            rng=rng, timestamps=True, require_pulse=True)
        pulses[idx] += r2.pulses
        energy[idx] += r2.energy_j
        stuck[idx[r2.stuck]] = True
        hit = np.isfinite(r2.last_pulse_time_s)
        t_pulse_eq[idx[hit]] = r2.last_pulse_time_s[hit] + eq_extra
        g_ref[idx] = r2.g_verify_siemens
        redo_rounds[idx] += 1
        entry["landing_abs_err_median_siemens"] = float(
            np.median(np.abs(r2.g_verify_siemens - aim))
        )
        entry["landing_err_mean_siemens"] = float(np.mean(r2.g_verify_siemens - aim))
        entry["pulses_mean"] = float(r2.pulses.mean())
    if bar is not None:
        bar.update(1)
        bar.close()
    finished = clock.now()
    return SettleResult(
        cells=cells, target_siemens=target, pulses=pulses, energy_j=energy, g_check_s=g,
        redo_rounds=redo_rounds, stuck=stuck, calibration_pulses=int(cal_pulses),
        calibration_energy_j=float(cal_energy), instrument_time_s=finished - t0,
        wait_time_s=wait_time, equivalent_wait_s=eq_waited, finished_at_s=finished,
        host_time_s=time.perf_counter() - host0, verify_read_success=verify_success,
        history=history)

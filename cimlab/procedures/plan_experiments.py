"""Experiment settings of a plan: one frozen dataclass per experiment kind.

Each ``[[experiment]]`` table of a plan file becomes one of these dataclasses, chosen by its
``kind`` through :data:`EXPERIMENT_KINDS`; :class:`BinaryCondition` is a binary programming
condition (paper 003, Table I) used by the ``ber``, ``fault_map`` and ``endurance`` kinds.
Units: SI (S, V, A, s); oven temperatures are ``temps_c`` [degC]. Part of
:mod:`cimlab.procedures.plan`, which re-exports every name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from cimlab.errors import ConfigError
from cimlab.params import check, param
from cimlab.procedures.plan_cells import CellSet
from cimlab.procedures.plan_levels import LevelSet
from cimlab.procedures.program_verify import ProgramVerifyConfig

#: An experiment name labels a run in the store: printable, no ``/``, at most 100 characters.
EXPERIMENT_NAME = re.compile(r"[^/\x00-\x1f\x7f]{1,100}")


def _short(value: object, n: int = 60) -> object:
    """``value`` for an error message: a long string or sequence is cut to ``n`` characters."""
    text = repr(value)
    return value if len(text) <= n else text[:n] + f"... ({len(text)} characters)"


@dataclass(frozen=True)
class BinaryCondition:
    """A binary programming condition (paper 003, Table I): SET compliance, RESET voltage, width.

    ``v_set`` is the SET (bit-line) pulse amplitude; the compliance ``icc_a`` is enforced by the
    1T1R access transistor's gate, ``station.gate_voltage_for(icc_a)``.
    """

    name: str = param("", doc="label written to the tables")
    icc_a: float = param(55e-6, unit="A", lo=0.0, lo_open=True, hi=5e-3,
                         doc="SET compliance current")
    v_reset: float = param(2.5, unit="V", lo=0.0, lo_open=True, hi=10.0,
                           doc="RESET (source-line) pulse amplitude")
    width_s: float = param(100e-9, unit="s", lo=0.0, lo_open=True, hi=1.0, doc="pulse width")
    v_set: float = param(2.0, unit="V", lo=0.0, lo_open=True, hi=10.0,
                         doc="SET (bit-line) pulse amplitude")
    v_gate_reset: float | None = param(None, unit="V", lo=0.0, lo_open=True, hi=10.0,
                                       doc="word-line voltage during RESET (default: the SET "
                                       "word-line voltage, so the RESET current is limited to "
                                       "about I_cc as paper 003's energies imply)")

    def __post_init__(self) -> None:
        check(self)
        if not self.name:
            raise ConfigError(None, "name", "a non-empty condition name")


def _paper003_conditions() -> tuple[BinaryCondition, ...]:
    """Table I of paper 003 (Hirtzlin et al.): very strong / strong / weak, 100 ns."""
    return (
        BinaryCondition("very_strong", 600e-6, 2.5, 100e-9),
        BinaryCondition("strong", 55e-6, 2.5, 100e-9),
        BinaryCondition("weak", 20e-6, 1.5, 100e-9),
    )


# --------------------------------------------------------------------------- experiments
@dataclass(frozen=True)
class _Experiment:
    kind: str = param("", doc="experiment kind")
    name: str = param("", doc="label of the run in the store (default: kind)")
    seed: int = param(0, unit="1", lo=0, doc="seed of the procedure's generator")
    cells: CellSet = param(default_factory=lambda: CellSet(count=1024))

    def __post_init__(self) -> None:
        check(self)
        if self.name and not EXPERIMENT_NAME.fullmatch(self.name):
            raise ConfigError(None, "name", "a label of 1 to 100 printable characters without "
                              "'/'", _short(self.name))

    @property
    def label(self) -> str:
        return self.name or self.kind


@dataclass(frozen=True)
class ProgrammingErrorExp(_Experiment):
    """Programming error: N levels over many cells, single-shot and/or with program-verify.

    Single-shot first measures a word-line voltage -> mean conductance curve on
    ``calibration_cells`` cells (``calibration_points`` gate voltages from ``v_gate_min`` to
    ``v_gate_max``, each from the RESET state), then programs each cell with one SET pulse from
    the RESET state at the interpolated gate voltage. Reads happen ``read_delay_s`` after
    programming.
    """

    kind: str = param("programming_error", choices=("programming_error",))
    levels: LevelSet = param(default_factory=LevelSet)
    modes: tuple[str, ...] = param(("single_shot", "verify"), doc="single_shot and/or verify")
    verify: ProgramVerifyConfig = param(default_factory=ProgramVerifyConfig)
    calibration_cells: int = param(256, unit="1", lo=8, doc="cells for the gate-voltage curve")
    calibration_points: int = param(24, unit="1", lo=3, hi=1000, doc="gate voltages in curve")
    v_gate_min: float = param(0.55, unit="V", lo=0.0, hi=10.0, doc="lowest curve gate voltage")
    v_gate_max: float = param(1.05, unit="V", lo=0.0, hi=10.0, doc="highest curve gate voltage")
    v_set: float = param(2.0, unit="V", lo=0.0, lo_open=True, hi=10.0, doc="SET amplitude")
    v_reset: float = param(2.8, unit="V", lo=0.0, lo_open=True, hi=10.0, doc="RESET amplitude")
    v_gate_reset: float = param(3.0, unit="V", lo=0.0, lo_open=True, hi=10.0,
                                doc="word-line voltage during RESET")
    width_s: float = param(100e-9, unit="s", lo=0.0, lo_open=True, hi=1.0,
                           doc="single-shot pulse width")
    read_delay_s: float = param(1e-3, unit="s", lo=0.0, hi=1e6,
                                doc="wait between programming and the recorded read")
    batch: int = param(4096, unit="1", lo=1, doc="cells per program/read batch")

    def __post_init__(self) -> None:
        check(self)
        for m in self.modes:
            if m not in ("single_shot", "verify"):
                raise ConfigError(None, "modes", "a list of 'single_shot' and/or 'verify'", m)
        if not self.modes:
            raise ConfigError(None, "modes", "at least one mode", [])
        if self.v_gate_max <= self.v_gate_min:
            raise ConfigError(None, "v_gate_max", "a value above v_gate_min", self.v_gate_max)


@dataclass(frozen=True)
class ReadFluctuationExp(_Experiment):
    """Read fluctuation: program levels (verify), then ``repeats`` reads per cell as a series.

    ``smu_cells`` cells (a subset) are also read ``smu_repeats`` times with the SMU at
    ``smu_v`` [V] after routing each cell to the SMU (precision reads).
    """

    kind: str = param("read_fluctuation", choices=("read_fluctuation",))
    levels: LevelSet = param(default_factory=LevelSet)
    verify: ProgramVerifyConfig = param(default_factory=ProgramVerifyConfig)
    repeats: int = param(100, unit="1", lo=2, hi=1_000_000,
                         doc="reads per cell (a spread needs at least 2)")
    interval_s: float = param(0.0, unit="s", lo=0.0, hi=1e5, doc="wait between repeated reads")
    settle_s: float = param(1.0, unit="s", lo=0.0, hi=1e7, doc="wait after programming")
    smu_cells: int = param(0, unit="1", lo=0, hi=100_000, doc="cells read with the SMU")
    smu_repeats: int = param(10, unit="1", lo=2, hi=100_000,
                             doc="SMU reads per cell (a spread needs at least 2)")
    smu_v: float = param(0.2, unit="V", lo=0.0, lo_open=True, hi=2.0, doc="SMU read bias")
    smu_compliance_a: float = param(1e-4, unit="A", lo=0.0, lo_open=True, hi=0.1,
                                    doc="SMU current compliance during reads")


@dataclass(frozen=True)
class ReadNoiseSeriesExp(_Experiment):
    """Read-noise time series: program levels (verify), wait ``settle_s``, then read every
    cell ``fs_hz`` times a second for ``duration_s`` (one batched read per sample). Table
    ``samples`` has the layout of an imported series (``cimlab import --format tsdata``), so
    ``cimlab fit`` fits its white + 1/f spectrum (:class:`cimlab.models.ReadNoiseSpectrum`)
    from either. The spectrum reaches down to ~16 / ``duration_s`` (4 frequency bins of a
    Welch segment a quarter of the series long, at most 8192 samples:
    :func:`cimlab.models.fit.read_noise_spectrum.segment_plan`): a long series at a low rate
    sees the slow 1/f part that reads hours apart differ by.
    Few cells (one or two per level): each read of all cells must fit in 1 / ``fs_hz``."""

    kind: str = param("read_noise_series", choices=("read_noise_series",))
    levels: LevelSet = param(default_factory=LevelSet)
    verify: ProgramVerifyConfig = param(default_factory=ProgramVerifyConfig)
    fs_hz: float = param(1.0, unit="Hz", lo=0.0, lo_open=True, hi=1e4, doc="sample rate")
    duration_s: float = param(20000.0, unit="s", lo=0.0, lo_open=True, hi=1e7,
                              doc="length of the series")
    settle_s: float = param(100.0, unit="s", lo=0.0, hi=1e7,
                            doc="wait after programming before the first sample")

    @property
    def samples(self) -> int:
        """Samples per cell: ``round(duration_s * fs_hz)``."""
        return max(1, round(self.duration_s * self.fs_hz))


@dataclass(frozen=True)
class RelaxationExp(_Experiment):
    """Relaxation right after programming: reads at ``times_s`` after program-verify ends."""

    kind: str = param("relaxation", choices=("relaxation",))
    levels: LevelSet = param(default_factory=LevelSet)
    verify: ProgramVerifyConfig = param(default_factory=ProgramVerifyConfig)
    times_s: tuple[float, ...] = param((1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4), unit="s",
                                       lo=0.0, lo_open=True, hi=1e8,
                                       doc="read times after programming (ascending)")

    def __post_init__(self) -> None:
        check(self)
        if not self.times_s or list(self.times_s) != sorted(set(self.times_s)):
            raise ConfigError(None, "times_s", "a non-empty strictly ascending list",
                              list(self.times_s))


@dataclass(frozen=True)
class BakeRetentionExp(_Experiment):
    """Bake retention: program levels, bake at each temperature on a schedule, read each step.

    For each temperature in ``temps_c`` the cells are (re)programmed, read once (step 0,
    bake time 0), then baked until each cumulative time in ``schedule_s`` and read at room
    temperature after each bake (``reads_per_step`` reads). Resumable per step.
    """

    kind: str = param("bake_retention", choices=("bake_retention",))
    levels: LevelSet = param(default_factory=LevelSet)
    verify: ProgramVerifyConfig = param(default_factory=ProgramVerifyConfig)
    temps_c: tuple[float, ...] = param((150.0,), unit="degC", lo=-50.0, hi=400.0,
                                       doc="bake temperatures")
    schedule_s: tuple[float, ...] = param((60.0, 600.0, 3600.0, 36000.0, 180000.0, 360000.0),
                                          unit="s", lo=0.0, lo_open=True, hi=1e9,
                                          doc="cumulative bake times at which to read")
    reads_per_step: int = param(1, unit="1", lo=1, hi=10_000, doc="reads per cell per step")

    def __post_init__(self) -> None:
        check(self)
        if not self.schedule_s or list(self.schedule_s) != sorted(set(self.schedule_s)):
            raise ConfigError(None, "schedule_s", "a non-empty strictly ascending list",
                              list(self.schedule_s))
        if not self.temps_c:
            raise ConfigError(None, "temps_c", "at least one temperature", [])


@dataclass(frozen=True)
class BerExp(_Experiment):
    """Bit error rate under programming conditions (paper 003, Table I), 1T1R and 2T2R.

    For each condition, ``bits`` random bits per structure are programmed (LRS = 0, HRS = 1,
    paper 003) into fresh cells: 1T1R one cell per bit read against a reference conductance,
    2T2R two complementary cells per bit read differentially. ``cycles`` repeats with new
    random patterns (endurance of the BER).
    """

    kind: str = param("ber", choices=("ber",))
    conditions: tuple[BinaryCondition, ...] = param(default_factory=_paper003_conditions)
    structures: tuple[str, ...] = param(("1T1R", "2T2R"), doc="1T1R and/or 2T2R")
    bits: int = param(16384, unit="1", lo=1, hi=100_000_000, doc="bits per structure/condition")
    cycles: int = param(1, unit="1", lo=1, hi=1_000_000, doc="program/read cycles")
    precondition: bool = param(True, doc="put each cell in the opposite state before "
                               "programming its bit (every bit a switching event)")
    g_ref_siemens: float | None = param(None, unit="S", lo=0.0, lo_open=True, hi=1e-3,
                                  doc="1T1R read reference (default: per condition, the "
                                  "BER-optimal threshold of lognormals fitted to cycle 0)")

    def __post_init__(self) -> None:
        check(self)
        for s in self.structures:
            if s not in ("1T1R", "2T2R"):
                raise ConfigError(None, "structures", "a list of '1T1R' and/or '2T2R'", s)
        if not self.structures:
            raise ConfigError(None, "structures", "at least one structure", [])
        if not self.conditions:
            raise ConfigError(None, "conditions", "at least one condition", [])
        names = [c.name for c in self.conditions]
        if len(set(names)) != len(names):
            raise ConfigError(None, "conditions", "distinct condition names", names)

    def cells_needed(self) -> int:
        per_bit = sum(1 if s == "1T1R" else 2 for s in self.structures)
        return len(self.conditions) * self.bits * per_bit


@dataclass(frozen=True)
class FaultMapExp(_Experiment):
    """Fault map: ``repeats`` strong SET / strong RESET probes, read after each.

    A working cell opens a window (G after SET minus G after RESET) of at least
    ``min_window_siemens`` in at least one probe; a cell that never does is stuck: stuck-on when its
    conductance lies above ``g_split_siemens``, stuck-off below (paper 004: stuck-on cells sit high,
    over-formed; stuck-off cells low, unformed).
    """

    kind: str = param("fault_map", choices=("fault_map",))
    condition: BinaryCondition = param(
        default_factory=lambda: BinaryCondition("fault_probe", 100e-6, 2.5, 1e-6))
    min_window_siemens: float = param(20e-6, unit="S", lo=0.0, lo_open=True, hi=1e-2,
                                doc="smallest SET-RESET window of a working cell")
    g_split_siemens: float = param(10e-6, unit="S", lo=0.0, lo_open=True, hi=1e-2,
                             doc="stuck cells above are stuck-on, below stuck-off")
    repeats: int = param(2, unit="1", lo=1, hi=100, doc="SET/RESET probes")
    batch: int = param(65536, unit="1", lo=1, doc="cells per batch")


@dataclass(frozen=True)
class EnduranceExp(_Experiment):
    """Endurance: SET/RESET cycling under each condition, window (G_LRS, G_HRS) per cycle.

    Every cycle is one batched SET and one batched RESET over all cells; the conductances are
    read (two more round trips) at ``read_cycles`` log-spaced cycles.
    """

    kind: str = param("endurance", choices=("endurance",))
    conditions: tuple[BinaryCondition, ...] = param(default_factory=_paper003_conditions)
    cycles: int = param(1000, unit="1", lo=1, hi=100_000_000, doc="SET/RESET cycles")
    read_points: int = param(20, unit="1", lo=1, hi=100_000, doc="cycles at which to read")

    def __post_init__(self) -> None:
        check(self)
        if not self.conditions:
            raise ConfigError(None, "conditions", "at least one condition", [])

    def read_cycles(self) -> np.ndarray:
        """Cycles (0-based) at which LRS/HRS are read: log-spaced, always the first and last."""
        pts = np.unique(np.round(np.geomspace(1, self.cycles, self.read_points)).astype(int) - 1)
        return pts


@dataclass(frozen=True)
class IVSweepExp(_Experiment):
    """Quasi-static I-V: per cell, ``cycles`` SET/RESET loops, each one SMU list sweep
    0 -> +v_set_max -> 0 -> -v_reset_max -> 0 in steps of ``v_step``.

    Each cell is routed to the SMU with its word line at the gate voltage that gives the SET
    compliance ``compliance_a`` (the station's transistor calibration); the SMU's current
    limit ``smu_limit_a`` bounds every step (a step in the limit is recorded as limited). A
    switching voltage is found per loop: SET where ``I/V`` first rises by ``set_ratio`` over
    its largest earlier value on the rising positive branch (with at least half the
    compliance current), RESET where it first falls by
    ``reset_drop`` below its largest earlier value on the falling negative branch.
    """

    kind: str = param("iv_sweep", choices=("iv_sweep",))
    cells: CellSet = param(default_factory=lambda: CellSet(count=8))
    cycles: int = param(3, unit="1", lo=1, hi=10_000, doc="SET/RESET loops per cell")
    v_set_max: float = param(1.3, unit="V", lo=0.0, lo_open=True, hi=20.0,
                             doc="top of the positive (SET) branch")
    v_reset_max: float = param(1.8, unit="V", lo=0.0, lo_open=True, hi=20.0,
                               doc="magnitude of the bottom of the negative (RESET) branch")
    v_step: float = param(0.05, unit="V", lo=1e-3, hi=1.0, doc="staircase step")
    compliance_a: float = param(30e-6, unit="A", lo=0.0, lo_open=True, hi=5e-3,
                                doc="SET compliance current (set by the word-line voltage)")
    smu_limit_a: float = param(1e-3, unit="A", lo=0.0, lo_open=True, hi=1.05,
                               doc="SMU current limit of the sweep (at least compliance_a)")
    nplc: float = param(1.0, unit="1", lo=0.01, hi=10.0, doc="SMU integration per step")
    v_read: float = param(0.2, unit="V", lo=0.0, lo_open=True, hi=1.0,
                          doc="bias at which the HRS/LRS conductances I/V are taken")
    set_ratio: float = param(2.0, unit="1", lo=1.05, hi=1e6,
                             doc="rise of I/V that marks the SET")
    reset_drop: float = param(0.1, unit="1", lo=0.01, hi=0.99,
                              doc="fractional fall of I/V that marks the RESET onset")

    def __post_init__(self) -> None:
        check(self)
        if self.smu_limit_a < self.compliance_a:
            raise ConfigError(None, "smu_limit_a", f"at least compliance_a = "
                              f"{self.compliance_a:g} A", self.smu_limit_a)
        if self.v_step >= min(self.v_set_max, self.v_reset_max):
            raise ConfigError(None, "v_step", "a step below v_set_max and v_reset_max",
                              self.v_step)
        if self.v_read > min(self.v_set_max, self.v_reset_max):
            raise ConfigError(None, "v_read", "at most v_set_max and v_reset_max", self.v_read)


def _default_gates() -> tuple[float, ...]:
    return tuple(round(0.6 + 0.1 * k, 10) for k in range(9))


@dataclass(frozen=True)
class GateCalibrationExp(_Experiment):
    """Access-transistor calibration: compliance current versus word-line voltage.

    Each cell is put into a deep low-resistance state (one SET sweep to ``v_set_max`` at the
    compliance ``lrs_compliance_a``), so that at the drain bias ``v_drain`` the cell would
    conduct far more than the transistor: the current measured with the word line at each of
    ``v_gates`` is then the transistor's saturation current. ``repeats`` SMU readings per gate
    voltage (one list sweep, one transfer). A RESET sweep to ``-v_reset_max`` leaves the cell
    in a high-resistance state. The square law ``I = k/2 (V - V_th)^2`` is fitted per cell to
    the points above ``min_current_a`` (``sqrt(I)`` linear in ``V``); ``k`` and ``V_th`` are the
    means over cells with their standard errors. ``write_calibration``: a TOML file to write
    the fitted ``[calibration.transistor]`` into (a station file points to it with
    ``[calibration] file = ...``); empty: none.
    """

    kind: str = param("gate_calibration", choices=("gate_calibration",))
    cells: CellSet = param(default_factory=lambda: CellSet(count=16))
    v_gates: tuple[float, ...] = param(default_factory=_default_gates, unit="V", lo=0.0,
                                       hi=20.0, doc="word-line voltages (ascending)")
    v_drain: float = param(0.6, unit="V", lo=0.0, lo_open=True, hi=20.0,
                           doc="SMU bias while the gate steps (below the SET threshold)")
    repeats: int = param(3, unit="1", lo=1, hi=10_000, doc="readings per gate voltage")
    lrs_compliance_a: float = param(300e-6, unit="A", lo=0.0, lo_open=True, hi=5e-3,
                                    doc="SET compliance of the deep LRS before the gate steps")
    v_set_max: float = param(1.3, unit="V", lo=0.0, lo_open=True, hi=20.0,
                             doc="top of the SET sweep")
    v_reset_max: float = param(1.8, unit="V", lo=0.0, lo_open=True, hi=20.0,
                               doc="magnitude of the final RESET sweep")
    v_step: float = param(0.05, unit="V", lo=1e-3, hi=1.0, doc="SET/RESET staircase step")
    smu_limit_a: float = param(1e-3, unit="A", lo=0.0, lo_open=True, hi=1.05,
                               doc="SMU current limit")
    nplc: float = param(1.0, unit="1", lo=0.01, hi=10.0, doc="SMU integration per reading")
    min_current_a: float = param(1e-6, unit="A", lo=0.0, hi=1.0,
                                 doc="points below are left out of the fit (near threshold)")
    write_calibration: str = param("", doc="TOML file for the fitted calibration ('' none)")

    def __post_init__(self) -> None:
        check(self)
        g = list(self.v_gates)
        if len(g) < 3 or g != sorted(set(g)):
            raise ConfigError(None, "v_gates", "at least 3 strictly ascending voltages", g)
        if self.smu_limit_a < self.lrs_compliance_a:
            raise ConfigError(None, "smu_limit_a", "at least lrs_compliance_a",
                              self.smu_limit_a)
        if self.v_drain >= self.v_set_max:
            raise ConfigError(None, "v_drain", "below v_set_max", self.v_drain)


@dataclass(frozen=True)
class FormingExp(_Experiment):
    """Forming of pristine cells: per cell a voltage ramp through the SMU (a staircase list
    sweep ``v_start, v_start + v_step, ... <= v_max``), then a verify read.

    Each cell is routed to the SMU with its word line at the gate voltage of the forming
    compliance ``compliance_a`` (the station's transistor calibration): the transistor limits
    the forming current. The SMU's current limit is ``abort_current_a`` with the 2450's
    failAbort on: the first step whose current reaches it (the forming jump) ends the ramp
    in the instrument, so no further voltage reaches the formed cell; that step's level is
    the cell's forming voltage. ``abort_current_a`` must lie above the pristine leakage at
    ``v_max`` and below ``compliance_a``. The verify read: ``reads`` SMU readings at
    ``v_read`` with the limit ``read_limit_a``; a cell counts as formed when its ramp was
    aborted and its conductance then is at least ``formed_min_siemens``. ``batch`` cells per
    committed step.
    """

    kind: str = param("forming", choices=("forming",))
    cells: CellSet = param(default_factory=lambda: CellSet(count=64))
    v_start: float = param(1.0, unit="V", lo=0.0, lo_open=True, hi=20.0,
                           doc="first step of the ramp (below the lowest forming voltage)")
    v_max: float = param(3.5, unit="V", lo=0.0, lo_open=True, hi=20.0,
                         doc="last step of the ramp (cells not formed by then never form)")
    v_step: float = param(0.02, unit="V", lo=1e-3, hi=1.0, doc="ramp step (the resolution)")
    compliance_a: float = param(100e-6, unit="A", lo=0.0, lo_open=True, hi=5e-3,
                                doc="forming compliance current (set by the word line)")
    abort_current_a: float = param(10e-6, unit="A", lo=0.0, lo_open=True, hi=1.05,
                                   doc="SMU current limit of the ramp: reaching it ends it")
    nplc: float = param(1.0, unit="1", lo=0.01, hi=10.0, doc="SMU integration per step")
    v_read: float = param(0.2, unit="V", lo=0.0, lo_open=True, hi=1.0,
                          doc="bias of the verify read (conductance I/V)")
    reads: int = param(3, unit="1", lo=1, hi=1000, doc="SMU readings of the verify read")
    read_limit_a: float = param(1e-3, unit="A", lo=0.0, lo_open=True, hi=1.05,
                                doc="SMU current limit of the verify read")
    formed_min_siemens: float = param(1e-6, unit="S", lo=0.0, lo_open=True, hi=1.0,
                                      doc="least conductance after forming of a formed cell")
    batch: int = param(8, unit="1", lo=1, hi=100_000, doc="cells per committed step")

    def __post_init__(self) -> None:
        check(self)
        if self.v_start + self.v_step > self.v_max:
            raise ConfigError(None, "v_max", f"above v_start + v_step = "
                              f"{self.v_start + self.v_step:g} V (a ramp of 2 or more steps)",
                              self.v_max)
        if (self.v_max - self.v_start) / self.v_step > 99_999:
            raise ConfigError(None, "v_step", "at most 100000 ramp steps", self.v_step)
        if self.abort_current_a >= self.compliance_a:
            raise ConfigError(None, "abort_current_a", f"below compliance_a = "
                              f"{self.compliance_a:g} A (the formed cell's current must "
                              "reach it)", self.abort_current_a)
        if self.read_limit_a < self.compliance_a:
            raise ConfigError(None, "read_limit_a", f"at least compliance_a = "
                              f"{self.compliance_a:g} A (a formed cell's read current)",
                              self.read_limit_a)


EXPERIMENT_KINDS: dict[str, type[_Experiment]] = {
    "programming_error": ProgrammingErrorExp,
    "read_fluctuation": ReadFluctuationExp,
    "read_noise_series": ReadNoiseSeriesExp,
    "relaxation": RelaxationExp,
    "bake_retention": BakeRetentionExp,
    "ber": BerExp,
    "fault_map": FaultMapExp,
    "endurance": EnduranceExp,
    "iv_sweep": IVSweepExp,
    "gate_calibration": GateCalibrationExp,
    "forming": FormingExp,
}

Experiment = (ProgrammingErrorExp | ReadFluctuationExp | ReadNoiseSeriesExp | RelaxationExp
              | BakeRetentionExp | BerExp | FaultMapExp | EnduranceExp | IVSweepExp
              | GateCalibrationExp | FormingExp)

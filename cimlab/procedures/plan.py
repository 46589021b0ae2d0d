"""Characterization plans: TOML files listing experiments, validated strictly before any pulse.

A plan is a ``[plan]`` header and a list of ``[[experiment]]`` tables, each with a ``kind``
(one of :data:`EXPERIMENT_KINDS`) and the settings of that kind; see ``docs/procedures.md``
and ``plans/quick.toml`` for the format. Loading goes in three stages, all before the
first pulse, so a bad plan changes nothing on the chip or in the store:

1. :func:`load_plan` parses the TOML and converts it with :func:`cimlab.params.from_dict`:
   an unknown key, a wrong type or a value out of the declared bounds raises
   :class:`~cimlab.errors.ConfigError` naming the file, the field (``experiment[2].levels``)
   and what was expected.
2. :meth:`Plan.check_geometry` resolves every experiment's cells on the chip geometry: cells
   beyond the chip raise ConfigError ("larger than the chip").
3. :meth:`Plan.check_limits` compares every voltage, compliance current, oven temperature and
   pulse width the plan will ask for with the station's limits: LimitError.

Units: SI throughout (S, V, A, s); oven temperatures are ``temp_c`` [degC] as in a lab
notebook and are converted to K for the tables.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cimlab.errors import ConfigError, LimitError
from cimlab.instruments.limits import check_requests
from cimlab.params import check, from_dict, param, to_dict
from cimlab.procedures.program_verify import ProgramVerifyConfig

#: Conductance window of the default chip profile, paper 000 (2e-6 .. 4e-5 S; NeuRRAM also
#: used Gmax = 40 uS).
G_MIN_DEFAULT = 2e-6
G_MAX_DEFAULT = 40e-6

#: Largest plan file read [bytes]; the bundled plans are a few kB.
MAX_PLAN_BYTES = 1 << 20
#: A plan name becomes a file name (``data/<name>.h5``): letters, digits, ``._-``, at most 64
#: characters, not starting with a dot, so a path from a file never escapes its folder.
PLAN_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")
#: An experiment name labels a run in the store: printable, no ``/``, at most 100 characters.
EXPERIMENT_NAME = re.compile(r"[^/\x00-\x1f\x7f]{1,100}")


def _short(value: object, n: int = 60) -> object:
    """``value`` for an error message: a long string or sequence is cut to ``n`` characters."""
    text = repr(value)
    return value if len(text) <= n else text[:n] + f"... ({len(text)} characters)"


# --------------------------------------------------------------------------- cells
@dataclass(frozen=True)
class CellSet:
    """Which cells an experiment uses: the union of whole tiles, flat ranges and a block.

    ``tiles = [0, 1]`` takes every cell of tiles 0 and 1; ``ranges = [[0, 4096]]`` takes flat
    indices 0..4095 (half-open); ``start``/``count`` is a shorthand for one range. ``sample``
    then draws that many distinct cells at random (seeded by the experiment's seed), and
    ``limit`` keeps the first ``limit`` cells (0: all). Flat index is
    ``tile * rows * cols + row * cols + col`` (docs/architecture.md).
    """

    tiles: tuple[int, ...] = param((), unit="1", lo=0, doc="whole tiles")
    ranges: tuple[tuple[int, int], ...] = param((), unit="1", doc="half-open flat ranges")
    start: int = param(0, unit="1", lo=0, doc="first flat index of a range")
    count: int = param(0, unit="1", lo=0, doc="cells in the start/count range (0: none)")
    sample: int = param(0, unit="1", lo=0, doc="random subset size (0: all cells)")
    limit: int = param(0, unit="1", lo=0, doc="keep only the first N cells (0: all)")

    def __post_init__(self) -> None:
        check(self)
        for i, (a, b) in enumerate(self.ranges):
            if a < 0 or b <= a:
                raise ConfigError(None, f"ranges[{i}]", "[first, stop) with 0 <= first < stop",
                                  [a, b])
        if not self.tiles and not self.ranges and self.count == 0:
            raise ConfigError(None, "<cells>", "at least one of tiles, ranges or start/count")

    def resolve(self, geometry: Sequence[int], seed: int, *, source: str = "",
                field_name: str = "cells") -> np.ndarray:
        """Sorted unique flat cell indices (uint32) on a chip of ``geometry``.

        Raises ConfigError when a tile or a range lies beyond the chip.
        """
        n_tiles, rows, cols = (int(x) for x in geometry)
        per_tile = rows * cols
        n_cells = n_tiles * per_tile
        what = f"cells inside the chip ({n_tiles} tiles x {rows} x {cols} = {n_cells} cells)"
        # one flag per chip cell: the selection never takes more memory than the chip,
        # however many (repeated) tiles or ranges a file lists
        selected = np.zeros(n_cells, dtype=bool)
        for t in self.tiles:
            if t >= n_tiles:
                raise ConfigError(source, f"{field_name}.tiles", what + "; plan larger than chip",
                                  t)
            selected[t * per_tile:(t + 1) * per_tile] = True
        spans = [(a, b, f"{field_name}.ranges[{i}]", [a, b])
                 for i, (a, b) in enumerate(self.ranges)]
        if self.count:
            spans.append((self.start, self.start + self.count, f"{field_name}.start/count",
                          {"start": self.start, "count": self.count}))
        for a, b, where, got in spans:
            if b > n_cells:
                raise ConfigError(source, where, what + f"; this selection ends at cell {b - 1}, "
                                  f"beyond the last cell {n_cells - 1}", got)
            selected[a:b] = True
        cells = np.flatnonzero(selected)
        if self.sample:
            if self.sample > cells.size:
                raise ConfigError(source, f"{field_name}.sample",
                                  f"at most the {cells.size} selected cells", self.sample)
            rng = np.random.default_rng(seed)
            cells = np.sort(rng.choice(cells, size=self.sample, replace=False))
        if self.limit:
            if self.limit > cells.size:
                raise ConfigError(source, f"{field_name}.limit",
                                  f"at most the {cells.size} selected cells", self.limit)
            cells = cells[: self.limit]
        return cells.astype(np.uint32)


# --------------------------------------------------------------------------- levels
@dataclass(frozen=True)
class LevelSet:
    """Target conductance levels: ``levels`` values spaced linearly over [g_min_siemens,
    g_max_siemens].

    ``relative = true``: the levels are stated relative to the chip's *measured* window
    instead, spaced linearly from ``lo`` to ``hi`` (fractions, 0 = the RESET-saturated
    conductance, 1 = the SET-saturated one). The window is measured at run start on
    ``window_cells`` of the experiment's cells (:mod:`cimlab.procedures.window`: a short
    SET/RESET saturation) and :meth:`resolve` turns the set into absolute targets, which is
    what the run records; ``g_min_siemens``/``g_max_siemens`` are then not used."""

    levels: int = param(16, unit="1", lo=1, hi=256, doc="number of target levels")
    g_min_siemens: float = param(G_MIN_DEFAULT, unit="S", lo=0.0, lo_open=True, hi=1e-3,
                           doc="lowest target conductance")
    g_max_siemens: float = param(G_MAX_DEFAULT, unit="S", lo=0.0, lo_open=True, hi=1e-3,
                           doc="highest target conductance")
    relative: bool = param(False, doc="levels relative to the measured window (lo .. hi)")
    lo: float = param(0.05, unit="1", lo=0.0, hi=1.0,
                      doc="relative levels: lowest target as a fraction of the window")
    hi: float = param(0.95, unit="1", lo=0.0, hi=1.0,
                      doc="relative levels: highest target as a fraction of the window")
    window_cells: int = param(64, unit="1", lo=8, hi=65536,
                              doc="relative levels: cells used to measure the window")
    window_icc_a: float = param(0.0, unit="A", lo=0.0, hi=5e-3,
                                doc="relative levels: SET compliance of the saturation that "
                                "defines the window top (0: the verify's strongest gate)")

    def __post_init__(self) -> None:
        check(self)
        if self.relative:
            if self.hi <= self.lo:
                raise ConfigError(None, "hi", f"a fraction above lo = {self.lo:g}", self.hi)
        elif self.g_max_siemens <= self.g_min_siemens:
            raise ConfigError(
                None,
                "g_max_siemens",
                f"a value above g_min_siemens = {self.g_min_siemens:g} S",
                self.g_max_siemens,
            )

    def resolve(self, g_lo_s: float, g_hi_s: float) -> LevelSet:
        """The absolute level set for a measured window [g_lo_s, g_hi_s] [S] (self when the
        set is already absolute). ConfigError when the window is empty."""
        if not self.relative:
            return self
        if not (0.0 <= g_lo_s < g_hi_s):
            raise ConfigError(None, "levels.relative",
                              "a measured window with g_hi > g_lo >= 0 S (SET/RESET "
                              "saturation found no window: check the station's pulse limits)",
                              (g_lo_s, g_hi_s))
        span = g_hi_s - g_lo_s
        return LevelSet(levels=self.levels, g_min_siemens=g_lo_s + self.lo * span,
                        g_max_siemens=g_lo_s + self.hi * span)

    def targets(self) -> np.ndarray:
        """Target conductances [S], one per level (ascending)."""
        if self.relative:
            raise ConfigError(None, "levels.relative",
                              "levels resolved from a measured window before use "
                              "(LevelSet.resolve / cimlab.procedures.window)", True)
        if self.levels == 1:
            return np.array([self.g_max_siemens])
        return np.linspace(self.g_min_siemens, self.g_max_siemens, self.levels)

    def assign(self, n_cells: int, seed: int) -> np.ndarray:
        """Level index per cell: balanced (each level within one cell of n/levels), shuffled."""
        idx = np.arange(n_cells) % self.levels
        return np.random.default_rng(seed).permutation(idx).astype(np.int64)


# --------------------------------------------------------------------------- conditions
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


EXPERIMENT_KINDS: dict[str, type[_Experiment]] = {
    "programming_error": ProgrammingErrorExp,
    "read_fluctuation": ReadFluctuationExp,
    "relaxation": RelaxationExp,
    "bake_retention": BakeRetentionExp,
    "ber": BerExp,
    "fault_map": FaultMapExp,
    "endurance": EnduranceExp,
}

Experiment = (ProgrammingErrorExp | ReadFluctuationExp | RelaxationExp | BakeRetentionExp
              | BerExp | FaultMapExp | EnduranceExp)


@dataclass(frozen=True)
class PlanHeader:
    """The ``[plan]`` table."""

    name: str = param("plan", doc="plan name")
    description: str = param("", doc="what the plan is for")
    seed: int = param(0, unit="1", lo=0, doc="base seed; each experiment adds its own")

    def __post_init__(self) -> None:
        check(self)
        if not PLAN_NAME.fullmatch(self.name):
            raise ConfigError(None, "name", "a file name: 1 to 64 letters, digits, '.', '_' or "
                              "'-', not starting with '.' (the store is data/<name>.h5)",
                              _short(self.name))
        if len(self.description) > 10_000:
            raise ConfigError(None, "description", "at most 10000 characters",
                              _short(self.description))


@dataclass(frozen=True)
class Plan:
    """A validated plan: header, experiments, the file it came from and its raw mapping."""

    header: PlanHeader
    experiments: tuple[Any, ...]
    source: str = ""
    raw: dict = field(default_factory=dict, compare=False)

    # ------------------------------------------------------------------ checks
    def resolve_cells(self, geometry: Sequence[int]) -> list[np.ndarray]:
        """Cells of every experiment on ``geometry`` (ConfigError if beyond the chip)."""
        out = []
        for i, exp in enumerate(self.experiments):
            f = f"experiment[{i}].cells"
            cells = exp.cells.resolve(geometry, self.seed_of(i), source=self.source,
                                      field_name=f)
            if isinstance(exp, BerExp) and cells.size < exp.cells_needed():
                raise ConfigError(self.source, f,
                                  f"at least {exp.cells_needed()} cells ({len(exp.conditions)} "
                                  f"conditions x {exp.bits} bits x cells per bit of "
                                  f"{'/'.join(exp.structures)})", int(cells.size))
            if isinstance(exp, ProgrammingErrorExp) and "single_shot" in exp.modes \
                    and exp.calibration_cells > cells.size:
                raise ConfigError(self.source, f"experiment[{i}].calibration_cells",
                                  f"at most the experiment's {cells.size} cells",
                                  exp.calibration_cells)
            if isinstance(exp, ReadFluctuationExp) and exp.smu_cells > cells.size:
                raise ConfigError(self.source, f"experiment[{i}].smu_cells",
                                  f"at most the experiment's {cells.size} cells", exp.smu_cells)
            out.append(cells)
        return out

    def check_geometry(self, geometry: Sequence[int]) -> None:
        """Raise ConfigError if any experiment needs cells beyond a chip of ``geometry``."""
        self.resolve_cells(geometry)

    def requested_limits(self) -> dict[str, float]:
        """The largest value of each limited quantity the plan will ask the station for,
        keyed by station limit name (:data:`cimlab.instruments.limits.LIMIT_NAMES`); a
        quantity the plan never asks for is absent."""
        return {k: v for k, (v, _) in self._requests().items()}

    def _requests(self) -> dict[str, tuple[float, str]]:
        """Largest value of each limited quantity and the plan field that asks for it."""
        req: dict[str, tuple[float, str]] = {}

        def up(key: str, value: float, where: str) -> None:
            if key not in req or float(value) > req[key][0]:
                req[key] = (float(value), where)

        for i, exp in enumerate(self.experiments):
            e = f"experiment[{i}]"
            for v in _verify_configs(exp):
                up("set_bl_max_v", v.max_v_set(), f"{e}.verify.v_set_max")
                up("reset_sl_max_v", v.max_v_reset(), f"{e}.verify.v_reset_max")
                if v.scheme == "ispp" and v.v_gate_set > v.v_gate_max:
                    up("set_wl_max_v", v.v_gate_set, f"{e}.verify.v_gate_set")
                else:
                    up("set_wl_max_v", v.v_gate_max, f"{e}.verify.v_gate_max")
                up("reset_wl_max_v", v.v_gate_reset, f"{e}.verify.v_gate_reset")
                up("pulse_width_max_s", v.width_s, f"{e}.verify.width_s")
            if isinstance(exp, ProgrammingErrorExp) and "single_shot" in exp.modes:
                up("set_bl_max_v", exp.v_set, f"{e}.v_set")
                up("reset_sl_max_v", exp.v_reset, f"{e}.v_reset")
                up("set_wl_max_v", exp.v_gate_max, f"{e}.v_gate_max")
                up("reset_wl_max_v", exp.v_gate_reset, f"{e}.v_gate_reset")
                up("pulse_width_max_s", exp.width_s, f"{e}.width_s")
            for c, f in _conditions_with_fields(exp, e):
                up("set_bl_max_v", c.v_set, f"{f}.v_set")
                up("reset_sl_max_v", c.v_reset, f"{f}.v_reset")
                if c.v_gate_reset is not None:
                    up("reset_wl_max_v", c.v_gate_reset, f"{f}.v_gate_reset")
                up("set_icc_max_a", c.icc_a, f"{f}.icc_a")
                up("pulse_width_max_s", c.width_s, f"{f}.width_s")
            if isinstance(exp, BakeRetentionExp):
                up("oven_temp_max_c", max(exp.temps_c),
                   f"{e}.temps_c[{list(exp.temps_c).index(max(exp.temps_c))}]")
            if isinstance(exp, ReadFluctuationExp) and exp.smu_cells:
                up("smu_v_max_v", exp.smu_v, f"{e}.smu_v")
                up("smu_i_max_a", exp.smu_compliance_a, f"{e}.smu_compliance_a")
        return req

    def check_limits(self, station: Any) -> None:
        """Raise LimitError if the plan asks for anything beyond ``station``'s limits.

        Compares every voltage, width, compliance, SMU level and oven temperature the plan
        will use with ``station.limits`` through the one station-limit check
        (:func:`cimlab.instruments.limits.check_requests`), and asks
        ``station.gate_voltage_for`` for every compliance current (LimitError beyond
        ``set_icc_max_a`` or ``set_wl_max_v``). Nothing is sent to any instrument. The error
        names the plan file, the plan field, the value, the station limit and the station
        file. A station without limits, or limits without one of the names the plan needs,
        is a ConfigError naming the limit (never a skip).
        """
        limits = getattr(station, "limits", None)
        station_file = getattr(station, "path", None)
        if limits is None:
            raise ConfigError(station_file, "limits",
                              "a station with [limits] (the plan is checked against them)")
        req = self._requests()
        for i, exp in enumerate(self.experiments):
            for c, f in _conditions_with_fields(exp, f"experiment[{i}]"):
                try:
                    vg = float(station.gate_voltage_for(c.icc_a))
                except LimitError as exc:
                    raise LimitError(
                        f"{self.source}: field '{f}.icc_a' = {c.icc_a:g} A: {exc}; lower it "
                        "in the plan (or raise the limit in the station file if the device "
                        "allows it). Nothing was sent.") from None
                if vg > req.get("set_wl_max_v", (-math.inf, ""))[0]:
                    req["set_wl_max_v"] = (vg, f"{f}.icc_a (word-line voltage for that "
                                           "compliance)")
                if c.v_gate_reset is None and vg > req.get("reset_wl_max_v",
                                                           (-math.inf, ""))[0]:
                    req["reset_wl_max_v"] = (vg, f"{f}.icc_a (the RESET word line follows "
                                             "the SET one when v_gate_reset is not set)")
        icc_fn = getattr(getattr(getattr(station, "calibration", None), "transistor", None),
                         "icc", None)
        if icc_fn is not None:
            for i, exp in enumerate(self.experiments):
                for v in _verify_configs(exp):
                    icc = float(icc_fn(v.max_v_gate_set()))
                    if icc > req.get("set_icc_max_a", (-math.inf, ""))[0]:
                        req["set_icc_max_a"] = (
                            icc, f"experiment[{i}].verify."
                            f"{'v_gate_set' if v.scheme == 'ispp' else 'v_gate_max'}"
                            " (compliance at that word-line voltage)")
        check_requests(limits, {k: v for k, (v, _) in req.items()},
                       fields={k: w for k, (_, w) in req.items()}, context=self.source,
                       station=station_file)

    def seed_of(self, index: int) -> int:
        """Seed of experiment ``index``: the header seed plus the experiment's own seed."""
        return int(self.header.seed * 1000 + self.experiments[index].seed * 17 + index)

    def to_dict(self) -> dict:
        """Plain mapping (for the run metadata)."""
        return {"plan": to_dict(self.header), "experiment": [to_dict(e) for e in self.experiments]}


def _verify_configs(exp: Any) -> list[ProgramVerifyConfig]:
    v = getattr(exp, "verify", None)
    if v is None:
        return []
    if isinstance(exp, ProgrammingErrorExp) and "verify" not in exp.modes:
        return []
    return [v]


def _conditions(exp: Any) -> list[BinaryCondition]:
    return [c for c, _ in _conditions_with_fields(exp, "")]


def _conditions_with_fields(exp: Any, prefix: str) -> list[tuple[BinaryCondition, str]]:
    """The binary conditions of an experiment with their plan field (``prefix.conditions[j]``
    or ``prefix.condition``)."""
    if isinstance(exp, (BerExp, EnduranceExp)):
        return [(c, f"{prefix}.conditions[{j}]") for j, c in enumerate(exp.conditions)]
    if isinstance(exp, FaultMapExp):
        return [(exp.condition, f"{prefix}.condition")]
    return []


# --------------------------------------------------------------------------- loading
def plan_from_mapping(data: Mapping[str, Any], *, source: str | Path = "<plan>") -> Plan:
    """Build a :class:`Plan` from a TOML-like mapping, strictly (ConfigError on anything odd)."""
    src = str(source)
    if not isinstance(data, Mapping):
        raise ConfigError(src, "<root>", "a table with [plan] and [[experiment]]", data)
    unknown = sorted(set(data) - {"plan", "experiment"})
    if unknown:
        raise ConfigError(src, unknown[0], "no such key; a plan has [plan] and [[experiment]]")
    header = from_dict(PlanHeader, data.get("plan", {}), source=src, prefix="plan.")
    exps_raw = data.get("experiment", [])
    if not isinstance(exps_raw, list) or not exps_raw:
        raise ConfigError(src, "experiment", "one or more [[experiment]] tables", exps_raw)
    exps = []
    labels: set[str] = set()
    for i, raw in enumerate(exps_raw):
        prefix = f"experiment[{i}]."
        if not isinstance(raw, Mapping):
            raise ConfigError(src, prefix[:-1], "a table", raw)
        kind = raw.get("kind")
        if not isinstance(kind, str) or kind not in EXPERIMENT_KINDS:
            raise ConfigError(src, prefix + "kind", "one of " + ", ".join(EXPERIMENT_KINDS),
                              kind)
        try:
            exp = from_dict(EXPERIMENT_KINDS[kind], raw, source=src, prefix=prefix)
        except ConfigError as exc:
            if exc.source in ("<input>", "None"):
                raise ConfigError(src, prefix + exc.field, exc.expected, exc.got) from None
            raise
        if exp.label in labels:
            raise ConfigError(src, prefix + "name", "a name distinct from the other experiments",
                              exp.label)
        labels.add(exp.label)
        exps.append(exp)
    return Plan(header=header, experiments=tuple(exps), source=src, raw=dict(data))


def load_plan(path: str | Path) -> Plan:
    """Read and validate a plan file (size, encoding, syntax, keys, types, bounds).

    ConfigError on failure, before anything larger than :data:`MAX_PLAN_BYTES` is read.
    """
    p = Path(path)
    return plan_from_mapping(read_plan_file(p), source=p)


def read_plan_file(path: Path) -> dict[str, Any]:
    """The TOML mapping of a plan file; ConfigError for a missing file, a directory, a file
    over :data:`MAX_PLAN_BYTES`, text that is not UTF-8, bad syntax or absurd nesting."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    if path.is_dir():
        raise ConfigError(path, "<file>", "a plan file (TOML), not a directory")
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_PLAN_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(path, "<file>", "an existing plan file (TOML)") from None
    except OSError as exc:
        raise ConfigError(path, "<file>", f"a readable plan file ({exc.strerror})") from None
    if len(raw) > MAX_PLAN_BYTES:
        raise ConfigError(path, "<file>", f"a plan file of at most {MAX_PLAN_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(path, "<encoding>", f"UTF-8 text (TOML); byte {exc.start} is not")\
            from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "<syntax>", f"valid TOML ({exc})") from None
    except RecursionError:
        raise ConfigError(path, "<syntax>", "TOML nested a reasonable depth") from None

"""The tidy format: a CSV/TSV with one row per read, mapped column by column, units by name.

Relaxation-like files (no bake-time column) become a run ``imported`` with table ``reads``
(``cell, level, target_siemens, g0_siemens, time_s, g_siemens, temp_k``, the columns of a
``relaxation`` run).
Files with a bake-time column become a run ``bake_retention`` with the tables ``characterize``
writes for bakes (:mod:`cimlab.procedures.importers.bake`). Units are parsed with Pint
(:mod:`cimlab.procedures.importers.units`): conductance or resistance (``uS``, ``µS``,
``kohm``, ``kΩ``...), time, temperature. Nothing is guessed: a level, a target or a level step
must be given. Without a ``g0`` column, a read's ``g0_siemens`` is its cell's earliest read at the
same temperature (and cycle): cell ids may repeat across temperatures.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cimlab.errors import ConfigError
from cimlab.procedures.importers import units
from cimlab.procedures.importers._table import (
    as_cell,
    as_index,
    check_rows,
    group_first,
    numeric,
    read_text_table,
    sha256_file,
)
from cimlab.procedures.importers._write import (
    BAKE_KIND,
    KIND,
    OUTLIERS,
    READS,
    ImportResult,
    write_import,
)
from cimlab.procedures.importers.bake import build_bake

#: Room temperature assumed where a data set records none [K].
ROOM_TEMPERATURE_K = 300.0
#: The columns of the ``reads`` table, in order (the relaxation contract).
READ_COLUMNS = ("cell", "level", "target_siemens", "g0_siemens", "time_s", "g_siemens", "temp_k")
#: Command-line option that sets each mapping field (error messages name it).
OPTION = {"cell": "--cell-col", "time": "--time-col", "g": "--g-col", "level": "--level-col",
          "target": "--target-col", "g0": "--g0-col", "temp": "--temp-col",
          "bake_time": "--bake-time-col", "cycle": "--cycle-col"}


@dataclass(frozen=True)
class TidyFormat:
    """How to read a tidy CSV/TSV: which column holds what, and in which unit.

    Column fields name a header column (or, with ``header=False``, a 0-based column number as
    text, e.g. ``"3"``). ``None`` means the file has no such column. ``bake_time`` set: the file
    holds bakes (``time`` is then not used). ``level_step_siemens`` without level and target
    columns: levels from each cell's reference read (floor(g0 / step), target at
    ``(level + target_offset) * step``, ``n_levels`` bands; others are outliers).
    """

    cell: str = "cell"
    time: str = "time_s"
    g: str = "g_siemens"
    level: str | None = "level"
    target: str | None = None
    g0: str | None = None
    temp: str | None = None
    bake_time: str | None = None
    cycle: str | None = None
    g_unit: str = "S"
    time_unit: str = "s"
    temp_unit: str = "K"
    temp_k: float = ROOM_TEMPERATURE_K
    level_step_siemens: float | None = None
    n_levels: int | None = None
    target_offset: float = 0.5
    sep: str | None = None
    header: bool = True
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        src = "import mapping"
        units.conductance_unit(self.g_unit, src, "g_unit")
        units.time_scale(self.time_unit, src, "time_unit")
        units.check_temperature_unit(self.temp_unit, src, "temp_unit")
        if self.level is None and self.target is None and self.level_step_siemens is None:
            raise ConfigError(src, "level/target", "a level column, a target column, or a "
                              "level step (levels from each cell's first read)", None)
        if self.level_step_siemens is not None and not (self.level_step_siemens > 0):
            raise ConfigError(
                src, "level_step_siemens", "a conductance step > 0 S", self.level_step_siemens
            )
        if self.n_levels is not None and not self.n_levels >= 1:
            raise ConfigError(src, "n_levels", "a number of levels >= 1", self.n_levels)
        if not (np.isfinite(self.temp_k) and self.temp_k > 0):
            raise ConfigError(src, "temp_k", "a temperature > 0 K", self.temp_k)

    def columns(self) -> dict[str, str]:
        """Quantity -> file column, for the columns the file has."""
        names = {"cell": self.cell, "g": self.g, "level": self.level, "target": self.target,
                 "g0": self.g0, "temp": self.temp, "cycle": self.cycle}
        if self.bake_time is not None:
            names["bake_time"] = self.bake_time
        else:
            names["time"] = self.time
        return {k: v for k, v in names.items() if v is not None}


def _load(path: Path, fmt: TidyFormat):
    df = read_text_table(path, sep=fmt.sep, header=fmt.header)
    if not fmt.header:
        df.columns = [str(c) for c in range(df.shape[1])]
    cols = fmt.columns()
    available = [str(c) for c in df.columns]
    for quantity, col in cols.items():
        if col not in available:
            hint = f"set {OPTION[quantity]}"
            if quantity == "level":
                hint += (", or name a target column (--target-col), or give --level-step to take "
                         "levels from each cell's first read")
            raise ConfigError(path, f"column '{col}'",
                              f"a column holding {quantity} (file columns: "
                              f"{', '.join(available)}); {hint}", "missing")
    for name, col in fmt.extra.items():
        if col not in available:
            raise ConfigError(path, f"column '{col}'", f"a column for extra output '{name}'",
                              "missing")
    if len(df) == 0:
        raise ConfigError(path, "rows", "at least one data row", "none")
    return df, cols


def _common(path: Path, fmt: TidyFormat, df, cols) -> dict[str, np.ndarray]:
    h = fmt.header
    gu = units.conductance_unit(fmt.g_unit)
    out = {"cell": as_cell(numeric(df, cols["cell"], path, h, "a cell index"), path,
                           cols["cell"], h)}
    g = numeric(df, cols["g"], path, h, f"a {'resistance' if gu.resistance else 'conductance'} "
                f"in {fmt.g_unit}")
    if gu.resistance:
        check_rows(g > 0, g, path, cols["g"], h, f"a resistance > 0 {fmt.g_unit}")
    out["g_siemens"] = gu.to_siemens(g)
    if "target" in cols:
        target = numeric(df, cols["target"], path, h, f"a target in {fmt.g_unit}")
        check_rows(target > 0 if gu.resistance else target >= 0, target, path, cols["target"],
                   h, f"a target >= 0 {fmt.g_unit}")
        out["target_siemens"] = gu.to_siemens(target)
    if "level" in cols:
        out["level"] = as_index(numeric(df, cols["level"], path, h, "a level index"), path,
                                cols["level"], h, "a level index")
    if "temp" in cols:
        temp = numeric(df, cols["temp"], path, h, f"a temperature in {fmt.temp_unit}")
        temp_k = units.to_kelvin(temp, fmt.temp_unit)
        check_rows(temp_k > 0, temp, path, cols["temp"], h,
                   f"a temperature above 0 K (in {fmt.temp_unit})")
    else:
        temp_k = np.full(len(df), float(fmt.temp_k))
    out["temp_k"] = temp_k
    if "cycle" in cols:
        out["cycle"] = as_index(numeric(df, cols["cycle"], path, h, "a cycle index"), path,
                                cols["cycle"], h, "a programming-cycle index")
    if "g0" in cols:
        g0 = numeric(df, cols["g0"], path, h, f"a conductance in {fmt.g_unit}")
        out["g0_siemens"] = gu.to_siemens(g0)
    for name, col in fmt.extra.items():
        out[name] = numeric(df, col, path, h, f"a number for '{name}'")
    return out


def read_tidy(path: str | Path, fmt: TidyFormat) -> dict[str, np.ndarray]:
    """Read and check a relaxation-like tidy file; return the ``reads`` columns (SI)."""
    path = Path(path)
    if fmt.bake_time is not None:
        raise ConfigError(path, "bake_time", "no bake-time column for relaxation reads "
                          "(use read_tidy_bake)", fmt.bake_time)
    df, cols = _load(path, fmt)
    h = fmt.header
    out = _common(path, fmt, df, cols)
    tu = fmt.time_unit
    t = numeric(df, cols["time"], path, h, f"a time in {tu}")
    check_rows(t >= 0, t, path, cols["time"], h, f"a time since programming >= 0 {tu}")
    out["time_s"] = t * units.time_scale(tu)
    keys = [out["cell"], out["temp_k"]] + ([out["cycle"]] if "cycle" in out else [])
    first = group_first(keys, out["time_s"], out["g_siemens"])
    if "g0_siemens" not in out:
        out["g0_siemens"] = first
    if "level" not in out and "target_siemens" not in out:
        level = np.floor(out["g0_siemens"] / fmt.level_step_siemens).astype(np.int64)
        out["level"] = level
        out["target_siemens"] = (level + fmt.target_offset) * fmt.level_step_siemens
    elif "level" not in out:
        _, level = np.unique(out["target_siemens"], return_inverse=True)
        out["level"] = level.reshape(-1).astype(np.int64)
    elif "target_siemens" not in out:
        if fmt.level_step_siemens is None:
            raise ConfigError(path, "level_step_siemens",
                              "the conductance step per level (--level-step, e.g. 1.25uS) when "
                              "there is no target column (target_siemens = level * step)", None)
        out["target_siemens"] = out["level"] * float(fmt.level_step_siemens)
    order = [*READ_COLUMNS, *(["cycle"] if "cycle" in out else []), *fmt.extra]
    return {k: out[k] for k in order}


def read_tidy_bake(path: str | Path, fmt: TidyFormat):
    """Read and check a tidy bake file; return (reads, outliers, bakes) columns (SI)."""
    path = Path(path)
    if fmt.bake_time is None:
        raise ConfigError(path, "bake_time", "a bake-time column (--bake-time-col)", None)
    df, cols = _load(path, fmt)
    h = fmt.header
    out = _common(path, fmt, df, cols)
    tu = fmt.time_unit
    t = numeric(df, cols["bake_time"], path, h, f"a bake time in {tu}")
    check_rows(t >= 0, t, path, cols["bake_time"], h, f"a bake time >= 0 {tu} (0: the "
               "reference read before the bake)")
    names = {**cols, "cycle": cols.get("cycle", "cycle"), "temp": cols.get("temp", "temp")}
    return build_bake(
        path,
        out["cell"],
        out["temp_k"],
        t * units.time_scale(tu),
        out["g_siemens"],
        header=h,
        names=names,
        cycle=out.get("cycle"),
        level=out.get("level"),
        target_siemens=out.get("target_siemens"),
        level_step_siemens=fmt.level_step_siemens,
        n_levels=fmt.n_levels,
        target_offset=fmt.target_offset,
    )


def relaxation_chunks(reads: dict[str, np.ndarray]) -> list[tuple[str, str, dict]]:
    """One committed step per level (rows grouped by level, file order within a level)."""
    by_level = np.argsort(reads["level"], kind="stable")
    levels, bounds = np.unique(reads["level"][by_level], return_index=True)
    bounds = [*bounds.tolist(), by_level.size]
    return [(f"level-{int(lv):03d}", READS, {c: v[by_level[bounds[k]:bounds[k + 1]]]
                                             for c, v in reads.items()})
            for k, lv in enumerate(levels)]


def bake_chunks(reads: dict, outliers: dict, bakes: dict) -> list[tuple[str, str, dict]]:
    """One committed step per bake (temperature index), then outliers and bake segments."""
    out = []
    for j in np.unique(reads["temp_index"]):
        m = reads["temp_index"] == j
        out.append((f"bake-{int(j):02d}", READS, {c: v[m] for c, v in reads.items()}))
    out.append((f"table-{OUTLIERS}", OUTLIERS, outliers))
    out.append(("table-bakes", "bakes", bakes))
    return out


def import_tidy(path: str | Path, store: str | Path, fmt: TidyFormat | None = None, *,
                force: bool = False) -> ImportResult:
    """Import a tidy CSV/TSV (see :class:`TidyFormat`): a run ``imported``, or
    ``bake_retention`` when the mapping names a bake-time column."""
    t0 = time.perf_counter()
    fmt = fmt or TidyFormat()
    path = Path(path)
    plan = {"format": "tidy", "source_name": path.name, "source_sha256": sha256_file(path),
            "mapping": dataclasses.asdict(fmt)}
    if fmt.bake_time is not None:
        reads, outliers, bakes = read_tidy_bake(path, fmt)
        return write_import(Path(store), path, plan, BAKE_KIND,
                            bake_chunks(reads, outliers, bakes), {}, t0, force)
    reads = read_tidy(path, fmt)
    return write_import(Path(store), path, plan, KIND, relaxation_chunks(reads), {}, t0, force)

"""Import external measurements into a store, as a run of kind ``imported``.

A measured data set from another lab or tool becomes a run whose table ``reads`` has the
columns of a ``relaxation`` run (docs/architecture.md section 5)::

    cell (uint32), level (int64), target_s [S], g0_s [S] (right after programming),
    time_s [s] (since programming), g_s [S], temp_k [K]

so the fitters and the report treat it like a campaign measured by cimlab.

Two formats:

``tidy`` (:class:`TidyFormat`)
    A CSV/TSV with one row per read. A column mapping says which column holds what; unit names
    say what unit each quantity is in (conductance ``S mS uS nS``, time ``s ms us min h d``,
    temperature ``K C``), converted to SI with the factors in :data:`CONDUCTANCE_UNITS`,
    :data:`TIME_UNITS`; nothing is guessed. ``level`` or ``target`` (or both) must be given;
    with only ``level``, ``level_step_s`` gives ``target_s = level * level_step_s``; with only
    ``target``, levels are numbered by increasing target. Without a ``g0`` column, ``g0_s`` is
    each cell's read at its earliest time. Without a temperature column, ``temp_k`` is the
    given constant.

``techc`` (:func:`import_techc`)
    The "technology C" relaxation set of Levy et al. (github.com/akashlevy/
    RRAM-Relaxation-Master-Model, MIT license; copy in ``data/reference/techC``): tab separated,
    no header, columns ``addr, time, r, g, gi, range, timept``. 1T1R cells program-verified into
    32 conductance ranges of width ``gmax/32`` (``gmax`` = 40 uS from ``settings.json``), then
    read at 0, 10 ms, 0.1 s, 1 s, 4 s and 1e5 s at room temperature. Mapping:
    ``cell = addr``, ``level = range``, ``g_s = g``, ``g0_s = gi``, ``time_s = timept`` (the
    nominal time point; the measured time, which scatters by up to 20 % around it, is kept as
    ``time_measured_s``), ``temp_k = 300`` (room temperature, not recorded in the set).
    ``target_s = (range + 0.5) / 32 * gmax``: the centre of the verify band. The README of the
    set says range k "targets about k/32 * Gmax"; the data show the band centre: the mean of
    ``gi`` per range lies within 0.1 uS of (k + 0.5)/32 * gmax for k = 1..31 (0.6 uS away from
    k/32 * gmax), and the 0.35 uS spread after verify is that of a uniform band 1.25 uS wide
    (1.25/sqrt(12) = 0.36 uS). ``target_offset=0`` gives k/32 * gmax.
    Rows with ``range > 31`` (369 rows, 69 cells whose conductance after verify lies above
    gmax) are outliers: they are *not* in ``reads`` (so every fitter sees only the 32 ranges) but
    in a table ``outliers`` of the same run with the same columns, and their count is reported.

Conductances may be negative (a read of a nearly-off cell with an offset: techC has one at
-0.12 uS) and are kept as measured; they must be finite. Errors name the file, the line
(1-based, as an editor shows it) and the column, and what was expected; nothing is written to
the store before the whole file has been checked. Importing the same file with the same
mapping twice returns the existing run (the plan holds the file's SHA-256 and the mapping),
and an import that was killed resumes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cimlab.errors import ConfigError
from cimlab.units import KELVIN_OFFSET

#: Conductance units -> factor to siemens.
CONDUCTANCE_UNITS: dict[str, float] = {"S": 1.0, "mS": 1e-3, "uS": 1e-6, "nS": 1e-9}
#: Time units -> factor to seconds.
TIME_UNITS: dict[str, float] = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "min": 60.0, "h": 3600.0,
                                "d": 86400.0}
#: Temperature units -> (scale, offset) so that value_K = value * scale + offset.
TEMPERATURE_UNITS: dict[str, tuple[float, float]] = {"K": (1.0, 0.0), "C": (1.0, KELVIN_OFFSET)}
#: Room temperature assumed where a data set records none [K].
ROOM_TEMPERATURE_K = 300.0

KIND = "imported"
READS = "reads"
OUTLIERS = "outliers"
#: The columns of the ``reads`` table, in order (the relaxation contract).
READ_COLUMNS = ("cell", "level", "target_s", "g0_s", "time_s", "g_s", "temp_k")

#: techC column names in file order (no header).
TECHC_COLUMNS = ("addr", "time", "r", "g", "gi", "range", "timept")
#: Number of conductance ranges in techC.
TECHC_RANGES = 32


@dataclass(frozen=True)
class TidyFormat:
    """How to read a tidy CSV/TSV: which column holds what, and in which unit.

    Column fields name a header column (or, with ``header=False``, a 0-based column number as
    text, e.g. ``"3"``). ``None`` means the file has no such column.
    """

    cell: str = "cell"
    time: str = "time_s"
    g: str = "g_s"
    level: str | None = "level"
    target: str | None = None
    g0: str | None = None
    temp: str | None = None
    g_unit: str = "S"
    time_unit: str = "s"
    temp_unit: str = "K"
    temp_k: float = ROOM_TEMPERATURE_K
    level_step_s: float | None = None
    sep: str | None = None
    header: bool = True
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        src = "import mapping"
        for name, table in (("g_unit", CONDUCTANCE_UNITS), ("time_unit", TIME_UNITS),
                            ("temp_unit", TEMPERATURE_UNITS)):
            value = getattr(self, name)
            if value not in table:
                raise ConfigError(src, name, f"one of {', '.join(table)}", value)
        if self.level is None and self.target is None:
            raise ConfigError(src, "level/target", "a level column, a target column or both",
                              None)
        if self.level is not None and self.target is None and self.level_step_s is None:
            raise ConfigError(src, "level_step_s",
                              "the conductance step per level [S] when there is no target "
                              "column (target_s = level * level_step_s)", None)
        if self.level_step_s is not None and not (self.level_step_s > 0):
            raise ConfigError(src, "level_step_s", "a conductance step > 0 S", self.level_step_s)
        if not (np.isfinite(self.temp_k) and self.temp_k > 0):
            raise ConfigError(src, "temp_k", "a temperature > 0 K", self.temp_k)

    def columns(self) -> dict[str, str]:
        """Quantity -> file column, for the columns the file has."""
        names = {"cell": self.cell, "time": self.time, "g": self.g, "level": self.level,
                 "target": self.target, "g0": self.g0, "temp": self.temp}
        return {k: v for k, v in names.items() if v is not None}


@dataclass(frozen=True)
class ImportResult:
    """What an import did."""

    store: Path
    uid: str
    rows: int
    cells: int
    levels: int
    time_points: tuple[float, ...]
    outlier_rows: int
    outlier_cells: int
    already_imported: bool
    seconds: float
    source_sha256: str

    def summary(self) -> str:
        lines = [
            f"run {self.uid} in {self.store}" + (" (already imported)" if self.already_imported
                                                 else ""),
            f"  {self.rows} reads of {self.cells} cells, {self.levels} levels, time points "
            + ", ".join(f"{t:g}" for t in self.time_points) + " s",
        ]
        if self.outlier_rows:
            lines.append(f"  {self.outlier_rows} outlier rows ({self.outlier_cells} cells) kept "
                         "apart in table 'outliers'")
        lines.append(f"  {self.seconds:.2f} s")
        return "\n".join(lines)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------- reading & checks
def _read_text_table(path: Path, *, sep: str | None, header: bool, names: list[str] | None = None):
    import pandas as pd

    if not path.exists():
        raise ConfigError(path, "file", "an existing CSV/TSV file", "no such file")
    if sep is None:
        suffixes = [s.lower() for s in path.suffixes]
        sep = "\t" if ".tsv" in suffixes or ".tab" in suffixes else ","
    try:
        return pd.read_csv(
            path, sep=sep, header=0 if header else None, names=names,
            skip_blank_lines=False, compression="infer", low_memory=False,
        )
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise ConfigError(path, "file", "a readable CSV/TSV table", str(exc).strip()) from None


def _line(i: int, header: bool) -> int:
    """1-based line number of data row ``i``."""
    return i + 1 + (1 if header else 0)


def _numeric(df, col: str, path: Path, header: bool, what: str) -> np.ndarray:
    """Column ``col`` as float64; the first non-number names its line."""
    import pandas as pd

    raw = df[col]
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        i = int(bad[0])
        got = raw.iloc[i]
        got = "an empty field" if (got is None or (isinstance(got, float) and np.isnan(got))) \
            else repr(got)
        raise ConfigError(path, f'line {_line(i, header)}, column "{col}"',
                          f"{what} (a finite number)",
                          f"{got}; {bad.size} such row(s) in all") from None
    return values


def _check(cond: np.ndarray, values: np.ndarray, path: Path, col: str, header: bool,
           expected: str) -> None:
    bad = np.flatnonzero(~cond)
    if bad.size:
        i = int(bad[0])
        raise ConfigError(path, f'line {_line(i, header)}, column "{col}"', expected,
                          f"{values[i]!r}; {bad.size} such row(s) in all")


def _as_index(values: np.ndarray, path: Path, col: str, header: bool, what: str) -> np.ndarray:
    _check((values >= 0) & (values == np.round(values)), values, path, col, header,
           f"{what} (an integer >= 0)")
    return values.astype(np.int64)


def read_tidy(path: str | Path, fmt: TidyFormat) -> dict[str, np.ndarray]:
    """Read and check a tidy file; return the ``reads`` columns (SI) as arrays."""
    path = Path(path)
    df = _read_text_table(path, sep=fmt.sep, header=fmt.header)
    if not fmt.header:
        df.columns = [str(c) for c in range(df.shape[1])]
    cols = fmt.columns()
    available = [str(c) for c in df.columns]
    for quantity, col in cols.items():
        if col not in available:
            raise ConfigError(path, f"column '{col}'",
                              f"a column holding {quantity} (file columns: "
                              f"{', '.join(available)}); set the mapping option --{quantity}-col",
                              "missing")
    if len(df) == 0:
        raise ConfigError(path, "rows", "at least one data row", "none")
    h = fmt.header
    g_scale = CONDUCTANCE_UNITS[fmt.g_unit]
    cell = _as_index(_numeric(df, cols["cell"], path, h, "a cell index"), path, cols["cell"], h,
                     "a cell index")
    if cell.max() > np.iinfo(np.uint32).max:
        raise ConfigError(path, f"column '{cols['cell']}'", "cell indices < 2**32", cell.max())
    t = _numeric(df, cols["time"], path, h, f"a time in {fmt.time_unit}")
    _check(t >= 0, t, path, cols["time"], h, f"a time since programming >= 0 {fmt.time_unit}")
    g = _numeric(df, cols["g"], path, h, f"a conductance in {fmt.g_unit}")
    out: dict[str, np.ndarray] = {"cell": cell.astype(np.uint32), "time_s": t * TIME_UNITS[
        fmt.time_unit], "g_s": g * g_scale}
    target = None
    if "target" in cols:
        target = _numeric(df, cols["target"], path, h, f"a target conductance in {fmt.g_unit}")
        _check(target >= 0, target, path, cols["target"], h,
               f"a target conductance >= 0 {fmt.g_unit}")
        target = target * g_scale
    if "level" in cols:
        level = _as_index(_numeric(df, cols["level"], path, h, "a level index"), path,
                          cols["level"], h, "a level index")
        if target is None:
            target = level * float(fmt.level_step_s)
    else:
        _, level = np.unique(target, return_inverse=True)
        level = level.reshape(-1).astype(np.int64)
    out["level"] = level
    out["target_s"] = target
    if "temp" in cols:
        temp = _numeric(df, cols["temp"], path, h, f"a temperature in {fmt.temp_unit}")
        scale, offset = TEMPERATURE_UNITS[fmt.temp_unit]
        temp_k = temp * scale + offset
        _check(temp_k > 0, temp, path, cols["temp"], h, f"a temperature above 0 K "
               f"(in {fmt.temp_unit})")
    else:
        temp_k = np.full(len(df), float(fmt.temp_k))
    out["temp_k"] = temp_k
    if "g0" in cols:
        g0 = _numeric(df, cols["g0"], path, h, f"a conductance in {fmt.g_unit}")
        out["g0_s"] = g0 * g_scale
    else:
        out["g0_s"] = _first_read(out["cell"], out["time_s"], out["g_s"])
    for name, col in fmt.extra.items():
        if col not in available:
            raise ConfigError(path, f"column '{col}'", f"a column for extra output '{name}'",
                              "missing")
        out[name] = _numeric(df, col, path, h, f"a number for '{name}'")
    order = [*READ_COLUMNS, *fmt.extra]
    return {k: out[k] for k in order}


def _first_read(cell: np.ndarray, t: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Each row's cell's conductance at that cell's earliest time (vectorised)."""
    order = np.lexsort((t, cell))
    sorted_cells = cell[order]
    first = np.ones(cell.size, bool)
    first[1:] = sorted_cells[1:] != sorted_cells[:-1]
    starts = order[first]
    uniq_cells = cell[starts]
    idx = np.searchsorted(uniq_cells, cell)
    return g[starts][idx]


def read_techc(path: str | Path, settings: str | Path | None = None,
               target_offset: float = 0.5) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray],
                                                    dict[str, Any]]:
    """Read the techC file; return (reads, outliers, info) with the ``reads`` columns (SI)."""
    path = Path(path)
    settings = Path(settings) if settings is not None else path.parent / "settings.json"
    try:
        conf = json.loads(settings.read_text())
    except FileNotFoundError:
        raise ConfigError(settings, "file", "the techC settings.json (with 'gmax') next to the "
                          "data file, or pass settings=", "no such file") from None
    except ValueError as exc:
        raise ConfigError(settings, "file", "JSON text", str(exc)) from None
    gmax = conf.get("gmax") if isinstance(conf, dict) else None
    if not isinstance(gmax, (int, float)) or not (0 < gmax < 1):
        raise ConfigError(settings, "gmax", "the maximum conductance in S (e.g. 4e-05)", gmax)
    df = _read_text_table(path, sep="\t", header=False, names=list(TECHC_COLUMNS))
    if df.shape[1] != len(TECHC_COLUMNS) or df[list(TECHC_COLUMNS)].isna().all(axis=0).any():
        raise ConfigError(path, "columns", f"{len(TECHC_COLUMNS)} tab-separated columns "
                          f"({', '.join(TECHC_COLUMNS)})", f"{df.shape[1]}")
    if len(df) == 0:
        raise ConfigError(path, "rows", "at least one data row", "none")
    h = False
    addr = _as_index(_numeric(df, "addr", path, h, "a cell address"), path, "addr", h,
                     "a cell address")
    rng = _as_index(_numeric(df, "range", path, h, "a range index"), path, "range", h,
                    "a range index")
    t_meas = _numeric(df, "time", path, h, "a time in s")
    _check(t_meas >= 0, t_meas, path, "time", h, "a time since programming >= 0 s")
    timept = _numeric(df, "timept", path, h, "a nominal time point in s")
    _check(timept >= 0, timept, path, "timept", h, "a nominal time point >= 0 s")
    g = _numeric(df, "g", path, h, "a conductance in S")
    gi = _numeric(df, "gi", path, h, "a conductance in S")
    columns = {
        "cell": addr.astype(np.uint32),
        "level": rng,
        "target_s": (rng + float(target_offset)) / TECHC_RANGES * float(gmax),
        "g0_s": gi,
        "time_s": timept,
        "g_s": g,
        "temp_k": np.full(addr.size, ROOM_TEMPERATURE_K),
        "time_measured_s": t_meas,
    }
    keep = rng < TECHC_RANGES
    reads = {k: v[keep] for k, v in columns.items()}
    outliers = {k: v[~keep] for k, v in columns.items()}
    info = {"gmax_s": float(gmax), "ranges": TECHC_RANGES, "target_offset": float(target_offset),
            "settings_sha256": sha256_file(settings)}
    return reads, outliers, info


# --------------------------------------------------------------------------- writing
def _write(store_path: Path, source: Path, plan: dict, reads: dict, extra_tables: dict,
           info: dict, t0: float, force: bool) -> ImportResult:
    from cimlab.store import Store

    with Store.open(store_path, "a") as store:
        existing = None if force else _completed_import(store, plan)
        if existing is not None:
            run = existing
        else:
            snapshot = {"source": {"path": str(source.resolve()), "size": source.stat().st_size,
                                   "sha256": plan["source_sha256"]}, **info}
            run = store.begin_run(KIND, plan, snapshot=snapshot, seeds={}, resume=True)
            levels = np.unique(reads["level"])
            by_level = np.argsort(reads["level"], kind="stable")
            bounds = np.searchsorted(reads["level"][by_level], levels, side="left")
            bounds = [*bounds.tolist(), by_level.size]
            for k, level in enumerate(levels.tolist()):  # one committed step per level
                step = f"level-{level:03d}"
                if step in run.completed_steps:
                    continue
                idx = by_level[bounds[k]:bounds[k + 1]]
                run.append(READS, {c: v[idx] for c, v in reads.items()})
                run.complete_step(step)
            for name, columns in extra_tables.items():
                step = f"table-{name}"
                if step in run.completed_steps:
                    continue
                if columns and next(iter(columns.values())).size:
                    run.append(name, columns)
                run.complete_step(step)
            run.set_meta("import", {"rows": int(reads["cell"].size), **info})
            run.finish("completed")
        out = _result(store_path, run, existing is not None, plan, t0)
    return out


def _completed_import(store, plan: dict):
    from cimlab.store._json import digest

    h = digest(plan)
    for run in store:
        if run.kind == KIND and run.plan_hash == h and run.status == "completed":
            return run
    return None


def _result(store_path: Path, run, already: bool, plan: dict, t0: float) -> ImportResult:
    reads = run.table(READS)
    n_out = run.n_rows(OUTLIERS)
    out_cells = int(np.unique(run.table(OUTLIERS)["cell"]).size) if n_out else 0
    return ImportResult(
        store=store_path, uid=run.uid, rows=len(reads), cells=int(reads["cell"].nunique()),
        levels=int(reads["level"].nunique()),
        time_points=tuple(float(t) for t in np.unique(reads["time_s"])),
        outlier_rows=n_out, outlier_cells=out_cells, already_imported=already,
        seconds=time.perf_counter() - t0, source_sha256=plan["source_sha256"],
    )


def import_tidy(path: str | Path, store: str | Path, fmt: TidyFormat | None = None, *,
                force: bool = False) -> ImportResult:
    """Import a tidy CSV/TSV (see :class:`TidyFormat`) into ``store`` as a run ``imported``."""
    t0 = time.perf_counter()
    fmt = fmt or TidyFormat()
    path = Path(path)
    reads = read_tidy(path, fmt)
    plan = {"format": "tidy", "source_name": path.name, "source_sha256": sha256_file(path),
            "mapping": dataclasses.asdict(fmt)}
    return _write(Path(store), path, plan, reads, {}, {}, t0, force)


def import_techc(path: str | Path, store: str | Path, *, settings: str | Path | None = None,
                 target_offset: float = 0.5, force: bool = False) -> ImportResult:
    """Import the techC relaxation set (see the module docstring) into ``store``."""
    t0 = time.perf_counter()
    path = Path(path)
    reads, outliers, info = read_techc(path, settings, target_offset)
    plan = {"format": "techc", "source_name": path.name, "source_sha256": sha256_file(path),
            "gmax_s": info["gmax_s"], "target_offset": info["target_offset"],
            "temp_k": ROOM_TEMPERATURE_K, "outliers": f"range >= {TECHC_RANGES} -> table "
            f"'{OUTLIERS}'"}
    info = {**info, "outlier_rows": int(outliers["cell"].size),
            "outlier_cells": int(np.unique(outliers["cell"]).size),
            "source": "akashlevy/RRAM-Relaxation-Master-Model (MIT), technology C"}
    return _write(Path(store), path, plan, reads, {OUTLIERS: outliers}, info, t0, force)

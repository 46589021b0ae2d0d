"""The "technology C" relaxation set of Levy et al. (github.com/akashlevy/
RRAM-Relaxation-Master-Model, MIT license; copy in ``data/reference/techC``).

Tab separated, no header, columns ``addr, time, r, g, gi, range, timept``. 1T1R cells
program-verified into 32 conductance ranges of width ``gmax/32`` (``gmax`` = 40 uS from
``settings.json``), then read at 0, 10 ms, 0.1 s, 1 s, 4 s and 1e5 s at room temperature.
Mapping: ``cell = addr``, ``level = range``, ``g_siemens = g``, ``g0_siemens = gi``, ``time_s =
timept``
(the nominal time point; the measured time, which scatters by up to 20 % around it, is kept as
``time_measured_s``), ``temp_k = 300`` (room temperature, not recorded in the set).
``target_siemens = (range + 0.5) / 32 * gmax``: the centre of the verify band. The README of the
set says range k "targets about k/32 * Gmax"; the data show the band centre: the mean of
``gi`` per range lies within 0.1 uS of (k + 0.5)/32 * gmax for k = 1..31 (0.6 uS away from
k/32 * gmax), and the 0.35 uS spread after verify is that of a uniform band 1.25 uS wide
(1.25/sqrt(12) = 0.36 uS). ``target_offset=0`` gives k/32 * gmax.
Rows with ``range > 31`` (369 rows, 69 cells whose conductance after verify lies above
gmax) are outliers: they are *not* in ``reads`` (so every fitter sees only the 32 ranges) but
in a table ``outliers`` of the same run with the same columns, and their count is reported.
Conductances may be negative (a read of a nearly-off cell with an offset: techC has one at
-0.12 uS) and are kept as measured; they must be finite.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from cimlab.errors import ConfigError
from cimlab.procedures.importers._table import (
    as_index,
    check_column_count,
    check_rows,
    numeric,
    read_text_table,
    sha256_file,
)
from cimlab.procedures.importers._write import KIND, OUTLIERS, ImportResult, write_import
from cimlab.procedures.importers.tidy import ROOM_TEMPERATURE_K, relaxation_chunks

#: techC column names in file order (no header).
TECHC_COLUMNS = ("addr", "time", "r", "g", "gi", "range", "timept")
#: Number of conductance ranges in techC (and techA).
TECHC_RANGES = 32


def read_settings(path: Path, settings: str | Path | None, what: str) -> tuple[Path, dict]:
    """The data set's ``settings.json`` (default: next to the data file) with a valid gmax."""
    settings = Path(settings) if settings is not None else path.parent / "settings.json"
    try:
        conf = json.loads(settings.read_text())
    except FileNotFoundError:
        raise ConfigError(settings, "file", f"the {what} settings.json (with 'gmax') next to "
                          "the data file, or name it with --settings", "no such file") from None
    except ValueError as exc:
        raise ConfigError(settings, "file", "JSON text", str(exc)) from None
    gmax = conf.get("gmax") if isinstance(conf, dict) else None
    if not isinstance(gmax, (int, float)) or not (0 < gmax < 1):
        raise ConfigError(settings, "gmax", "the maximum conductance in S (e.g. 4e-05)", gmax)
    return settings, conf


def read_techc(path: str | Path, settings: str | Path | None = None,
               target_offset: float = 0.5) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray],
                                                    dict[str, Any]]:
    """Read the techC file; return (reads, outliers, info) with the ``reads`` columns (SI)."""
    path = Path(path)
    settings, conf = read_settings(path, settings, "techC")
    gmax = float(conf["gmax"])
    df = read_text_table(path, sep="\t", header=False)
    check_column_count(df, path, TECHC_COLUMNS)
    if len(df) == 0:
        raise ConfigError(path, "rows", "at least one data row", "none")
    h = False
    addr = as_index(numeric(df, "addr", path, h, "a cell address"), path, "addr", h,
                    "a cell address")
    rng = as_index(numeric(df, "range", path, h, "a range index"), path, "range", h,
                   "a range index")
    t_meas = numeric(df, "time", path, h, "a time in s")
    check_rows(t_meas >= 0, t_meas, path, "time", h, "a time since programming >= 0 s")
    timept = numeric(df, "timept", path, h, "a nominal time point in s")
    check_rows(timept >= 0, timept, path, "timept", h, "a nominal time point >= 0 s")
    g = numeric(df, "g", path, h, "a conductance in S")
    gi = numeric(df, "gi", path, h, "a conductance in S")
    columns = {
        "cell": addr.astype(np.uint32), "level": rng,
        "target_siemens": (rng + float(target_offset)) / TECHC_RANGES * gmax,
        "g0_siemens": gi, "time_s": timept, "g_siemens": g,
        "temp_k": np.full(addr.size, ROOM_TEMPERATURE_K), "time_measured_s": t_meas,
    }
    keep = rng < TECHC_RANGES
    reads = {k: v[keep] for k, v in columns.items()}
    outliers = {k: v[~keep] for k, v in columns.items()}
    info = {"gmax_siemens": gmax, "ranges": TECHC_RANGES, "target_offset": float(target_offset),
            "settings_sha256": sha256_file(settings)}
    return reads, outliers, info


def import_techc(path: str | Path, store: str | Path, *, settings: str | Path | None = None,
                 target_offset: float = 0.5, force: bool = False) -> ImportResult:
    """Import the techC relaxation set (``relaxdata.min.tsv.gz``: ``addr, time, r, g, gi,
    range, timept``, no header) into ``store`` as an ``imported`` run, table ``reads``:
    ``cell = addr``, ``level = range``, ``g0_siemens = gi``, ``time_s = timept`` (the measured time
    kept as ``time_measured_s``), ``temp_k = 300``, ``target_siemens = (range + target_offset) / 32
    * gmax``; rows with range > 31 go to table ``outliers``. Importing the same file again
    resumes the same run."""
    t0 = time.perf_counter()
    path = Path(path)
    reads, outliers, info = read_techc(path, settings, target_offset)
    plan = {"format": "techc", "source_name": path.name, "source_sha256": sha256_file(path),
            "gmax_siemens": info["gmax_siemens"], "target_offset": info["target_offset"],
            "temp_k": ROOM_TEMPERATURE_K, "outliers": f"range >= {TECHC_RANGES} -> table "
            f"'{OUTLIERS}'"}
    info = {**info, "outlier_rows": int(outliers["cell"].size),
            "outlier_cells": int(np.unique(outliers["cell"]).size),
            "source": "akashlevy/RRAM-Relaxation-Master-Model (MIT), technology C"}
    chunks = [*relaxation_chunks(reads), (f"table-{OUTLIERS}", OUTLIERS, outliers)]
    return write_import(Path(store), path, plan, KIND, chunks, info, t0, force)

"""The "technology A" sets of Levy et al. (github.com/akashlevy/RRAM-Relaxation-Master-Model,
MIT license; copy in ``data/reference/techA``): bakes and read-noise time series.

``bake.tsv.gz`` (format ``techa-bake``): tab separated, no header, columns ``addr, time, r,
g, temp``: for each bake temperature (C) the same cells were programmed, read once before the
bake (``time`` 0) and once after it (``time`` = s at temperature, per cell). Mapped by
:func:`cimlab.procedures.importers.bake.build_bake` onto a ``bake_retention`` run: one
programming cycle per temperature (``temp_index``), ``step`` 0 the reference read, 1 after the
bake; ``bake_time_s`` the per-cell time; ``g0_siemens`` the same temperature's reference read.
Levels: the file has no target. The README of the set says "about round(g0 / (Gmax/32))";
the reference reads are spread nearly uniformly over 0..Gmax (no gaps between bands), so
rounding makes 33 levels whose two end ones are half filled. The importer takes the 32
bands of width Gmax/32 that the techC set uses: ``level = floor(g0 / (Gmax/32))``, target the
band centre ``(level + 0.5) Gmax/32``; rows whose cell's reference read lies at or above
Gmax (or below 0) go to the table ``outliers``. The ``r`` column is not used (``g`` = 1/r).

``tsdata.min.tsv.gz`` (format ``tsdata``): one row per time series: the conductance range,
an index offset, then the samples (S) of one cell read continuously at ``fs`` samples/s
(``settings.json`` field ``fs``, or ``--fs``). Written as a run ``read_noise_series`` with
table ``samples``: ``cell`` (the series' row number in the file: the set records no address),
``level`` (the range), ``target_siemens`` (band centre), ``sample`` (offset + index), ``time_s``
(sample / fs), ``g_siemens``, ``fs_hz``, ``temp_k`` (300 K, room temperature, not recorded).
"""

from __future__ import annotations

import gzip
import time
from pathlib import Path

import numpy as np

from cimlab.errors import ConfigError
from cimlab.procedures.importers._table import (
    as_cell,
    check_column_count,
    check_rows,
    numeric,
    read_text_table,
    sha256_file,
)
from cimlab.procedures.importers._write import (
    BAKE_KIND,
    SAMPLES,
    SERIES_KIND,
    ImportResult,
    write_import,
)
from cimlab.procedures.importers.bake import build_bake
from cimlab.procedures.importers.techc import TECHC_RANGES, read_settings
from cimlab.procedures.importers.tidy import ROOM_TEMPERATURE_K, bake_chunks
from cimlab.units import KELVIN_OFFSET

#: techA bake column names in file order (no header).
TECHA_BAKE_COLUMNS = ("addr", "time", "r", "g", "temp")
#: Columns of the ``samples`` table of a ``read_noise_series`` run, in order.
SERIES_COLUMNS = (
    "cell",
    "level",
    "target_siemens",
    "sample",
    "time_s",
    "g_siemens",
    "fs_hz",
    "temp_k",
)
SOURCE = "akashlevy/RRAM-Relaxation-Master-Model (MIT), technology A"


def read_techa_bake(path: str | Path, settings: str | Path | None = None,
                    target_offset: float = 0.5):
    """Read the techA bake file; return (reads, outliers, bakes, info) columns (SI)."""
    path = Path(path)
    settings, conf = read_settings(path, settings, "techA")
    gmax = float(conf["gmax"])
    df = read_text_table(path, sep="\t", header=False)
    check_column_count(df, path, TECHA_BAKE_COLUMNS)
    if len(df) == 0:
        raise ConfigError(path, "rows", "at least one data row", "none")
    h = False
    cell = as_cell(numeric(df, "addr", path, h, "a cell address"), path, "addr", h)
    t = numeric(df, "time", path, h, "a bake time in s")
    check_rows(t >= 0, t, path, "time", h, "a bake time >= 0 s (0: the read before the bake)")
    g = numeric(df, "g", path, h, "a conductance in S")
    temp_c = numeric(df, "temp", path, h, "a bake temperature in C")
    temp_k = temp_c + KELVIN_OFFSET
    check_rows(temp_k > 0, temp_c, path, "temp", h, "a temperature above -273.15 C")
    step = gmax / TECHC_RANGES
    reads, outliers, bakes = build_bake(
        path, cell, temp_k, t, g, header=h,
        names={"temp": "temp", "bake_time": "time", "cycle": "temp"},
        level_step_siemens=step, n_levels=TECHC_RANGES, target_offset=target_offset)
    info = {"gmax_siemens": gmax, "ranges": TECHC_RANGES, "level_step_siemens": step,
            "target_offset": float(target_offset), "settings_sha256": sha256_file(settings),
            "outlier_rows": int(outliers["cell"].size),
            "outlier_cells": int(np.unique(outliers["cell"]).size), "source": SOURCE}
    return reads, outliers, bakes, info


def import_techa_bake(path: str | Path, store: str | Path, *,
                      settings: str | Path | None = None, target_offset: float = 0.5,
                      force: bool = False) -> ImportResult:
    """Import the techA bake set (``bake.tsv.gz``: ``addr, time, r, g, temp``, no header) as
    a ``bake_retention`` run: one programming cycle per temperature, step 0 the reference read
    before the bake, step 1 after it; ``level = floor(g0 / (Gmax/32))``, target the band
    centre (``target_offset`` 0.5); cells whose reference read is outside 0..Gmax go to the
    table ``outliers``. Importing the same file again resumes the same run."""
    t0 = time.perf_counter()
    path = Path(path)
    reads, outliers, bakes, info = read_techa_bake(path, settings, target_offset)
    plan = {"format": "techa-bake", "source_name": path.name,
            "source_sha256": sha256_file(path), "gmax_siemens": info["gmax_siemens"],
            "target_offset": info["target_offset"],
            "levels": f"floor(g0 / (gmax/{TECHC_RANGES})); g0 outside [0, gmax) -> outliers"}
    return write_import(Path(store), path, plan, BAKE_KIND, bake_chunks(reads, outliers, bakes),
                        info, t0, force)


def _open_text(path: Path):
    if path.suffix.lower() == ".gz":
        return gzip.open(path, "rt")
    return open(path)


def read_tsdata(path: str | Path, fs_hz: float | None = None,
                settings: str | Path | None = None, target_offset: float = 0.5):
    """Read a tsdata file; return (list of ``samples`` column dicts, one per series, info)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(path, "file", "an existing tsdata file", "no such file")
    settings_path, conf = read_settings(path, settings, "techA")
    gmax = float(conf["gmax"])
    if fs_hz is None:
        fs_hz = conf.get("fs")
        if not isinstance(fs_hz, (int, float)) or not fs_hz > 0:
            raise ConfigError(settings_path, "fs", "the sample rate in samples/s (> 0), or "
                              "give it with --fs", fs_hz)
    if not (np.isfinite(fs_hz) and fs_hz > 0):
        raise ConfigError(path, "fs", "a sample rate > 0 samples/s", fs_hz)
    fs_hz = float(fs_hz)
    series = []
    try:
        with _open_text(path) as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                fields = line.rstrip("\n").split("\t")
                if len(fields) < 3:
                    raise ConfigError(path, f"line {lineno}", "a range, an index offset and "
                                      "at least one sample, tab separated",
                                      f"{len(fields)} field(s)")
                try:
                    x = np.array(fields, dtype=float)
                except ValueError:
                    bad = next(j for j, f in enumerate(fields) if not _is_float(f))
                    raise ConfigError(path, f"line {lineno}, field {bad + 1}", "a number",
                                      fields[bad]) from None
                bad = np.flatnonzero(~np.isfinite(x))
                if bad.size:
                    raise ConfigError(path, f"line {lineno}, field {bad[0] + 1}",
                                      "a finite number", fields[bad[0]])
                for j, what in ((0, "a conductance range"), (1, "an index offset")):
                    if x[j] < 0 or x[j] != round(x[j]):
                        raise ConfigError(path, f"line {lineno}, field {j + 1}",
                                          f"{what} (an integer >= 0)", fields[j])
                rng, offset, g = int(x[0]), int(x[1]), x[2:]
                sample = offset + np.arange(g.size, dtype=np.int64)
                n = g.size
                series.append({
                    "cell": np.full(n, len(series), np.uint32), "level": np.full(n, rng),
                    "target_siemens": np.full(n, (rng + target_offset) * gmax / TECHC_RANGES),
                    "sample": sample, "time_s": sample / fs_hz, "g_siemens": g,
                    "fs_hz": np.full(n, fs_hz), "temp_k": np.full(n, ROOM_TEMPERATURE_K)})
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise ConfigError(path, "file", "a readable (gzip) text file", str(exc)) from None
    if not series:
        raise ConfigError(path, "rows", "at least one time series", "none")
    info = {"gmax_siemens": gmax, "fs_hz": fs_hz, "series": len(series),
            "settings_sha256": sha256_file(settings_path), "source": SOURCE}
    return series, info


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def import_tsdata(path: str | Path, store: str | Path, *, fs_hz: float | None = None,
                  settings: str | Path | None = None, force: bool = False) -> ImportResult:
    """Import read-noise time series (techA ``tsdata.min.tsv.gz``: one row per series: the
    conductance range, an index offset, then the samples [S] of one cell) as a
    ``read_noise_series`` run, table ``samples`` (one committed step per series; the sample
    rate ``fs_hz`` from ``settings.json`` or the argument, in column ``fs_hz`` and run meta
    ``fs_hz``)."""
    t0 = time.perf_counter()
    path = Path(path)
    series, info = read_tsdata(path, fs_hz, settings)
    plan = {"format": "tsdata", "source_name": path.name, "source_sha256": sha256_file(path),
            "fs_hz": info["fs_hz"], "gmax_siemens": info["gmax_siemens"]}
    chunks = [(f"series-{i:03d}", SAMPLES, s) for i, s in enumerate(series)]
    return write_import(Path(store), path, plan, SERIES_KIND, chunks, info, t0, force,
                        meta={"fs_hz": info["fs_hz"]})

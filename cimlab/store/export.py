"""Export a store's runs to NetCDF (xarray), Parquet (pyarrow) or CSV, committed rows only.

Layouts (docs/export.md)::

    netcdf   OUT/<uid>.nc             one NetCDF-4 file per run: xarray.open_dataset(path)
                                      opens it; column c of table t is variable "t__c" along
                                      dimension "t_row"; attrs: units (SI), long_name, table,
                                      column; run metadata and the station snapshot as
                                      file attributes
    parquet  OUT/<uid>/<table>.parquet   one file per table (pandas.read_parquet); field
                                      metadata "unit"; schema metadata "cimlab" (run JSON)
             OUT/<uid>/run.json       run metadata, station snapshot, units per column
    csv      OUT/<uid>/<table>.csv    one file per table (pandas.read_csv), header = columns
             OUT/<uid>/run.json

Only committed rows are exported (``run.table(name, committed_only=True)``): rows of a step
that a running or killed writer has not completed yet are not data. Each file is written to a
temporary name and renamed, so a failed export leaves no half-written file.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cimlab.store import _json
from cimlab.store.columns import column_quantity, column_unit
from cimlab.store.errors import StoreError
from cimlab.store.run import Run, utc_text
from cimlab.store.store import Store

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import xarray as xr

#: Formats :func:`export_store` writes.
FORMATS = ("netcdf", "parquet", "csv")
#: Version of the export layout (file attribute ``cimlab_export_version``).
EXPORT_VERSION = 1
#: Separator between table and column in a NetCDF variable name (``reads__g_siemens``).
SEP = "__"
#: File attribute prefix of the flattened station snapshot (``snapshot.limits.read_v_max_v``).
SNAPSHOT_PREFIX = "snapshot."


def committed_tables(run: Run) -> dict[str, pd.DataFrame]:
    """Every table of ``run`` with its committed rows only, by table name."""
    return {name: run.table(name, committed_only=True) for name in run.tables}


def table_units(run: Run) -> dict[str, dict[str, str]]:
    """SI unit of each numeric column, per table (string columns have none)."""
    out: dict[str, dict[str, str]] = {}
    for name, df in committed_tables(run).items():
        out[name] = {c: column_unit(c) for c in df.columns if _is_numeric(df[c])}
    return out


def run_record(run: Run) -> dict[str, Any]:
    """Everything recorded about ``run`` as plain JSON (``run.metadata`` plus units and the
    committed row counts that the export holds)."""
    meta = dict(run.metadata)
    meta["committed_rows"] = run.committed_rows()
    meta["units"] = table_units(run)
    return json.loads(_json.dumps(meta))


def _is_numeric(series: Any) -> bool:
    return np.asarray(series).dtype.kind in "biuf"


def _flatten(prefix: str, value: Any, out: dict[str, Any], depth: int = 0) -> None:
    """Scalar leaves of a JSON tree as ``prefix.key.key`` attributes (lists stay JSON text)."""
    if isinstance(value, Mapping) and depth < 8:
        for k, v in value.items():
            _flatten(f"{prefix}.{k}", v, out, depth + 1)
        return
    out[prefix] = _attr_value(value)


def _attr_value(value: Any) -> str | int | float:
    """A NetCDF-storable attribute: text, an integer or a float (bool -> 0/1, None -> "")."""
    if value is None:
        return ""
    if isinstance(value, bool | np.bool_):
        return int(value)
    if isinstance(value, int | float | np.integer | np.floating):
        return value.item() if isinstance(value, np.generic) else value
    if isinstance(value, str):
        return value
    return _json.dumps(value)


def run_attributes(run: Run) -> dict[str, str | int | float]:
    """The file attributes of a run's NetCDF export: identity, times, JSON texts and the
    flattened station snapshot (``snapshot.<key>.<key>``)."""
    attrs: dict[str, Any] = {
        "cimlab_export_version": EXPORT_VERSION,
        "uid": run.uid, "kind": run.kind, "status": run.status, "plan_hash": run.plan_hash,
        "started_utc": utc_text(run.started_unix), "stopped_utc": utc_text(run.stopped_unix),
        "started_unix": run.started_unix,
        "instrument_time_s": run.instrument_time_s,
        "n_cells": run.n_cells, "n_completed_steps": len(run.steps), "n_resumes": len(run.resumes),
    }
    for name, value in (("plan", run.plan), ("snapshot", run.snapshot), ("seeds", run.seeds),
                        ("versions", run.versions), ("meta", run.meta),
                        ("completed_steps", run.steps), ("resumes", run.resumes)):
        attrs[f"{name}_json"] = _json.dumps(value)
    _flatten(SNAPSHOT_PREFIX.rstrip("."), run.snapshot, attrs)
    for key, value in run.seeds.items():
        attrs[f"seed.{key}"] = _attr_value(value)
    return {k: _attr_value(v) for k, v in attrs.items()}


def _column_values(series: pd.Series) -> np.ndarray:
    arr = series.to_numpy()
    if arr.dtype.kind in "biuf":
        return arr
    return np.asarray([str(v) for v in arr], dtype=object)  # labels: NetCDF strings


def run_dataset(run: Run) -> xr.Dataset:
    """The committed data of ``run`` as one :class:`xarray.Dataset`: column ``c`` of table
    ``t`` is variable ``t__c`` along dimension ``t_row``; numeric variables carry ``units``
    (SI, UDUNITS spelling) and ``long_name``; the run metadata are dataset attributes."""
    import xarray as xr

    variables = {}
    for name, df in committed_tables(run).items():
        dim = f"{name}_row"
        for col in df.columns:
            values = _column_values(df[col])
            attrs: dict[str, str] = {"table": name, "column": str(col)}
            if values.dtype.kind in "biuf":
                attrs["units"] = column_unit(str(col))
                attrs["long_name"] = column_quantity(str(col))
            variables[f"{name}{SEP}{col}"] = xr.Variable((dim,), values, attrs)
    return xr.Dataset(variables, attrs=run_attributes(run))


def dataset_table(ds: xr.Dataset, table: str) -> pd.DataFrame:
    """Table ``table`` of an exported run back as a DataFrame (columns in their stored order)."""
    import pandas as pd

    prefix = f"{table}{SEP}"
    cols = {v[len(prefix):]: ds[v].values for v in ds.data_vars if str(v).startswith(prefix)}
    if not cols:
        tables = sorted({str(v).split(SEP, 1)[0] for v in ds.data_vars})
        raise KeyError(f"no table {table!r} in this dataset (tables: {', '.join(tables)})")
    return pd.DataFrame(cols)


@contextmanager
def _atomic(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` when the block succeeds."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


#: zlib level of the numeric variables of an exported NetCDF file (lossless; the store itself
#: stays uncompressed for crash safety: docs/export.md, "Compression").
NETCDF_ZLIB_LEVEL = 4


def write_netcdf(run: Run, out_dir: Path) -> Path:
    """Write ``out_dir/<uid>.nc`` (NetCDF-4 through h5netcdf, or netCDF4 if that is what is
    installed), numeric variables compressed with zlib (lossless)."""
    path = out_dir / f"{run.uid}.nc"
    ds = run_dataset(run)
    encoding = {str(v): {"zlib": True, "complevel": NETCDF_ZLIB_LEVEL}
                for v in ds.data_vars if ds[v].dtype.kind in "biuf"}
    with _atomic(path) as tmp:
        ds.to_netcdf(tmp, engine=_netcdf_engine(), format="NETCDF4", encoding=encoding)
    return path


def _netcdf_engine() -> str:
    for module, engine in (("h5netcdf", "h5netcdf"), ("netCDF4", "netcdf4")):
        try:
            __import__(module)
            return engine
        except ImportError:
            continue
    raise StoreError("export", "--to netcdf", "the h5netcdf package (pip install h5netcdf)",
                     "not installed")


def _write_json(path: Path, record: Mapping[str, Any]) -> None:
    with _atomic(path) as tmp:
        tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def write_parquet(run: Run, out_dir: Path) -> list[Path]:
    """Write ``out_dir/<uid>/<table>.parquet`` per table and ``run.json``."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise StoreError("export", "--to parquet", "the pyarrow package (pip install "
                         "'cimlab[parquet]')", "not installed") from None
    folder = out_dir / run.uid
    folder.mkdir(parents=True, exist_ok=True)
    record = run_record(run)
    paths = []
    for name, df in committed_tables(run).items():
        tbl = pa.Table.from_pandas(df, preserve_index=False)
        fields = []
        for field in tbl.schema:
            unit = record["units"][name].get(field.name)
            fields.append(field.with_metadata({"unit": unit}) if unit else field)
        meta = {b"cimlab": json.dumps({"table": name, **record}).encode("utf-8")}
        tbl = tbl.cast(pa.schema(fields, metadata=meta))
        path = folder / f"{name}.parquet"
        with _atomic(path) as tmp:
            pq.write_table(tbl, tmp)
        paths.append(path)
    _write_json(folder / "run.json", record)
    return [*paths, folder / "run.json"]


def write_csv(run: Run, out_dir: Path) -> list[Path]:
    """Write ``out_dir/<uid>/<table>.csv`` per table (full float precision) and ``run.json``."""
    folder = out_dir / run.uid
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, df in committed_tables(run).items():
        path = folder / f"{name}.csv"
        with _atomic(path) as tmp:
            df.to_csv(tmp, index=False, float_format="%.17g")
        paths.append(path)
    _write_json(folder / "run.json", run_record(run))
    return [*paths, folder / "run.json"]


_WRITERS = {"netcdf": write_netcdf, "parquet": write_parquet, "csv": write_csv}


def default_out(store_path: str | os.PathLike) -> Path:
    """Default export folder: ``<store>-export/`` next to the store file."""
    p = Path(store_path)
    return p.with_name(f"{p.stem}-export")


def export_store(
    store_path: str | os.PathLike,
    to: str,
    out: str | os.PathLike | None = None,
    runs: Iterable[str] | None = None,
) -> list[Path]:
    """Export the runs of a store (all, or the uids/prefixes in ``runs``) to format ``to``
    (one of :data:`FORMATS`) under ``out`` (default :func:`default_out`). The store is opened
    read-only. Returns the files written."""
    if to not in FORMATS:
        raise StoreError(store_path, "--to", f"one of {', '.join(FORMATS)}", to)
    out_dir = Path(out) if out is not None else default_out(store_path)
    written: list[Path] = []
    with Store.open(store_path, "r") as store:
        selected = [store.run(u) for u in runs] if runs else list(store)
        out_dir.mkdir(parents=True, exist_ok=True)
        for run in selected:
            result = _WRITERS[to](run, out_dir)
            written.extend(result if isinstance(result, list) else [result])
    return written


def export_summary(paths: list[Path], started: float) -> str:
    """One line: how many files, their total size and the time taken."""
    size = sum(p.stat().st_size for p in paths if p.exists())
    return (f"{len(paths)} file(s), {size / 1e6:.2f} MB, {time.perf_counter() - started:.2f} s")

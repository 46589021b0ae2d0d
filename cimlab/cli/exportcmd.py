"""``cimlab export``: a store's runs out to NetCDF (xarray), Parquet or CSV.

Heavy imports (h5py, pandas, xarray, pyarrow) happen inside the handler; torch is never imported.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from cimlab.cli._common import add_output_flags, emit

#: Formats of ``--to`` (a torch- and xarray-free copy of cimlab.store.export.FORMATS; kept in
#: sync by tests/store/test_export.py).
FORMATS = ("netcdf", "parquet", "csv")


def register(sub: Any) -> None:
    """Add ``export`` to the ``cimlab`` command."""
    p = sub.add_parser(
        "export",
        help="export a store's runs to NetCDF, Parquet or CSV",
        description="Export the runs of a store (committed rows only: rows of a step that a "
        "running or killed writer has not completed are left out) for tools that do not read "
        "cimlab stores. netcdf: one NetCDF-4 file per run, OUT/<uid>.nc, opened by "
        "xarray.open_dataset(path); column C of table T is the variable T__C along the "
        "dimension T_row, with its SI unit in the attribute 'units'; run metadata, seeds and "
        "the station snapshot are file attributes. parquet: OUT/<uid>/<table>.parquet "
        "(pandas.read_parquet; unit in each field's metadata) and OUT/<uid>/run.json. csv: "
        "OUT/<uid>/<table>.csv and OUT/<uid>/run.json (metadata and the unit of each column). "
        "The store is opened read-only; exporting while a campaign writes is safe. See "
        "docs/export.md.",
    )
    p.add_argument("file", help="store file (e.g. data/chip01.h5)")
    p.add_argument("--to", choices=FORMATS, default="netcdf",
                   help="output format (default netcdf)")
    p.add_argument("--out", metavar="DIR", type=Path, default=None,
                   help="output folder (default: <store>-export/ next to the store file)")
    p.add_argument("--run", metavar="UID", action="append", default=None,
                   help="export only this run (repeatable; uid, unique prefix or 'last')")
    add_output_flags(p, quiet=False)
    p.set_defaults(func=_export)


def _export(args: argparse.Namespace) -> int:
    from cimlab.store.export import default_out, export_store, export_summary

    started = time.perf_counter()
    out = args.out if args.out is not None else default_out(args.file)
    paths = export_store(args.file, args.to, out, runs=args.run)
    emit(args, {"format": args.to, "out": str(out), "files": [str(p) for p in paths]},
         "\n".join([*(str(p) for p in paths),
                    f"exported to {out}: {export_summary(paths, started)}"]))
    return 0

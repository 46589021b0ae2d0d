"""``cimlab runs``, ``report``, ``import`` and ``compact``: the store commands.

Heavy imports (h5py, pandas, matplotlib) happen inside the handlers; torch is never imported.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from cimlab.cli._common import (
    add_figure_flags,
    add_output_flags,
    emit,
    figure_options,
    file_path,
    nonneg_int,
)

_DATA_DIR = Path("data")


def register(sub: Any) -> None:
    """Add ``runs``, ``report``, ``import`` and ``compact`` to the ``cimlab`` command."""
    runs = sub.add_parser(
        "runs",
        help="list the runs in a store",
        description="List the runs in a store (HDF5 file), oldest first: uid, kind, status, "
        "cells, start time (UTC), host duration, instrument time, completed steps, number of "
        "resumes (an interrupted run continued by re-running its command) and rows per table. "
        "With --run, print everything recorded about one run (plan, seeds, versions, steps, "
        "station snapshot with --snapshot).",
    )
    runs.add_argument("file", help="store file (e.g. data/chip01.h5)")
    runs.add_argument("--run", metavar="UID",
                      help="show one run (uid, a unique prefix of it, or 'last')")
    runs.add_argument("--snapshot", action="store_true",
                      help="with --run: also print the station snapshot")
    add_output_flags(runs, quiet=False)
    runs.set_defaults(func=_runs)

    rep = sub.add_parser(
        "report",
        help="summary tables and plots of the runs in a store",
        description="For every run (or the ones named with --run), print a summary table for "
        "its kind and write plots (PNG, or --format pdf/svg): programming error sigma per "
        "level (single-shot vs verify) with histograms; read sigma per level (absolute, "
        "relative); relaxation and "
        "imported data: sigma and mean shift per level and time point, sigma vs log time; bake "
        "retention: shift and sigma per temperature and bake step, retention curves (several "
        "bake runs: one more table by temperature and bake time); BER per condition with "
        "Clopper-Pearson intervals and energy per bit; fault map fractions and map image; "
        "endurance window vs cycle. Conductances are printed in µS. Stuck cells flagged by a "
        "fault map in the store are left out of the analog statistics (a robust sigma, "
        "1.4826 x MAD, where no fault map covers a run); the raw figures stay as columns.",
    )
    rep.add_argument("file", help="store file")
    rep.add_argument("--out", metavar="DIR", type=Path, default=None,
                     help="folder for the plots (default: <store>-report/ next to the file)")
    rep.add_argument("--run", metavar="UID", action="append", default=None,
                     help="report only this run (repeatable; uid, prefix or 'last')")
    rep.add_argument("--no-plots", action="store_true", help="print the tables only")
    rep.add_argument("--max-rows", type=nonneg_int, default=40,
                     help="longest table printed (longer ones stay in the summary; default 40)")
    add_figure_flags(rep)
    add_output_flags(rep, quiet=False)
    rep.set_defaults(func=_report)

    imp = sub.add_parser(
        "import",
        help="import external measurements (CSV/TSV) into a store",
        description="Import measured conductance reads into a store. Relaxation-like reads "
        "become a run of kind 'imported' (table 'reads': cell, level, target_siemens, "
        "g0_siemens, time_s, g_siemens, temp_k, the columns of a relaxation run); bakes become "
        "a run 'bake_retention' with the tables 'characterize' writes (reads with step 0 = "
        "the reference read before "
        "each bake, temp_index, bake_time_s; bakes); read-noise time series a run "
        "'read_noise_series' (table 'samples' with the sample rate fs_hz). All are ready for "
        "'cimlab report', 'cimlab fit' and 'cimlab validate'. Formats: techc (the techC "
        "relaxation set, data/reference/techC), techa-bake and tsdata (the techA bake and "
        "read-noise sets, data/reference/techA; settings.json next to the file gives gmax and "
        "fs), tidy (any CSV/TSV: name its columns with the --*-col options and its units with "
        "--g-unit/--time-unit/--temp-unit, parsed with Pint: uS, µS, mS, S, or a resistance "
        "ohm, kohm, kΩ, Mohm; s, ms, min, h; K, C). A tidy file with --bake-time-col is a "
        "bake. Errors name the file, line and column. Importing the same file twice does not "
        "add a copy.",
        epilog="examples: (1) cimlab import reads.csv --format tidy --cell-col addr "
        "--time-col t_ms --time-unit ms --g-col R_kohm --g-unit kohm --target-col target_uS "
        "--out data/lab.h5 (2) cimlab import data/reference/techA/bake.tsv.gz --format "
        "techa-bake --out data/techA.h5 (3) cimlab import bakes.csv --bake-time-col t_bake "
        "--time-unit h --temp-col T --temp-unit C --level-step 7.5uS --n-levels 32",
    )
    imp.add_argument("file", type=file_path, help="CSV/TSV file (.gz accepted)")
    imp.add_argument("--format", choices=("tidy", "techc", "techa-bake", "tsdata"),
                     default="tidy", help="file layout (default tidy)")
    imp.add_argument("--out", type=Path, default=None, metavar="STORE.h5",
                     help="store to add the run to (created if missing; default "
                     "data/<file name>.h5)")
    imp.add_argument("--force", action="store_true",
                     help="import again even if this file was imported with this mapping")
    g = imp.add_argument_group("tidy format: column mapping (header names)")
    g.add_argument("--cell-col", default="cell", help="cell index column (default cell)")
    g.add_argument("--time-col", default="time_s",
                   help="time since programming (default time_s)")
    g.add_argument("--g-col", default="g_siemens",
                   help="conductance (or resistance, by its unit) read (default g_siemens)")
    g.add_argument("--level-col", default=None,
                   help="level index column (default: 'level', unless --target-col or "
                   "--level-step without it is given)")
    g.add_argument("--target-col", default=None, help="target conductance column")
    g.add_argument("--g0-col", default=None,
                   help="conductance right after programming (default: each cell's earliest "
                   "read at the same temperature)")
    g.add_argument("--temp-col", default=None, help="temperature column (default: --temp-k)")
    g.add_argument("--bake-time-col", default=None,
                   help="bake duration at temperature (0 = the reference read before the "
                   "bake): the file holds bakes")
    g.add_argument("--cycle-col", default=None,
                   help="bakes: programming-cycle index (cells re-programmed between bakes; "
                   "default one cycle per temperature)")
    g.add_argument("--sep", default=None,
                   help="field separator (default: tab for .tsv, comma otherwise)")
    g.add_argument("--no-header", action="store_true",
                   help="the file has no header: name columns by 0-based number ('0', '1', ...)")
    u = imp.add_argument_group("tidy format: units (parsed with Pint, converted to SI)")
    u.add_argument("--g-unit", default="S",
                   help="unit of the conductance, target and g0 columns: S, mS, uS, µS, nS, or "
                   "a resistance unit ohm, kohm, kΩ, Mohm (default S)")
    u.add_argument("--time-unit", default="s",
                   help="unit of the time / bake-time column: s, ms, us, min, h, d (default s)")
    u.add_argument("--temp-unit", default="K", help="unit of the temperature column: K, C "
                   "(default K)")
    u.add_argument("--temp-k", type=float, default=300.0,
                   help="temperature [K] when there is no temperature column (default 300)")
    u.add_argument("--level-step", default=None, metavar="CONDUCTANCE",
                   help="conductance step per level with its unit (e.g. 7.5uS): with --level-col "
                   "and no target column, target = level * step; without --level-col and "
                   "--target-col, levels from each cell's first read: floor(g0 / step), "
                   "target at the band centre")
    u.add_argument("--level-step-s", dest="level_step_siemens", type=float, default=None,
                   help=argparse.SUPPRESS)  # the old spelling, [S]
    u.add_argument("--n-levels", type=int, default=None,
                   help="with levels from the first read: number of bands (others: outliers)")
    t = imp.add_argument_group("techc, techa-bake and tsdata formats")
    t.add_argument("--settings", type=Path, default=None,
                   help="the set's settings.json with gmax (and fs) (default: next to the "
                   "data file)")
    t.add_argument("--target-offset", type=float, default=0.5,
                   help="target_siemens = (range + offset) / 32 * gmax; 0.5 = centre of the band "
                   "(default), 0 = its lower edge")
    t.add_argument("--fs", type=float, default=None, metavar="HZ",
                   help="tsdata: sample rate in samples/s (default: settings.json 'fs')")
    add_output_flags(imp, quiet=False)
    imp.set_defaults(func=_import)

    com = sub.add_parser(
        "compact",
        help="compress a finished store (smaller file, same data)",
        description="Write a copy of a store whose table columns are deflate-compressed "
        "(with byte shuffle; any HDF5 reader opens it), check that every dataset and attribute "
        "of the copy equals the original, fsync it and rename it over the store (or write it "
        "to --out). A store being written stays uncompressed so that a killed writer cannot "
        "corrupt a compressed chunk; compact it once its runs have ended. Refused while a run "
        "is running or aborted (it could still be resumed) or another process has the store "
        "open for writing. A kill during compaction leaves the store as it was. See "
        "docs/data-format.md.",
    )
    com.add_argument("file", type=file_path, help="store file")
    com.add_argument("--out", type=Path, default=None, metavar="STORE.h5",
                     help="write the compacted copy here instead of replacing the store "
                     "(must not exist)")
    add_output_flags(com, quiet=False)
    com.set_defaults(func=_compact)


def _runs(args: argparse.Namespace) -> int:
    import pandas as pd

    from cimlab.store import Store

    with Store.open(args.file, "r") as store:
        if store.live:
            print("note: a process is writing to this store; showing its last flush",
                  file=sys.stderr if args.json else sys.stdout)
        if args.run:
            run = store.run(args.run)
            meta = run.metadata
            if not args.snapshot:
                meta.pop("snapshot", None)
            steps = meta.pop("completed_steps")
            meta["completed_steps"] = (steps if len(steps) <= 20
                                       else [*steps[:10], f"... {len(steps) - 20} more ...",
                                             *steps[-10:]])
            meta["columns"] = {t: run.columns(t) for t in run.tables}
            if args.json:
                emit(args, meta)
            else:
                print(json.dumps(meta, indent=2, default=str))
            return 0
        df = store.runs()
        if df.empty:
            emit(args, {"file": str(args.file), "runs": []}, f"{args.file}: no runs")
            return 0
        show = pd.DataFrame({
            "uid": df["uid"], "kind": df["kind"], "status": df["status"], "cells": df["cells"],
            "started (UTC)": df["started"],
            "duration": [_duration(x) for x in df["duration_s"]],
            "instrument time": [_duration(x) for x in df["instrument_time_s"]],
            "steps": df["steps"],
            "resumes": [_count(x) for x in df["resumes"]],
            "rows": [", ".join(f"{k} {v}" for k, v in r.items()) if isinstance(r, dict) else ""
                     for r in df["rows"]],
        })
        emit(args, {"file": str(args.file), "live": bool(store.live),
                    "runs": df.to_dict(orient="records")},
             show.to_string(index=False) + "\nsteps: steps completed; resumes: times an "
             "interrupted run was continued (by re-running its command)")
        damaged = [str(x) for x in df["status"] if str(x).startswith("damaged")]
        if damaged:  # listed above; the exit status and one line say the store is not sound
            print(f"cimlab: error: {args.file}: {len(damaged)} damaged run(s); the first: "
                  f"{damaged[0].removeprefix('damaged: ')}", file=sys.stderr)
            return 1
    return 0


def _count(x: Any) -> str:
    """An integer count, or '-' for a damaged run's missing value."""
    return "-" if x is None or x != x else str(int(x))


def _duration(seconds: float) -> str:
    if seconds != seconds:  # NaN: still running
        return "-"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _report(args: argparse.Namespace) -> int:
    from cimlab.procedures.report import format_report, report

    with figure_options(args):
        reports = report(args.file, args.out, uids=args.run, plots=not args.no_plots)
    if not reports:
        emit(args, {"file": str(args.file), "runs": []}, f"{args.file}: no runs")
        return 0
    emit(args, {"file": str(args.file), "runs": [_report_json(r) for r in reports]},
         format_report(reports, max_rows=args.max_rows))
    return 0


def _report_json(rep: Any) -> dict[str, Any]:
    """One run's report as JSON: its tables as records in SI units, notes, figures, plots."""
    return {"uid": rep.uid, "kind": rep.kind, "status": rep.status,
            "sections": [{"title": s.title, "note": s.note,
                          "conductance_columns": list(s.conductance),
                          "rows": s.frame.to_dict(orient="records")} for s in rep.sections],
            "notes": list(rep.notes), "figures": rep.figures,
            "plots": [str(p) for p in rep.plots]}


#: TidyFormat field -> the ``cimlab import`` option that sets it (error messages).
_MAPPING_OPTIONS = {"g_unit": "--g-unit", "time_unit": "--time-unit", "temp_unit": "--temp-unit",
                    "level_step_siemens": "--level-step", "n_levels": "--n-levels",
                    "temp_k": "--temp-k", "level/target": "--level-col/--target-col/--level-step"}


def _import(args: argparse.Namespace) -> int:
    from cimlab.errors import ConfigError
    from cimlab.procedures import importer

    out = args.out
    if out is None:
        name = args.file.name
        for suffix in (".gz", ".tsv", ".csv", ".txt", ".tab"):
            name = name.removesuffix(suffix)
        out = _DATA_DIR / f"{name}.h5"
    if args.format == "techc":
        result = importer.import_techc(args.file, out, settings=args.settings,
                                       target_offset=args.target_offset, force=args.force)
    elif args.format == "techa-bake":
        result = importer.import_techa_bake(args.file, out, settings=args.settings,
                                            target_offset=args.target_offset, force=args.force)
    elif args.format == "tsdata":
        result = importer.import_tsdata(args.file, out, fs_hz=args.fs, settings=args.settings,
                                        force=args.force)
    else:
        step = args.level_step_siemens
        if args.level_step is not None:
            step = _conductance(args.level_step, "--level-step")
        level = args.level_col
        if level is None and args.target_col is None and args.level_step is None:
            level = "level"  # --level-step alone: levels from each cell's first read
        try:
            fmt = importer.TidyFormat(
                cell=args.cell_col, time=args.time_col, g=args.g_col, level=level,
                target=args.target_col, g0=args.g0_col, temp=args.temp_col,
                bake_time=args.bake_time_col, cycle=args.cycle_col, g_unit=args.g_unit,
                time_unit=args.time_unit, temp_unit=args.temp_unit, temp_k=args.temp_k,
                level_step_siemens=step, n_levels=args.n_levels, target_offset=args.target_offset,
                sep=args.sep, header=not args.no_header)
        except ConfigError as exc:  # name the file being imported and the option to fix
            option = _MAPPING_OPTIONS.get(exc.field, exc.field)
            raise ConfigError(args.file, option, exc.expected, exc.got) from None
        result = importer.import_tidy(args.file, out, fmt, force=args.force)
    emit(args, {"file": str(args.file), "format": args.format, "store": str(out),
                "run": _jsonable_result(result)},
         f"{result.summary()}\nnext: cimlab report {out}")
    return 0


def _compact(args: argparse.Namespace) -> int:
    from cimlab.store.compact import compact

    r = compact(args.file, args.out)
    emit(args, {"file": str(r.source), "written": str(r.written),
                "bytes_before": r.bytes_before, "bytes_after": r.bytes_after,
                "ratio": r.ratio, "columns_compressed": r.columns_compressed},
         f"{r.written}: {r.bytes_before / 1e6:.2f} MB -> {r.bytes_after / 1e6:.2f} MB "
         f"({r.ratio:.1f}x smaller, {r.columns_compressed} columns compressed, values checked "
         "equal)")
    return 0


def _jsonable_result(result: Any) -> dict[str, Any]:
    """The fields of an import result (a dataclass) as a dict."""
    import dataclasses

    return dataclasses.asdict(result) if dataclasses.is_dataclass(result) else vars(result)


def _conductance(text: str, option: str) -> float:
    """A conductance with its unit ('7.5uS', '7.5 µS', '0.1 mS') in S (Pint)."""
    import pint

    from cimlab.errors import ConfigError
    from cimlab.procedures.importers.units import _registry

    try:
        q = _registry().Quantity(text)
        if q.is_compatible_with("siemens"):
            v = float(q.to("siemens").magnitude)
            if v > 0:
                return v
    except (pint.errors.PintError, ValueError, TypeError, AttributeError, SyntaxError):
        pass
    raise ConfigError("command line", option, "a conductance > 0 with its unit (e.g. 7.5uS)",
                      text)

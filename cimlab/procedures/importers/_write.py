"""Writing an import into a store: one committed step per chunk, a re-import adds no copy."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cimlab.procedures.importers._table import time_summary
from cimlab.units import KELVIN_OFFSET

#: Run kind of imported relaxation-like reads (docs/architecture.md section 5).
KIND = "imported"
#: Run kind of bakes: the one ``characterize`` writes, so fit/report treat both alike.
BAKE_KIND = "bake_retention"
#: Run kind of read-noise time series.
SERIES_KIND = "read_noise_series"
READS = "reads"
OUTLIERS = "outliers"
SAMPLES = "samples"


@dataclass(frozen=True)
class ImportResult:
    """What an import did."""

    store: Path
    uid: str
    kind: str
    rows: int
    cells: int
    levels: int
    time_points: tuple[float, ...]
    outlier_rows: int
    outlier_cells: int
    already_imported: bool
    seconds: float
    source_sha256: str
    details: tuple[str, ...] = ()

    def summary(self) -> str:
        lines = [f"run {self.uid} ({self.kind}) in {self.store}"
                 + (" (already imported)" if self.already_imported else "")]
        what = "samples" if self.kind == SERIES_KIND else "reads"
        lines.append(f"  {self.rows} {what} of {self.cells} cells, {self.levels} levels")
        lines += [f"  {d}" for d in self.details]
        if self.outlier_rows:
            lines.append(f"  {self.outlier_rows} outlier rows ({self.outlier_cells} cells) kept "
                         f"apart in table '{OUTLIERS}'")
        lines.append(f"  {self.seconds:.2f} s")
        return "\n".join(lines)


def write_import(store_path: Path, source: Path, plan: dict, kind: str,
                 chunks: list[tuple[str, str, dict[str, np.ndarray]]], info: dict,
                 t0: float, force: bool, meta: dict | None = None) -> ImportResult:
    """Write ``chunks`` (step name, table, columns) as committed steps of one run ``kind``.

    Everything was checked before this is called; a run killed here resumes on the next
    import of the same file (same plan), and a completed one is returned as it is.
    """
    from cimlab.store import Store

    with Store.open(store_path, "a") as store:
        existing = None if force else _completed_import(store, plan, kind)
        if existing is not None:
            run = existing
        else:
            snapshot = {"source": {"path": str(source.resolve()), "size": source.stat().st_size,
                                   "sha256": plan["source_sha256"]}, **info}
            run = store.begin_run(kind, plan, snapshot=snapshot, seeds={}, resume=True)
            for step, table, columns in chunks:
                if step in run.completed_steps:
                    continue
                if columns and next(iter(columns.values())).size:
                    run.append(table, columns)
                run.complete_step(step)
            for key, value in (meta or {}).items():
                run.set_meta(key, value)
            main = chunks[0][1] if chunks else READS
            run.set_meta("import", {"rows": int(sum(next(iter(c.values())).size
                                                    for _, t, c in chunks if t == main)),
                                    **info})
            run.finish("completed")
        return _result(store_path, run, existing is not None, plan, t0)


def _completed_import(store: Any, plan: dict, kind: str) -> Any:
    from cimlab.store._json import digest

    h = digest(plan)
    for run in store:
        if run.kind == kind and run.plan_hash == h and run.status == "completed":
            return run
    return None


def _result(store_path: Path, run: Any, already: bool, plan: dict, t0: float) -> ImportResult:
    main = SAMPLES if run.kind == SERIES_KIND else READS
    df = run.table(main)
    n_out = run.n_rows(OUTLIERS) if OUTLIERS in run.tables else 0
    out_cells = int(np.unique(run.table(OUTLIERS)["cell"]).size) if n_out else 0
    time_points: tuple[float, ...] = ()
    if run.kind == KIND:
        details = (f"time points (reads): {time_summary(df['time_s'].to_numpy())}",)
        u = np.unique(df["time_s"].to_numpy())
        time_points = tuple(float(t) for t in u) if u.size <= 12 else ()
    elif run.kind == BAKE_KIND:
        details = tuple(bake_summary(df))
    else:
        details = tuple(series_summary(df))
    return ImportResult(
        store=store_path, uid=run.uid, kind=run.kind, rows=len(df),
        cells=int(df["cell"].nunique()), levels=int(df["level"].nunique()),
        time_points=time_points, outlier_rows=n_out, outlier_cells=out_cells,
        already_imported=already, seconds=time.perf_counter() - t0,
        source_sha256=plan["source_sha256"], details=details,
    )


def bake_summary(df: Any) -> list[str]:
    """One line per bake (temperature index): cells, steps and their bake times."""
    lines = []
    for j, d in df.groupby("temp_index", sort=True):
        temp_c = float(d["temp_k"].iloc[0]) - KELVIN_OFFSET
        parts = []
        for step, s in d.groupby("step", sort=True):
            t = s["bake_time_s"].to_numpy()
            rng = (f"{np.median(t):.4g} s" if t.min() == t.max()
                   else f"{np.median(t):.4g} s median ({t.min():.4g}-{t.max():.4g})")
            parts.append(f"step {step}: {rng}" if step else "step 0: reference read")
        lines.append(f"bake {j} at {temp_c:g} C: {d['cell'].nunique()} cells, "
                     f"{d['level'].nunique()} levels; " + "; ".join(parts))
    return lines


def series_summary(df: Any) -> list[str]:
    """One line per time series: level, samples, sample rate, duration."""
    lines = []
    for (cell, level), d in df.groupby(["cell", "level"], sort=True):
        fs = float(d["fs_hz"].iloc[0])
        lines.append(f"cell {cell}, level {level}: {len(d)} samples at {fs:g} Hz "
                     f"({len(d) / fs:g} s), mean {d['g_siemens'].mean() * 1e6:.2f} µS")
    return lines

"""Summary tables and plots of the runs in a store, one recipe per run kind.

``report(store_path)`` reads every run (or the ones named), computes a summary per run kind from
the tidy tables of docs/architecture.md section 5, and writes PNG plots (matplotlib, Agg canvas,
no pyplot state). Summaries are pandas DataFrames in SI units (conductance in S, time in s);
:func:`format_report` prints them with conductances in uS.

Modules: :mod:`~cimlab.procedures.report.summaries` (the numbers, one recipe per run kind; its
docstring defines every statistic), :mod:`~cimlab.procedures.report.plots` (matplotlib),
:mod:`~cimlab.procedures.report.sections` (:class:`Section`, :class:`RunReport`, the text);
the stuck-cell rule is :mod:`cimlab.procedures.cell_states`, the statistics
:mod:`cimlab.stats`. This module runs them over a store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from cimlab.procedures.cell_states import (
    STUCK_SPLIT_S,
    STUCK_STATE_SIGMAS,
    STUCK_STATES,
    STUCK_WINDOW_REL,
    STUCK_WINDOW_S,
    CellFilter,
    analog_filter,
    fault_states,
    stuck_cells,
    working_bits,
)
from cimlab.procedures.report import first
from cimlab.procedures.report import plots as plotting
from cimlab.procedures.report.bake import ALL_RUNS_KIND, combine_bake_runs, summarize_bake
from cimlab.procedures.report.sections import TEXT_WIDTH, RunReport, Section, format_report
from cimlab.procedures.report.summaries import (
    FAULT_STATES,
    TIME_CLUSTER_DECADES,
    grouped_robust_sigma,
    relaxation_stats,
    summarize_ber,
    summarize_endurance,
    summarize_faults,
    summarize_programming_error,
    summarize_read_fluctuation,
    summarize_relaxation,
    time_points,
    variance_slope,
)
from cimlab.stats import CONFIDENCE, MAD_EFFICIENCY, clopper_pearson, sigma_interval

__all__ = [
    "ALL_RUNS_KIND", "CONFIDENCE", "FAULT_STATES", "MAD_EFFICIENCY", "STUCK_SPLIT_S",
    "STUCK_STATES", "STUCK_STATE_SIGMAS", "STUCK_WINDOW_REL", "STUCK_WINDOW_S", "TEXT_WIDTH",
    "TIME_CLUSTER_DECADES", "CellFilter", "RunReport", "Section", "analog_filter",
    "clopper_pearson", "combine_bake_runs", "default_out_dir", "fault_states", "fault_table",
    "format_report", "grouped_robust_sigma", "relaxation_stats", "report", "sigma_interval",
    "stuck_cells", "summarize_bake", "summarize_ber", "summarize_endurance",
    "summarize_faults", "summarize_programming_error", "summarize_read_fluctuation",
    "summarize_relaxation", "summarize_run", "time_points", "variance_slope", "working_bits",
]


# =========================================================================== driver
def _summarize_kind(rep: RunReport, run: Any, tables: dict[str, pd.DataFrame],
                    out_dir: Path | None, stem: str, faults: pd.DataFrame | None = None
                    ) -> Callable[[], list[Path]] | None:
    """Fill ``rep`` with the sections of its kind; return the plotting closure."""
    kind = rep.kind
    plot = None
    if kind == "programming_error":
        df = tables["programmed"]
        rep.sections, rep.figures = summarize_programming_error(
            df, analog_filter(df["cell"], faults, kind))
        secs = rep.sections

        flt = analog_filter(df["cell"], faults, kind)

        def plot():
            return plotting.plot_programming_error(df, secs, out_dir, stem, flt)
    elif kind == "read_fluctuation":
        rep.sections, rep.figures = summarize_read_fluctuation(tables, faults)
        secs = rep.sections

        basis = rep.figures.get("reads", {}).get("basis", "plain")

        def plot():
            return plotting.plot_read_fluctuation(secs, out_dir, stem, basis)
    elif kind in ("relaxation", "imported"):
        reads = tables["reads"]
        rep.sections, rep.figures = summarize_relaxation(
            reads, analog_filter(reads["cell"], faults, kind))
        stats = rep.sections[-1].frame
        if "outliers" in tables and len(tables["outliers"]):
            o = tables["outliers"]
            rep.notes.append(f"{len(o)} outlier rows ({o['cell'].nunique()} cells) kept apart "
                             "in table 'outliers', not in these statistics")

        def plot():
            return plotting.plot_relaxation(stats, out_dir, stem)
    elif kind == "bake_retention":
        reads = tables["reads"]
        rep.sections, rep.figures = summarize_bake(reads, analog_filter(reads["cell"], faults))
        stats = rep.sections[-1].frame
        by_step = rep.sections[0].frame
        basis = rep.figures["basis"]

        def plot():
            paths = plotting.plot_bake(stats, out_dir, stem, basis)
            if by_step["temp_c"].nunique() > 1:
                paths += plotting.plot_bake_temperatures(by_step, out_dir, stem)
            return paths
    elif kind == "ber":
        rep.sections, rep.figures = summarize_ber(tables, faults)
        s = rep.sections[0].frame

        def plot():
            return plotting.plot_ber(s, out_dir, stem)
    elif kind == "fault_map":
        rep.sections, rep.figures = summarize_faults(tables["faults"])
        geometry = plotting.find_geometry(run.plan, run.snapshot)
        df = tables["faults"]

        def plot():
            return plotting.plot_faults(df, geometry, out_dir, stem)
    elif kind == "endurance":
        rep.sections, rep.figures = summarize_endurance(tables["cycles"])
        s = rep.sections[-1].frame

        def plot():
            return plotting.plot_endurance(s, out_dir, stem)
    elif kind == "iv_sweep":
        rep.sections, rep.figures = first.summarize_iv(tables["switching"])
        iv = tables["iv"]

        def plot():
            return first.plot_iv(iv, out_dir, stem)
    elif kind == "forming":
        rep.sections, rep.figures = first.summarize_forming(tables["forming"])
        ft = tables["forming"]

        def plot():
            return first.plot_forming(ft, out_dir, stem)
    elif kind == "gate_calibration":
        rep.sections, rep.figures = first.summarize_gate(tables["gate_fit"], run.meta)
        giv, fit = tables["gate_iv"], rep.figures

        def plot():
            return first.plot_gate(giv, fit, out_dir, stem)
    return plot


def _tables_section(tables: dict[str, pd.DataFrame]) -> Section:
    return Section("tables", pd.DataFrame(
        {"table": list(tables), "rows": [len(t) for t in tables.values()],
         "columns": [", ".join(t.columns) for t in tables.values()]}))


#: Run kinds whose statistics leave out the stuck cells of a fault map in the same store.
_USES_FAULTS = ("ber", "programming_error", "read_fluctuation", "relaxation", "imported",
                "bake_retention")


def fault_table(store: Any) -> pd.DataFrame | None:
    """The ``faults`` table of the store's fault maps (completed runs, later runs win per
    cell), or None without one."""
    frames = [r.table("faults") for r in sorted(store, key=lambda r: r.uid)
              if r.kind == "fault_map" and r.status == "completed" and "faults" in r.tables]
    frames = [f for f in frames if len(f)]
    if not frames:
        return None
    return pd.concat(frames, ignore_index=True).drop_duplicates("cell", keep="last")


def summarize_run(run: Any, out_dir: Path | None = None,
                  faults: pd.DataFrame | None = None) -> RunReport:
    """Summary (and, with ``out_dir``, plots) of one :class:`cimlab.store.Run`. ``faults``:
    a fault map's table (:func:`fault_table`): the stuck cells it flags are left out of the
    statistics (BER: :func:`stuck_cells`; analog runs: :func:`analog_filter`)."""
    rep = RunReport(uid=run.uid, kind=run.kind, status=run.status)
    tables = {t: run.table(t) for t in run.tables}
    stem = f"{run.uid}_{run.kind}"
    plot: Callable[[], list[Path]] | None = None
    kind = run.kind
    needed = {"programming_error": ["programmed"], "read_fluctuation": ["reads"],
              "relaxation": ["reads"], "imported": ["reads"], "bake_retention": ["reads"],
              "ber": ["bits"], "fault_map": ["faults"], "endurance": ["cycles"],
              "iv_sweep": ["iv", "switching"],
              "gate_calibration": ["gate_iv", "gate_fit"],
              "forming": ["forming"]}.get(kind)
    missing = [t for t in (needed or []) if t not in tables or len(tables[t]) == 0]
    if needed is None or missing:
        if missing:
            rep.notes.append(f"no rows yet in table(s) {', '.join(missing)}")
        rep.sections.append(_tables_section(tables))
        return rep
    try:
        plot = _summarize_kind(rep, run, tables, out_dir, stem, faults)
    except KeyError as exc:  # a table without a column of the contract
        rep.sections, rep.figures = [], {}
        rep.notes.append(f"cannot summarize this {kind} run: column {exc} is missing "
                         "(docs/architecture.md section 5 lists the columns)")
        rep.sections.append(_tables_section(tables))
        return rep
    if run.status != "completed":
        rep.notes.append(f"run is {run.status}: figures cover the rows measured so far")
    if out_dir is not None and plot is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        rep.plots = plot()
    return rep


def default_out_dir(store_path: str | Path) -> Path:
    """Where plots go by default: ``<store stem>-report/`` next to the store file."""
    p = Path(store_path)
    return p.parent / f"{p.stem}-report"


def report(store_path: str | Path, out_dir: str | Path | None = None, *,
           uids: Iterable[str] | None = None, plots: bool = True) -> list[RunReport]:
    """Summaries of the runs in a store (all, or ``uids``), with PNG plots in ``out_dir``
    (default :func:`default_out_dir`). Where two or more bake runs are reported, a last
    report of kind :data:`ALL_RUNS_KIND` puts them side by side by temperature and bake time
    (:func:`~cimlab.procedures.report.bake.combine_bake_runs`)."""
    from cimlab.store import Store

    out = None
    if plots:
        out = Path(out_dir) if out_dir is not None else default_out_dir(store_path)
    reports = []
    with Store.open(store_path, "r") as store:
        runs = [store.run(u) for u in uids] if uids else list(store)
        faults = fault_table(store) if any(r.kind in _USES_FAULTS for r in runs) else None
        for run in runs:
            reports.append(summarize_run(run, out, faults))
    combined = combine_bake_runs(reports)  # several bake runs: one table by temperature
    if combined is not None:
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            combined.plots = plotting.plot_bake_temperatures(
                combined.sections[0].frame, out, "all_bake_runs")
        reports.append(combined)
    return reports


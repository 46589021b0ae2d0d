"""Run a whole characterization plan against a station, into a store, resumably.

:func:`run_plan` validates everything before the first pulse (plan keys and bounds when the
plan was loaded; cells against the chip's geometry; every voltage, compliance, width and
oven temperature against the station's limits) and opens the store only after that, so a bad
plan changes nothing on the chip or on disk. Each experiment is one run in the store; an
experiment whose run with the same plan section completed earlier is skipped, an unfinished
one is resumed at its first incomplete step (``Store.begin_run(resume=True)``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cimlab.procedures.characterization import PROCEDURES
from cimlab.procedures.plan import Plan
from cimlab.procedures.progress import duration
from cimlab.procedures.protocols import Bench, RunStore
from cimlab.procedures.run import ProcedureResult, plan_section

log = logging.getLogger(__name__)


@dataclass
class CampaignResult:
    """What a campaign did: one :class:`ProcedureResult` per experiment, plus totals."""

    plan: str
    store: str
    results: list[ProcedureResult] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    host_time_s: float = 0.0
    instrument_time_s: float = 0.0
    #: instrument time [s] recorded in the store per experiment, over every call that ran it
    #: (an experiment resumed or skipped now counts its earlier calls too)
    recorded_instrument_s: dict[str, float] = field(default_factory=dict)

    @property
    def recorded_instrument_time_s(self) -> float:
        """Instrument time [s] the store records for the plan's experiments, all calls."""
        return float(sum(self.recorded_instrument_s.values()))

    @property
    def round_trips(self) -> int:
        return sum(r.round_trips for r in self.results)

    @property
    def cell_operations(self) -> int:
        return sum(r.cell_operations for r in self.results)

    def table(self) -> str:
        """Readable summary: one line per experiment."""
        head = (f"{'experiment':24s} {'kind':18s} {'run':28s} {'steps':>7s} {'round trips':>11s}"
                f" {'cell ops':>10s} {'instr. s':>10s} {'all calls':>10s} {'host s':>8s}")
        lines = [head, "-" * len(head)]
        rec = self.recorded_instrument_s
        for r in self.results:
            steps = f"{r.steps_run}" + (f"+{r.steps_skipped}r" if r.steps_skipped else "")
            lines.append(f"{r.name:24s} {r.kind:18s} {r.run_uid:28s} {steps:>7s} "
                         f"{r.round_trips:11d} {r.cell_operations:10d} "
                         f"{r.instrument_time_s:10.1f} {rec.get(r.name, float('nan')):10.1f} "
                         f"{r.host_time_s:8.2f}")
        for name in self.skipped:
            lines.append(f"{name:24s} {'(completed before: skipped)':47s} {'':7s} {'':11s} "
                         f"{'':10s} {0.0:10.1f} {rec.get(name, float('nan')):10.1f}")
        lines.append("-" * len(head))
        lines.append("instr. s: instrument time of this call; all calls: recorded in the store "
                     "for the experiment over every call that ran it (resumed or skipped)")
        if any(r.steps_skipped for r in self.results):
            lines.append("steps N+Mr: N steps measured now, M steps completed by an earlier, "
                         "interrupted run of the experiment (resumed, not measured again)")
        per_op = (f" ({self.host_time_s / self.cell_operations * 1e6:.2f} µs host time per "
                  "cell operation)" if self.cell_operations else
                  " (nothing left to measure: every step was done before)")
        lines.append(f"total: host {self.host_time_s:.2f} s, instrument "
                     f"{self.instrument_time_s:.1f} s ({duration(self.instrument_time_s)}; "
                     f"all calls {duration(self.recorded_instrument_time_s)}), "
                     f"{self.round_trips} round trips, "
                     f"{self.cell_operations} cell operations{per_op}")
        return "\n".join(lines)


def validate(plan: Plan, station: Bench) -> list[np.ndarray]:
    """Every check that needs the station, before anything is sent: cells within the chip
    (ConfigError) and values within the station's limits (LimitError). Returns the cells of
    each experiment."""
    geometry = tuple(int(x) for x in station.array.geometry)
    cells = plan.resolve_cells(geometry)
    plan.check_limits(station)
    return cells


def _completed_before(store: RunStore, kind: str, section: dict) -> str | None:
    """Uid of a completed run of ``kind`` with this plan section, if the store holds one."""
    want = json.loads(json.dumps(section))
    for run in store:
        if run.kind == kind and run.status == "completed" and run.plan == want:
            return run.uid
    return None


def _resolve_levels(exp: Any, station: Bench, store: RunStore, cells: np.ndarray,
                    plan_name: str) -> Any:
    """``exp`` with relative levels resolved from the chip's measured window (docs/procedures.md,
    :mod:`cimlab.procedures.window`); unchanged when its levels are absolute."""
    levels = getattr(exp, "levels", None)
    if levels is None or not levels.relative:
        return exp
    from cimlab.procedures.verify_config import ProgramVerifyConfig
    from cimlab.procedures.window import measure_window

    cfg = getattr(exp, "verify", None) or ProgramVerifyConfig()
    win = measure_window(station, store, np.asarray(cells)[: levels.window_cells], cfg,
                         plan_name, icc_a=levels.window_icc_a)
    return dataclasses.replace(exp, levels=levels.resolve(win.g_lo_s, win.g_hi_s))


def run_plan(plan: Plan, station: Bench, store: RunStore | str | Path, *, progress: bool = True,
             only: list[str] | None = None) -> CampaignResult:
    """Run ``plan``'s experiments (or the ``only`` ones, by name) on ``station`` into ``store``.

    ``store`` is an open :class:`cimlab.store.Store` or a path; a path is opened (created)
    only after the plan passed every check.
    """
    cells_per_exp = validate(plan, station)
    selected = list(range(len(plan.experiments)))
    if only:
        names = [e.label for e in plan.experiments]
        unknown = [n for n in only if n not in names]
        if unknown:
            from cimlab.errors import ConfigError

            raise ConfigError(plan.source, "experiment.name",
                              "one of " + ", ".join(names), unknown[0])
        selected = [i for i in selected if plan.experiments[i].label in only]
    own_store = not hasattr(store, "begin_run")
    if own_store:
        from cimlab.store import Store

        store = Store.open(Path(store), mode="a")
    result = CampaignResult(plan=plan.header.name, store=str(getattr(store, "path", store)))
    t_host = time.perf_counter()
    t_inst = float(station.clock.now())
    try:
        for i in selected:
            exp = plan.experiments[i]
            seed = plan.seed_of(i)
            exp = _resolve_levels(exp, station, store, cells_per_exp[i], plan.header.name)
            section = plan_section(plan.header.name, exp, cells_per_exp[i])
            before = _completed_before(store, exp.kind, section)
            if before:
                result.skipped.append(exp.label)
                result.recorded_instrument_s[exp.label] = store.run(before).instrument_time_s
                log.info("%s: completed before (run %s): skipped", exp.label, before)
                continue
            proc = PROCEDURES[exp.kind]
            r = proc(station, store, exp, cells_per_exp[i], seed, plan_name=plan.header.name,
                     progress=progress)
            result.results.append(r)
            result.recorded_instrument_s[exp.label] = store.run(r.run_uid).instrument_time_s
    finally:
        result.host_time_s = time.perf_counter() - t_host
        try:
            result.instrument_time_s = float(station.clock.now()) - t_inst
        except Exception:  # the station may be going down after an error
            pass
        log.info("campaign %s: instrument time %s in this call, %s recorded for its "
                 "experiments over all calls; host time %.1f s", plan.header.name,
                 duration(result.instrument_time_s),
                 duration(result.recorded_instrument_time_s), result.host_time_s)
        if own_store:
            store.close()
    return result

"""What the live page shows, read from a store opened read-only: one :class:`RunStatus` per run.

The store is opened for each poll and closed at once (``Store.open(path, "r")``; while a
campaign holds the file for writing it is read without a lock, as of the writer's last flush).
Progress counts the run's committed steps (its step log) against the planned number of steps:
``run.meta["planned_steps"]`` where the procedure recorded it, otherwise, for a bake
(``bake_retention``), the count its plan implies (per temperature: one programming step, one
read before the bake, and one bake plus one read per schedule entry), otherwise unknown.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: A running run with no commit for this long gets a warning [s].
STALE_AFTER_S = 900.0


@dataclass
class RunStatus:
    """Progress of one run (one experiment of a campaign, or an import)."""

    uid: str
    kind: str
    status: str
    experiment: str
    plan: str
    steps_done: int
    steps_planned: int | None
    instrument_time_s: float
    host_time_s: float | None
    rows: dict[str, int]
    last_step: str
    resumes: int
    warnings: list[str] = field(default_factory=list)

    @property
    def fraction(self) -> float | None:
        """Completed fraction of the planned steps (None when the plan is unknown)."""
        if not self.steps_planned:
            return None
        return min(1.0, self.steps_done / self.steps_planned)


@dataclass
class StoreStatus:
    """Everything the page shows about a store at one poll."""

    path: str
    polled_unix: float
    modified_unix: float
    live: bool
    runs: list[RunStatus]
    warnings: list[str]

    @property
    def signature(self) -> tuple:
        """Changes whenever a step commits, a run starts, finishes or resumes."""
        return tuple((r.uid, r.status, r.steps_done, r.resumes) for r in self.runs)

    @property
    def instrument_time_s(self) -> float:
        """Instrument time of all runs [s]."""
        return float(sum(r.instrument_time_s for r in self.runs))

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON form (the page's ``/status.json``)."""
        return {
            "path": self.path, "polled_unix": self.polled_unix,
            "modified_unix": self.modified_unix, "live": self.live,
            "instrument_time_s": self.instrument_time_s, "warnings": self.warnings,
            "runs": [{**r.__dict__, "fraction": r.fraction} for r in self.runs],
        }


def planned_steps(kind: str, plan: Any, meta: dict[str, Any]) -> int | None:
    """Planned number of steps of a run, or None if unknown: ``meta["planned_steps"]``
    where the procedure recorded it, else for ``bake_retention`` the count its plan section
    implies (per temperature: programming, the read before the bake, and a bake and a read
    per schedule entry)."""
    if isinstance(meta.get("planned_steps"), int):
        return int(meta["planned_steps"])
    section = plan.get("section") if isinstance(plan, dict) else None
    if kind == "bake_retention" and isinstance(section, dict):
        temps, schedule = section.get("temps_c"), section.get("schedule_s")
        if isinstance(temps, list) and isinstance(schedule, list):
            return len(temps) * (2 + 2 * len(schedule))
    return None


def run_status(run: Any, now: float) -> RunStatus:
    """The :class:`RunStatus` of a :class:`cimlab.store.Run`."""
    plan = run.plan
    meta = run.meta
    steps = run.steps
    committed = run.committed_rows()
    rows = {t: run.n_rows(t) for t in run.tables}
    warnings = []
    if run.status == "aborted":
        warnings.append("aborted: re-run the same command to resume it")
    for r in run.resumes:
        if r["dropped_rows"]:
            warnings.append(f"resumed after an interruption; {r['dropped_rows']} rows of an "
                            "unfinished step were measured again")
    pending = {t: rows[t] - committed.get(t, 0) for t in rows if rows[t] > committed.get(t, 0)}
    if pending and run.status != "running":
        warnings.append("uncommitted rows in " + ", ".join(f"{t} ({n})" for t, n in
                                                           pending.items()))
    started = run.started_unix
    host = run.duration_s if run.duration_s is not None else now - started
    return RunStatus(
        uid=run.uid, kind=run.kind, status=run.status,
        experiment=str(plan.get("experiment", "")) if isinstance(plan, dict) else "",
        plan=str(plan.get("plan", "")) if isinstance(plan, dict) else "",
        steps_done=len(steps), steps_planned=planned_steps(run.kind, plan, meta),
        instrument_time_s=run.instrument_time_s, host_time_s=host, rows=committed,
        last_step=steps[-1] if steps else "", resumes=len(run.resumes), warnings=warnings,
    )


def read_status(path: str | os.PathLike,
                visit: Callable[[Any, RunStatus], None] | None = None) -> StoreStatus:
    """Poll the store at ``path`` read-only (never written; closed before returning).
    ``visit(run, status)`` is called for each run while the store is open (plots)."""
    from cimlab.store import Store, StoreError

    path = Path(path)
    now = time.time()
    runs: list[RunStatus] = []
    warnings: list[str] = []
    with Store.open(path, "r") as store:
        live = store.live
        for uid in store.uids:
            try:
                run = store.run(uid)
                runs.append(run_status(run, now))
                if visit is not None:
                    visit(run, runs[-1])
            except (StoreError, OSError, KeyError, ValueError) as exc:
                warnings.append(f"run {uid} cannot be read: {exc}")
    modified = path.stat().st_mtime
    for r in runs:
        if r.status == "running" and now - modified > STALE_AFTER_S:
            warnings.append(f"run {r.uid} is running but the store has not changed for "
                            f"{(now - modified) / 60:.0f} min: is the campaign still alive?")
    return StoreStatus(str(path), now, modified, live, runs, warnings)

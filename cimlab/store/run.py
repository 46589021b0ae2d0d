"""One run (a campaign or an import) inside a store: metadata, tables, the step log, resume.

Crash safety (docs/data-format.md, "Crash safety"): rows are appended and flushed as they are
measured; :meth:`Run.complete_step` first flushes the data, then writes a checksummed commit
record holding the step id and the row count of every table, and flushes again. On resume
every table is cut back to the counts of the last valid commit, so the rows of a step that was
interrupted are dropped and measured again: never duplicated, never lost.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from cimlab.store import _json, migrate, space, steplog, table
from cimlab.store.errors import DiskFullError, StoreError
from cimlab.store.table import get_text, set_text

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from cimlab.store.store import Store

#: Run status values.
RUNNING = "running"
COMPLETED = "completed"
ABORTED = "aborted"
STATUSES = (RUNNING, COMPLETED, ABORTED)
_STATUS_BYTES = 16

_TABLES = "tables"
_STEPS = "steps"
_RESUMES = "resumes"
_META_PREFIX = "meta."
#: Scalar datasets of a run group holding JSON text (fixed-length UTF-8 bytes).
JSON_DATASETS = ("plan", "snapshot", "seeds", "versions")
#: What h5py and NumPy raise on a damaged or foreign layout.
_DAMAGE = (KeyError, ValueError, TypeError, IndexError, AttributeError, OSError, RuntimeError)

#: Attributes every run group has.
REQUIRED_ATTRS = ("uid", "kind", "status", "plan_hash", "started_unix", "stopped_unix",
                  "instrument_time_s")


def utc_text(t: float | None) -> str:
    if t is None or not np.isfinite(t):
        return ""
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_json_dataset(g: h5py.Group, name: str, text: str) -> None:
    raw = text.encode("utf-8")
    g.create_dataset(name, data=np.array(raw, dtype=f"S{max(len(raw), 1)}"))


def init_group(
    g: h5py.Group, uid: str, kind: str, plan_hash: str, texts: Mapping[str, str]
) -> None:
    """Write a new run's metadata (the uid attribute last: a group without it is unborn)."""
    for name in JSON_DATASETS:
        write_json_dataset(g, name, texts[name])
    set_text(g.attrs, "kind", kind)
    set_text(g.attrs, "plan_hash", plan_hash)
    set_text(g.attrs, "status", RUNNING, _STATUS_BYTES)
    g.attrs["started_unix"] = time.time()
    g.attrs["stopped_unix"] = np.nan
    g.attrs["instrument_time_s"] = 0.0
    g.attrs["n_cells"] = np.int64(-1)
    steplog.create(g, _STEPS)
    g.create_group(_TABLES)
    set_text(g.attrs, "uid", uid)


class Run:
    """A run group of a :class:`~cimlab.store.Store`. Obtain it from ``store.begin_run`` or
    ``store.run(uid)``; it is valid while the store is open."""

    def __init__(self, store: Store, group: h5py.Group):
        self._store = store
        self._g = group
        self._records: list[steplog.Record] | None = None
        self._records_len = -1
        self._done: set[str] = set()
        try:
            self._validate()
        except StoreError:
            raise
        except _DAMAGE as exc:
            raise StoreError(store.path, group.name, "a readable cimlab run (the file is "
                             "damaged here)", f"{type(exc).__name__}: {str(exc)[:200]}") from None

    def _validate(self) -> None:
        """The layout a run must have (attributes, groups, columns) and a commit log that
        every table still holds: a column shorter than its committed rows means rows were lost
        (a damaged or edited file), never silently shown as a shorter table."""
        store, group = self._store, self._g
        for key in REQUIRED_ATTRS:
            if key not in group.attrs:
                raise StoreError(store.path, f"{group.name}@{key}", "a cimlab run attribute",
                                 "missing")
        for key in ("started_unix", "stopped_unix", "instrument_time_s"):
            value = group.attrs[key]
            if np.ndim(value) != 0 or np.asarray(value).dtype.kind not in "fiu":
                raise StoreError(store.path, f"{group.name}@{key}", "a number",
                                 f"{np.asarray(value).dtype} {np.shape(value)}")
        for sub in (_STEPS, _TABLES):
            if sub not in group:
                raise StoreError(store.path, f"{group.name}/{sub}", "a cimlab run group", "missing")
            if group.get(sub, getclass=True) is not h5py.Group:
                raise StoreError(store.path, f"{group.name}/{sub}", "a cimlab run group",
                                 "a dataset")
        if self.status not in STATUSES:
            raise StoreError(store.path, f"{group.name}@status", f"one of {STATUSES}",
                             self.status)
        for col in steplog.COLUMNS:
            if col not in group[_STEPS]:
                raise StoreError(store.path, f"{group.name}/{_STEPS}/{col}",
                                 "a column of the commit log", "missing")
        committed = self.committed_rows()
        for name in self.tables:
            tg = group[_TABLES][name]
            if not isinstance(tg, h5py.Group) or "columns" not in tg.attrs:
                raise StoreError(store.path, tg.name, "a table group with a columns attribute",
                                 "missing")
            cols = table.columns_of(tg)
            for c in cols:
                if not isinstance(tg.get(c), h5py.Dataset) or tg[c].ndim != 1:
                    raise StoreError(store.path, f"{tg.name}/{c}", "a 1-D column dataset",
                                     "missing or of another shape")
            shortest = min((tg[c].shape[0] for c in cols), default=0)
            if shortest < committed[name]:
                short = min(cols, key=lambda c: tg[c].shape[0])
                raise StoreError(store.path, f"{tg.name}/{short}",
                                 f"the {committed[name]} rows the commit log records (rows were "
                                 "lost: the file was damaged or edited)",
                                 f"{shortest} rows")


    # ---------------------------------------------------------------- identity & metadata
    def _text(self, key: str) -> str:
        return get_text(self._g.attrs[key])

    @property
    def uid(self) -> str:
        return self._text("uid")

    @property
    def kind(self) -> str:
        return self._text("kind")

    @property
    def status(self) -> str:
        return self._text("status")

    @property
    def plan_hash(self) -> str:
        return self._text("plan_hash")

    def _json(self, name: str) -> Any:
        if name not in self._g:
            raise StoreError(self._store.path, f"{self._g.name}/{name}", "JSON text", "missing")
        try:
            return json.loads(get_text(self._g[name][()]))
        except (ValueError, UnicodeDecodeError) as exc:
            raise StoreError(self._store.path, f"{self._g.name}/{name}", "JSON text",
                             str(exc)) from None

    @property
    def plan(self) -> Any:
        """The campaign plan the run was started with (parsed JSON)."""
        return self._json("plan")

    @property
    def snapshot(self) -> dict:
        """Station snapshot taken when the run began (IDNs, settings, limits, station file)."""
        return self._json("snapshot")

    @property
    def seeds(self) -> dict:
        """Seeds of every random generator the run uses (reuse them when resuming)."""
        return self._json("seeds")

    @property
    def versions(self) -> dict:
        """Versions of cimlab, Python, HDF5 and the dependencies that began the run."""
        return self._json("versions")

    @property
    def started_unix(self) -> float:
        return float(self._g.attrs["started_unix"])

    @property
    def stopped_unix(self) -> float | None:
        t = float(self._g.attrs["stopped_unix"])
        return t if np.isfinite(t) else None

    @property
    def duration_s(self) -> float | None:
        """Host wall time from start to stop [s] (None while running)."""
        stop = self.stopped_unix
        return None if stop is None else stop - self.started_unix

    @property
    def instrument_time_s(self) -> float:
        """Instrument time charged to the run [s] (virtual clock on the emulated bench)."""
        return float(self._g.attrs["instrument_time_s"])

    @property
    def resumes(self) -> list[dict]:
        """One entry per resume: ``{"at_unix", "dropped_rows"}`` (rows of unfinished steps)."""
        if _RESUMES not in self._g:
            return []
        data = table.read(self._g[_RESUMES])
        return [{"at_unix": float(a), "dropped_rows": int(d)}
                for a, d in zip(data["at_unix"], data["dropped_rows"], strict=True)]

    @property
    def meta(self) -> dict[str, Any]:
        """Free-form metadata set with :meth:`set_meta`."""
        return {
            k[len(_META_PREFIX):]: json.loads(get_text(v))
            for k, v in self._g.attrs.items()
            if k.startswith(_META_PREFIX)
        }

    @property
    def attrs(self) -> dict[str, Any]:
        """The HDF5 attributes of the run group (a read-only copy, text decoded)."""
        out = {}
        for k, v in self._g.attrs.items():
            is_text = isinstance(v, (bytes, np.bytes_))
            if is_text or (isinstance(v, np.ndarray) and v.dtype.kind == "S"):
                out[k] = get_text(v)
            else:
                out[k] = v.item() if isinstance(v, np.generic) else v
        return out

    @property
    def metadata(self) -> dict[str, Any]:
        """Everything known about the run, JSON fields parsed."""
        return {
            "uid": self.uid, "kind": self.kind, "status": self.status,
            "plan": self.plan, "plan_hash": self.plan_hash, "snapshot": self.snapshot,
            "seeds": self.seeds, "versions": self.versions,
            "started_utc": utc_text(self.started_unix), "stopped_utc": utc_text(self.stopped_unix),
            "duration_s": self.duration_s, "instrument_time_s": self.instrument_time_s,
            "resumes": self.resumes, "meta": self.meta,
            "completed_steps": self.steps, "tables": {t: self.n_rows(t) for t in self.tables},
        }

    def __repr__(self) -> str:
        return f"Run(uid={self.uid!r}, kind={self.kind!r}, status={self.status!r})"

    # ---------------------------------------------------------------- tables
    @property
    def tables(self) -> list[str]:
        """Names of the run's tables."""
        return sorted(self._g[_TABLES])

    def has_table(self, name: str) -> bool:
        return name in self._g[_TABLES]

    def n_rows(self, name: str) -> int:
        """Rows in table ``name`` (0 if the table does not exist yet)."""
        if name not in self._g[_TABLES]:
            return 0
        return table.length(self._g[_TABLES][name])

    def columns(self, name: str) -> list[str]:
        """Column names of table ``name`` in the order of its first append (current names,
        also for a format-1 store opened read-only: cimlab.store.migrate)."""
        return migrate.current_columns(table.columns_of(self._tg(name)),
                                       self._store.format_version)

    def _tg(self, name: str) -> h5py.Group:
        if name not in self._g[_TABLES]:
            raise StoreError(
                self._store.path, f"{self._g.name}/{_TABLES}/{name}",
                f"a table of run {self.uid} (it has: {', '.join(self.tables) or 'none'})",
                "missing",
            )
        return self._g[_TABLES][name]

    def table(self, name: str, *, committed_only: bool = False,
              categorical: bool = False) -> pd.DataFrame:
        """Table ``name`` as a tidy pandas DataFrame (one row per cell per measurement).

        String columns come back as ``str`` (``categorical=True``: pandas Categorical).
        ``committed_only=True`` leaves out rows of a step that was not completed yet.
        """
        import pandas as pd

        tg = self._tg(name)
        n = self.committed_rows().get(name, 0) if committed_only else None
        data = table.read(tg, n, categorical=categorical)
        if self._store.format_version < 2:  # a format-1 store opened read-only
            data = dict(zip(migrate.current_columns(list(data), self._store.format_version),
                            data.values(), strict=True))
        return pd.DataFrame(data)

    # ---------------------------------------------------------------- step log
    def _log(self) -> list[steplog.Record]:
        # cached; re-read when another Run object (or process) has committed since
        n_on_disk = self._g[_STEPS]["crc"].shape[0]
        if self._records is None or n_on_disk != self._records_len:
            self._records = steplog.read(self._g[_STEPS])
            self._records_len = n_on_disk
            self._done = {r.step for r in self._records}
        return self._records

    @property
    def steps(self) -> list[str]:
        """Completed step ids in the order they were completed."""
        return [r.step for r in self._log() if not r.step.startswith("_")]

    @property
    def completed_steps(self) -> set[str]:
        """Ids of the steps completed (committed) so far."""
        return set(self.steps)

    def _index(self, name: str) -> int | None:
        v = self._g[_TABLES][name].attrs.get("index")
        return None if v is None else int(v)

    def committed_rows(self) -> dict[str, int]:
        """Committed row count per table at the last completed step (or at finish)."""
        log = self._log()
        rows = log[-1].rows if log else np.zeros(steplog.MAX_TABLES, np.int64)
        out = {}
        for t in self.tables:
            k = self._index(t)
            out[t] = int(rows[k]) if k is not None else 0
        return out

    # ---------------------------------------------------------------- writing
    def _writable(self) -> None:
        if not self._store.writable:
            raise StoreError(self._store.path, self._g.name,
                             "a store opened for writing (mode 'a')", "read-only")
        if self.status != RUNNING:
            raise StoreError(self._store.path, f"{self._g.name}@status",
                             "a running run (this one is finished; begin a new run)", self.status)

    def append(self, name: str, columns: Mapping[str, Any]) -> int:
        """Append rows to table ``name`` (created on first append) and flush. Returns its length.

        ``columns`` maps column names to equal-length 1-D arrays (scalars are broadcast). The
        columns of a table are fixed by its first append; see docs/architecture.md section 5
        for the tidy tables each run kind writes.
        """
        self._writable()
        tables = self._g[_TABLES]
        if name not in tables and len(tables) >= steplog.MAX_TABLES:
            raise StoreError(self._store.path, f"{self._g.name}/{_TABLES}",
                             f"at most {steplog.MAX_TABLES} tables per run", name)
        try:
            n = table.append(tables, name, columns, check_space=self._ensure_space)
            if self._index(name) is None:
                self._assign_index(name)
            self._store._flush()
        except OSError as exc:
            if space.is_disk_full(exc):  # the disk filled up under us: the same clean stop
                self._disk_full(0)
            raise
        return n

    def _ensure_space(self, estimate: int) -> None:
        """Stop with :class:`DiskFullError` before writing when ``estimate`` bytes (with the
        margin of :func:`cimlab.store.space.needed_bytes`) do not fit on the store's disk."""
        need = space.needed_bytes(estimate)
        if space.free_bytes(self._store.path) < need:
            self._disk_full(need)

    def _disk_full(self, need: int) -> None:
        steps = self.steps
        free = space.free_bytes(self._store.path)
        raise DiskFullError(self._store.path, len(steps) + 1, steps[-1] if steps else None,
                            free, max(need, space.RESERVE_BYTES))

    def _assign_index(self, name: str) -> None:
        used = [self._index(t) for t in self.tables]
        used = [u for u in used if u is not None]
        self._g[_TABLES][name].attrs["index"] = np.int64(max(used, default=-1) + 1)

    def add_instrument_time(self, seconds: float) -> float:
        """Charge ``seconds`` of instrument time to the run; returns the total [s].

        Committed with the next step: time charged after the last completed step is taken back
        on resume, as that step is measured again.
        """
        self._writable()
        seconds = float(seconds)
        if not np.isfinite(seconds) or seconds < 0:
            raise StoreError(self._store.path, "instrument time", "a finite time >= 0 s", seconds)
        total = self.instrument_time_s + seconds
        self._g.attrs.modify("instrument_time_s", total)
        return total

    def _commit(self, step: str) -> None:
        rows = np.zeros(steplog.MAX_TABLES, np.int64)
        for t in self.tables:
            rows[self._index(t)] = self.n_rows(t)
        rec = steplog.Record(step, rows, time.time(), self.instrument_time_s)
        log = self._log()
        try:
            self._store._flush()  # data first ...
            steplog.append(self._g[_STEPS], rec, len(log))  # ... then the commit record
            self._store._flush(durable=True)
        except OSError as exc:
            if space.is_disk_full(exc):
                self._disk_full(0)
            raise
        log.append(rec)
        self._done.add(step)
        self._records_len = self._g[_STEPS]["crc"].shape[0]

    def complete_step(self, step_id: str) -> None:
        """Mark step ``step_id`` done: its rows are committed and will not be measured again."""
        self._writable()
        step_id = str(step_id)
        raw = step_id.encode("utf-8")
        if not raw or step_id.startswith("_") or len(raw) > steplog.STEP_BYTES:
            raise StoreError(self._store.path, "step_id",
                             f"a non-empty id of at most {steplog.STEP_BYTES} bytes, not starting "
                             "with '_'", step_id)
        self._log()
        if step_id in self._done:
            raise StoreError(self._store.path, f"{self._g.name}/{_STEPS}",
                             "a step not completed before (skip steps in run.completed_steps)",
                             step_id)
        self._commit(step_id)

    def set_meta(self, key: str, value: Any) -> None:
        """Store a small JSON-able value (a summary, a note) with the run."""
        if not self._store.writable:
            raise StoreError(self._store.path, self._g.name, "a store opened for writing",
                             "read-only")
        text = _json.dumps(value)
        if len(text.encode("utf-8")) > 60_000:
            raise StoreError(self._store.path, f"{self._g.name}@{_META_PREFIX}{key}",
                             "metadata under 60 kB (write large data as a table)",
                             f"{len(text)} B")
        set_text(self._g.attrs, _META_PREFIX + key, text)
        self._store._flush()

    def finish(self, status: str = COMPLETED) -> None:
        """Close the run with ``status``.

        "completed" commits every row. "aborted" (an exception, Ctrl-C) commits nothing more:
        rows of a step that was not completed stay readable (``table()``) but are not
        committed, so a resume cuts them and measures that step again, exactly as after a
        killed process (no duplicates).
        """
        if status not in (COMPLETED, ABORTED):
            raise StoreError(self._store.path, "status", "'completed' or 'aborted'", status)
        self._writable()
        if status == COMPLETED:
            self._commit(f"_finish{len(self._log())}")
        self._g.attrs.modify("n_cells", np.int64(self._count_cells()))
        self._g.attrs.modify("stopped_unix", time.time())
        set_text(self._g.attrs, "status", status, _STATUS_BYTES)
        self._store._flush(durable=True)

    def _count_cells(self) -> int:
        cells: list[np.ndarray] = []
        for t in self.tables:
            tg = self._g[_TABLES][t]
            if "cell" in table.columns_of(tg):
                cells.append(np.unique(tg["cell"][: table.length(tg)]))
        return int(np.unique(np.concatenate(cells)).size) if cells else 0

    @property
    def n_cells(self) -> int:
        """Distinct cells measured (from the ``cell`` columns)."""
        n = int(self._g.attrs.get("n_cells", -1))
        if n >= 0 and self.status != RUNNING:
            return n
        return self._count_cells()

    def _resume(self) -> None:
        """Cut every table back to the last valid commit and mark the run running again."""
        log = self._log()
        steplog.truncate(self._g[_STEPS], len(log))  # drop a torn commit record
        committed = self.committed_rows()
        dropped = 0
        for t in self.tables:
            tg = self._g[_TABLES][t]
            keep = committed[t]
            longest = max(tg[c].shape[0] for c in table.columns_of(tg))
            if longest > keep:
                dropped += self.n_rows(t) - keep
                table.truncate(tg, keep)
            if self._index(t) is None:
                self._assign_index(t)
        self._g.attrs.modify("instrument_time_s", log[-1].instrument_time_s if log else 0.0)
        table.append(self._g, _RESUMES, {"at_unix": [time.time()], "dropped_rows": [dropped]})
        self._g.attrs.modify("stopped_unix", np.nan)
        set_text(self._g.attrs, "status", RUNNING, _STATUS_BYTES)
        self._store._flush(durable=True)

    # ---------------------------------------------------------------- context manager
    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._store.writable and self.status == RUNNING:
            self.finish(COMPLETED if exc_type is None else ABORTED)


def versions() -> dict[str, str]:
    """Versions of the software that writes a run."""
    import platform
    from importlib import metadata

    import cimlab

    out = {"cimlab": cimlab.__version__, "python": platform.python_version(),
           "hdf5": h5py.version.hdf5_version, "platform": platform.platform()}
    for dist in ("numpy", "scipy", "h5py", "pandas", "pyvisa", "pyvisa-py", "pymeasure",
                 "matplotlib", "torch"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def new_uid() -> str:
    """Sortable unique id: UTC start time plus 6 random hex digits."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{os.urandom(3).hex()}"

"""The HDF5 run store: one file per campaign, one group per run (h5py).

File layout (full description in docs/data-format.md)::

    /                     attrs: format="cimlab-store", format_version, created_utc, cimlab_version
    /runs/<uid>/          attrs: uid, kind, status, plan_hash, started_unix, stopped_unix,
                                 instrument_time_s, n_cells, resumes, meta.<key>
        plan, snapshot, seeds, versions     scalar UTF-8 JSON text
        tables/<name>/<column>              1-D extendable chunked datasets (see table.py)
        steps/{step, rows, at_unix, instrument_time_s}   the commit log

The file is opened with HDF5's default (earliest) format bounds, so a process killed while it
holds the file open leaves no "file is open for write" status flag and the file opens again
without h5clear; locks (flock) are released by the OS. Data and commit records are flushed in
that order (see run.py); see docs/data-format.md for what a SIGKILL can and cannot leave.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

import cimlab
from cimlab.store import _json
from cimlab.store.errors import StoreError
from cimlab.store.run import Run, init_group, new_uid, utc_text, versions
from cimlab.store.table import get_text, set_text

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

FORMAT = "cimlab-store"
#: Layout version written by this cimlab (2: conductance columns ``*_siemens``; format-1
#: stores are upgraded when opened for writing, read as they are otherwise: store/migrate.py).
FORMAT_VERSION = 2
_RUNS = "runs"
_MODES = {"r": "r", "a": "a", "r+": "r+", "x": "x"}


class Store:
    """An HDF5 campaign store. Open with :meth:`Store.open`; use as a context manager."""

    def __init__(self, path: Path, f: h5py.File, mode: str, live: bool = False):
        self.path = path
        self._f = f
        self.mode = mode
        #: True when opened read-only without a lock because a writer holds the file.
        self.live = live
        #: Layout version of the file as opened (:data:`FORMAT_VERSION` once upgraded).
        self.format_version = FORMAT_VERSION

    # ---------------------------------------------------------------- opening
    @classmethod
    def open(cls, path: str | os.PathLike, mode: str = "a") -> Store:
        """Open (mode "a": create if missing) a store.

        Modes: "r" read-only, "r+" read/write (must exist), "a" read/write (created if
        missing), "x" create (must not exist). A file that is not a readable cimlab store
        raises :class:`StoreError` naming the file and what is wrong, and is left untouched.
        With mode "r", a store that another process holds open for writing is opened without
        a lock (``store.live`` is True): what it shows may lag the writer by one flush.
        """
        path = Path(path)
        if mode not in _MODES:
            raise StoreError(path, "mode", "'r', 'r+', 'a' or 'x' (a store is never truncated)",
                             mode)
        if path.is_dir():
            raise StoreError(path, "path", "a store file (e.g. data/chip01.h5), not a directory",
                             "a directory")
        exists = path.exists()
        if mode in ("r", "r+") and not exists:
            raise StoreError(path, "path", "an existing store file (run a campaign or "
                             "'cimlab import' to create one)", "no such file")
        if mode == "x" and exists:
            raise StoreError(path, "path", "a path where no file exists yet (mode 'x')",
                             "file exists")
        if exists:
            cls._check_file(path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
        live = False
        try:
            f = h5py.File(path, "r" if mode == "r" else ("a" if mode == "a" else mode))
        except OSError as exc:
            text = str(exc).lower()
            locked = isinstance(exc, BlockingIOError) or "unable to lock" in text or (
                "temporarily unavailable" in text)
            if not locked and not exists:
                raise StoreError(path, "file", "a place where a new store can be written "
                                 "(choose another --out)", _reason(exc)) from None
            if not locked:
                raise StoreError(path, "file", "a readable HDF5 store", _reason(exc)) from None
            if mode != "r":
                raise StoreError(path, "lock", "a store no other process has open (another "
                                 "process is writing a run or reading it: wait for it, or "
                                 "open read-only)", "file is locked") from None
            f, live = cls._open_unlocked(path), True
        store = cls(path, f, mode, live)
        try:
            store._init_or_check(created=not exists)
        except BaseException:
            f.close()
            raise
        return store

    @staticmethod
    def _open_unlocked(path: Path) -> h5py.File:
        try:
            return h5py.File(path, "r", locking=False)
        except OSError as exc:
            raise StoreError(path, "file", "a readable HDF5 store", _reason(exc)) from None

    @staticmethod
    def _check_file(path: Path) -> None:
        size = path.stat().st_size
        if size == 0:
            raise StoreError(path, "file", "an HDF5 store (the file is empty: was it created by "
                             "something else, or cut off?)", "0 bytes")
        if not h5py.is_hdf5(path):
            raise StoreError(path, "file", "an HDF5 file (signature \\x89HDF\\r\\n\\x1a\\n)",
                             "no HDF5 signature: not a store, or damaged")

    def _init_or_check(self, created: bool) -> None:
        f = self._f
        if created or (self.writable and len(f.attrs) == 0 and len(f) == 0):
            set_text(f.attrs, "format", FORMAT)
            f.attrs["format_version"] = FORMAT_VERSION
            set_text(f.attrs, "created_utc", utc_text(time.time()))
            set_text(f.attrs, "cimlab_version", cimlab.__version__)
            f.require_group(_RUNS)
            self._flush(durable=True)
            self.format_version = FORMAT_VERSION
            return
        fmt = get_text(f.attrs["format"]) if "format" in f.attrs else None
        if fmt != FORMAT:
            raise StoreError(self.path, "/@format", f"'{FORMAT}' (an HDF5 file written by "
                             "cimlab.store)", fmt)
        raw = f.attrs.get("format_version", None)
        version = _as_int(raw)
        if version is None or version > FORMAT_VERSION or version < 1:
            raise StoreError(self.path, "/@format_version",
                             f"an integer in 1..{FORMAT_VERSION} (upgrade cimlab to read newer "
                             "stores)", raw if version is None else version)
        if _RUNS not in f:
            raise StoreError(self.path, f"/{_RUNS}", "the group of runs", "missing")
        if f.get(_RUNS, getclass=True) is not h5py.Group:
            raise StoreError(self.path, f"/{_RUNS}", "the group of runs",
                             "a dataset: not a cimlab store layout")
        self.format_version = version
        if version < FORMAT_VERSION and self.writable:
            from cimlab.store import migrate

            migrate.upgrade(f, _RUNS)
            f.attrs["format_version"] = FORMAT_VERSION
            self._flush(durable=True)
            self.format_version = FORMAT_VERSION

    @property
    def writable(self) -> bool:
        return self.mode != "r"

    def _flush(self, durable: bool = False) -> None:
        """Flush HDF5 buffers to the OS (survives a killed process); ``durable``: also fsync
        (survives a power cut)."""
        self._f.flush()
        if durable:
            try:
                os.fsync(self._f.id.get_vfd_handle())
            except (OSError, ValueError, TypeError):  # pragma: no cover - driver without fd
                pass

    def close(self) -> None:
        if self._f.id.valid:
            self._f.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({str(self.path)!r}, mode={self.mode!r})"

    # ---------------------------------------------------------------- runs
    def __iter__(self) -> Iterator[Run]:
        for uid in self.uids:
            yield Run(self, self._f[_RUNS][uid])

    def __len__(self) -> int:
        return len(self.uids)

    @property
    def uids(self) -> list[str]:
        """Uids of the runs, oldest first: by start time, then uid (a uid holds the start time
        to the second only, then a random suffix). A group a killed begin_run left without its
        uid attribute, written last, is not a run and is skipped."""
        runs = self._f[_RUNS]
        try:
            for u in runs:
                if runs.get(u, getclass=True) is not h5py.Group:
                    raise StoreError(self.path, f"/{_RUNS}/{u}",
                                     "a run group (only run groups live under /runs)",
                                     "a dataset: not a cimlab store layout")
            return sorted((u for u in runs if "uid" in runs[u].attrs),
                          key=lambda u: (_started(runs[u]), u))
        except StoreError:
            raise
        except DAMAGE as exc:
            raise StoreError(self.path, f"/{_RUNS}", "a readable list of runs (the file is "
                             "damaged here)", str(exc)[:200]) from None

    def run(self, uid: str) -> Run:
        """The run with this uid (or a unique prefix of it, or "last" for the newest)."""
        uids = self.uids
        if uid == "last" and uids:
            return Run(self, self._f[_RUNS][uids[-1]])
        if uid in uids:
            return Run(self, self._f[_RUNS][uid])
        matches = [u for u in uids if u.startswith(uid)] if uid else []
        if len(matches) == 1:
            return Run(self, self._f[_RUNS][matches[0]])
        expected = "a run uid or unique prefix (list them with 'cimlab runs FILE')"
        why = "ambiguous" if matches else "no such run"
        got = f"{uid!r} ({why}; runs: {', '.join(uids) or 'none'})"
        raise StoreError(self.path, "run", expected, got)

    def runs(self) -> pd.DataFrame:
        """One row per run: uid, kind, status, cells, started, stopped, duration_s,
        instrument_time_s, steps, rows (per table), resumes."""
        import pandas as pd

        rows = []
        runs = self._f[_RUNS]
        for uid in self.uids:
            try:
                r = Run(self, runs[uid])
                rows.append(self._row(r))
            except (StoreError, *DAMAGE) as exc:
                rows.append({"uid": uid, "kind": "?", "status": f"damaged: {exc}"})
        cols = ["uid", "kind", "status", "cells", "started", "stopped", "duration_s",
                "instrument_time_s", "steps", "rows", "resumes"]
        return pd.DataFrame(rows, columns=cols)

    @staticmethod
    def _row(r: Run) -> dict[str, Any]:
        return {
            "uid": r.uid, "kind": r.kind, "status": r.status, "cells": r.n_cells,
            "started": utc_text(r.started_unix), "stopped": utc_text(r.stopped_unix),
            "duration_s": r.duration_s if r.duration_s is not None else np.nan,
            "instrument_time_s": r.instrument_time_s, "steps": len(r.steps),
            "rows": {t: r.n_rows(t) for t in r.tables}, "resumes": len(r.resumes),
        }

    def find_unfinished(self, kind: str, plan: Mapping[str, Any] | Any) -> Run | None:
        """The newest run of ``kind`` with the same plan (hash) that is running or aborted."""
        h = _json.digest(plan)
        for uid in reversed(self.uids):
            r = Run(self, self._f[_RUNS][uid])
            if r.kind == kind and r.plan_hash == h and r.status != "completed":
                return r
        return None

    def begin_run(
        self,
        kind: str,
        plan: Mapping[str, Any] | Any,
        snapshot: Mapping[str, Any] | None = None,
        seeds: Mapping[str, int] | None = None,
        resume: bool = True,
    ) -> Run:
        """Start a run of ``kind`` with ``plan`` (or, with ``resume``, continue the newest
        unfinished run of the same kind and plan: its tables are cut back to the last completed
        step, whose rows are kept; skip the steps in ``run.completed_steps``; use
        ``run.seeds``, the seeds it started with)."""
        if not self.writable:
            raise StoreError(self.path, "mode", "a store opened for writing ('a') to begin a run",
                             self.mode)
        if not isinstance(kind, str) or not kind or "/" in kind:
            raise StoreError(self.path, "kind", "a run kind such as 'read_fluctuation'", kind)
        try:
            plan_text = _json.dumps(plan)
            snap_text = _json.dumps(snapshot if snapshot is not None else {})
            seeds_text = _json.dumps(seeds if seeds is not None else {})
        except TypeError as exc:
            raise StoreError(self.path, "plan/snapshot/seeds", "JSON-serialisable values",
                             str(exc)) from None
        if resume:
            found = self.find_unfinished(kind, plan)
            if found is not None:
                found._resume()
                return found
        runs = self._f[_RUNS]
        for unborn in [u for u in runs if "uid" not in runs[u].attrs]:
            del runs[unborn]  # left by a begin_run that was killed
        uid = new_uid()
        while uid in runs:
            uid = new_uid()
        g = runs.create_group(uid)
        texts = {"plan": plan_text, "snapshot": snap_text, "seeds": seeds_text,
                 "versions": _json.dumps(versions())}
        init_group(g, uid, kind, _json.digest(plan), texts)
        self._flush(durable=True)
        return Run(self, g)


def _as_int(value: Any) -> int | None:
    """An integer attribute value, or None for anything else (text, float, array)."""
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value[()]
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    return None


#: What h5py and NumPy raise on a damaged or foreign layout (a group where a dataset is
#: expected, a missing member, an attribute of the wrong type or shape, unreadable bytes).
DAMAGE = (KeyError, ValueError, TypeError, IndexError, AttributeError, OSError, RuntimeError)


def _started(g: h5py.Group) -> float:
    """Start time of a run group [s since 1970] for ordering (damaged: +inf, listed last)."""
    try:
        t = float(g.attrs["started_unix"])
    except (KeyError, TypeError, ValueError, OSError):
        return float("inf")
    return t if np.isfinite(t) else float("inf")


def _reason(exc: OSError) -> str:
    text = str(exc)
    low = text.lower()
    if "truncated" in low:
        return f"the file is truncated (shorter than its HDF5 superblock says): {text}"
    if "signature" in low:
        return f"no HDF5 signature found: {text}"
    return text

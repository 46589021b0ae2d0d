"""The commit log of a run: one record per completed step (and one per finish).

Layout (group ``steps`` of a run)::

    step               S128   step id (UTF-8)
    rows               int64 (n, MAX_TABLES): committed rows of table k (table attr "index")
    at_unix            float64  host time of the commit [s since epoch]
    instrument_time_s  float64  instrument time charged to the run at the commit [s]
    crc                uint32   CRC-32 of the record

A record is valid when its checksum matches; the log ends at the first invalid or short
record. So a commit that a killed process left half-written (one column longer than another,
an extent written before its data) is simply not a commit, and the step is measured again.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import h5py
import numpy as np

#: Most tables a run can have (width of the committed-rows record).
MAX_TABLES = 32
#: Longest step id [bytes of UTF-8].
STEP_BYTES = 128
#: Datasets of the commit log.
COLUMNS = ("step", "rows", "at_unix", "instrument_time_s", "crc")
_COLS = COLUMNS


@dataclass
class Record:
    step: str
    rows: np.ndarray  # int64 (MAX_TABLES,)
    at_unix: float
    instrument_time_s: float


def _crc(step: bytes, rows: np.ndarray, at_unix: float, itime: float) -> int:
    payload = step + rows.astype("<i8").tobytes() + np.array([at_unix, itime], "<f8").tobytes()
    return zlib.crc32(payload) & 0xFFFFFFFF


def create(group: h5py.Group, name: str = "steps") -> h5py.Group:
    g = group.create_group(name)
    g.create_dataset("step", (0,), maxshape=(None,), chunks=(256,), dtype=f"S{STEP_BYTES}")
    g.create_dataset("rows", (0, MAX_TABLES), maxshape=(None, MAX_TABLES),
                     chunks=(64, MAX_TABLES), dtype=np.int64)
    for col in ("at_unix", "instrument_time_s"):
        g.create_dataset(col, (0,), maxshape=(None,), chunks=(256,), dtype=np.float64)
    g.create_dataset("crc", (0,), maxshape=(None,), chunks=(256,), dtype=np.uint32)
    return g


def read(g: h5py.Group) -> list[Record]:
    """The valid records, in commit order."""
    n = min(g[c].shape[0] for c in _COLS)
    if n == 0:
        return []
    steps = g["step"][:n]
    rows = g["rows"][:n]
    at = g["at_unix"][:n]
    itime = g["instrument_time_s"][:n]
    crc = g["crc"][:n]
    out = []
    for i in range(n):
        raw = bytes(steps[i])
        if not raw or _crc(raw, rows[i], at[i], itime[i]) != int(crc[i]):
            break
        out.append(Record(raw.decode("utf-8"), rows[i].copy(), float(at[i]), float(itime[i])))
    return out


def append(g: h5py.Group, rec: Record, n_valid: int) -> None:
    """Write ``rec`` after the first ``n_valid`` records (overwriting a torn tail)."""
    raw = rec.step.encode("utf-8")
    crc = _crc(raw, rec.rows, rec.at_unix, rec.instrument_time_s)
    values = {"step": np.array([raw], dtype=f"S{STEP_BYTES}"), "rows": rec.rows[None, :],
              "at_unix": [rec.at_unix], "instrument_time_s": [rec.instrument_time_s],
              "crc": np.array([crc], np.uint32)}
    for col in _COLS:  # the checksum goes last
        ds = g[col]
        ds.resize(n_valid + 1, axis=0)
        ds[n_valid] = values[col][0]


def truncate(g: h5py.Group, n: int) -> None:
    for col in _COLS:
        if g[col].shape[0] > n:
            g[col].resize(n, axis=0)

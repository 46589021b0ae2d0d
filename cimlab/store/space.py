"""Free-space checks: a store stops cleanly before the disk is full, never inside HDF5.

HDF5 has no good answer to ENOSPC: a write that fails half way can leave chunk allocations
without data or, in the worst case, crash the library. So a run checks the free space of the
store's file system before every append (:func:`ensure_space`) and stops with
:class:`~cimlab.store.errors.DiskFullError` when the rows would not fit with a margin; an
ENOSPC that still comes through (another process filled the disk meanwhile) is turned into the
same error (:func:`is_disk_full`). Nothing of the step being written is committed, so a re-run
after freeing space resumes at that step (docs/data-format.md, "Crash safety").
"""

from __future__ import annotations

import errno
import math
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

#: Kept free on the store's file system [bytes]: the commit record, HDF5 metadata and the
#: "aborted" mark of the run must always fit after the last append.
RESERVE_BYTES = 1 << 20
#: Safety factor on the estimated size of an append (HDF5 metadata, B-tree nodes, a partly
#: filled chunk rewritten).
SIZE_FACTOR = 2.0


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer may still use on the file system holding ``path``."""
    st = os.statvfs(path if path.exists() else path.parent)
    return int(st.f_bavail) * int(st.f_frsize)


def append_bytes(n_rows: int, n_existing: int, itemsizes: Mapping[str, int],
                 chunk_rows: int) -> int:
    """Bytes the chunks newly allocated by appending ``n_rows`` rows after ``n_existing`` take
    (one chunk of ``chunk_rows`` elements per column at a time)."""
    new_chunks = math.ceil((n_existing + n_rows) / chunk_rows) - math.ceil(n_existing / chunk_rows)
    return int(sum(new_chunks * chunk_rows * size for size in itemsizes.values()))


def needed_bytes(estimate: int) -> int:
    """Free space an append of ``estimate`` bytes requires, margin included."""
    return int(SIZE_FACTOR * estimate) + RESERVE_BYTES


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` is an out-of-space error (ENOSPC/EDQUOT, as OSError or HDF5 text)."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(exc)
    return "No space left" in text or "errno = 28" in text or "Disk quota" in text


def itemsize_of(values: np.ndarray) -> int:
    """Bytes per stored element of a column (labels are stored as int32 codes)."""
    return 4 if values.dtype == object else int(values.dtype.itemsize)

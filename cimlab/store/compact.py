"""Compress a finished store into a smaller copy, without giving up crash safety.

A store that is being written keeps its table columns uncompressed on purpose: an append
rewrites the partly filled last chunk *in place*, so a killed writer never leaves the chunk index
pointing at a half-written compressed chunk (docs/data-format.md, "Crash safety"). Once every
run has ended, nothing appends to those columns again, and they can be compressed:
:func:`compact` writes a copy whose table columns use HDF5's deflate filter with byte shuffle
(readable by any HDF5 reader, h5py, h5netcdf and netCDF-C included), compares every dataset and
attribute of the copy with the original, ``fsync``s it and then renames it over the original
(or writes it to ``out``). A kill at any point leaves the original store as it was (at worst a
``*.compact-tmp`` file next to it).

Runs that may still append (status ``running`` or ``aborted``: resumable) make :func:`compact`
refuse, naming the run; new runs added to a compacted store get uncompressed columns as usual.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from cimlab.store import space
from cimlab.store.errors import StoreError
from cimlab.store.run import COMPLETED
from cimlab.store.store import Store

#: Deflate level of compacted columns (1..9), with byte shuffle: the techC store 5.1x smaller,
#: a 4-million-row BER table 6.4x, read back as fast as uncompressed (benchmarks/store.py).
DEFLATE_LEVEL = 4

_TMP_SUFFIX = ".compact-tmp"


@dataclass(frozen=True)
class CompactResult:
    """What :func:`compact` did: sizes in bytes, the file written and the columns compressed."""

    source: Path
    written: Path
    bytes_before: int
    bytes_after: int
    columns_compressed: int

    @property
    def ratio(self) -> float:
        """Size before / size after."""
        return self.bytes_before / max(self.bytes_after, 1)


def _is_column(ds: h5py.Dataset) -> bool:
    """A table column or category list: 1-D, chunked, extendable (see cimlab.store.table)."""
    return ds.ndim == 1 and ds.chunks is not None and ds.maxshape == (None,) and (
        "/tables/" in ds.name) and ds.dtype.kind in "iufbS"


def _copy_attrs(src: h5py.HLObject, dst: h5py.HLObject) -> None:
    for key in src.attrs:
        dst.attrs.create(key, src.attrs[key], dtype=src.attrs.get_id(key).dtype)


def _copy_group(src: h5py.Group, dst: h5py.Group) -> int:
    _copy_attrs(src, dst)
    n = 0
    for name, obj in src.items():
        if isinstance(obj, h5py.Group):
            n += _copy_group(obj, dst.create_group(name))
        elif _is_column(obj):
            ds = dst.create_dataset(name, data=obj[()], maxshape=(None,), chunks=obj.chunks,
                                    dtype=obj.dtype, compression="gzip",
                                    compression_opts=DEFLATE_LEVEL, shuffle=True)
            _copy_attrs(obj, ds)
            n += 1
        else:
            src.copy(obj, dst, name=name)
    return n


def _differences(a: h5py.Group, b: h5py.Group) -> str | None:
    """The first place where ``b`` differs from ``a`` (structure, values, attributes)."""
    if sorted(a.attrs) != sorted(b.attrs):
        return f"{a.name}: attributes"
    for key in a.attrs:
        if not np.array_equal(np.asarray(a.attrs[key]), np.asarray(b.attrs[key])):
            return f"{a.name}: attribute {key}"
    if sorted(a) != sorted(b):
        return f"{a.name}: members"
    for name, obj in a.items():
        other = b[name]
        if isinstance(obj, h5py.Group):
            if not isinstance(other, h5py.Group):
                return obj.name
            found = _differences(obj, other)
            if found:
                return found
            continue
        if not isinstance(other, h5py.Dataset) or obj.dtype != other.dtype or (
                obj.shape != other.shape):
            return obj.name
        x, y = obj[()], other[()]
        equal_nan = obj.dtype.kind in "fc"
        if not np.array_equal(x, y, equal_nan=equal_nan):
            return obj.name
        if sorted(obj.attrs) != sorted(other.attrs) or any(
                not np.array_equal(np.asarray(obj.attrs[k]), np.asarray(other.attrs[k]))
                for k in obj.attrs):
            return f"{obj.name}: attributes"
    return None


def _no_room(dest: Path, free: int, need: int) -> StoreError:
    return StoreError(dest.parent, "free space", f"at least {need} bytes free for the compacted "
                      "copy (free space or pass --out on another disk); the store is unchanged",
                      f"{free} bytes free")


def _refuse_open_runs(store: Store) -> None:
    for run in store:
        if run.status != COMPLETED:
            raise StoreError(store.path, f"/runs/{run.uid}",
                             "runs that have ended (finish or resume this one with the command "
                             "that started it, then compact)", f"status '{run.status}'")


def compact(path: str | os.PathLike, out: str | os.PathLike | None = None) -> CompactResult:
    """Write a compressed copy of the store at ``path`` to ``out`` (default: replace ``path``).

    The store is opened for writing (so no campaign can write it meanwhile; a format-1 store is
    upgraded first, as on every writable open). Raises :class:`StoreError` if a run may still
    append, the copy differs from the original or the folder of the copy has less free space
    than the original's size (plus a margin); the original is unchanged then.
    """
    src = Path(path)
    dest = Path(out) if out is not None else src
    if out is not None and dest.exists():
        raise StoreError(dest, "out", "a path where no file exists yet", "file exists")
    tmp = dest.with_name(dest.name + _TMP_SUFFIX)
    with Store.open(src, "r+") as store:
        _refuse_open_runs(store)
        before = src.stat().st_size
        free, need = space.free_bytes(dest.parent), space.needed_bytes(before)
        if free < need:
            raise _no_room(dest, free, need)
        f_src = store._f
        f_src.flush()
        try:
            with h5py.File(tmp, "w") as f_dst:
                n = _copy_group(f_src, f_dst)
            with h5py.File(tmp, "r") as f_dst:
                diff = _differences(f_src, f_dst)
            if diff is not None:
                raise StoreError(src, diff, "a compacted copy equal to the original",
                                 "it differs; the original is unchanged")
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            # renamed while the original is still open and locked: no writer can slip in
            os.replace(tmp, dest)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            if space.is_disk_full(exc):
                raise _no_room(dest, space.free_bytes(dest.parent),
                               space.needed_bytes(before)) from None
            raise StoreError(dest, "file", "a place where the compacted copy can be written",
                             str(exc)) from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    return CompactResult(src, dest, before, dest.stat().st_size, n)

"""Column-wise extendable tables inside an HDF5 group (one 1-D chunked dataset per column).

Layout of one table group (see docs/data-format.md)::

    <table>/                       attrs: columns (JSON list, column order)
        <column>                   1-D dataset, maxshape (None,), chunked; attr encoding:
                                   "numeric" (the values) or "categorical" (int32 codes)
        _categories/<column>       1-D fixed-length UTF-8 bytes (S128): code k means entry k

Numbers keep their NumPy dtype (float -> float64, Python int -> int64, numpy ints as given, bool
as bool). Strings are stored as categorical codes (labels such as ``mode``, ``structure``,
``state``, ``condition``; at most 128 bytes of UTF-8 each); new labels are appended to the
category list *before* the codes that use them, so a crash never leaves a code without its
label. No variable-length strings are used anywhere in a store: HDF5 keeps them in a global
heap whose collections a killed process can leave unwritten while the references to them are
on disk ("bad heap pointer"), which the crash test reproduced.

The length of a table is the shortest of its columns: a process killed between the resizes of
two columns leaves a longer column whose extra rows are ignored and overwritten by the next
append (the store also truncates to the committed length on resume).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import h5py
import numpy as np

from cimlab.store import space
from cimlab.store.errors import StoreError

#: Elements per chunk of a numeric/categorical column (8 Ki elements: 64 KiB of float64). Chunks
#: are uncompressed so the partly filled last chunk is rewritten in place on each append.
CHUNK_ROWS = 8192

NUMERIC = "numeric"
CATEGORICAL = "categorical"
#: Longest category label [bytes of UTF-8].
LABEL_BYTES = 128

_CATS = "_categories"


def set_text(attrs: h5py.AttributeManager, key: str, text: str, size: int | None = None) -> None:
    """Store ``text`` as a fixed-length UTF-8 byte-string attribute (no global heap).

    With ``size`` the attribute has that fixed width and later values are written in place.
    """
    raw = text.encode("utf-8")
    width = size or max(len(raw), 1)
    if len(raw) > width:
        raise ValueError(f"text of {len(raw)} bytes does not fit {width}")
    value = np.array(raw, dtype=f"S{width}")
    if key in attrs and size is not None and attrs.get_id(key).dtype == value.dtype:
        attrs.modify(key, value)
    else:
        attrs[key] = value


def get_text(value: Any) -> str:
    """Decode an attribute written by :func:`set_text` (or a plain str attribute)."""
    if isinstance(value, np.ndarray):
        value = value[()]
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf-8")
    return str(value)


def _source(group: h5py.Group) -> str:
    return group.file.filename


def _as_column(group: h5py.Group, table: str, name: str, value: Any) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim > 1:
        raise StoreError(
            _source(group), f"{table}.{name}", "a 1-D sequence or a scalar", f"shape {arr.shape}"
        )
    if arr.dtype.kind in "US" or (
        arr.dtype == object and arr.size and all(isinstance(v, (str, bytes)) for v in arr.flat)
    ):
        out = arr.astype(str).astype(object)
        return out
    if arr.dtype == object:
        if arr.size == 0:
            return arr.astype(np.float64)
        raise StoreError(
            _source(group), f"{table}.{name}", "numbers, booleans or strings",
            f"values of type {type(arr.flat[0]).__name__}",
        )
    if arr.dtype.kind not in "biuf":
        raise StoreError(
            _source(group), f"{table}.{name}", "numbers, booleans or strings", f"dtype {arr.dtype}"
        )
    if arr.dtype.kind == "f" and arr.dtype != np.float64:
        arr = arr.astype(np.float64)
    return arr


def normalise(group: h5py.Group, table: str, columns: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Columns as 1-D arrays of one common length (scalars broadcast to it)."""
    if not isinstance(columns, Mapping) or not columns:
        raise StoreError(_source(group), table, "a non-empty mapping column name -> values",
                         columns)
    arrays: dict[str, np.ndarray] = {}
    for name, value in columns.items():
        if not isinstance(name, str) or not name or name.startswith("_") or "/" in name:
            raise StoreError(
                _source(group), f"{table}.{name}",
                "a column name that is a non-empty string without '/' and not starting with '_'",
            )
        arrays[name] = _as_column(group, table, name, value)
    lengths = {a.shape[0] for a in arrays.values() if a.ndim == 1}
    if len(lengths) > 1:
        detail = ", ".join(f"{k}: {a.shape[0]}" for k, a in arrays.items() if a.ndim == 1)
        raise StoreError(_source(group), table, "columns of equal length", detail)
    n = lengths.pop() if lengths else 1
    for name, a in arrays.items():
        if a.ndim == 0:
            arrays[name] = np.full(n, a.item(), dtype=a.dtype if a.dtype != object else object)
    return arrays


def length(tg: h5py.Group) -> int:
    """Number of complete rows: the shortest column."""
    cols = columns_of(tg)
    if not cols:
        return 0
    return int(min(tg[c].shape[0] for c in cols))


def columns_of(tg: h5py.Group) -> list[str]:
    return list(json.loads(get_text(tg.attrs["columns"])))


def _create(tg: h5py.Group, name: str, arr: np.ndarray) -> None:
    chunk = (CHUNK_ROWS,)
    if arr.dtype == object:
        ds = tg.create_dataset(name, shape=(0,), maxshape=(None,), chunks=chunk, dtype=np.int32)
        set_text(ds.attrs, "encoding", CATEGORICAL)
        cats = tg.require_group(_CATS)
        cats.create_dataset(name, shape=(0,), maxshape=(None,), chunks=(64,),
                            dtype=f"S{LABEL_BYTES}")
        return
    ds = tg.create_dataset(name, shape=(0,), maxshape=(None,), chunks=chunk, dtype=arr.dtype)
    set_text(ds.attrs, "encoding", NUMERIC)


def create(group: h5py.Group, table: str, arrays: Mapping[str, np.ndarray]) -> h5py.Group:
    tg = group.create_group(table)
    for name, arr in arrays.items():
        _create(tg, name, arr)
    set_text(tg.attrs, "columns", json.dumps(list(arrays)))
    return tg


def _labels(ds: h5py.Dataset, n: int | None = None) -> list[str]:
    raw = ds[:] if n is None else ds[:n]
    return [bytes(b).decode("utf-8") for b in raw]


def _check_labels(tg: h5py.Group, table: str, name: str, arr: np.ndarray) -> None:
    where = f"{table}.{name}"
    if arr.dtype != object:
        raise StoreError(_source(tg), where, "strings (column holds labels)", f"dtype {arr.dtype}")
    import pandas as pd

    for label in pd.unique(arr):
        label = str(label)
        size = len(label.encode("utf-8"))
        if size == 0 or size > LABEL_BYTES:
            raise StoreError(_source(tg), where, f"labels of 1 to {LABEL_BYTES} bytes of UTF-8",
                             label)


def _encode(tg: h5py.Group, table: str, name: str, arr: np.ndarray) -> np.ndarray:
    ds = tg[name]
    enc = get_text(ds.attrs.get("encoding", NUMERIC))
    where = f"{table}.{name}"
    if enc == CATEGORICAL:
        if arr.dtype != object:
            raise StoreError(_source(tg), where, "strings (column holds labels)",
                             f"dtype {arr.dtype}")
        cats_ds = tg[_CATS][name]
        import pandas as pd

        cats = _labels(cats_ds)
        inverse, uniq = pd.factorize(arr, sort=False)  # hash-based: fast on millions of rows
        uniq = [str(u) for u in uniq]
        index = {c: i for i, c in enumerate(cats)}
        new = [u for u in uniq if u not in index]
        if new:
            encoded = [u.encode("utf-8") for u in new]
            too_long = [
                u for u, e in zip(new, encoded, strict=True) if len(e) > LABEL_BYTES or not e
            ]
            if too_long:
                raise StoreError(_source(tg), where,
                                 f"labels of 1 to {LABEL_BYTES} bytes of UTF-8", too_long[0])
            n0 = cats_ds.shape[0]
            cats_ds.resize((n0 + len(new),))
            cats_ds[n0:] = np.array(encoded, dtype=f"S{LABEL_BYTES}")
            cats_ds.file.flush()  # labels on disk before any code that uses them
            for i, u in enumerate(new):
                index[u] = n0 + i
        lut = np.array([index[u] for u in uniq], dtype=np.int32)
        return lut[inverse] if len(uniq) else np.zeros(0, np.int32)
    # numeric
    target = ds.dtype
    if arr.dtype == object:
        raise StoreError(_source(tg), where, f"numbers of dtype {target}", "strings")
    if target.kind == "f":
        if arr.dtype.kind not in "biuf":
            raise StoreError(_source(tg), where, f"numbers of dtype {target}", f"dtype {arr.dtype}")
        return arr.astype(target)
    if target.kind in "iu":
        if arr.dtype.kind == "f":
            if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
                raise StoreError(_source(tg), where, f"integers (dtype {target})",
                                 "non-integral floats")
        elif arr.dtype.kind not in "biu":
            raise StoreError(_source(tg), where, f"integers (dtype {target})", f"dtype {arr.dtype}")
        info = np.iinfo(target)
        if arr.size and (arr.min() < info.min or arr.max() > info.max):
            raise StoreError(
                _source(tg), where, f"integers within [{info.min}, {info.max}] (dtype {target})",
                f"range [{arr.min()}, {arr.max()}]",
            )
        return arr.astype(target)
    if target.kind == "b":
        if arr.dtype.kind != "b":
            raise StoreError(_source(tg), where, "booleans", f"dtype {arr.dtype}")
        return arr
    raise StoreError(_source(tg), where, "a supported column dtype", str(target))


def append(group: h5py.Group, table: str, columns: Mapping[str, Any],
           check_space: Callable[[int], None] | None = None) -> int:
    """Append rows to ``group[table]`` (created on first use). Returns the new length.

    Every append must give exactly the table's columns. Nothing is written if the columns are
    invalid, or if ``check_space`` (called with the bytes of the chunks the append allocates,
    before anything is written) raises. The caller flushes.
    """
    arrays = normalise(group, table, columns)
    if check_space is not None:
        n_rows = next(iter(arrays.values())).shape[0]
        n0 = length(group[table]) if table in group else 0
        check_space(space.append_bytes(n_rows, n0, {k: space.itemsize_of(a)
                                                    for k, a in arrays.items()}, CHUNK_ROWS))
    if table not in group:
        tg = create(group, table, arrays)
    else:
        tg = group[table]
        have = columns_of(tg)
        if set(have) != set(arrays):
            missing = sorted(set(have) - set(arrays))
            extra = sorted(set(arrays) - set(have))
            raise StoreError(
                _source(group), table, f"exactly the columns {have}",
                f"missing {missing}, unknown {extra}",
            )
    # numbers first, labels last (with a check of every label column before the first label
    # is written), so an invalid append writes nothing at all
    cols = columns_of(tg)
    is_label = {c: get_text(tg[c].attrs.get("encoding", NUMERIC)) == CATEGORICAL for c in cols}
    encoded = {c: _encode(tg, table, c, arrays[c]) for c in cols if not is_label[c]}
    for c in cols:
        if is_label[c]:
            _check_labels(tg, table, c, arrays[c])
    encoded.update({c: _encode(tg, table, c, arrays[c]) for c in cols if is_label[c]})
    encoded = {c: encoded[c] for c in cols}
    n0 = length(tg)
    n = next(iter(encoded.values())).shape[0]
    for name, values in encoded.items():
        ds = tg[name]
        ds.resize((n0 + n,))
        if n:
            ds[n0:] = values
    return n0 + n


def truncate(tg: h5py.Group, n: int) -> None:
    """Cut every column of the table to ``n`` rows (rows beyond a committed length)."""
    for name in columns_of(tg):
        ds = tg[name]
        if ds.shape[0] > n:
            ds.resize((n,))


def read(tg: h5py.Group, n: int | None = None, *, categorical: bool = False) -> dict[str, Any]:
    """The first ``n`` rows (default: all complete rows) as a dict of NumPy arrays.

    A damaged dataset raises :class:`StoreError` naming the file and the table.
    """
    try:
        return _read(tg, n, categorical)
    except (OSError, KeyError, ValueError) as exc:
        if isinstance(exc, StoreError):
            raise
        raise StoreError(_source(tg), tg.name, "a readable table (the file is damaged here)",
                         str(exc)) from None


def _read(tg: h5py.Group, n: int | None, categorical: bool) -> dict[str, Any]:
    total = length(tg)
    n = total if n is None else min(n, total)
    out: dict[str, Any] = {}
    for name in columns_of(tg):
        ds = tg[name]
        enc = get_text(ds.attrs.get("encoding", NUMERIC))
        if enc == CATEGORICAL:
            codes = ds[:n]
            cats = np.asarray(_labels(tg[_CATS][name]), dtype=object)
            if codes.size and (codes.min() < 0 or codes.max() >= cats.size):
                raise StoreError(
                    _source(tg), f"{tg.name}/{name}",
                    f"category codes in [0, {cats.size})", f"[{codes.min()}, {codes.max()}]",
                )
            if categorical:
                import pandas as pd

                out[name] = pd.Categorical.from_codes(codes, categories=list(cats))
            else:
                out[name] = cats[codes] if cats.size else np.zeros(0, dtype=object)
        else:
            out[name] = ds[:n]
    return out

"""Reading and checking text tables: every error names the file, the line and the column."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from cimlab.errors import ConfigError


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_text_table(path: Path, *, sep: str | None, header: bool,
                    names: list[str] | None = None) -> Any:
    """A CSV/TSV (``.gz`` accepted) as a DataFrame; tab for ``.tsv``/``.tab``, comma otherwise."""
    import pandas as pd

    if not path.exists():
        raise ConfigError(path, "file", "an existing CSV/TSV file", "no such file")
    if sep is None:
        suffixes = [s.lower() for s in path.suffixes]
        sep = "\t" if ".tsv" in suffixes or ".tab" in suffixes else ","
    try:
        return pd.read_csv(
            path, sep=sep, header=0 if header else None, names=names,
            skip_blank_lines=False, compression="infer", low_memory=False,
        )
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise ConfigError(path, "file", "a readable CSV/TSV table", str(exc).strip()) from None


def check_column_count(df: Any, path: Path, names: tuple[str, ...]) -> None:
    """A headerless file must have exactly ``len(names)`` columns (counted, not assumed)."""
    if df.shape[1] != len(names):
        raise ConfigError(path, "columns", f"{len(names)} tab-separated columns "
                          f"({', '.join(names)})", f"{df.shape[1]} columns")
    df.columns = list(names)


def line_of(i: int, header: bool) -> int:
    """1-based line number of data row ``i``."""
    return i + 1 + (1 if header else 0)


def numeric(df: Any, col: str, path: Path, header: bool, what: str) -> np.ndarray:
    """Column ``col`` as float64; the first non-number names its line."""
    import pandas as pd

    raw = df[col]
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        i = int(bad[0])
        got = raw.iloc[i]
        got = "an empty field" if (got is None or (isinstance(got, float) and np.isnan(got))) \
            else repr(got)
        raise ConfigError(path, f'line {line_of(i, header)}, column "{col}"',
                          f"{what} (a finite number)",
                          f"{got}; {bad.size} such row(s) in all") from None
    return values


def check_rows(cond: np.ndarray, values: np.ndarray, path: Path, col: str, header: bool,
               expected: str) -> None:
    """Raise naming the first row where ``cond`` is false."""
    bad = np.flatnonzero(~cond)
    if bad.size:
        i = int(bad[0])
        raise ConfigError(path, f'line {line_of(i, header)}, column "{col}"', expected,
                          f"{values[i]!r}; {bad.size} such row(s) in all")


def as_index(values: np.ndarray, path: Path, col: str, header: bool, what: str) -> np.ndarray:
    check_rows((values >= 0) & (values == np.round(values)), values, path, col, header,
               f"{what} (an integer >= 0)")
    return values.astype(np.int64)


def as_cell(values: np.ndarray, path: Path, col: str, header: bool) -> np.ndarray:
    cell = as_index(values, path, col, header, "a cell index")
    if cell.size and cell.max() > np.iinfo(np.uint32).max:
        raise ConfigError(path, f"column '{col}'", "cell indices < 2**32", int(cell.max()))
    return cell.astype(np.uint32)


def group_first(keys: list[np.ndarray], t: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Each row's value of ``g`` at the earliest ``t`` among the rows with the same keys."""
    order = np.lexsort((t, *keys[::-1]))
    same = np.ones(order.size, bool)
    for k in keys:
        ks = k[order]
        same[1:] &= ks[1:] == ks[:-1]
    same[0] = False
    group = np.cumsum(~same) - 1          # group number in sorted order
    starts = order[~same]
    out = np.empty(g.size, dtype=float)
    out[order] = g[starts][group]
    return out


def time_summary(times: np.ndarray, max_points: int = 12) -> str:
    """Nominal time points with their read counts, or a range when times are per read."""
    u, n = np.unique(times, return_counts=True)
    if u.size <= max_points:
        return ", ".join(f"{t:g} s ({c})" for t, c in zip(u, n, strict=True))
    return (f"{u.size} distinct times from {u[0]:g} to {u[-1]:g} s (per-read times, not "
            "nominal points: map a column of nominal time points as the time column to group)")

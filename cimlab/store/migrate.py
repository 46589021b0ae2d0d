"""Store format migrations (``/@format_version``; docs/data-format.md, "Format versions").

Format 2 names conductance columns ``*_siemens`` (format 1: ``*_s``, which also means seconds):
the column names are mapped by :func:`cimlab.units.renamed_conductance`, the one list of the
former names. A format-1 store opened for writing is upgraded in place by :func:`upgrade`
(datasets renamed, each table's column list rewritten, the version written last: a process
killed half way leaves a store that the next open finishes upgrading, since every step is
idempotent); opened read-only it is left as it is and :func:`current_columns` maps the names
as they are read.
"""

from __future__ import annotations

import json

import h5py

from cimlab.store.table import columns_of, set_text
from cimlab.units import renamed_conductance

#: Subgroup of a table holding the labels of its categorical columns (cimlab.store.table).
_CATEGORIES = "_categories"


def current_columns(names: list[str], version: int) -> list[str]:
    """The current names of a table's columns as stored by a store of format ``version``."""
    return [renamed_conductance(n) for n in names] if version < 2 else list(names)


def upgrade(f: h5py.File, runs: str = "runs", tables: str = "tables") -> int:
    """Upgrade an open, writable format-1 store to format 2 in place; returns the number of
    columns renamed. The caller writes ``format_version`` afterwards."""
    renamed = 0
    for uid in f[runs]:
        run = f[runs][uid]
        if not isinstance(run, h5py.Group) or tables not in run:
            continue
        for name in run[tables]:
            tg = run[tables][name]
            if "columns" not in tg.attrs:
                continue
            old = columns_of(tg)
            for col in old:
                new = renamed_conductance(col)
                if new == col:
                    continue
                if col in tg and new not in tg:
                    tg.move(col, new)
                    renamed += 1
                cats = tg.get(_CATEGORIES)
                if cats is not None and col in cats and new not in cats:
                    cats.move(col, new)
            set_text(tg.attrs, "columns", json.dumps(current_columns(old, 1)))
    return renamed

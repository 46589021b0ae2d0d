"""Cell selection of a plan experiment: which flat cell indices of the chip it uses.

:class:`CellSet` is the ``cells`` table of an ``[[experiment]]`` (whole tiles, half-open flat
ranges, a start/count block, an optional seeded random subset); :meth:`CellSet.resolve` turns
it into sorted unique flat indices on a chip geometry, raising
:class:`~cimlab.errors.ConfigError` when the selection lies beyond the chip. Part of
:mod:`cimlab.procedures.plan`, which re-exports it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from cimlab.errors import ConfigError
from cimlab.params import check, param


@dataclass(frozen=True)
class CellSet:
    """Which cells an experiment uses: the union of whole tiles, flat ranges and a block.

    ``tiles = [0, 1]`` takes every cell of tiles 0 and 1; ``ranges = [[0, 4096]]`` takes flat
    indices 0..4095 (half-open); ``start``/``count`` is a shorthand for one range. ``sample``
    then draws that many distinct cells at random (seeded by the experiment's seed), and
    ``limit`` keeps the first ``limit`` cells (0: all). Flat index is
    ``tile * rows * cols + row * cols + col`` (docs/architecture.md).
    """

    tiles: tuple[int, ...] = param((), unit="1", lo=0, doc="whole tiles")
    ranges: tuple[tuple[int, int], ...] = param((), unit="1", doc="half-open flat ranges")
    start: int = param(0, unit="1", lo=0, doc="first flat index of a range")
    count: int = param(0, unit="1", lo=0, doc="cells in the start/count range (0: none)")
    sample: int = param(0, unit="1", lo=0, doc="random subset size (0: all cells)")
    limit: int = param(0, unit="1", lo=0, doc="keep only the first N cells (0: all)")

    def __post_init__(self) -> None:
        check(self)
        for i, (a, b) in enumerate(self.ranges):
            if a < 0 or b <= a:
                raise ConfigError(None, f"ranges[{i}]", "[first, stop) with 0 <= first < stop",
                                  [a, b])
        if not self.tiles and not self.ranges and self.count == 0:
            raise ConfigError(None, "<cells>", "at least one of tiles, ranges or start/count")

    def resolve(self, geometry: Sequence[int], seed: int, *, source: str = "",
                field_name: str = "cells") -> np.ndarray:
        """Sorted unique flat cell indices (uint32) on a chip of ``geometry``.

        Raises ConfigError when a tile or a range lies beyond the chip.
        """
        n_tiles, rows, cols = (int(x) for x in geometry)
        per_tile = rows * cols
        n_cells = n_tiles * per_tile
        what = f"cells inside the chip ({n_tiles} tiles x {rows} x {cols} = {n_cells} cells)"
        # one flag per chip cell: the selection never takes more memory than the chip,
        # however many (repeated) tiles or ranges a file lists
        selected = np.zeros(n_cells, dtype=bool)
        for t in self.tiles:
            if t >= n_tiles:
                raise ConfigError(source, f"{field_name}.tiles", what + "; plan larger than chip",
                                  t)
            selected[t * per_tile:(t + 1) * per_tile] = True
        spans = [(a, b, f"{field_name}.ranges[{i}]", [a, b])
                 for i, (a, b) in enumerate(self.ranges)]
        if self.count:
            spans.append((self.start, self.start + self.count, f"{field_name}.start/count",
                          {"start": self.start, "count": self.count}))
        for a, b, where, got in spans:
            if b > n_cells:
                raise ConfigError(source, where, what + f"; this selection ends at cell {b - 1}, "
                                  f"beyond the last cell {n_cells - 1}", got)
            selected[a:b] = True
        cells = np.flatnonzero(selected)
        if self.sample:
            if self.sample > cells.size:
                raise ConfigError(source, f"{field_name}.sample",
                                  f"at most the {cells.size} selected cells", self.sample)
            rng = np.random.default_rng(seed)
            cells = np.sort(rng.choice(cells, size=self.sample, replace=False))
        if self.limit:
            if self.limit > cells.size:
                raise ConfigError(source, f"{field_name}.limit",
                                  f"at most the {cells.size} selected cells", self.limit)
            cells = cells[: self.limit]
        return cells.astype(np.uint32)

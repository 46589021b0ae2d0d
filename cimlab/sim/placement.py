"""Placement of a network's weights onto the cells of a ReRAM chip.

The simulator (:mod:`cimlab.sim.layers`, :mod:`cimlab.sim.mapping`) already decides how a
layer's augmented weight matrix ``W~ = [W  b/s]`` becomes conductances: a differential pair
(G+, G-) per weight and slice (paper 001, Fig. 1b), linear mapping onto the device window
(paper 000: weights in [-wmax, wmax] onto 2 .. 40 uS), and *logical tiles* of
``rows_per_mvm x cols`` cells whose partial sums are digitised and added digitally (paper 001,
Fig. 1a). :func:`place_network` reuses exactly that code (``convert`` + ``program`` without
any non-ideality gives the targets, ``Mapping``, ``make_layout`` and ``to_tiles``), so the chip
and the simulator place every weight identically, and assigns every logical tile to a region
of a physical chip tile.

Row groups (``rows_per_mvm``). The chip's tiles are 256 x 64 cells with 2 ohm wire segments
(paper 004); with all 256 rows driven at high conductance the IR drop costs ~20-40 % of the
column current (docs/architecture.md section 1), which the simulator's first-order model only
roughly follows. A logical tile therefore drives only ``rows_per_mvm`` (default 64) rows at a
time: with one group per physical tile it sits in the *bottom* rows (next to the column sense
amplifiers, so no idle bit-line segments carry its current) and left-aligned (next to the row
drivers), i.e. exactly the geometry the simulator's IR-drop model of a ``rows_per_mvm x cols``
tile assumes. When a network needs more logical tiles than the chip has tiles, groups are
stacked upwards (``groups_per_tile`` > 1): still correct on the chip (only one group is
driven at a time, the others' rows at 0 V), but the stacked groups' current then also flows
through the bit-line segments below them, which the simulator does not model (documented in
docs/network-on-chip.md; keep one group per tile where the chip is large enough).

Cells of a used tile that hold no weight (empty columns/rows of a logical tile, the rows of a
tile outside its groups) are *parked*: deep-RESET to the bottom of the window by
:func:`cimlab.sim.program_net.program_network` (the simulator treats them as 0 S).

The :class:`NetworkPlacement` record says for every cell ``(layer, slice, sign, out, row)``
(sign 0 = G+, 1 = G-; ``row`` indexes ``W~``, the bias row last) which chip cell
``(tile, tile_row, col)`` holds it and its target conductance; :meth:`NetworkPlacement.table`
is the tidy table written to the store, :meth:`NetworkPlacement.to_meta` /
:meth:`NetworkPlacement.from_meta` serialise everything else.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from cimlab.errors import ConfigError
from cimlab.params import check, param
from cimlab.sim.mapping import Mapping, TileLayout, to_tiles

#: Version of the placement record layout (meta + table) written to the store.
PLACEMENT_VERSION = 1


@dataclass(frozen=True)
class PlacementConfig:
    """How logical tiles go onto the chip."""

    rows_per_mvm: int = param(64, unit="1", lo=1, doc="rows driven per MVM (logical tile rows)")
    cols: int | None = param(None, unit="1", lo=2,
                             doc="columns per logical tile (None: the chip's tile width)")
    first_tile: int = param(0, unit="1", lo=0, doc="first chip tile the network may use")
    n_tiles: int | None = param(None, unit="1", lo=1,
                                doc="chip tiles the network may use (None: all from first_tile)")
    groups_per_tile: int | None = param(
        None, unit="1", lo=1,
        doc="row groups stacked per chip tile (None: 1 if the chip is large enough, else the "
        "fewest that fit)",
    )  # fmt: skip

    def __post_init__(self) -> None:
        check(self)


@dataclass
class LayerPlacement:
    """One analog layer on the chip.

    ``tiles``: per logical tile ``(row_tile, col_tile, chip_tile, row0)`` (the logical tile's
    row ``r`` is chip row ``row0 + r``, its column ``c`` chip column ``c``).
    ``cells``: flat chip cell index per cell, shape ``(2, S, out, k + has_bias)`` (int64).
    ``g_target``: target conductances [S], same shape.
    """

    name: str
    kind: str
    weight_shape: tuple[int, ...]
    mapping: Mapping
    layout: TileLayout
    bias_scale: float
    tiles: list[tuple[int, int, int, int]]
    cells: np.ndarray
    g_target: np.ndarray
    conv: dict[str, Any] = field(default_factory=dict)

    @property
    def slices(self) -> int:
        return int(self.cells.shape[1])

    @property
    def out(self) -> int:
        return int(self.cells.shape[2])

    def logical_tile_index(self, device=None) -> torch.Tensor:
        """(n_tiles_total, n_col_tiles, rows, cols) tensor of ``1 + position in cells.ravel()``
        (0 = empty), from :func:`cimlab.sim.mapping.to_tiles` (the simulator's arrangement)."""
        n = self.cells.size
        idx = torch.arange(1, n + 1, dtype=torch.float64, device=device).reshape(self.cells.shape)
        return to_tiles(idx, self.layout)

    def to_meta(self) -> dict[str, Any]:
        lay = self.layout
        return {
            "name": self.name, "kind": self.kind, "weight_shape": list(self.weight_shape),
            "mapping": {"g_min": self.mapping.g_min, "g_max": self.mapping.g_max,
                        "wmax": self.mapping.wmax, "levels": self.mapping.levels,
                        "slices": self.mapping.slices},
            "layout": {k: getattr(lay, k) for k in lay.__dataclass_fields__},
            "bias_scale": self.bias_scale, "tiles": [list(t) for t in self.tiles],
            "shape": list(self.cells.shape), "conv": dict(self.conv),
        }


@dataclass
class NetworkPlacement:
    """Where every weight of a network lives on the chip: the chip geometry, the
    placement settings, how many row groups share a physical tile, and one
    :class:`LayerPlacement` per layer (its logical tiles of ``rows_per_mvm x cols`` cells, each
    assigned to a region of a physical tile; built by :func:`place_network`)."""

    geometry: tuple[int, int, int]
    config: PlacementConfig
    groups_per_tile: int
    layers: dict[str, LayerPlacement]

    # ------------------------------------------------------------------ cell lists
    def all_cells(self) -> np.ndarray:
        """Flat chip indices of every weight cell, layer by layer (uint32)."""
        return np.concatenate([lp.cells.ravel() for lp in self.layers.values()]).astype(np.uint32)

    def all_targets(self) -> np.ndarray:
        """Target conductances [S] in the order of :meth:`all_cells`."""
        return np.concatenate([lp.g_target.ravel() for lp in self.layers.values()])

    @property
    def n_cells(self) -> int:
        return int(sum(lp.cells.size for lp in self.layers.values()))

    def used_tiles(self) -> list[int]:
        return sorted({t[2] for lp in self.layers.values() for t in lp.tiles})

    def unused_cells(self) -> np.ndarray:
        """Cells inside the logical tiles' regions (their ``rows_per_mvm`` rows x all chip
        columns) that hold no weight: parked at the bottom of the window, uint32."""
        _, rows, cols = self.geometry
        rl = self.config.rows_per_mvm
        starts = sorted({t[2] * rows * cols + t[3] * cols
                         for lp in self.layers.values() for t in lp.tiles})
        region = (np.asarray(starts, dtype=np.int64)[:, None]
                  + np.arange(rl * cols)[None, :]).ravel()
        free = ~np.isin(region, self.all_cells().astype(np.int64))
        return region[free].astype(np.uint32)

    def tile_map(self, tile: int, g: np.ndarray | None = None) -> np.ndarray:
        """(rows, cols) map of chip ``tile``: ``g`` per weight cell (order of
        :meth:`all_cells`; default the targets), NaN where no weight lives."""
        _, rows, cols = self.geometry
        out = np.full(rows * cols, np.nan)
        cells = self.all_cells().astype(np.int64)
        vals = self.all_targets() if g is None else np.asarray(g, dtype=float)
        m = cells // (rows * cols) == tile
        out[cells[m] % (rows * cols)] = vals[m]
        return out.reshape(rows, cols)

    # ------------------------------------------------------------------ records
    def table(self) -> dict[str, np.ndarray]:
        """Tidy placement table: one row per cell (layer index, layer, slice, sign (0 = G+,
        1 = G-), out, row of W~, chip tile, tile_row, col, cell, target_siemens)."""
        _, rows, cols = self.geometry
        parts: dict[str, list[np.ndarray]] = {k: [] for k in (
            "layer_index", "layer", "slice", "sign", "out", "row", "tile", "tile_row", "col",
            "cell", "target_siemens")}
        for li, lp in enumerate(self.layers.values()):
            sign, sl, o, r = np.indices(lp.cells.shape)
            c = lp.cells.ravel().astype(np.int64)
            n = c.size
            parts["layer_index"].append(np.full(n, li, dtype=np.int64))
            parts["layer"].append(np.full(n, lp.name, dtype=object))
            parts["slice"].append(sl.ravel())
            parts["sign"].append(sign.ravel())
            parts["out"].append(o.ravel())
            parts["row"].append(r.ravel())
            parts["tile"].append(c // (rows * cols))
            parts["tile_row"].append((c % (rows * cols)) // cols)
            parts["col"].append(c % cols)
            parts["cell"].append(c)
            parts["target_siemens"].append(lp.g_target.ravel())
        return {k: np.concatenate(v) for k, v in parts.items()}

    def to_meta(self) -> dict[str, Any]:
        """JSON-able description (everything but the per-cell arrays of :meth:`table`)."""
        cfg = self.config
        return {
            "version": PLACEMENT_VERSION, "geometry": list(self.geometry),
            "config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__},
            "groups_per_tile": self.groups_per_tile,
            "layers": [lp.to_meta() for lp in self.layers.values()],
        }

    @classmethod
    def from_meta(cls, meta: dict[str, Any], table: Any, source: str = "<placement>"
                  ) -> NetworkPlacement:  # fmt: skip
        """Rebuild from :meth:`to_meta` and the placement table (DataFrame or dict of arrays)."""
        if not isinstance(meta, dict) or meta.get("version") != PLACEMENT_VERSION:
            raise ConfigError(source, "placement.version", f"placement record version "
                              f"{PLACEMENT_VERSION}", None if not isinstance(meta, dict)
                              else meta.get("version"))  # fmt: skip
        try:
            cfg = PlacementConfig(**meta["config"])
            layers: dict[str, LayerPlacement] = {}
            li_col = np.asarray(table["layer_index"], dtype=np.int64)
            cell_col = np.asarray(table["cell"], dtype=np.int64)
            tgt_col = np.asarray(table["target_siemens"], dtype=float)
            for li, lm in enumerate(meta["layers"]):
                shape = tuple(int(s) for s in lm["shape"])
                m = li_col == li
                if int(m.sum()) != int(np.prod(shape)):
                    raise ConfigError(source, f"placement.layers[{li}]",
                                      f"{int(np.prod(shape))} cells in the table", int(m.sum()))
                mp = lm["mapping"]
                layers[lm["name"]] = LayerPlacement(
                    name=lm["name"], kind=lm["kind"], weight_shape=tuple(lm["weight_shape"]),
                    mapping=Mapping(mp["g_min"], mp["g_max"], mp["wmax"], mp["levels"],
                                    mp["slices"]),
                    layout=TileLayout(**lm["layout"]), bias_scale=float(lm["bias_scale"]),
                    tiles=[tuple(int(v) for v in t) for t in lm["tiles"]],
                    cells=cell_col[m].reshape(shape), g_target=tgt_col[m].reshape(shape),
                    conv=dict(lm.get("conv", {})))
            return cls(tuple(int(g) for g in meta["geometry"]), cfg,
                       int(meta["groups_per_tile"]), layers)
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(source, "placement", "a placement record written by cimlab",
                              repr(exc)) from None

    def summary(self) -> list[dict[str, Any]]:
        """One row per layer: cells, logical tiles, chip tiles, wmax."""
        return [{"layer": lp.name, "kind": lp.kind, "cells": int(lp.cells.size),
                 "logical_tiles": len(lp.tiles),
                 "chip_tiles": ",".join(str(t) for t in sorted({t[2] for t in lp.tiles})),
                 "wmax": lp.mapping.wmax} for lp in self.layers.values()]


def analog_config_for(device: Any, config: PlacementConfig, cols: int, **changes: Any):
    """The simulator configuration whose tiles are this placement's logical tiles
    (``rows_per_mvm x cols``, continuous levels, one slice) plus ``changes``."""
    from cimlab.sim.config import AnalogConfig

    base = AnalogConfig(device=device, tile=(config.rows_per_mvm, cols), levels=None, slices=1)
    return base.replace(**changes) if changes else base


def place_network(
    net: nn.Module,
    geometry: Sequence[int],
    device: Any = None,
    config: PlacementConfig | None = None,
    layers: Sequence[str] | None = None,
    source: str | None = None,
) -> NetworkPlacement:
    """Place the Linear/Conv2d layers of ``net`` on a chip of ``geometry`` (n_tiles, rows,
    cols), mapping with ``device`` (a DeviceModel; None: the literature default).
    ``source``: what errors name as the network's origin (e.g. the checkpoint file)."""
    from cimlab.sim.convert import convert

    config = config or PlacementConfig()
    n_tiles, rows, cols_chip = (int(g) for g in geometry)
    cols = config.cols or cols_chip
    if cols > cols_chip:
        raise ConfigError(None, "placement.cols", f"at most the chip's {cols_chip} columns", cols)
    if config.rows_per_mvm > rows:
        raise ConfigError(None, "placement.rows_per_mvm", f"at most the chip's {rows} rows",
                          config.rows_per_mvm)
    first = config.first_tile
    avail = (n_tiles - first) if config.n_tiles is None else config.n_tiles
    if first + avail > n_tiles or avail < 1:
        raise ConfigError(None, "placement.n_tiles",
                          f"tiles inside the chip ({n_tiles} tiles, first_tile {first})", avail)
    cfg = analog_config_for(device, config, cols).replace(
        adc_bits=None, dac_bits=None, programming_error=False, read_noise=None, stuck=False,
        ir_drop=False)
    anet = convert(net, cfg, layers=layers)
    anet.program(torch.Generator().manual_seed(0))  # deterministic: no noise is drawn
    n_logical = sum(a.layout.n_arrays for a in anet.layers.values())
    max_groups = rows // config.rows_per_mvm
    gpt = config.groups_per_tile
    if gpt is None:
        gpt = max(1, -(-n_logical // avail))
    if gpt > max_groups:
        raise ConfigError(
            source, "placement", f"a network that fits the chip: its {n_logical} logical "
            f"tiles of {config.rows_per_mvm} x {cols} cells need "
            f"{-(-n_logical // max_groups)} chip tiles, {avail} available (tiles {first}-"
            f"{first + avail - 1} of {n_tiles}). Fix: train a smaller network, e.g. 'cimlab "
            f"train --net paper000-cnn --width 0.0625' (22 tiles), or give it more tiles "
            f"(first_tile / --first-tile 0)",
            f"{n_logical} logical tiles")  # fmt: skip
    if -(-n_logical // gpt) > avail:
        raise ConfigError(source, "placement.groups_per_tile",
                          f"at least {-(-n_logical // avail)} ({n_logical} logical tiles on "
                          f"{avail} chip tiles)", gpt)  # fmt: skip
    slot = 0
    out_layers: dict[str, LayerPlacement] = {}
    rl = config.rows_per_mvm
    for name, al in anet.layers.items():
        if al.binary:
            raise ConfigError(source, f"layer {name}", "a multi-level (non-binary) layer", "binary")
        lay = al.layout
        g_t = al.g_target.detach().double()
        lp = LayerPlacement(
            name=name, kind=al.kind, weight_shape=tuple(al.base.weight.shape),
            mapping=al.mapping, layout=lay, bias_scale=float(al.bias_s), tiles=[],
            cells=np.zeros(tuple(g_t.shape), dtype=np.int64), g_target=g_t.numpy().copy(),
            conv=_conv_meta(al.base))
        idx = lp.logical_tile_index()  # (nt, nct, rl, cols) 1-based positions
        flat_cells = lp.cells.reshape(-1)
        for rt in range(lay.n_tiles_total):
            for ct in range(lay.n_col_tiles):
                chip_tile = first + slot // gpt
                group = slot % gpt
                row0 = rows - (group + 1) * rl
                slot += 1
                lp.tiles.append((rt, ct, chip_tile, row0))
                t = idx[rt, ct].numpy().astype(np.int64)  # (rl, cols)
                r, c = np.nonzero(t)
                flat_cells[t[r, c] - 1] = chip_tile * rows * cols_chip + (row0 + r) * cols_chip + c
        lp.cells = flat_cells.reshape(lp.cells.shape)
        out_layers[name] = lp
    placement = NetworkPlacement((n_tiles, rows, cols_chip), config, gpt, out_layers)
    cells = placement.all_cells()
    if np.unique(cells).size != cells.size:  # pragma: no cover - guarded by construction
        raise RuntimeError("placement put two weights into one cell")
    return placement


def _conv_meta(base: nn.Module) -> dict[str, Any]:
    if not isinstance(base, nn.Conv2d):
        return {}
    return {"kernel_size": list(base.kernel_size), "stride": list(base.stride),
            "padding": list(base.padding) if not isinstance(base.padding, str) else base.padding,
            "dilation": list(base.dilation), "groups": base.groups}

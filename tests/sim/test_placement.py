"""Placement of a network on the chip: every weight in exactly one cell pair, the same
arrangement as the simulator's tiles (cimlab.sim.mapping.to_tiles/from_tiles)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cimlab.errors import ConfigError
from cimlab.sim.mapping import from_tiles
from cimlab.sim.placement import NetworkPlacement, PlacementConfig, place_network

GEOMETRY = (32, 256, 64)


def small_net() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6), nn.ReLU(),
        nn.Conv2d(6, 40, 3, padding=1, bias=False), nn.BatchNorm2d(40), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(40, 70), nn.ReLU(), nn.Linear(70, 10),  # biased: bias row on the array
    ).eval()


def test_every_weight_in_exactly_one_cell_pair_and_tiles_match_the_simulator():
    net = small_net()
    p = place_network(net, GEOMETRY)
    cells = p.all_cells().astype(np.int64)
    assert np.unique(cells).size == cells.size == p.n_cells
    n_weights = sum(m.weight.numel() + (m.bias.numel() if m.bias is not None else 0)
                    for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    assert p.n_cells == 2 * n_weights  # one differential pair per weight (slices = 1)
    n_t, rows, cols = GEOMETRY
    chip = np.zeros(n_t * rows * cols)
    chip[cells] = p.all_targets()
    chip = chip.reshape(n_t, rows, cols)
    mods = dict(net.named_modules())
    for name, lp in p.layers.items():
        lay = lp.layout
        # one group per chip tile, bottom-aligned next to the sense amplifiers
        assert all(row0 == rows - lay.rows for _, _, _, row0 in lp.tiles)
        tiles = torch.zeros(lay.n_tiles_total, lay.n_col_tiles, lay.rows, lay.cols,
                            dtype=torch.float64)
        for rt, ct, tile, row0 in lp.tiles:
            tiles[rt, ct] = torch.from_numpy(chip[tile, row0:row0 + lay.rows, :lay.cols])
        back = from_tiles(tiles, lay, lp.slices, lp.out)
        np.testing.assert_array_equal(back.numpy(), lp.g_target)
        # the targets represent the trained weights (differential pair, linear map)
        w = lp.mapping.weights(torch.from_numpy(lp.g_target))
        base = mods[name]
        k = lay.k
        np.testing.assert_allclose(w[:, :k].reshape(base.weight.shape).numpy(),
                                   base.weight.detach().double().numpy(), atol=1e-6)
        if base.bias is not None:
            np.testing.assert_allclose(w[:, k].numpy() * lp.bias_scale,
                                       base.bias.detach().double().numpy(), atol=1e-6)
        # exactly one of each pair is at g_min
        on_off = np.minimum(lp.g_target[0], lp.g_target[1])
        np.testing.assert_allclose(on_off, lp.mapping.g_min, rtol=1e-6)


def test_table_and_meta_round_trip_and_unused_cells():
    p = place_network(small_net(), GEOMETRY)
    tab = p.table()
    assert len(tab["cell"]) == p.n_cells
    q = NetworkPlacement.from_meta(p.to_meta(), tab)
    np.testing.assert_array_equal(q.all_cells(), p.all_cells())
    np.testing.assert_array_equal(q.all_targets(), p.all_targets())
    assert [lp.tiles for lp in q.layers.values()] == [lp.tiles for lp in p.layers.values()]
    free = p.unused_cells().astype(np.int64)
    assert not np.isin(free, p.all_cells().astype(np.int64)).any()
    _, rows, cols = GEOMETRY
    assert np.all((free % (rows * cols)) // cols >= rows - p.config.rows_per_mvm)
    with pytest.raises(ConfigError, match="version"):
        NetworkPlacement.from_meta({"version": 99}, tab)


def test_groups_are_stacked_when_tiles_run_short_and_too_large_raises():
    net = small_net()
    p = place_network(net, GEOMETRY, config=PlacementConfig(n_tiles=2))
    assert p.groups_per_tile >= 2 and p.used_tiles() == [0, 1]
    cells = p.all_cells()
    assert np.unique(cells).size == cells.size
    with pytest.raises(ConfigError, match="fits the chip") as ei:
        place_network(net, GEOMETRY, config=PlacementConfig(n_tiles=1, rows_per_mvm=256),
                      source="cnn.pt")
    assert str(ei.value).startswith("cnn.pt: ") and "--width 0.0625" in str(ei.value)

"""IR-drop approximation vs the exact nodal solution of cimlab.physics.

The measured errors are printed (``pytest -s``) and quoted in docs/simulator.md.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cimlab.physics.crossbar import transfer_matrix
from cimlab.sim import AnalogConfig, convert
from cimlab.sim.irdrop import cell_drop_factors, drop_factors, effective_conductance
from cimlab.sim.mapping import from_tiles, make_layout, to_tiles
from tests.sim.sim_helpers import dm_default

R_SEG = 2.0  # ohm per segment, paper 004


def _errors(g: np.ndarray, r: float, rng: np.random.Generator) -> dict[str, float]:
    """Max column-current error relative to the largest exact current, for random inputs."""
    t_exact = transfer_matrix(g, np.full(g.shape, r), np.full(g.shape, r))  # (C, R)
    v = rng.uniform(0.0, 0.2, size=(16, g.shape[0]))  # read voltages [V]
    i_exact = v @ t_exact.T
    scale = np.abs(i_exact).max()
    gt = torch.from_numpy(g)
    out = {"uncorrected": float(np.abs(v @ g - i_exact).max() / scale)}
    for form in ("first_order", "rational"):
        ge = effective_conductance(gt, r, form).numpy()
        out[form] = float(np.abs(v @ ge - i_exact).max() / scale)
    return out


def test_irdrop_approximation_error_against_exact_nodal_solution():
    rng = np.random.default_rng(0)
    dm = dm_default()
    lo, hi = dm.window.g_min, dm.window.g_max
    results = {}
    for shape in ((64, 32), (256, 64)):
        g = rng.uniform(lo, hi, size=shape)
        results[shape] = _errors(g, R_SEG, rng)
        print(f"IR drop {shape[0]}x{shape[1]} tile, r = {R_SEG} ohm, G ~ U({lo:g}, {hi:g}) S:",
              {k: f"{v:.2e}" for k, v in results[shape].items()})  # fmt: skip
    small, big = results[(64, 32)], results[(256, 64)]
    # the drop is large (tens of % on a full 256x64 tile) and the correction removes most of it
    assert big["uncorrected"] > 0.3
    assert big["rational"] < 0.05 * big["uncorrected"]
    assert big["rational"] < 0.03
    assert small["rational"] < 2e-3
    assert small["rational"] < small["first_order"] < small["uncorrected"]


def test_layer_ir_drop_matches_physics_per_tile():
    """A converted layer with IR drop vs exact tile currents of its own cells (layout check)."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(40, 6)).double()
    cfg = AnalogConfig.ideal(dm_default(), tile=(32, 16), ir_drop=True)
    anet = convert(net, cfg).program(0)
    layer = anet.layers["0"]
    lay = layer.layout
    x = torch.rand(5, 40, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    tiles = to_tiles(layer.conductances(), lay).numpy()  # (n_tiles, n_ct, rows, cols)
    x_aug = torch.cat([x, torch.full((5, 1), layer.bias_s, dtype=x.dtype)], 1).numpy()
    idx = lay.row_index().numpy()
    f = float(layer.mapping.slice_factors(dtype=torch.float64)[0])
    y = np.zeros((5, 6))
    y_ideal = np.zeros((5, 6))
    for t in range(lay.n_tiles_total):
        v = np.zeros((5, lay.rows))
        ok = idx[t] <= lay.k
        v[:, ok] = x_aug[:, idx[t][ok]]
        for c in range(lay.n_col_tiles):
            g = tiles[t, c]
            used = g.sum(0) > 0
            i_exact = np.zeros((5, lay.cols))
            # unused (empty) columns carry no cells; solve the used part of the tile
            gi = np.where(g > 0, g, 1e-18)
            i_exact = v @ transfer_matrix(gi, np.full(g.shape, R_SEG), np.full(g.shape, R_SEG)).T
            i_ideal = v @ g
            pair = (i_exact[:, 0::2] - i_exact[:, 1::2]) * f
            pair_ideal = (i_ideal[:, 0::2] - i_ideal[:, 1::2]) * f
            cols = range(c * lay.per_col, min(6, (c + 1) * lay.per_col))
            for k, j in enumerate(cols):
                if used[2 * k]:
                    y[:, j] += pair[:, k]
                    y_ideal[:, j] += pair_ideal[:, k]
    got = anet(x).detach().numpy()
    err = np.abs(got - y).max() / np.abs(y).max()
    err_ideal = np.abs(y_ideal - y).max() / np.abs(y).max()
    print(f"layer 40->6 on 32x16 tiles: approx error {err:.2e}, ignoring IR drop {err_ideal:.2e}")
    assert err < 0.1 * err_ideal


@pytest.mark.parametrize("k,out,has_b,tile,slices,kernel", [
    (37, 11, True, (16, 8), 1, 1), (32, 5, True, (16, 8), 2, 1), (30, 9, False, (16, 12), 2, 1),
    (45, 7, True, (20, 8), 1, 9), (36, 7, True, (20, 8), 1, 9),   # bias at position == stride
    (500, 33, True, (256, 64), 1, 1), (20, 5, True, (21, 64), 1, 1),
    (40, 10, True, (16, 24), 3, 1), (512, 70, False, (256, 64), 1, 1),  # 3 slices; k = tiles
])  # fmt: skip
def test_cell_layout_drop_factors_equal_the_tile_computation(k, out, has_b, tile, slices, kernel):
    """``cell_drop_factors`` (used by the layers) == drop_factors on the physical tiles, also
    for a chunk of outputs starting at a column-tile boundary."""
    lay = make_layout(k, out, has_b, tile, slices, kernel)
    g = torch.rand(2, slices, out, k + has_b, generator=torch.Generator().manual_seed(k),
                   dtype=torch.float64) * 4e-5  # fmt: skip
    ref = from_tiles(drop_factors(to_tiles(g, lay)), lay, slices, out)
    torch.testing.assert_close(cell_drop_factors(g, lay), ref, rtol=1e-12, atol=0.0)
    o0 = lay.per_col
    torch.testing.assert_close(cell_drop_factors(g[:, :, o0:], lay), ref[:, :, o0:],
                               rtol=1e-12, atol=0.0)  # fmt: skip

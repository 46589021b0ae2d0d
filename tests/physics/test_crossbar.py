"""Tile MVM: exact IR drop (nodal analysis) against an independent dense Kirchhoff solve."""

from dataclasses import replace

import numpy as np
import pytest

from cimlab.physics import ReRAMChip
from cimlab.physics.crossbar import transfer_matrix
from tests.physics.conftest import small_profile, var_ratio_ci


def dense_kirchhoff(g, r_row, r_col, v_in):
    """Column currents by writing KCL at every node by hand and solving densely.

    Nodes: ('r', i, j) row wire at cell (i, j), ('c', i, j) column wire at cell (i, j).
    Row i is driven at v_in[i] through r_row[i, 0] into ('r', i, 0); ('r', i, j-1) and
    ('r', i, j) are joined by r_row[i, j]. Column j: ('c', i, j) to ('c', i+1, j) through
    r_col[i, j], and ('c', R-1, j) to the 0 V sense node through r_col[R-1, j].
    """
    rows, cols = g.shape
    names = [("r", i, j) for i in range(rows) for j in range(cols)]
    names += [("c", i, j) for i in range(rows) for j in range(cols)]
    index = {n: k for k, n in enumerate(names)}
    a = np.zeros((len(names), len(names)))
    b = np.zeros(len(names))

    def resistor(n1, n2, cond):  # n2 may be a fixed voltage given as ('v', value)
        k1 = index[n1]
        a[k1, k1] += cond
        if n2[0] == "v":
            b[k1] += cond * n2[1]
        else:
            k2 = index[n2]
            a[k2, k2] += cond
            a[k1, k2] -= cond
            a[k2, k1] -= cond

    for i in range(rows):
        resistor(("r", i, 0), ("v", v_in[i]), 1 / r_row[i, 0])
        for j in range(1, cols):
            resistor(("r", i, j - 1), ("r", i, j), 1 / r_row[i, j])
    for i in range(rows):
        for j in range(cols):
            resistor(("r", i, j), ("c", i, j), g[i, j])
    for j in range(cols):
        for i in range(rows - 1):
            resistor(("c", i, j), ("c", i + 1, j), 1 / r_col[i, j])
        resistor(("c", rows - 1, j), ("v", 0.0), 1 / r_col[rows - 1, j])
    v = np.linalg.solve(a, b)
    return np.array([v[index[("c", rows - 1, j)]] / r_col[rows - 1, j] for j in range(cols)])


def test_transfer_matrix_equals_hand_written_kirchhoff_4x3():
    rng = np.random.default_rng(0)
    g = rng.uniform(2e-6, 40e-6, (4, 3))
    # exaggerated wires so the IR drop is large
    r_row = rng.uniform(500, 3000, (4, 3))
    r_col = rng.uniform(500, 3000, (4, 3))
    t = transfer_matrix(g, r_row, r_col)
    for _ in range(3):
        v = rng.uniform(0, 0.2, 4)
        ref = dense_kirchhoff(g, r_row, r_col, v)
        assert np.allclose(t @ v, ref, rtol=1e-10, atol=0)
        assert np.all(np.abs(t @ v - v @ g) > 1e-9)  # the drop is real


def test_chip_mvm_small_tile_matches_kirchhoff(ticker):
    chip = ReRAMChip(small_profile(2, rows=4, cols=3), seed=4)
    cells = np.arange(chip.n_cells)
    chip.pulse(cells, "reset", 3.0, 3.0, 1e-6, ticker())
    chip.pulse(cells, "set", 2.0, chip.profile.transistor.v_gate_for_icc(10e-6), 1e-6, ticker())
    v = np.array([0.1, 0.2, 0.05, 0.15])
    now = ticker()
    i = chip.mvm(1, v, now, read_noise=False)
    g = chip.truth.tile_conductance(1)
    r_row, r_col = chip.wires(1)
    assert np.allclose(i, dense_kirchhoff(g, r_row, r_col, v), rtol=1e-10)
    assert np.allclose(chip.mvm(1, v, now, ir_drop=False, read_noise=False), v @ g)
    assert np.allclose(chip.truth.mvm_ideal(1, v), v @ g)
    # batch
    vb = np.stack([v, 2 * v, 0 * v])
    ib = chip.mvm(1, vb, now, read_noise=False)
    assert ib.shape == (3, 3) and np.allclose(ib[1], 2 * i) and np.allclose(ib[2], 0)


def test_wire_statistics_follow_paper_004():
    chip = ReRAMChip(small_profile(2), seed=4)
    r_row, r_col = chip.wires(0)
    r = np.concatenate([r_row.ravel(), r_col.ravel()])
    w = chip.profile.wires
    assert r.min() >= w.r_min_ohm
    assert abs(r.mean() - w.r_mean_ohm) < 5 * np.sqrt(w.r_var_ohm2 / r.size)
    assert r.var() == pytest.approx(w.r_var_ohm2, rel=0.05)
    assert np.array_equal(chip.wires(0)[0], ReRAMChip(small_profile(2), seed=4).wires(0)[0])


def test_ir_drop_vanishes_with_ideal_wires(ticker):
    prof = small_profile(1)
    prof = replace(prof, wires=replace(prof.wires, r_mean_ohm=1e-6, r_var_ohm2=0.0,
                                       r_min_ohm=1e-9))
    chip = ReRAMChip(prof, seed=1)
    v = np.full(chip.rows, 0.1)
    now = ticker()
    assert np.allclose(chip.mvm(0, v, now, read_noise=False),
                       chip.mvm(0, v, now, ir_drop=False, read_noise=False), rtol=1e-6)


def test_mvm_read_noise_variance(ticker):
    chip = ReRAMChip(small_profile(1, rows=32, cols=8), seed=6)
    v = np.linspace(0.0, 0.2, chip.rows)
    now = ticker()
    n = 4000
    i = chip.mvm(0, np.tile(v, (n, 1)), now)
    g = chip.truth.tile_conductance(0)
    mean = chip.truth.mvm_exact(0, v)
    var = (v**2) @ chip.truth.read_sigma(g) ** 2
    lo, hi = var_ratio_ci(n)
    ratio = ((i - mean) ** 2).mean(axis=0) / var
    assert np.all((lo <= ratio) & (ratio <= hi))


def test_mvm_cache_rebuilt_on_programming_and_relaxation(ticker):
    chip = ReRAMChip(small_profile(2, rows=16, cols=8), seed=8)
    v = np.full(16, 0.1)
    now = ticker()
    i1 = chip.mvm(0, v, now, read_noise=False)
    assert np.array_equal(i1, chip.mvm(0, v, ticker(), read_noise=False))  # cached
    # programming a cell of another tile keeps tile 0's cache
    chip.pulse(np.array([chip.tile_size + 3]), "set", 2.0, 1.0, 1e-6, ticker())
    assert np.array_equal(i1, chip.mvm(0, v, ticker(), read_noise=False))
    # programming a cell of tile 0 rebuilds it
    chip.pulse(np.array([3]), "set", 2.0, 1.0, 1e-6, ticker())
    i2 = chip.mvm(0, v, ticker(), read_noise=False)
    # rebuilt: the currents of the truth's conductances observed now (not through the
    # cache) through the exact nodal solution of the tile's wires, new cell 3 included
    def truth_now():
        g = chip.truth.conductance(np.arange(chip.tile_size)).reshape(chip.rows, chip.cols)
        return v @ transfer_matrix(g, *chip.wires(0)).T

    np.testing.assert_allclose(i2, truth_now(), rtol=1e-12)
    assert not np.allclose(i1, truth_now(), rtol=1e-6)  # the stale cache was not
    # much later (relaxation moved by many decades) it is rebuilt too
    i3 = chip.mvm(0, v, chip.time_s + 100.0, read_noise=False)
    np.testing.assert_allclose(i3, truth_now(), rtol=1e-12)


def test_mvm_argument_errors(chip4, ticker):
    with pytest.raises(ValueError, match="v_rows"):
        chip4.mvm(0, np.zeros(5), ticker())
    with pytest.raises(IndexError):
        chip4.mvm(99, np.zeros(chip4.rows), ticker())


def test_mvm_row_window_equals_the_full_vector_with_zeros(chip4, ticker):
    """A window of rows (first_row) gives exactly the currents of the full-width vector with
    0 V elsewhere, read noise included (the same draws from the same generator state)."""
    import copy

    rng = np.random.default_rng(5)
    v = rng.uniform(0.0, 0.1, (7, 3))
    full = np.zeros((7, chip4.rows))
    full[:, 2:5] = v
    now = ticker()
    twin = copy.deepcopy(chip4)
    a = chip4.mvm(1, v, now, first_row=2)
    b = twin.mvm(1, full, now)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="first_row"):
        chip4.mvm(1, v, now, first_row=chip4.rows - 2)

"""The structured block elimination (crossbar.transfer_matrix, used by the emulator) against
the sparse-LU nodal solution it replaced (crossbar.transfer_matrix_sparse): same circuit, same
equations, so the two exact solutions must agree to rounding (relative 1e-9 asked; ~1e-12
seen)."""

import numpy as np
import pytest

from cimlab.physics.crossbar import draw_wires, transfer_matrix, transfer_matrix_sparse

RTOL = 1e-9


@pytest.mark.parametrize(
    ("rows", "cols", "r_mean", "g_lo", "g_hi"),
    [
        (1, 1, 2.0, 1e-6, 5e-5),
        (1, 7, 2.0, 1e-6, 5e-5),
        (9, 1, 2.0, 1e-6, 5e-5),
        (16, 8, 2.5, 1e-6, 5e-5),       # default profile's wire resistance, 1-50 uS
        (64, 32, 50.0, 1e-7, 1e-4),     # strong IR drop, 3 decades of conductance
        (256, 64, 2.5, 1e-6, 5e-5),     # the default profile's tile
    ],
)
def test_structured_equals_sparse_nodal_solution(rows, cols, r_mean, g_lo, g_hi):
    rng = np.random.default_rng(rows * 1000 + cols)
    g = np.exp(rng.uniform(np.log(g_lo), np.log(g_hi), (rows, cols)))
    r_row, r_col = draw_wires(rows, cols, r_mean, (0.1 * r_mean) ** 2, 0.2 * r_mean, rng)
    t_ref = transfer_matrix_sparse(g, r_row, r_col)
    t = transfer_matrix(g, r_row, r_col)
    assert t.shape == (cols, rows)
    np.testing.assert_allclose(t, t_ref, rtol=RTOL, atol=0)
    # and the IR drop is really there (not a trivially ideal tile)
    assert np.abs(t - g.T).max() > 1e-6 * np.abs(g).max()



def test_mvm_with_undriven_rows_equals_the_full_product():
    """Rows at 0 V on every vector are left out of the products (chip.mvm): the same currents
    and read noise (same draws) as driving them at a negligible 1e-300 V (full product)."""
    from cimlab.physics import ReRAMChip
    from tests.physics.conftest import small_profile

    chips = [ReRAMChip(small_profile(2, rows=16, cols=8), seed=4) for _ in range(2)]
    rng = np.random.default_rng(0)
    v = np.zeros((5, 16))
    v[:, 4:10] = rng.uniform(-0.2, 0.2, (5, 6))
    v_full = np.where(v == 0.0, 1e-300, v)
    for ir_drop in (True, False):
        for read_noise in (False, True):
            a = chips[0].mvm(1, v, 1.0, ir_drop=ir_drop, read_noise=read_noise)
            b = chips[1].mvm(1, v_full, 1.0, ir_drop=ir_drop, read_noise=read_noise)
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=0)
    one = chips[0].mvm(1, v[0], 1.0, read_noise=False)  # a single vector, too
    np.testing.assert_allclose(one, chips[1].mvm(1, v_full[0], 1.0, read_noise=False),
                               rtol=1e-12, atol=0)
    assert np.all(chips[0].mvm(1, np.zeros((3, 16)), 1.0, read_noise=True) == 0.0)

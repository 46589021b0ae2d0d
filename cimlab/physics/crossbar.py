"""Exact IR-drop solution of a 1T1R crossbar tile by nodal analysis (scipy.sparse).

Circuit (one tile, ``R`` rows x ``C`` columns; paper 004's line resistance per cell segment):

* row ``i`` is driven at voltage ``V_i`` from the column-0 side; row wire segment ``(i, j)``
  (resistance ``r_row[i, j]``) joins row node ``(i, j-1)`` (the driver for ``j = 0``) to row
  node ``(i, j)``;
* cell ``(i, j)`` (conductance ``G[i, j]``, access transistor fully on) joins row node
  ``(i, j)`` to column node ``(i, j)``;
* column wire segment ``(i, j)`` (``r_col[i, j]``) joins column node ``(i, j)`` to column node
  ``(i+1, j)``; for ``i = R-1`` it joins the sense amplifier, a virtual ground (0 V) that
  measures the column current ``I_j``.

The node equations ``A v = B V`` are linear in the inputs, so ``I = T V`` with the
``C x R`` transfer matrix ``T[j, i] = g_out_j g_in_i (A^-1)[out_j, in_i]``. A batch of input
vectors is then one dense matmul with ``T``.

Two exact ways to get ``T`` (same circuit, same equations, agree to ~1e-12 relative):

* :func:`transfer_matrix` (used by the emulator): block Gaussian elimination that follows the
  circuit's structure. Each row wire is a chain, so its ``C`` row nodes are eliminated in
  closed form (one batched ``C x C`` inverse per row, all rows at once); what remains is a
  block-tridiagonal system in the column nodes, one ``C x C`` block per array row, eliminated
  from the top row down (``R`` dense ``C x C`` solves). Only the bottom row's column nodes feed
  the sense amplifiers, so no back substitution of node voltages is needed: the dependence of
  the outputs on each input is recovered with one ``C x C`` matrix product per row. Cost
  ``O(R C^3)``; about 10x faster than the sparse solve for 256 x 64 tiles.
* :func:`transfer_matrix_sparse` (the reference): the full ``2RC x 2RC`` nodal matrix
  (:func:`nodal_matrix`), factorised once by sparse LU and solved for the ``C`` output nodes as
  right-hand sides (adjoint method; ``A`` is symmetric positive definite).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla


def _index(rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    n = rows * cols
    rnode = np.arange(n).reshape(rows, cols)
    cnode = n + rnode
    return rnode, cnode


def nodal_matrix(g: np.ndarray, r_row: np.ndarray, r_col: np.ndarray) -> sp.csc_matrix:
    """Sparse conductance matrix ``A`` (2RC x 2RC): row nodes first, then column nodes."""
    rows, cols = g.shape
    rnode, cnode = _index(rows, cols)
    n2 = 2 * rows * cols
    gr = 1.0 / r_row
    gc = 1.0 / r_col
    diag = np.zeros(n2)
    i_list, j_list, v_list = [], [], []

    def couple(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> None:
        a, b, w = a.ravel(), b.ravel(), w.ravel()
        np.add.at(diag, a, w)
        np.add.at(diag, b, w)
        i_list.extend((a, b))
        j_list.extend((b, a))
        v_list.extend((-w, -w))

    # row wire segments between neighbouring row nodes (j >= 1)
    couple(rnode[:, :-1], rnode[:, 1:], gr[:, 1:])
    # driver segment (j = 0): to a fixed-voltage node -> diagonal only
    np.add.at(diag, rnode[:, 0], gr[:, 0])
    # cells
    couple(rnode, cnode, g)
    # column wire segments between neighbouring column nodes
    couple(cnode[:-1, :], cnode[1:, :], gc[:-1, :])
    # last segment to the virtual ground
    np.add.at(diag, cnode[-1, :], gc[-1, :])
    i_all = np.concatenate([*i_list, np.arange(n2)])
    j_all = np.concatenate([*j_list, np.arange(n2)])
    v_all = np.concatenate([*v_list, diag])
    return sp.csc_matrix((v_all, (i_all, j_all)), shape=(n2, n2))


def transfer_matrix(g: np.ndarray, r_row: np.ndarray, r_col: np.ndarray) -> np.ndarray:
    """Exact ``C x R`` matrix ``T`` with column currents ``I = T @ V`` [A] for row voltages
    ``V`` [V], for conductances ``g`` [S] and segment resistances ``r_row``, ``r_col`` [ohm]
    (all ``R x C``), by block elimination along the circuit's structure (module docstring).

    Row ``i``'s chain matrix ``L_i`` (``C x C``, tridiagonal) is inverted; eliminating its
    row nodes leaves, for the column nodes of array row ``i``, the block
    ``K_i = diag(g_i + gc_i + gc_{i-1}) - G_i L_i^-1 G_i`` and the source
    ``b_i V_i`` with ``b_i = G_i L_i^-1 e_0 gr_{i,0}``; neighbouring array rows are coupled by
    ``-diag(gc_i)`` (column wire segments). Top-down elimination:
    ``D_0 = K_0``, ``D_i = K_i - W_{i-1} D_{i-1}^-1 W_{i-1}`` with ``W_i = diag(gc_i)``; the
    bottom row's column voltages are ``D_{R-1}^-1 sum_k (P_{R-1} ... P_{k+1}) b_k V_k`` with
    ``P_i = W_{i-1} D_{i-1}^-1``, and ``I = diag(gc_{R-1})`` times them."""
    g = np.asarray(g, dtype=float)
    rows, cols = g.shape
    gr = 1.0 / np.asarray(r_row, dtype=float)
    gc = 1.0 / np.asarray(r_col, dtype=float)
    k = np.arange(cols)
    chain = np.zeros((rows, cols, cols))
    diag = gr + g
    diag[:, :-1] += gr[:, 1:]
    chain[:, k, k] = diag
    chain[:, k[:-1], k[1:]] = -gr[:, 1:]
    chain[:, k[1:], k[:-1]] = -gr[:, 1:]
    m = np.linalg.inv(chain)  # (R, C, C): L_i^-1, all rows at once
    blocks = -(g[:, :, None] * m * g[:, None, :])
    kd = g + gc
    kd[1:] += gc[:-1]
    blocks[:, k, k] += kd
    b = g * m[:, :, 0] * gr[:, :1]  # (R, C): b_i
    prop = np.empty((rows, cols, cols))  # P_i (P_0 unused)
    d = blocks[0]
    for i in range(1, rows):
        s = np.linalg.solve(d, np.diag(gc[i - 1]))  # D_{i-1}^-1 W_{i-1}
        d = blocks[i] - gc[i - 1][:, None] * s
        prop[i] = s.T  # W D^-1 (D symmetric)
    q = gc[-1][:, None] * np.linalg.inv(d)
    t = np.empty((cols, rows))
    for i in range(rows - 1, -1, -1):
        t[:, i] = q @ b[i]
        if i:
            q = q @ prop[i]
    return t


def transfer_matrix_sparse(g: np.ndarray, r_row: np.ndarray, r_col: np.ndarray) -> np.ndarray:
    """:func:`transfer_matrix` by sparse LU of the full nodal matrix (the reference solution;
    slower: one ``2RC``-node factorisation and ``C`` sparse solves)."""
    rows, cols = g.shape
    rnode, cnode = _index(rows, cols)
    a = nodal_matrix(g, r_row, r_col)
    lu = spla.splu(a, permc_spec="MMD_AT_PLUS_A")
    rhs = np.zeros((2 * rows * cols, cols))
    rhs[cnode[-1, :], np.arange(cols)] = 1.0
    x = lu.solve(rhs)  # x[:, j] = A^-1 e_out_j  (A symmetric)
    g_in = 1.0 / r_row[:, 0]  # (R,)
    g_out = 1.0 / r_col[-1, :]  # (C,)
    return (x[rnode[:, 0], :] * g_in[:, None] * g_out[None, :]).T


def draw_wires(
    rows: int, cols: int, r_mean: float, r_var: float, r_min: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Per-segment wire resistances [ohm] ``(r_row, r_col)``, each ``R x C``, from
    ``N(r_mean, r_var)`` truncated below at ``r_min`` (draws below are redrawn)."""
    sd = float(np.sqrt(r_var))
    out = []
    for _ in range(2):
        r = r_mean + sd * rng.standard_normal((rows, cols))
        bad = r < r_min
        while np.any(bad):
            r[bad] = r_mean + sd * rng.standard_normal(int(bad.sum()))
            bad = r < r_min
        out.append(r)
    return out[0], out[1]

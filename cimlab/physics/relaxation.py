"""Lazy sampling of the post-programming relaxation process.

Each cell's conductance after its last programming pulse (value ``g0`` at equivalent time
``e_prog``) is ``g(E) = g0 + m(g0) L(E - e_prog) + X(E)`` where ``L(t) = log10(1 + t/tau)``
and ``X`` is a zero-mean Gaussian process with independent increments and
``Var X = b(g0) L`` (a Brownian motion in the clock ``L``; forms and constants in
:class:`cimlab.physics.profile.Relaxation`, fit to the techC data in docs/physics.md).
A cell remembers ``X`` at its last observation ``e_obs``; an observation at ``E`` draws the
increment ``N(0, b (L(E - e_prog) - L(e_obs - e_prog)))``. Observations at any times are
therefore exact joint samples of the same process (no time grid).
"""

from __future__ import annotations

import numpy as np

from cimlab.physics.profile import Relaxation


def observe(
    relaxation: Relaxation,
    g0: np.ndarray,
    rate_mean: np.ndarray,
    rate_var: np.ndarray,
    e_prog: np.ndarray,
    e_obs: np.ndarray,
    x_obs: np.ndarray,
    e_now: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Sample the process at ``e_now`` for the given cells.

    Returns ``(g, x_new)``: the conductance [S] (not yet floored) and the new random offset.
    ``rate_mean`` [S/decade] and ``rate_var`` [S^2/decade] are the cells' cached m(g0), b(g0).
    """
    l_now = relaxation.log_time(e_now - e_prog)
    l_obs = relaxation.log_time(e_obs - e_prog)
    dl = np.maximum(l_now - l_obs, 0.0)
    x_new = x_obs + np.sqrt(rate_var * dl) * rng.standard_normal(g0.shape[0])
    return g0 + rate_mean * l_now + x_new, x_new

"""The in-place evaluations of the simulator equal the device model's own functions."""

from __future__ import annotations

import pytest
import torch

from cimlab.models.effects import SIGMA_FORMS, ReadNoise, Relaxation
from cimlab.sim.inplace import add_drift, read_sigma, read_variance_pair

G = torch.linspace(0.0, 60e-6, 1001, dtype=torch.float64)


def _read_noise(form: str) -> ReadNoise:
    values = {"s0": 5e-8, "s1": 3e-7, "s2": 2e-7}
    free = SIGMA_FORMS[form]  # the coefficients of this form; the others must be 0
    return ReadNoise(form=form, **{k: (v if k in free else 0.0) for k, v in values.items()})


@pytest.mark.parametrize("form", list(SIGMA_FORMS))
def test_read_sigma_and_pair_variance_equal_the_model(form):
    rn = _read_noise(form)
    torch.testing.assert_close(read_sigma(rn, G), rn.sigma(G), rtol=1e-12, atol=0.0)
    out = torch.empty_like(G)
    assert read_sigma(rn, G, out=out) is out
    g2 = G.flip(0)
    expect = rn.sigma(G) ** 2 + rn.sigma(g2) ** 2
    torch.testing.assert_close(read_variance_pair(rn, G, g2), expect, rtol=1e-12, atol=0.0)


@pytest.mark.parametrize("mean_form", ["tanh", "linear"])
def test_add_drift_equals_the_model(mean_form):
    rel = Relaxation(mean_form=mean_form)
    dst = torch.ones_like(G)
    add_drift(rel, G, dst, 0.7)
    torch.testing.assert_close(dst, 1.0 + 0.7 * rel.drift(G), rtol=1e-12, atol=1e-18)

"""Monte Carlo over programmings: reproducible from one seed, independent of worker count."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cimlab.errors import ConfigError
from cimlab.sim import (
    AnalogConfig,
    convert,
    evaluate,
    layer_nrmse,
    monte_carlo,
    neuron_distributions,
    plot_distributions,
    trial_seeds,
)
from tests.sim.sim_helpers import dm_default, test_loader, trained_cnn


def _anet():
    return convert(trained_cnn(), AnalogConfig(device=dm_default(), adc_bits=6))


def test_monte_carlo_reproducible_and_worker_independent():
    loader = test_loader(batch=150)[:2]
    anet = _anet()
    a = monte_carlo(anet, loader, n_trials=4, seed=123, workers=1)
    b = monte_carlo(anet, loader, n_trials=4, seed=123, workers=2)
    c = monte_carlo(anet, loader, n_trials=4, seed=124, workers=1)
    np.testing.assert_array_equal(a.accuracies, b.accuracies)
    assert a.seeds == trial_seeds(123, 4) == b.seeds
    assert len(set(a.accuracies)) > 1  # programmings differ
    assert not np.array_equal(a.accuracies, c.accuracies)
    assert "trials" in a.table() and 0 < a.mean <= 1
    # a trial is one programming: the same seed programs the same chip
    one = anet.program(torch.Generator().manual_seed(a.seeds[2]))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert evaluate(one, loader) == a.accuracies[2]
    finally:
        torch.set_num_threads(threads)
    with pytest.raises(ConfigError):
        monte_carlo(anet, loader, n_trials=0)


def test_nrmse_and_neuron_distribution_plot(tmp_path):
    anet = _anet().program(0)
    x = test_loader()[0][0][:64]
    errs = layer_nrmse(anet, x)
    assert list(errs) == anet.layer_names
    assert all(0 < v < 2 for v in errs.values())
    anet.set_injection([])
    assert all(v == 0 for v in layer_nrmse(anet, x).values())
    anet.set_injection(None)
    dists = neuron_distributions(anet, x, ["0"])
    ideal, analog = dists["0"]
    assert ideal.shape == analog.shape and not np.allclose(ideal, analog)
    png = plot_distributions(dists, tmp_path / "dist.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

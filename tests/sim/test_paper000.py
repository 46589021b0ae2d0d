"""Paper 000 (Lee et al.) on the embedded digits: layer-by-layer injection of programming
error and read fluctuation; the first conv layer is the most critical, its error propagates.

Measured figures are printed (``pytest -s``) and quoted in docs/simulator.md.
"""

from __future__ import annotations

import numpy as np

from cimlab.sim import AnalogConfig, convert, evaluate, injection_study
from tests.sim.sim_helpers import dm_default, test_loader, trained_cnn

SEEDS = tuple(range(6))


def test_first_layer_errors_hurt_most_and_propagate():
    net = trained_cnn()
    loader = test_loader()
    ideal = evaluate(net, loader)
    assert ideal > 0.95
    # paper 000: program error (0.07 of range) and read fluctuation, one layer at a time
    cfg = AnalogConfig.ideal(dm_default(), programming_error=True, read_noise="weight")
    anet = convert(net, cfg)
    rows = injection_study(anet, loader, seeds=SEEDS)
    names = anet.layer_names
    last = names[-1]
    print(f"\nideal accuracy {ideal:.4f}")
    for r in rows:
        print(f"inject {r['injected']:>3}: accuracy {r['accuracy']:.4f} +- "
              f"{r['accuracy_std']:.4f}  NRMSE " +
              "  ".join(f"{k}:{v:.3f}" for k, v in r["nrmse"].items()))  # fmt: skip
    by = {r["injected"]: r for r in rows}
    first = by[names[0]]
    others = [by[n] for n in names[1:]]
    # the network output is perturbed most by errors in the first layer ...
    assert first["nrmse"][last] > 1.2 * max(o["nrmse"][last] for o in others)
    # ... because the first layer's error is not averaged out: it grows through the next layers
    assert first["nrmse"][names[1]] > first["nrmse"][names[0]]
    # and accuracy is lowest when the first layer carries the errors
    assert first["accuracy"] <= min(o["accuracy"] for o in others)
    assert np.all(np.isfinite([v for r in rows for v in r["nrmse"].values()]))

"""Task engines: a local Dask cluster (2 worker processes) gives the serial values, in order."""

from __future__ import annotations

import numpy as np
import pytest

from cimlab.errors import ConfigError
from cimlab.parallel import DaskEngine, SerialEngine, engine_for, task_seeds


def draw(seed: int, shared: float | None = None) -> list[float]:
    """A seeded task: three normals (plus ``shared``)."""
    x = np.random.default_rng(seed).normal(size=3)
    return (x + (shared or 0.0)).tolist()


def fail_on_three(i: int) -> int:
    if i == 3:
        raise ValueError("task 3 failed")
    return i


@pytest.fixture(scope="module")
def cluster():
    with DaskEngine(workers=2, processes=True) as eng:
        yield eng


def test_task_seeds_spawned_deterministic_and_prefix_stable():
    s = task_seeds(7, 5)
    assert s == task_seeds(7, 5) and s[:3] == task_seeds(7, 3)
    assert len(set(s)) == 5 and all(0 <= v < 2**63 for v in s)
    kids = np.random.SeedSequence(7).spawn(5)
    assert s[1] == int(kids[1].generate_state(1, np.uint64)[0] >> np.uint64(1))
    assert task_seeds(8, 5) != s


def test_local_cluster_equals_serial_in_input_order(cluster):
    seeds = task_seeds(0, 9)
    serial = SerialEngine().map(draw, seeds)
    seen = []
    parallel = cluster.map(draw, seeds, on_result=lambda i, r: seen.append(i))
    assert parallel == serial
    assert sorted(seen) == list(range(9))
    assert cluster.n_workers == 2 and "2 worker processes" in cluster.description
    # a shared object is sent once and passed to every task
    assert cluster.map(draw, seeds[:4], shared=10.0) == SerialEngine().map(draw, seeds[:4],
                                                                            shared=10.0)
    assert cluster.map(draw, []) == []


def test_task_error_reaches_the_caller(cluster):
    with pytest.raises(ValueError, match="task 3 failed"):
        cluster.map(fail_on_three, range(6))


def test_engine_for_flags(monkeypatch):
    monkeypatch.delenv("CIMLAB_CLUSTER", raising=False)
    assert isinstance(engine_for(1), SerialEngine)
    with pytest.raises(ConfigError, match="workers"):
        engine_for(0)


def test_monte_carlo_on_the_cluster_equals_serial(cluster):
    from cimlab.sim import AnalogConfig, convert, monte_carlo
    from tests.sim.sim_helpers import dm_default, test_loader, trained_cnn

    loader = test_loader(batch=150)[:1]
    anet = convert(trained_cnn(), AnalogConfig(device=dm_default(), adc_bits=6))
    a = monte_carlo(anet, loader, n_trials=3, seed=5, workers=1)
    b = monte_carlo(anet, loader, n_trials=3, seed=5, engine=cluster)
    np.testing.assert_array_equal(a.accuracies, b.accuracies)
    assert b.seeds == a.seeds and b.info["engine"] == cluster.description


def test_local_workers_run_without_dask_malloc_trim(cluster):
    """Dask's MALLOC_TRIM_THRESHOLD_ (which freezes glibc's mmap threshold and doubled the CPU
    time of a simulated trial) is not in the workers' environment; OMP_NUM_THREADS=1 is."""
    import os

    env = cluster.client.run(lambda: (os.environ.get("MALLOC_TRIM_THRESHOLD_"),
                                      os.environ.get("OMP_NUM_THREADS")))
    assert len(env) == 2
    assert all(v == (None, "1") for v in env.values()), env

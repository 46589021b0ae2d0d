"""Accuracy of a (converted) network and Monte Carlo over independent programmings.

``monte_carlo`` programs ``n_trials`` independent chips (paper 001 maps each model 20 times
to get the accuracy spread) and evaluates each. Trial ``i`` uses the seed
``SeedSequence(seed).spawn(n_trials)[i]``: one generator programs the chip and seeds the
per-forward read noise, so the result list depends only on ``seed`` and ``n_trials``, never
on the number of worker processes (each worker computes whole trials with one intra-op
thread; ``workers=1`` runs inline).
"""

from __future__ import annotations

import concurrent.futures as cf
import copy
import multiprocessing as mp
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from cimlab.errors import ConfigError
from cimlab.parallel import Engine
from cimlab.sim.devices import device_of, to_device

if TYPE_CHECKING:
    from cimlab.sim.convert import AnalogNetwork


@torch.no_grad()
def evaluate(net: nn.Module, loader: Iterable[Any], device: str | torch.device | None = None
             ) -> float:  # fmt: skip
    """Top-1 accuracy (fraction in [0, 1]) of ``net`` over ``loader`` ((x, y) batches).

    Runs in eval mode (restored afterwards) on ``device`` (default: the net's device).
    """
    was = net.training
    net.eval()
    device = device_of(net) if device is None else torch.device(device)
    correct = total = 0
    try:
        for x, y in loader:
            out = net(to_device(x, device))
            correct += int((out.argmax(dim=-1).cpu() == y).sum())
            total += int(y.numel())
    finally:
        net.train(was)
    if total == 0:
        raise ConfigError(None, "loader", "at least one (x, y) batch", "an empty loader")
    return correct / total


def trial_seeds(seed: int, n_trials: int) -> list[int]:
    """Per-trial 63-bit seeds derived with ``numpy.random.SeedSequence(seed).spawn``."""
    children = np.random.SeedSequence(int(seed)).spawn(int(n_trials))
    return [int(c.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1)) for c in children]


@dataclass
class MonteCarloResult:
    """Accuracies of independent programmings (one per trial, in trial order)."""

    accuracies: np.ndarray
    seeds: list[int]
    seed: int
    info: dict = field(default_factory=dict)

    @property
    def mean(self) -> float:
        return float(np.mean(self.accuracies))

    @property
    def std(self) -> float:
        return float(np.std(self.accuracies, ddof=1)) if len(self.accuracies) > 1 else 0.0

    def quantiles(self, qs: Iterable[float] = (0.0, 0.05, 0.5, 0.95, 1.0)) -> dict[float, float]:
        return {q: float(np.quantile(self.accuracies, q)) for q in qs}

    def table(self) -> str:
        """Readable summary of the accuracy distribution."""
        q = self.quantiles()
        lines = [
            f"trials   {len(self.accuracies)}   (seed {self.seed})",
            f"mean     {self.mean:.4f}   std {self.std:.4f}",
            f"min      {q[0.0]:.4f}   p05 {q[0.05]:.4f}   median {q[0.5]:.4f}   "
            f"p95 {q[0.95]:.4f}   max {q[1.0]:.4f}",
        ]
        return "\n".join(lines)


def run_trial(
    source: AnalogNetwork | Callable[[], AnalogNetwork], loader: Iterable[Any], seed: int,
    age: tuple[float, float] | None,
    calibrate: Iterable[Any] | None, prepare: Callable[[AnalogNetwork], object] | None = None,
) -> float:  # fmt: skip
    """One Monte Carlo trial: build/copy the analog net, program with ``seed``, optionally
    age ``(seconds, temp_c)``, calibrate converter ranges, and evaluate."""
    from cimlab.sim.convert import AnalogNetwork

    anet = copy.deepcopy(source) if isinstance(source, AnalogNetwork) else source()
    if not isinstance(anet, AnalogNetwork):
        raise ConfigError(None, "net_factory", "a callable returning an AnalogNetwork", anet)
    anet.program(torch.Generator().manual_seed(seed))
    if age is not None:
        anet.age(*age)
    if calibrate is not None:
        anet.calibrate(calibrate)
    if prepare is not None:
        prepare(anet)
    return evaluate(anet, loader)


def _worker(args: tuple) -> tuple[int, float]:
    i, source, loader, seed, age, calibrate, prepare = args
    torch.set_num_threads(1)
    return i, run_trial(source, loader, seed, age, calibrate, prepare)


def _engine_trial(job: tuple[int, int], shared: tuple) -> tuple[int, float]:
    source, loader, age, calibrate, prepare = shared
    threads = torch.get_num_threads()
    try:  # one intra-op thread, as in the workers; restored for a serial engine
        return _worker((job[0], source, loader, job[1], age, calibrate, prepare))
    finally:
        torch.set_num_threads(threads)


def monte_carlo(
    net_factory_or_anet: AnalogNetwork | Callable[[], AnalogNetwork],
    loader: Iterable[Any],
    n_trials: int = 20,
    seed: int = 0,
    workers: int = 1,
    *,
    age: tuple[float, float] | None = None,
    calibrate: Iterable[Any] | None = None,
    prepare: Callable[[AnalogNetwork], object] | None = None,
    progress: bool = False,
    engine: Engine | None = None,
) -> MonteCarloResult:
    """Accuracy distribution over ``n_trials`` independent programmings of the network (paper
    001 maps each model 20 times). Trial ``i`` is seeded with
    ``SeedSequence(seed).spawn(n_trials)[i]`` (programming and per-forward read noise), so the
    results depend only on ``seed`` and ``n_trials``, not on ``workers``.

    ``net_factory_or_anet``: an :class:`~cimlab.sim.convert.AnalogNetwork` (deep-copied per
    trial) or a picklable callable returning one. ``age``: ``(seconds, temp_c)`` applied after
    programming. ``calibrate``: batches for :meth:`AnalogNetwork.calibrate`. ``prepare``: a
    picklable callable run on each programmed net before evaluation (e.g. a BN calibration).
    ``workers > 1`` runs trials in spawned processes (``concurrent.futures``). ``engine``: a
    :class:`cimlab.parallel.Engine` (e.g. ``engine_for(workers, cluster_address)``) that runs
    the trials instead (``workers`` is then ignored); same values for the same ``seed``.
    """
    if int(n_trials) < 1:
        raise ConfigError(None, "n_trials", "an integer >= 1", n_trials)
    if int(workers) < 1:
        raise ConfigError(None, "workers", "an integer >= 1", workers)
    seeds = trial_seeds(seed, n_trials)
    acc = np.zeros(len(seeds))
    bar = _progress(len(seeds), progress)
    if engine is not None:
        jobs = [(i, s) for i, s in enumerate(seeds)]
        shared = (net_factory_or_anet, loader, age, calibrate, prepare)
        for i, a in engine.map(_engine_trial, jobs, shared=shared,
                               on_result=lambda _i, _r: bar.update(1)):
            acc[i] = a
        bar.close()
        return MonteCarloResult(acc, seeds, int(seed),
                                {"workers": 1, "engine": engine.description, "age": age})
    if workers == 1:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # same arithmetic as in the workers
        try:
            for i, s in enumerate(seeds):
                acc[i] = run_trial(net_factory_or_anet, loader, s, age, calibrate, prepare)
                bar.update(1)
        finally:
            torch.set_num_threads(threads)
    else:
        ctx = mp.get_context("spawn")
        jobs = [(i, net_factory_or_anet, loader, s, age, calibrate, prepare)
                for i, s in enumerate(seeds)]  # fmt: skip
        with cf.ProcessPoolExecutor(max_workers=int(workers), mp_context=ctx) as pool:
            for i, a in pool.map(_worker, jobs):
                acc[i] = a
                bar.update(1)
    bar.close()
    return MonteCarloResult(acc, seeds, int(seed), {"workers": int(workers), "age": age})


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc="Monte Carlo trials", unit="trial", disable=None)

"""Task engines: :class:`SerialEngine` (this process) and :class:`DaskEngine` (Dask
distributed: a local cluster of worker processes, or an existing cluster by address).

Why Dask distributed and not Ray (measured on this machine, docs/scale-out.md): the
``distributed`` wheel is 1 MB (Ray's 76 MB), its other dependencies were already installed
with ``dask``, it is pure Python (no platform wheel, any Python version), and its per-task
overhead on a local cluster is a few milliseconds, far below a task here (a Monte Carlo trial
or a chip's campaign takes seconds). The multi-machine setup is two commands
(``dask scheduler``, ``dask worker ADDRESS``) and the address is the only change in cimlab.

Determinism: an engine only decides *where* a task runs. Tasks receive their inputs (seeds
included, from :func:`task_seeds`) explicitly, and :meth:`Engine.map` returns results in input
order, so a sweep gives the same values serially, on 2 local workers or on a cluster.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

import numpy as np

from cimlab.errors import ConfigError

T = TypeVar("T")
R = TypeVar("R")


def task_seeds(seed: int, n: int) -> list[int]:
    """``n`` independent 63-bit task seeds from ``seed``: ``SeedSequence(seed).spawn(n)``,
    one ``uint64`` state word each (top bit cleared). Depends only on ``(seed, n)``'s prefix:
    the first k seeds of ``task_seeds(s, n)`` equal ``task_seeds(s, k)``."""
    if int(n) < 0:
        raise ConfigError(None, "n", "an integer >= 0", n)
    children = np.random.SeedSequence(int(seed)).spawn(int(n))
    return [int(c.generate_state(1, np.uint64)[0] >> np.uint64(1)) for c in children]


class Engine(Protocol):
    """Maps a task function over inputs; results in input order."""

    #: short description for reports ("serial", "dask local 2 workers", "dask tcp://...")
    description: str

    def map(self, fn: Callable[..., R], items: Sequence[Any], *, shared: Any = None,
            on_result: Callable[[int, R], None] | None = None) -> list[R]:
        """``[fn(item) for item in items]`` (``fn(item, shared)`` when ``shared`` is given:
        an object sent once to each worker, not once per task); ``on_result(index, result)``
        is called as results arrive (progress bars)."""
        ...

    def close(self) -> None:
        ...


def _call(item: Any, fn: Callable[..., Any], shared: Any, has_shared: bool) -> Any:
    return fn(item, shared) if has_shared else fn(item)


class SerialEngine:
    """Every task in this process, one after the other (the default)."""

    description = "serial"

    def map(self, fn: Callable[..., R], items: Sequence[Any], *, shared: Any = None,
            on_result: Callable[[int, R], None] | None = None) -> list[R]:
        out = []
        for i, item in enumerate(items):
            r = _call(item, fn, shared, shared is not None)
            out.append(r)
            if on_result is not None:
                on_result(i, r)
        return out

    def close(self) -> None:
        pass

    def __enter__(self) -> SerialEngine:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


#: Environment variables Dask's nanny sets in worker processes that cimlab drops: glibc's
#: ``MALLOC_TRIM_THRESHOLD_`` (distributed sets it to 65536) also freezes the mmap threshold
#: at 128 KiB, so every activation tensor of a simulated network is a fresh mmap whose pages
#: fault in: a Monte Carlo trial took 1.7 s of CPU in a worker against 0.84-0.89 s in the main
#: process or in a worker without it (paper000-cnn, 450 digits; docs/scale-out.md).
DROPPED_WORKER_ENV = ("MALLOC_TRIM_THRESHOLD_",)


def worker_environ() -> dict[str, Any]:
    """Dask's pre-spawn environment for worker processes without :data:`DROPPED_WORKER_ENV`
    (``OMP_NUM_THREADS=1`` and the others stay)."""
    import dask

    env = dict(dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {})
    for key in DROPPED_WORKER_ENV:
        env.pop(key, None)
    return env


class DaskEngine:
    """Tasks on Dask distributed workers.

    ``address`` ``None``: a local cluster of ``workers`` worker processes (``processes=True``)
    or threads (``processes=False``), one thread each, started now and stopped by
    :meth:`close`. ``address`` ``"tcp://HOST:8786"``: the running cluster whose scheduler
    listens there (``dask scheduler`` / ``dask worker tcp://HOST:8786``; docs/scale-out.md);
    ``workers`` is then ignored. Workers must import the same cimlab version (the task
    functions are pickled by reference).
    """

    def __init__(self, address: str | None = None, workers: int = 2, *,
                 processes: bool = True) -> None:
        try:
            from distributed import Client, LocalCluster
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ConfigError(None, "engine", "the 'distributed' package (pip install "
                              "'cimlab[cluster]')", "not installed") from exc
        self._cluster = None
        if address is None:
            if int(workers) < 1:
                raise ConfigError(None, "workers", "an integer >= 1", workers)
            import dask

            with dask.config.set({"distributed.nanny.pre-spawn-environ": worker_environ()}):
                self._cluster = LocalCluster(n_workers=int(workers), threads_per_worker=1,
                                             processes=processes, dashboard_address=None)
            self.client = Client(self._cluster)
            kind = "processes" if processes else "threads"
            self.description = f"dask local {int(workers)} worker {kind}"
        else:
            self.client = Client(str(address), timeout="30s")
            self.description = f"dask {address}"

    @property
    def n_workers(self) -> int:
        return len(self.client.scheduler_info(n_workers=-1)["workers"])

    def map(self, fn: Callable[..., R], items: Sequence[Any], *, shared: Any = None,
            on_result: Callable[[int, R], None] | None = None) -> list[R]:
        from distributed import as_completed

        items = list(items)
        if not items:
            return []
        has_shared = shared is not None
        if has_shared:
            [shared] = self.client.scatter([shared], broadcast=True, hash=False)
        futures = self.client.map(_call, items, fn=fn, shared=shared, has_shared=has_shared,
                                  pure=False)
        index = {f.key: i for i, f in enumerate(futures)}
        out: list[Any] = [None] * len(items)
        try:
            for fut, res in as_completed(futures, with_results=True):
                i = index[fut.key]
                out[i] = res
                if on_result is not None:
                    on_result(i, res)
        finally:
            for f in futures:
                f.release()
        return out

    def close(self) -> None:
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()

    def __enter__(self) -> DaskEngine:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def engine_for(workers: int = 1, address: str | None = None) -> SerialEngine | DaskEngine:
    """The engine for a ``--workers N`` / ``--cluster ADDRESS`` pair of flags: the cluster at
    ``address`` if given; else serial for ``workers == 1`` and a local Dask cluster of
    ``workers`` processes otherwise. ``CIMLAB_CLUSTER`` in the environment stands for a
    missing ``address``."""
    address = address or os.environ.get("CIMLAB_CLUSTER") or None
    if address is not None:
        return DaskEngine(address)
    if int(workers) < 1:
        raise ConfigError(None, "workers", "an integer >= 1", workers)
    return SerialEngine() if int(workers) == 1 else DaskEngine(None, int(workers))

"""Session-wide test set-up."""

from __future__ import annotations

import os
import signal

import pytest

from tests.fuzz.tally import TALLY

#: torch's intra-op thread count when the session started (set in pytest_configure)
_DEFAULT_TORCH_THREADS: list[int] = []


def pytest_configure(config: object) -> None:
    """Ctrl-C tests need SIGINT delivered: a test run started as a background job of a
    non-interactive shell (``cmd &``, as some CI runners do) inherits SIGINT *ignored*, Python
    then installs no KeyboardInterrupt handler, and the subprocesses the tests interrupt would
    inherit the ignore too. Restore Python's default handler (children get the OS default)."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    import torch

    _DEFAULT_TORCH_THREADS.append(torch.get_num_threads())  # before any fixture sets it
    if config.pluginmanager.hasplugin("xdist"):  # type: ignore[attr-defined]
        config.pluginmanager.register(_WorkerTallies(), "cimlab-fuzz-tallies")  # type: ignore[attr-defined]


class _WorkerTallies:
    """pytest-xdist (``-n 2``): each worker sends its fuzz tally when it finishes
    (``pytest_sessionfinish`` below), the controller sums them for the summary."""

    def pytest_testnodedown(self, node, error) -> None:  # type: ignore[no-untyped-def]
        TALLY.merge(getattr(node, "workeroutput", {}).get("fuzz_tally"))


def pytest_collection_modifyitems(session, config, items) -> None:  # type: ignore[no-untyped-def]
    """Files with a test marked slow run first, each file's tests in their order: with
    ``-n 2`` pytest-xdist hands whole files (``--dist loadfile``) to the workers in this
    order, so the longest files start early and the run does not end with one worker alone
    on the demo's file."""
    slow = {item.path for item in items if item.get_closest_marker("slow") is not None}
    items.sort(key=lambda item: (item.path.name != LONGEST_FILE, item.path not in slow))


#: The suite's longest file (the quick demo, its same-seed rerun and the full demo: ~4 of the
#: ~11 minutes of ``-n 2`` on 2 cores): collected first of all.
LONGEST_FILE = "test_demo.py"


def pytest_sessionfinish(session) -> None:  # type: ignore[no-untyped-def]
    out = getattr(session.config, "workeroutput", None)
    if out is not None:  # a pytest-xdist worker
        out["fuzz_tally"] = TALLY.as_dict()


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    if TALLY.n_tried:
        terminalreporter.write_sep("-", "fuzz/fault suite: inputs tried / handled")
        for line in TALLY.lines():
            terminalreporter.write_line(line)


@pytest.fixture(autouse=True)
def _restore_environment():
    """Every test ends with ``os.environ`` as it started: a command run in-process may set a
    variable for its own process (``cimlab watch`` sets HDF5_USE_FILE_LOCKING=FALSE), which
    every later subprocess of the session would inherit (a writer started by a later test
    then takes no lock, and a reader cannot see that it is live)."""
    saved = dict(os.environ)
    yield
    if os.environ != saved:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """Every test ends with torch's thread count back at the session's start value: tests
    (and module fixtures) that train with one thread for reproducibility would otherwise
    set it for every later test, whose numbers (a trained net, a BLAS sum) then depend on
    the order the tests ran in (the quick demo's on-chip accuracies differ between 1 and 2
    threads)."""
    import torch

    yield
    torch.set_num_threads(_DEFAULT_TORCH_THREADS[0])

"""Session-wide test set-up."""

from __future__ import annotations

import signal

import pytest

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

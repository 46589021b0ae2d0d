"""Session-wide test set-up."""

from __future__ import annotations

import signal


def pytest_configure(config: object) -> None:
    """Ctrl-C tests need SIGINT delivered: a test run started as a background job of a
    non-interactive shell (``cmd &``, as some CI runners do) inherits SIGINT *ignored*, Python
    then installs no KeyboardInterrupt handler, and the subprocesses the tests interrupt would
    inherit the ignore too. Restore Python's default handler (children get the OS default)."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)

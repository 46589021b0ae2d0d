"""Names and small helpers that several ``cimlab`` topic modules share.

Importing this module never imports torch, NumPy or the instruments: the lists below are kept
in sync with the packages that own them by ``tests/cli/test_common.py``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

#: Station file the bench, campaign and chip commands open by default.
DEFAULT_STATION = "instruments/emulated.toml"

#: Network names of :func:`cimlab.sim.nets.build` (torch-free copy for ``--help``).
NET_NAMES: tuple[str, ...] = (
    "paper000-cnn",
    "paper001-vgg",
    "paper001-mnist",
    "paper003-bnn-mlp",
    "paper003-bnn-cnn",
    "lenet",
)

#: Dataset names of :func:`cimlab.sim.data.load_dataset` (torch-free copy for ``--help``).
DATASETS: tuple[str, ...] = ("digits", "mnist", "cifar10")


def usage(parser: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    """Handler of a command group called without its sub-command: print the group's help
    and exit with status 2 (as argparse does for a usage error)."""

    def show(_args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    return show

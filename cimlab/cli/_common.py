"""Names and small helpers that several ``cimlab`` topic modules share.

Importing this module never imports torch, NumPy or the instruments: the lists below are kept
in sync with the packages that own them by ``tests/cli/test_common.py``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

#: Station file the bench, campaign and chip commands open by default.
#: the default station: a file path, or a bundled station's name (resolved by
#: :func:`cimlab.instruments.station_config.resolve_station`, from any working directory)
DEFAULT_STATION = "emulated"

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


# --------------------------------------------------------------------------- argument types
# argparse ``type=`` functions: a bad value becomes one line naming the option and what is
# expected (cimlab.cli.main prints argparse errors as one line).

#: Largest seed accepted on the command line (NumPy and torch both take 63-bit seeds).
SEED_MAX = 2**63 - 1


def bounded_int(lo: int | None = None, hi: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer in ``[lo, hi]`` (either bound may be None)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text[:40]!r}") from None
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            span = (f"in {lo}..{hi}" if lo is not None and hi is not None
                    else f">= {lo}" if lo is not None else f"<= {hi}")
            raise argparse.ArgumentTypeError(f"expected an integer {span}, got {text[:40]}")
        return value

    parse.__name__ = "integer"
    return parse


#: An integer >= 0 (a count that may be zero).
nonneg_int = bounded_int(0)
#: An integer >= 1.
positive_int = bounded_int(1)
#: A seed: an integer in 0..2**63-1.
seed_int = bounded_int(0, SEED_MAX)


def file_path(text: str) -> Path:
    """An argparse type: a path that is not a directory (a file is expected there; whether it
    exists is the loader's check, with its own one-line error)."""
    p = Path(text)
    if p.is_dir():
        raise argparse.ArgumentTypeError(f"expected a file, got the directory {text[:200]}")
    return p

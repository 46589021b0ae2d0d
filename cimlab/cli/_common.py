"""Names and small helpers that several ``cimlab`` topic modules share.

Importing this module never imports torch, NumPy or the instruments: the lists below are kept
in sync with the packages that own them by ``tests/cli/test_common.py``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text[:40]!r}") from None
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text[:40]}")
    return value


def file_path(text: str) -> Path:
    """An argparse type: a path that is not a directory (a file is expected there; whether it
    exists is the loader's check, with its own one-line error)."""
    p = Path(text)
    if p.is_dir():
        raise argparse.ArgumentTypeError(f"expected a file, got the directory {text[:200]}")
    return p


# --------------------------------------------------------------------------- output flags
# One set of output flags on every command (docs/cli.md, "Output"):
#   --json       one JSON object on stdout and nothing else there (progress, notes and
#                warnings go to stderr; cimlab.cli.main sends every other print to stderr)
#   -q/--quiet   no progress bars (--no-progress: the old spelling, hidden, still accepted)
#   --out        where files go (each command says its default; never the current folder)
#   --format/--dpi  figure files: png (default), pdf or svg; raster resolution

#: Figure file formats of ``--format``.
FIGURE_FORMATS: tuple[str, ...] = ("png", "pdf", "svg")
#: Default ``--dpi`` of figure files (a raster PNG sharp enough for print at column width).
DEFAULT_DPI = 200


class _DeprecatedNoProgress(argparse.Action):
    """``--no-progress``: the old spelling of ``--quiet``; works, says so once on stderr."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help=argparse.SUPPRESS)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        import sys

        print(f"cimlab: note: {option_string} is deprecated; use --quiet (-q)", file=sys.stderr)
        namespace.quiet = True


def add_output_flags(parser: argparse.ArgumentParser, *, json: bool = True,
                     quiet: bool = True) -> None:
    """Add the shared output flags: ``--json`` (one JSON object on stdout) and ``-q/--quiet``
    (no progress; ``--no-progress`` as a hidden deprecated alias). ``--out`` stays with each
    command: what it names (a store, a folder, a file) differs."""
    if json:
        parser.add_argument("--json", action="store_true",
                            help="print one JSON object on stdout (SI units) and nothing else "
                            "there; progress and messages go to stderr")
    if quiet:
        parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
        parser.add_argument("--no-progress", action=_DeprecatedNoProgress)


def add_figure_flags(parser: argparse.ArgumentParser) -> None:
    """Add ``--format png|pdf|svg`` and ``--dpi`` for the figure files a command writes."""
    parser.add_argument("--format", dest="figure_format", choices=FIGURE_FORMATS,
                        default="png", help="figure file format (default png; pdf and svg "
                        "are vector)")
    parser.add_argument("--dpi", type=bounded_int(30, 1200), default=DEFAULT_DPI,
                        help=f"resolution of raster figures [dots per inch] (default "
                        f"{DEFAULT_DPI})")


def figure_options(args: argparse.Namespace) -> Any:
    """A context in which every figure cimlab saves takes the format and dpi of ``--format``
    and ``--dpi`` (matplotlib's ``savefig.format`` / ``savefig.dpi`` settings, which
    :func:`cimlab.procedures.report.plots.save_figure` follows)."""
    import matplotlib

    return matplotlib.rc_context({"savefig.format": getattr(args, "figure_format", "png"),
                                  "savefig.dpi": getattr(args, "dpi", DEFAULT_DPI)})


def jsonable(obj: Any) -> Any:
    """``obj`` with NumPy scalars/arrays, paths and tuples made JSON types and NaN/inf made
    null (strict JSON has no NaN)."""
    import math
    from os import PathLike

    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, PathLike):
        return str(obj)
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):  # numpy / torch
        return jsonable(obj.tolist())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    return str(obj)


def emit(args: argparse.Namespace, obj: Any, text: str | None = None) -> None:
    """A command's result: with ``--json`` the one JSON object ``obj`` on the real stdout,
    else ``text`` (when given) on stdout."""
    import json as _json
    import sys

    if getattr(args, "json", False):
        stream = getattr(args, "_json_stdout", None) or sys.stdout
        stream.write(_json.dumps(jsonable(obj), allow_nan=False) + "\n")
        stream.flush()
    elif text is not None:
        print(text)

"""Entry point of the ``cimlab`` command.

Each topic module in :data:`TOPICS` defines ``register(subparsers)``, which adds its
sub-commands and sets ``func`` on each parser. Handlers import heavy dependencies (torch, h5py,
matplotlib) inside the function, so ``cimlab --help`` and the bench commands stay fast and never
import torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from cimlab import __version__
from cimlab.errors import CimlabError

#: Modules under cimlab.cli that contribute sub-commands, in --help order.
TOPICS: tuple[str, ...] = (
    "bench",  # emulator serve, station check
    "campaign",  # characterize, program-verify
    "storecmd",  # runs, report, import
    "modelcmd",  # fit, model show/plot
    "traincmd",  # train
    "simcmd",  # simulate
    "chipnet",  # demo, program-net, evaluate, bn-calibrate
    "mitigationcmd",  # reproduce
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cimlab",
        description=(
            "ReRAM compute-in-memory lab: drive a (real or emulated) bench, characterize a chip, "
            "fit device models, simulate networks and run mitigations."
        ),
        epilog="Run 'cimlab demo' for the whole loop on the emulated bench. "
        "'cimlab COMMAND --help' explains each command.",
    )
    parser.add_argument("--version", action="version", version=f"cimlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for topic in TOPICS:
        importlib.import_module(f"cimlab.cli.{topic}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        result = args.func(args)
    except CimlabError as exc:
        print(f"cimlab: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("cimlab: interrupted; outputs were switched off", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

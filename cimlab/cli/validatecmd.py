"""``cimlab validate MODEL STORE``: a device model's predictions against a store's measurements.

Heavy imports (pandas, h5py, scipy) happen inside the handler; torch is never imported.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from cimlab.cli._common import add_output_flags, emit


def register(sub: Any) -> None:
    """Add ``validate`` to the ``cimlab`` command."""
    p = sub.add_parser(
        "validate",
        help="compare a device model's predictions with a store's measurements",
        description="For every (effect, level, time, temperature) cell of the store's "
        "measurements, compare the measured mean and spread with the model's prediction: "
        "relaxation (relaxation and imported runs: the level's conductances at each time), "
        "bake retention (per bake temperature: the change of each cell since its reference "
        "read before the bake), read noise (read-noise time series: per lag of 1, 10, 100, "
        "1000 samples, the time column, against the model's spectrum; read-fluctuation "
        "runs). A cell is within when |predicted sigma / measured sigma - 1| <= --tolerance. "
        "Prints a table (conductances in uS) and a summary; --json prints one JSON object "
        '{"cells": [...], "summary": {...}} in SI units. This is how to decide whether to '
        "trust a model on a chip it was not fitted on.",
        epilog="example: cimlab validate models/techC.json data/techC.h5 --json",
    )
    p.add_argument("model", type=Path, help="device model JSON (cimlab fit output)")
    p.add_argument("store", type=Path, help="store file with measurements (HDF5)")
    p.add_argument("--tolerance", type=float, default=0.15,
                   help="accepted relative error of a predicted sigma (default 0.15)")
    p.add_argument("--mean-tolerance", type=float, default=0.5,
                   help="accepted error of a predicted mean, in measured sigmas (default 0.5)")
    p.add_argument("--effect", action="append", default=None,
                   choices=("relaxation", "bake_retention", "read_noise"),
                   help="validate only this effect (repeatable; default all)")
    p.add_argument("--max-rows", type=int, default=60,
                   help="longest table printed: the worst cells (default 60)")
    add_output_flags(p, quiet=False)
    p.set_defaults(func=_validate)


def _validate(args: argparse.Namespace) -> int:
    from cimlab.errors import ConfigError
    from cimlab.models.validate import validate_store

    for path, what in ((args.model, "a device model JSON file"),
                       (args.store, "an existing store (HDF5) file")):
        if not path.exists():
            raise ConfigError(path, "file", what, "no such file")
    if not args.tolerance > 0:
        raise ConfigError("command line", "--tolerance", "a relative tolerance > 0",
                          args.tolerance)
    result = validate_store(args.model, args.store, tolerance=args.tolerance,
                            mean_tolerance=args.mean_tolerance, effects=args.effect)
    emit(args, result.to_json_dict(), None if args.json else
         f"model {args.model} against {args.store}\n"
         f"{result.format_table(max_rows=args.max_rows)}")
    return 0

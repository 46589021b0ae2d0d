"""``cimlab fit-chips``: chip-to-chip variation from several stores (one chip each)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from cimlab.cli._common import add_output_flags, emit, jsonable


def register(sub: Any) -> None:
    """Add ``fit-chips`` to the ``cimlab`` command."""
    p = sub.add_parser(
        "fit-chips",
        help="chip-to-chip variation of the device-model parameters over several stores",
        description="Fit each store (one chip each, e.g. the stores of `cimlab characterize "
        "--chips N`) as `cimlab fit` does, then combine the chips: for every parameter fitted "
        "on all chips with the same model form, the mean over chips (95%% CI), the observed "
        "spread and the chip-to-chip standard deviation with the estimation noise removed "
        "(95%% CI). Each chip's own fit is its cell-to-cell variation. Chip names come from "
        "run.meta['chip'] (cimlab characterize --chip-id / --chips). See docs/scale-out.md.",
    )
    p.add_argument("stores", nargs="+", help="stores (HDF5), one per chip, at least 2")
    p.add_argument("--out", metavar="FILE", type=Path, default=None,
                   help="also write the variation as a JSON file")
    add_output_flags(p)
    p.set_defaults(func=_fit_chips)


def _fit_chips(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from cimlab.models.chip_variation import fit_chip_variation

    cv = fit_chip_variation(args.stores, progress=None if args.quiet else
                            (lambda m: print(m, file=sys.stderr, flush=True)))
    doc = jsonable(asdict(cv))
    text = cv.table()
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(doc, indent=1))
        text += f"\nwritten {args.out}"
    emit(args, doc, text)
    return 0

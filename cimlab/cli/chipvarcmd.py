"""``cimlab fit-chips``: chip-to-chip variation from several stores (one chip each)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


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
    p.add_argument("--json", metavar="FILE", type=Path, default=None,
                   help="also write the variation as JSON")
    p.set_defaults(func=_fit_chips)


def _fit_chips(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from cimlab.models.chip_variation import fit_chip_variation

    cv = fit_chip_variation(args.stores, progress=print)
    print(cv.table())
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(asdict(cv), indent=1))
        print(f"written {args.json}")
    return 0

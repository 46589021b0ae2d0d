"""``cimlab model-export``: a fitted device model out to other tools (aihwkit, JSON Schema).

Torch is never imported (the export is JSON plus a standalone Python file).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from cimlab.cli._common import add_output_flags, emit

#: Targets of ``--to``.
TARGETS = ("aihwkit", "json-schema")


def register(sub: Any) -> None:
    """Add ``model-export`` to the ``cimlab`` command."""
    p = sub.add_parser(
        "model-export",
        help="export a device model for aihwkit, or the JSON Schema of model files",
        description="--to aihwkit: write OUT/<name>.aihwkit.json (the model's programming "
        "error, read noise, relaxation drift and spread, and retention in aihwkit's units, uS) "
        "and OUT/cimlab_aihwkit.py, a standalone module (aihwkit + torch, no cimlab) whose "
        "rpu_config(load_config(json)) is an aihwkit InferenceRPUConfig with that noise "
        "model. Stuck cells, wire resistance and binary conditions have no place in aihwkit's "
        "inference noise models and are not exported. --to json-schema: write the JSON Schema "
        "of cimlab model files (MODEL is then not read). See docs/export.md (Models out).",
    )
    p.add_argument("model", help="device model JSON (from 'cimlab fit'), or 'default'")
    p.add_argument("--to", choices=TARGETS, default="aihwkit", help="export target")
    p.add_argument("--out", metavar="DIR", type=Path, default=None,
                   help="output folder (default: the model file's folder; for 'default' and "
                   "json-schema: results/model-export/)")
    p.add_argument("--name", default=None,
                   help="file stem (default: the model file's stem)")
    p.add_argument("--temp-c", type=float, default=None, metavar="C",
                   help="temperature [degC] between programming and inference (retention: "
                   "time at it counts as Arrhenius-accelerated room-temperature time; default "
                   "the model's reference temperature, 25 C)")
    p.add_argument("--no-read-noise", action="store_true",
                   help="leave the per-inference read out of the noise model")
    add_output_flags(p, quiet=False)
    p.set_defaults(func=_export)


def _export(args: argparse.Namespace) -> int:
    from cimlab.units import c_to_k

    if args.out is None:
        args.out = (Path(args.model).parent if args.to != "json-schema"
                    and args.model != "default" else Path("results") / "model-export")
    if args.to == "json-schema":
        from cimlab.models.schema import write_schema

        args.out.mkdir(parents=True, exist_ok=True)
        path = write_schema(args.out / "device-model.schema.json")
        emit(args, {"to": args.to, "files": [str(path)]}, str(path))
        return 0
    from cimlab.models import DeviceModel
    from cimlab.models.export_aihwkit import write_aihwkit_export

    if args.model == "default":
        dm, stem = DeviceModel.default(), "default"
    else:
        dm, stem = DeviceModel.load(args.model), Path(args.model).stem
    temp_k = None if args.temp_c is None else c_to_k(args.temp_c)
    paths = write_aihwkit_export(dm, args.out, args.name or stem, temp_k=temp_k,
                                 read_noise=not args.no_read_noise)
    cfg = json.loads(paths[0].read_text())
    inf = cfg["inference"]
    emit(args, {"to": args.to, "model": str(args.model), "files": [str(p) for p in paths],
                "config": cfg},
         "\n".join([*(str(p) for p in paths),
                    f"aihwkit noise model: g {cfg['g_min_us']:.3g}-{cfg['g_max_us']:.3g} µS, "
                    f"inference at {inf['temp_k']:.2f} K (time counts "
                    f"x{inf['acceleration']:.3g}); use: from cimlab_aihwkit import "
                    "load_config, rpu_config"]))
    return 0

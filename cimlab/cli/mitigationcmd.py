"""``cimlab reproduce PAPER``: re-run a source paper's central experiment on the digits data.

Heavy imports (torch, matplotlib) happen inside the handler.
"""

from __future__ import annotations

import argparse

from cimlab.cli._common import (
    add_figure_flags,
    add_output_flags,
    emit,
    figure_options,
    seed_int,
)

PAPERS = ("000", "001", "002", "003", "004")

_HELP = {
    "000": "Lee et al.: per-layer weight-error injection (accuracy, NRMSE per layer) and "
    "in-field BN calibration after programming and after 150 C bakes",
    "001": "Wang/Park/Lu: architecture-aware training levels 0-4 vs on/off ratio, tiles and "
    "variation (20 mappings per model)",
    "002": "HA-SGD: noise-aware training with averaged perturbed gradients "
    "(cimlab.mitigation.hasgd)",
    "003": "Hirtzlin et al.: BNN bit-error tolerance and bit-error-aware training "
    "(cimlab.mitigation.bnn_error_aware)",
    "004": "ReMeCo: sensitivity analysis and redundancy schemes vs committee machine under "
    "stuck-at faults, IR drop and variation",
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "reproduce",
        help="reproduce a source paper's experiment (table CSV + figure)",
        description=(
            "Re-run the central experiment of one of the five source papers "
            "(cited in docs/references.md) on the embedded scikit-learn digits data, print its "
            "table, and write the table (CSV) and figure (PNG, or --format pdf/svg) to --out.\n\n"
            + "\n".join(f"  {k}: {v}" for k, v in _HELP.items())
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Full runs take a few minutes on 2 CPU cores; --quick runs the reduced "
        "version the test suite uses (seconds).",
    )
    p.add_argument("paper", choices=PAPERS, help="paper number (see the list above)")
    p.add_argument("--out", default="results", help="output folder (default: ./results/PAPER)")
    p.add_argument("--quick", action="store_true", help="reduced version (fewer epochs/samples)")
    p.add_argument("--seed", type=seed_int, default=0, help="seed of every generator (default 0)")
    add_figure_flags(p)
    add_output_flags(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cimlab.mitigation.reproduce import reproduce

    out = Path(args.out)
    if args.out == "results":
        out = out / args.paper
    with figure_options(args):
        result = reproduce(args.paper, out, quick=args.quick, seed=args.seed,
                           progress=not args.quiet)  # fmt: skip
    emit(args, {"paper": result.paper, "quick": args.quick, "seed": args.seed,
                "tables": {k: v.to_dict(orient="records") for k, v in result.tables.items()},
                "files": [str(f) for f in result.files], "elapsed_s": result.elapsed_s,
                "notes": list(result.notes)}, result.text())
    return 0

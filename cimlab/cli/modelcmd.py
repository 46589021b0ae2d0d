"""``cimlab fit`` and ``cimlab model show|plot|extrapolate``: device models.

Heavy imports (scipy, pandas, h5py, matplotlib) happen inside the handlers; torch is never
imported.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from cimlab.cli._common import (
    add_figure_flags,
    add_output_flags,
    bounded_int,
    emit,
    figure_options,
    file_path,
    seed_int,
    usage,
)


def register(sub: Any) -> None:
    """Add ``fit`` and ``model`` to the ``cimlab`` command."""
    fit = sub.add_parser(
        "fit",
        help="fit a device model to the runs in a store",
        description="Fit every effect the store has data for (window, programming error per "
        "mode, read noise, relaxation, retention/Arrhenius, binary conditions: LRS/HRS, BER, "
        "energy, endurance; stuck-at faults) and write the model as JSON (schema-versioned, SI "
        "units, value/stderr/unit/ci95 per parameter, fit quality, provenance with the data's "
        "SHA-256). Effects without data keep the literature defaults and say so. Prints a "
        "summary table. See docs/device-models.md.",
    )
    fit.add_argument("store", help="measurement store (HDF5), e.g. data/chip01.h5")
    fit.add_argument("--out", metavar="MODEL.json", type=Path, default=None,
                     help="output file (default: <store name>.model.json next to the store)")
    fit.add_argument("--name", default=None, help="model name (default: the store's name)")
    fit.add_argument("--include-unfinished", action="store_true",
                     help="also use runs that did not complete (aborted or still running)")
    fit.add_argument("--select-form", choices=("bic", "cv"), default="bic",
                     help="how the relaxation variance form is chosen: bic (default, on the "
                     "fitted cells) or cv (5-fold validation over cells: the form that best "
                     "predicts cells it did not see; ~5x slower)")
    add_output_flags(fit)
    fit.set_defaults(func=_fit)

    model = sub.add_parser(
        "model",
        help="inspect a device model: show, plot, extrapolate",
        description="Inspect a device-model JSON file (written by 'cimlab fit' or "
        "DeviceModel.save).",
    )
    msub = model.add_subparsers(dest="model_command", metavar="ACTION")
    show = msub.add_parser(
        "show", help="print parameters, standard errors, CIs, fit quality and provenance",
        description="Print every parameter with its standard error and 95% CI, each effect's "
        "fit method, sample size, chosen form (with the BIC of every form tried) and quality, "
        "and the provenance (store, data hash, runs). A parameter that was not fitted says so: "
        "Ea from bakes at one temperature is shown as PRIOR with its published range (Ea is "
        "not identifiable from one temperature), an endurance with too few failures as a "
        "lower bound ('> N cycles'). --json prints the validated file.",
    )
    show.add_argument("model", type=file_path, help="model file (JSON)")
    show.add_argument("--fill-defaults", action="store_true",
                     help="take literature defaults for effects or parameters missing from "
                     "the file (with a warning naming each); without it a missing one is "
                     "an error")
    add_output_flags(show, quiet=False)
    show.set_defaults(func=_show)

    plot = msub.add_parser(
        "plot", help="fitted vs measured figures (PNG, PDF or SVG)",
        description="Refit the store's data only to regroup it (the plotted model is the one in "
        "MODEL.json) and write PNGs: programming sigma per level, read sigma per level, "
        "relaxation sigma and mean shift vs time per level, bake retention per temperature "
        "(and the Arrhenius plot), LRS/HRS distributions per condition.",
    )
    plot.add_argument("model", type=file_path, help="model file (JSON)")
    plot.add_argument("--data", type=file_path, required=True, metavar="STORE.h5",
                      help="the store the model was fitted to")
    plot.add_argument("--out", type=Path, default=None, metavar="DIR",
                      help="folder for the figures (default: <model>-plots/ next to the model)")
    plot.add_argument("--fill-defaults", action="store_true",
                     help="take literature defaults for effects or parameters missing from "
                     "the file (with a warning naming each); without it a missing one is "
                     "an error")
    add_figure_flags(plot)
    add_output_flags(plot, quiet=False)
    plot.set_defaults(func=_plot)

    ex = msub.add_parser(
        "extrapolate", help="project retention to a use condition, with uncertainty",
        description="Project each level's mean drift and spread to YEARS at TEMP_C using the "
        "Arrhenius acceleration and the relaxation law; 95% intervals by Monte-Carlo over the "
        "fitted (Ea, tau0) covariance and the relaxation rate/drift uncertainties. If the model "
        "was fitted to bakes at one temperature, Ea is a prior and its whole published range "
        "(1.1-2.25 eV for HfOx) is propagated, with a warning.",
    )
    ex.add_argument("model", type=file_path, help="model file (JSON)")
    ex.add_argument("--years", type=float, default=10.0,
                    help="time at temperature in years, > 0 (default 10)")
    ex.add_argument("--temp-c", type=float, default=85.0,
                    help="use temperature in C, above -273.15 and at most 400 (default 85)")
    ex.add_argument("--draws", type=bounded_int(1, 10_000_000), default=4000,
                    help="Monte-Carlo draws (default 4000)")
    ex.add_argument("--seed", type=seed_int, default=0, help="seed of the draws (default 0)")
    ex.add_argument("--fill-defaults", action="store_true",
                     help="take literature defaults for effects or parameters missing from "
                     "the file (with a warning naming each); without it a missing one is "
                     "an error")
    add_output_flags(ex, quiet=False)
    ex.set_defaults(func=_extrapolate)
    model.set_defaults(func=usage(model))


def _summary_rows(dm: Any) -> list[tuple[str, str, str, str]]:
    rows = []
    for name in ("window", "programming", "read_noise", "relaxation", "retention", "stuck",
                 "wire"):
        e = getattr(dm, name)
        fit = e.fit
        form = fit.form if fit else ""
        q = ""
        if fit and fit.gof:
            k = next(iter(fit.gof))
            q = f"{k}={fit.gof[k]:.3g}"
        rows.append((name, e.source if len(e.source) < 30 else e.source[:27] + "...", form, q))
    for c in dm.binary.conditions:
        rows.append((f"binary:{c.name}", c.source if len(c.source) < 30 else c.source[:27] + "...",
                     "lognormal", f"ber_1t1r={c.ber_1t1r:.3g}"))
    return rows


def _fit(args: argparse.Namespace) -> int:
    import time

    from cimlab.errors import ConfigError
    from cimlab.models.fit import fit_store_report

    if not args.store or not Path(args.store).exists():
        raise ConfigError(args.store, "<file>", "an existing store file (HDF5)")
    out = args.out or Path(args.store).parent / (Path(args.store).stem + ".model.json")
    t0 = time.perf_counter()
    rep = fit_store_report(Path(args.store), name=args.name,
                           include_unfinished=args.include_unfinished,
                           progress=(None if args.quiet else
                                     lambda m: print(f"fitting {m} ...", file=sys.stderr,
                                                     flush=True)),
                           select=args.select_form)
    dm = rep.model
    dm.save(out)
    dt = time.perf_counter() - t0
    lines = ["", f"{'effect':<22} {'source':<30} {'form':<16} quality"]
    for r in _summary_rows(dm):
        lines.append(f"{r[0]:<22} {r[1]:<30} {r[2]:<16} {r[3]}")
    lines += ["", f"runs used: {len(dm.provenance.run_uids)}; data sha256 "
              f"{dm.provenance.data_sha256[:16]}"]
    if rep.skipped:
        lines.append("kept literature values: "
                     + "; ".join(f"{k} ({v})" for k, v in rep.skipped.items()))
    lines.append(f"wrote {out} in {dt:.1f} s (see: cimlab model show {out})")
    emit(args, {"model": str(out), "store": str(args.store), "host_time_s": dt,
                "effects": [dict(zip(("effect", "source", "form", "quality"), r, strict=True))
                            for r in _summary_rows(dm)],
                "kept_literature": dict(rep.skipped),
                "runs_used": list(dm.provenance.run_uids),
                "data_sha256": dm.provenance.data_sha256}, "\n".join(lines))
    return 0


def _load(args: argparse.Namespace):
    """The model file, strictly; --fill-defaults prints each default taken as a warning."""
    import sys
    import warnings

    from cimlab.models import DeviceModel
    from cimlab.models.serialization import FilledDefaultsWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FilledDefaultsWarning)
        dm = DeviceModel.load(args.model, fill_defaults=args.fill_defaults)
    for w in caught:
        if issubclass(w.category, FilledDefaultsWarning):
            print(f"warning: {w.message}", file=sys.stderr)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return dm


def _show(args: argparse.Namespace) -> int:

    dm = _load(args)
    emit(args, dm.to_json_dict(), dm.summary())
    return 0


def _extrapolate(args: argparse.Namespace) -> int:
    import sys

    from cimlab.errors import ConfigError
    from cimlab.models.extrapolate import MAX_TEMP_C, MIN_TEMP_C, extrapolate_retention

    if not (math.isfinite(args.years) and args.years > 0):
        raise ConfigError("command line", "--years",
                          "a positive number of years (time at temperature)", args.years)
    if not (math.isfinite(args.temp_c) and MIN_TEMP_C < args.temp_c <= MAX_TEMP_C):
        raise ConfigError("command line", "--temp-c",
                          f"a use temperature in C above {MIN_TEMP_C} (absolute zero) and at "
                          f"most {MAX_TEMP_C:g}", args.temp_c)
    if args.draws < 100:
        raise ConfigError("command line", "--draws", "at least 100 Monte-Carlo draws",
                          args.draws)
    dm = _load(args)
    try:
        ex = extrapolate_retention(dm, args.years, args.temp_c, n_draws=args.draws,
                                   seed=args.seed)
    except ValueError as exc:
        raise ConfigError(args.model, "--years/--temp-c", f"a use condition the model "
                          f"accepts ({exc})") from None
    if args.json:
        for w in ex.warnings:  # keep stdout valid JSON; the warning still reaches the user
            print(f"warning: {w}", file=sys.stderr)
    emit(args, ex.to_dict(), ex.table())
    return 0


def _plot(args: argparse.Namespace) -> int:
    from cimlab.models.plots import plot_model

    dm = _load(args)
    out = args.out or args.model.with_name(args.model.stem + "-plots")
    with figure_options(args):
        files = plot_model(dm, args.data, out)
    text = "\n".join(f"wrote {f}" for f in files) if files else (
        "the store has no data for any effect of the model")
    emit(args, {"model": str(args.model), "store": str(args.data), "out": str(out),
                "files": [str(f) for f in files]}, text)
    return 0

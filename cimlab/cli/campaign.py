"""``cimlab characterize``: characterization campaigns (one chip, or many chips on an engine).

Heavy imports (numpy, h5py, pymeasure) happen inside the handlers; torch is never imported.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from cimlab.cli._common import DEFAULT_STATION, add_output_flags, emit
from cimlab.cli._runlog import add_log_flags, default_log_path, run_log


def register(sub: Any) -> None:
    """Add the campaign sub-commands to the ``cimlab`` parser."""
    p = sub.add_parser(
        "characterize",
        help="run a characterization plan (programming error, read fluctuation, relaxation, "
        "bake retention, BER, fault map, endurance) into an HDF5 store",
        description=(
            "Run the experiments of a plan file (e.g. plans/quick.toml) on a station and "
            "write their tidy tables into an HDF5 store. The plan is checked completely before "
            "the first pulse (unknown keys, out-of-range values, cells beyond the chip, values "
            "beyond the station's limits): a bad plan writes nothing. Re-running the same "
            "command after an interruption resumes it: completed experiments are skipped and "
            "an unfinished one continues at its first incomplete step. On an emulated bench "
            "the chip is kept next to the store (STORE.chip.npz, saved at every committed "
            "step), so a resumed run continues on the same chip and equals an uninterrupted "
            "one; a resume on another chip is refused."
        ),
    )
    p.add_argument("plan", help="plan TOML file (see docs/procedures.md)")
    p.add_argument(
        "--station", default=DEFAULT_STATION, help="station TOML file (default: %(default)s)"
    )
    p.add_argument(
        "--out",
        default=None,
        help="HDF5 store to write (default: data/<plan name>.h5); created if missing",
    )
    p.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help="run only the experiment with this name (repeatable)",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="validate the plan against the station and exit (nothing is sent)",
    )
    add_output_flags(p)
    add_log_flags(p, "STORE.log next to the store")
    g = p.add_argument_group(
        "chip identity and many chips (docs/scale-out.md)",
        "--wafer/--die/--chip-id land in every run's metadata (run.meta['chip']). --chips N "
        "runs the plan on N emulated chips (emulator seeds spawned from --chip-seed), each "
        "with its own station file and store under --out (a folder, default data/<plan "
        "name>-chips), on --workers local processes or the Dask cluster at --cluster.")
    g.add_argument("--wafer", default=None, help="wafer label of the chip")
    g.add_argument("--die", default=None, help="die label of the chip")
    g.add_argument("--chip-id", default=None, help="unique chip label")
    g.add_argument("--chips", type=int, default=1, help="emulated chips (default: 1)")
    g.add_argument("--chip-seed", type=int, default=0,
                   help="seed the chips' emulator seeds are spawned from (default: 0)")
    g.add_argument("--workers", type=int, default=1,
                   help="local worker processes for --chips (default: 1)")
    g.add_argument("--cluster", default=None, metavar="ADDRESS",
                   help="Dask scheduler address for --chips, e.g. tcp://10.0.0.5:8786")
    p.set_defaults(func=_characterize)


def _characterize(args: argparse.Namespace) -> int:
    from cimlab.instruments.session import open_station, state_path_for
    from cimlab.instruments.station import Station
    from cimlab.procedures.campaign import run_plan, validate
    from cimlab.procedures.plan import load_plan
    from cimlab.procedures.run import reconcile_checkpoint

    plan = load_plan(args.plan)  # ConfigError before any instrument is touched
    if args.chips != 1 or args.cluster:
        return _many_chips(args, plan.header.name)
    out = Path(args.out) if args.out else Path("data") / f"{plan.header.name}.h5"
    if args.check:
        with Station.open(args.station) as st:
            cells = validate(plan, st)
        n_cells = sum(c.size for c in cells)
        emit(args, {"plan": str(args.plan), "experiments": len(plan.experiments),
                    "cell_selections": int(n_cells), "station": str(args.station),
                    "ok": True},
             f"{args.plan}: {len(plan.experiments)} experiments, {n_cells} cell "
             f"selections, within the chip and the limits of {args.station}")
        return 0
    # an in-process emulated chip lives next to the store (<store>.chip.npz), saved at every
    # committed step: a re-run after a kill or Ctrl-C resumes on the same chip
    state = state_path_for(out)
    fresh = not out.exists() and not state.exists()
    reconcile_checkpoint(state, out)
    try:
        with run_log(args, default_log_path(out), keep_if=out), \
                open_station(args.station, state) as st:
            result = run_plan(plan, st, out, progress=not args.quiet, only=args.only)
    except BaseException:
        if fresh and not out.exists():  # a plan refused before the store: nothing written
            state.unlink(missing_ok=True)
        raise
    identity = {k: v for k, v in (("wafer", args.wafer), ("die", args.die),
                                  ("chip", args.chip_id)) if v is not None}
    if identity:
        from cimlab.store import Store

        with Store.open(out, "a") as store:
            for r in result.results:
                store.run(r.run_uid).set_meta("chip", identity)
    emit(args, {"plan": str(args.plan), "store": str(out),
                "experiments": [dataclasses.asdict(r) for r in result.results],
                "skipped": list(result.skipped), "host_time_s": result.host_time_s,
                "instrument_time_s": result.instrument_time_s,
                "recorded_instrument_time_s": result.recorded_instrument_time_s,
                "recorded_instrument_s": result.recorded_instrument_s,
                "round_trips": result.round_trips,
                "cell_operations": result.cell_operations},
         f"{result.table()}\nstore: {out}")
    return 0


def _many_chips(args: argparse.Namespace, plan_name: str) -> int:
    from cimlab.errors import ConfigError
    from cimlab.parallel import engine_for
    from cimlab.procedures.many_chips import run_plan_on_chips

    if args.check or args.only:
        raise ConfigError(None, "--chips", "no --check/--only with several chips", args.chips)
    if args.log is not None:
        raise ConfigError("command line", "--log", "no --log with several chips (each chip "
                          "runs in its own worker; see docs/scale-out.md)", str(args.log))
    out = Path(args.out) if args.out else Path("data") / f"{plan_name}-chips"
    with engine_for(args.workers, args.cluster) as engine:
        chips = run_plan_on_chips(args.plan, args.station, out, args.chips, args.chip_seed,
                                  wafer=args.wafer or "W0", engine=engine,
                                  progress=not args.quiet)
    print(f"{'chip':12s} {'emulator seed':>14s} {'runs':>5s} {'cell ops':>10s}  store")
    for c in chips:
        print(f"{c.identity.chip:12s} {c.emulator_seed:14d} {len(c.runs):5d} "
              f"{c.cell_operations:10d}  {c.store_path}")
    print(f"{len(chips)} chips on {engine.description}; stores under {out}")
    return 0

"""``cimlab demo``, ``program-net``, ``evaluate``, ``bn-calibrate``: networks on the chip.

Handlers import torch and the simulator inside the function (``cimlab --help`` stays fast).

The chip between commands: an emulated bench started in-process (station file
``[emulator] start = true``) saves its world (chip, virtual clock, oven) next to the store as
``STORE.h5.chip.npz`` and the next command naming that store restores it, so
``program-net`` -> ``evaluate`` -> ``bn-calibrate`` -> ``evaluate`` measure one chip. With
``cimlab emulator serve`` (station ``start = false``) or a real bench the chip simply stays
where it is. docs/network-on-chip.md.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from cimlab.cli._common import (
    DATASETS,
    DEFAULT_STATION,
    add_figure_flags,
    add_output_flags,
    emit,
    figure_options,
    positive_int,
    seed_int,
)
from cimlab.cli._runlog import add_log_flags, default_log_path, run_log


def register(sub: Any) -> None:
    d = sub.add_parser(
        "demo",
        help="the whole loop on the emulated bench: characterize, fit, train, program, "
        "evaluate on the chip, bake, BN-calibrate, vs the model's prediction",
        description="Runs cimlab's signature loop on the built-in emulated bench (no hardware, "
        "no download, a few minutes on 2 CPU cores): a short characterization (programming "
        "error with verify, read fluctuation, relaxation, a 150 degC bake, a fault map), a "
        "device-model fit, noise-aware training of a small BN CNN (paper 000 layout) on the "
        "embedded digits, placement and program-verify of every weight cell, chip-in-the-loop "
        "accuracy, in-field BN calibration (paper 000 Fig. 9), a 150 degC bake, accuracy, BN "
        "calibration, accuracy. For every step the fitted model predicts the accuracy "
        "(simulator Monte Carlo over independent programmings, same placement). Ends with a "
        "table and writes plots, the store and a summary under --out.",
        epilog="Example: cimlab demo --out data/demo --seed 0   (the same seed gives the same "
        "numbers; --quick is the reduced version the tests run)",
    )
    d.add_argument("--out", default="data/demo", help="output folder (default %(default)s)")
    d.add_argument("--seed", type=seed_int, default=0, help="seed of everything (default 0)")
    d.add_argument("--quick", action="store_true",
                   help="reduced sizes: fewer training epochs, test images, BN samples and Monte "
                   "Carlo trials (same characterization)")
    d.add_argument("--trials", type=positive_int, default=None,
                   help="simulated programmings per prediction (default 30, --quick 10)")
    add_figure_flags(d)
    add_output_flags(d)
    d.set_defaults(func=_demo)

    p = sub.add_parser(
        "program-net",
        help="place a trained network on the chip and program every cell with verify",
        description="Place NET.pt's Linear/Conv2d layers on the station's chip (differential "
        "pairs, logical tiles of --rows-per-mvm rows, one per chip tile when they fit) and "
        "program every weight cell with program-verify (adaptive, ±1 µS), all cells in one "
        "vectorised loop. Writes a 'network_program' run into STORE.h5 (placement, targets, "
        "verify reads, read-back, the network itself); re-running resumes an interrupted run.",
        epilog="Example: cimlab train --net paper000-cnn --width 0.0625 --out cnn.pt ; "
        "cimlab program-net cnn.pt --station instruments/emulated.toml --out data/chip.h5",
    )
    p.add_argument("net", help="checkpoint written by 'cimlab train' (or the demo's net.pt)")
    p.add_argument("--station", default=DEFAULT_STATION,
                   help="station file (default %(default)s)")
    p.add_argument("--out", required=True, help="store (HDF5) to write the run into")
    p.add_argument("--model", default=None,
                   help="device model JSON for the conductance window (default: literature)")
    p.add_argument("--rows-per-mvm", type=int, default=64,
                   help="rows driven per MVM (logical tile height; default %(default)s)")
    p.add_argument("--first-tile", type=int, default=0,
                   help="first chip tile to use (default %(default)s)")
    p.add_argument("--seed", type=seed_int, default=0,
                   help="program-verify seed (default %(default)s)")
    add_output_flags(p)
    add_log_flags(p, "STORE.log next to the store")
    p.set_defaults(func=_program_net)

    e = sub.add_parser(
        "evaluate",
        help="chip-in-the-loop accuracy of the network programmed into STORE.h5",
        description="Rebuild the network of STORE.h5's newest 'network_program' run, run its "
        "matrix-vector products on the station's chip (one MVM round trip per chip tile and "
        "batch; DAC/ADC, BN, activations and pooling on the host) and report the test "
        "accuracy. Uses the newest 'bn_calibration' run's statistics unless --bn trained. "
        "Writes a 'chip_evaluation' run.",
    )
    e.add_argument("store", help="store written by 'cimlab program-net' or 'cimlab demo'")
    e.add_argument("--data", default="digits", choices=DATASETS,
                   help="dataset (default %(default)s)")
    e.add_argument("--root", default=None, help="folder of MNIST / CIFAR-10 files")
    e.add_argument("--station", default=None,
                   help="station file (default: the one recorded in the store)")
    e.add_argument("--bn", choices=("auto", "trained"), default="auto",
                   help="BN statistics: the newest 'bn_calibration' run after the programming "
                   "(auto; as trained if there is none) or as trained (default %(default)s)")
    e.add_argument("--samples", type=positive_int, default=None, help="test images (default all)")
    e.add_argument("--batch-size", type=positive_int, default=150,
                   help="images per MVM batch (default %(default)s)")
    add_output_flags(e)
    add_log_flags(e, "STORE.log next to the store")
    e.set_defaults(func=_evaluate)

    b = sub.add_parser(
        "bn-calibrate",
        help="in-field BN calibration with the weights on the chip (paper 000 Fig. 9)",
        description="Push --samples training images through the network on the chip and "
        "re-estimate every BN layer's running mean and variance from the MAC outputs the chip "
        "produces (layer by layer, paper 000). The weights on the chip are not touched; the "
        "new statistics are written as a 'bn_calibration' run that 'cimlab evaluate' uses.",
    )
    b.add_argument("store", help="store with a 'network_program' run")
    b.add_argument("--data", default="digits", choices=DATASETS,
                   help="dataset (default %(default)s)")
    b.add_argument("--root", default=None, help="folder of MNIST / CIFAR-10 files")
    b.add_argument("--samples", type=positive_int, default=256,
                   help="calibration images (default 256)")
    b.add_argument("--station", default=None,
                   help="station file (default: the one recorded in the store)")
    add_output_flags(b)
    add_log_flags(b, "STORE.log next to the store")
    b.set_defaults(func=_bn_calibrate)


# --------------------------------------------------------------------------- handlers
def _demo(args: argparse.Namespace) -> int:
    from cimlab.demo import DemoConfig, run_demo

    changes = {} if args.trials is None else {"mc_trials": args.trials}
    cfg = DemoConfig.make(seed=args.seed, quick=args.quick, **changes)
    with figure_options(args):
        res = run_demo(cfg, out=args.out, progress=not args.quiet)
    pv = res.program_verify
    fig = args.figure_format
    text = "\n".join([
        "", "program-verify of the network cells:",
        f"  {pv['cells']} cells on {pv['chip_tiles']} chip tiles: "
        f"{100 * pv['success_rate']:.2f} % within ±1 µS, {pv['pulses_mean']:.2f} pulses/cell,"
        f" {1e6 * pv['energy_total_j']:.3f} µJ (+ {1e6 * pv.get('erase_energy_j', 0.0):.3f} µJ"
        f" erase pulse), instrument time {pv['instrument_time_s']:.2f} s, "
        f"{pv['round_trips']} round trips",
        "", res.table(), "",
        "time [s]: " + ", ".join(f"{k} {v:.1f}" for k, v in res.timing_s.items()),
        f"written: {args.out}/ (accuracy_steps.{fig}, conductance_maps.{fig}, summary.json, "
        "demo.h5, demo.h5.chip.npz (the emulated chip: 'cimlab evaluate "
        f"{args.out}/demo.h5' continues on it), device_model.json, net.pt, station.toml)"])
    emit(args, dataclasses.asdict(res), text)
    return 0


def _program_net(args: argparse.Namespace) -> int:
    from cimlab.instruments.session import (
        open_station,
        planned_geometry,
        state_path_for,
    )
    from cimlab.instruments.station import load_station_config
    from cimlab.models import DeviceModel
    from cimlab.procedures.network_program import check_limits
    from cimlab.procedures.program_verify import ProgramVerifyConfig
    from cimlab.sim.placement import PlacementConfig, place_network
    from cimlab.sim.program_net import check_program, program_network
    from cimlab.sim.training import load_checkpoint
    from cimlab.store import Store

    # everything that can be checked is checked before a file is created or the chip touched
    net, ckpt = load_checkpoint(args.net)
    dm = DeviceModel.load(args.model) if args.model else DeviceModel.default()
    pcfg = PlacementConfig(rows_per_mvm=args.rows_per_mvm, first_tile=args.first_tile)
    pv = ProgramVerifyConfig()
    config, _text = load_station_config(args.station)
    check_limits(config.limits, args.station, pv)
    if Path(args.out).exists():
        Store.open(args.out, mode="r").close()  # an existing file must be a readable store

    def place(geometry):
        return place_network(net, geometry, dm, pcfg, source=str(args.net))

    geometry = planned_geometry(args.station)  # in-process emulator: known without starting
    placement = place(geometry) if geometry is not None else None
    with run_log(args, default_log_path(args.out), keep_if=args.out), \
            open_station(args.station, state_path_for(args.out)) as st:
        if placement is None:  # served emulator or real bench: ask the chip
            placement = place(tuple(int(g) for g in st.array.geometry))
        check_program(st, placement, pv)
        with Store.open(args.out, mode="a") as store:
            res = program_network(st, net, placement, store, pv_config=pv, seed=args.seed,
                                  progress=not args.quiet,
                                  extra_meta={"checkpoint": str(args.net),
                                              "dataset": ckpt.get("dataset"),
                                              "station_file": str(args.station),
                                              "emulator": getattr(st, "emulator_state", None)})
    emit(args, {"run": res.run_uid, "store": str(args.out), "summary": res.summary,
                "resumed_steps": list(res.resumed_steps),
                "program_end_s": float(res.program_end_s)},
         f"run {res.run_uid} in {args.out}\n{res.table()}")
    return 0


def _open_store(path: str):
    """An existing store, opened read-write without ever creating one (a mistyped path is an
    error, not a new empty file)."""
    from cimlab.errors import ConfigError
    from cimlab.store import Store

    if not Path(path).is_file():
        raise ConfigError(path, "<file>", "a store written by 'cimlab program-net' or "
                          "'cimlab demo' (check the path)", "no such file")
    return Store.open(path, mode="r+")


def _how_to_fix(store_path: str, meta: dict[str, Any], station: str) -> str:
    ckpt = meta.get("checkpoint") or "NET.pt"
    return (f"re-run cimlab program-net {ckpt} --station {station} --out {store_path} "
            "(or restore the state file that was saved with this store)")


def _station_for(store: Any, given: str | None) -> str:
    if given:
        return given
    from cimlab.sim.program_net import load_programmed

    meta = load_programmed(store).meta
    path = meta.get("station_file") or DEFAULT_STATION
    if not Path(path).exists():
        from cimlab.errors import ConfigError

        raise ConfigError(store.path, "station_file", "an existing station file (pass "
                          "--station)", path)
    return path


def _dataset(args: argparse.Namespace, meta: dict[str, Any]):
    from cimlab.sim.data import load_dataset

    rec = meta.get("dataset") or {}
    return load_dataset(args.data, args.root, image_size=rec.get("image_size"))


def _evaluate(args: argparse.Namespace) -> int:
    from torch.utils.data import DataLoader, TensorDataset
    from tqdm.auto import tqdm

    from cimlab.instruments.session import (
        open_station,
        require_chip_state,
        state_path_for,
    )
    from cimlab.sim.chip_backend import ChipNetwork
    from cimlab.sim.evaluate import evaluate
    from cimlab.sim.program_net import apply_bn_calibration, load_programmed

    state = state_path_for(args.store)
    with _open_store(args.store) as store:
        station = _station_for(store, args.station)
        stored = load_programmed(store)
        how = _how_to_fix(args.store, stored.meta, station)
        require_chip_state(station, state, how)  # before any work
        run_np = store.run(stored.run_uid)
        bn_uid = None
        if args.bn == "auto":
            bn_uid = apply_bn_calibration(store, stored.net, after_unix=run_np.started_unix)
        ds = _dataset(args, stored.meta)
        n = args.samples or len(ds.y_test)
        loader = DataLoader(TensorDataset(ds.x_test[:n], ds.y_test[:n]),
                            batch_size=args.batch_size)
        with run_log(args, default_log_path(args.store)), \
                open_station(station, state, require_state=True, how_to_fix=how) as st:
            chip = ChipNetwork(stored.net, stored.placement, st.array)
            chip.read_back()
            t0 = st.clock.now()
            bar = tqdm(loader, desc="chip-in-the-loop evaluation", unit="batch",
                       disable=True if args.quiet else None, leave=False)
            try:
                acc = evaluate(chip, bar)
            finally:
                bar.close()
            run = store.begin_run("chip_evaluation",
                                  {"network_run": stored.run_uid, "bn_run": bn_uid,
                                   "data": args.data, "samples": int(n), "time_s": t0},
                                  snapshot=st.snapshot(), resume=False)
            run.append("accuracy", {"network_run": stored.run_uid,
                                    "bn_run": bn_uid or "trained", "accuracy": float(acc),
                                    "samples": int(n), "clock_s": float(t0)})
            run.set_meta("round_trips", int(chip.round_trips))
            run.set_meta("emulator", getattr(st, "emulator_state", None))
            run.finish("completed")
            eval_uid = str(run.uid)  # readable while the store is open
    emit(args, {"store": str(args.store), "run": eval_uid, "network_run": stored.run_uid,
                "bn_run": bn_uid, "data": args.data, "samples": int(n), "accuracy": float(acc),
                "round_trips": int(chip.round_trips), "clock_s": float(t0)},
         f"chip-in-the-loop accuracy on {n} {args.data} test images: {acc:.4f} "
         f"(BN statistics: {bn_uid or 'as trained'}; {chip.round_trips} MVM round trips; "
         f"chip clock {t0:.1f} s)")
    return 0


def calibrate_bn_with_progress(net: Any, x: Any, *, batch_size: int, progress: bool = True):
    """:func:`cimlab.mitigation.bn_calibration.calibrate_bn` (layer by layer, paper 000: one
    pass per BN layer, each stopped at that layer) with a progress bar over the BN layers.
    The bar follows the passes through forward hooks (the deepest BN layer a pass reaches is
    the one being calibrated); calibrate_bn's first forward only finds the layer order."""
    from torch import nn
    from tqdm.auto import tqdm

    from cimlab.mitigation.bn_calibration import calibrate_bn

    bns = [(n, m) for n, m in net.named_modules()
           if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    bar = tqdm(total=len(bns), desc="BN calibration on the chip", unit="layer",
               disable=None if progress else True, leave=False)
    forwards = [0]
    seen: list[str] = []

    def on_forward(_m: Any, _i: Any) -> None:
        forwards[0] += 1
        seen.clear()

    def on_bn(_m: Any, _i: Any, name: str) -> None:
        if forwards[0] < 2:  # the layer-order probe
            return
        if name not in seen:
            seen.append(name)
        if len(seen) - 1 > bar.n:
            bar.update(len(seen) - 1 - bar.n)

    hooks = [net.register_forward_pre_hook(on_forward)]
    hooks += [m.register_forward_pre_hook(lambda mod, inp, _n=n: on_bn(mod, inp, _n))
              for n, m in bns]
    try:
        rep = calibrate_bn(net, x, batch_size=batch_size)
        bar.update(bar.total - bar.n)
    finally:
        for h in hooks:
            h.remove()
        bar.close()
    return rep


def _bn_calibrate(args: argparse.Namespace) -> int:
    from cimlab.instruments.session import (
        open_station,
        require_chip_state,
        state_path_for,
    )
    from cimlab.sim.chip_backend import ChipNetwork
    from cimlab.sim.program_net import (
        apply_bn_calibration,
        load_programmed,
        record_bn_calibration,
    )

    state = state_path_for(args.store)
    with _open_store(args.store) as store:
        station = _station_for(store, args.station)
        stored = load_programmed(store)
        how = _how_to_fix(args.store, stored.meta, station)
        require_chip_state(station, state, how)
        run_np = store.run(stored.run_uid)
        apply_bn_calibration(store, stored.net, after_unix=run_np.started_unix)
        ds = _dataset(args, stored.meta)
        with run_log(args, default_log_path(args.store)), \
                open_station(station, state, require_state=True, how_to_fix=how) as st:
            chip = ChipNetwork(stored.net, stored.placement, st.array)
            rep = calibrate_bn_with_progress(chip, ds.x_train[: args.samples],
                                             batch_size=args.samples,
                                             progress=not args.quiet)
            record_bn_calibration(store, stored.run_uid, rep, data=args.data,
                                  snapshot=st.snapshot(), clock_s=st.clock.now(),
                                  emulator=getattr(st, "emulator_state", None))
    emit(args, {"store": str(args.store), "network_run": stored.run_uid,
                "samples": int(rep.n_samples), "layers": list(rep.layers),
                "shift_in_old_std": dict(rep.shift)},
         f"BN calibration with {rep.n_samples} samples on the chip: {len(rep.layers)} layers; "
         "mean shift per layer (in old std): "
         + ", ".join(f"{k} {v:.2f}" for k, v in rep.shift.items()))
    return 0

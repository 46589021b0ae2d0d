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
from pathlib import Path
from typing import Any

from cimlab.cli._common import DATASETS, DEFAULT_STATION


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
    d.add_argument("--seed", type=int, default=0, help="seed of everything (default 0)")
    d.add_argument("--quick", action="store_true",
                   help="reduced sizes: fewer cells, test images and Monte Carlo trials")
    d.add_argument("--trials", type=int, default=None,
                   help="simulated programmings per prediction (default 30, --quick 5)")
    d.add_argument("--no-progress", action="store_true", help="no progress bars")
    d.set_defaults(func=_demo)

    p = sub.add_parser(
        "program-net",
        help="place a trained network on the chip and program every cell with verify",
        description="Place NET.pt's Linear/Conv2d layers on the station's chip (differential "
        "pairs, logical tiles of --rows-per-mvm rows, one per chip tile when they fit) and "
        "program every weight cell with program-verify (adaptive, +-1 uS), all cells in one "
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
    p.add_argument("--first-tile", type=int, default=0, help="first chip tile to use")
    p.add_argument("--seed", type=int, default=0, help="program-verify seed")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
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
                   help="BN statistics: newest calibration (auto) or as trained")
    e.add_argument("--samples", type=int, default=None, help="test images (default all)")
    e.add_argument("--batch-size", type=int, default=150, help="images per MVM batch")
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
    b.add_argument("--samples", type=int, default=256, help="calibration images (default 256)")
    b.add_argument("--station", default=None,
                   help="station file (default: the one recorded in the store)")
    b.set_defaults(func=_bn_calibrate)


# --------------------------------------------------------------------------- handlers
def _demo(args: argparse.Namespace) -> int:
    from cimlab.demo import DemoConfig, run_demo

    changes = {} if args.trials is None else {"mc_trials": args.trials}
    cfg = DemoConfig.make(seed=args.seed, quick=args.quick, **changes)
    res = run_demo(cfg, out=args.out, progress=not args.no_progress)
    print()
    print("program-verify of the network cells:")
    pv = res.program_verify
    print(f"  {pv['cells']} cells on {pv['chip_tiles']} chip tiles: "
          f"{100 * pv['success_rate']:.2f} % within +-1 uS, {pv['pulses_mean']:.2f} pulses/cell,"
          f" {1e6 * pv['energy_total_j']:.3f} uJ (+ {1e6 * pv.get('erase_energy_j', 0.0):.3f} uJ"
          f" erase pulse), instrument time {pv['instrument_time_s']:.2f} s, "
          f"{pv['round_trips']} round trips")
    print()
    print(res.table())
    print()
    print("time [s]: " + ", ".join(f"{k} {v:.1f}" for k, v in res.timing_s.items()))
    print(f"written: {args.out}/ (accuracy_steps.png, conductance_maps.png, summary.json, "
          "demo.h5, device_model.json, net.pt)")
    return 0


def _program_net(args: argparse.Namespace) -> int:
    from cimlab.models import DeviceModel
    from cimlab.sim.placement import PlacementConfig, place_network
    from cimlab.sim.program_net import open_station, program_network, state_path_for
    from cimlab.sim.training import load_checkpoint
    from cimlab.store import Store

    net, ckpt = load_checkpoint(args.net)
    dm = DeviceModel.load(args.model) if args.model else DeviceModel.default()
    pcfg = PlacementConfig(rows_per_mvm=args.rows_per_mvm, first_tile=args.first_tile)
    with open_station(args.station, state_path_for(args.out)) as st, \
            Store.open(args.out, mode="a") as store:
        placement = place_network(net, tuple(st.array.geometry), dm, pcfg)
        res = program_network(st, net, placement, store, seed=args.seed,
                              progress=not args.no_progress,
                              extra_meta={"checkpoint": str(args.net),
                                          "dataset": ckpt.get("dataset"),
                                          "station_file": str(args.station),
                                          "emulator": getattr(st, "emulator_state", None)})
    print(f"run {res.run_uid} in {args.out}")
    print(res.table())
    return 0


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

    from cimlab.sim.chip_backend import ChipNetwork
    from cimlab.sim.evaluate import evaluate
    from cimlab.sim.program_net import (
        apply_bn_calibration,
        load_programmed,
        open_station,
        state_path_for,
    )
    from cimlab.store import Store

    with Store.open(args.store, mode="a") as store:
        station = _station_for(store, args.station)
        stored = load_programmed(store)
        run_np = store.run(stored.run_uid)
        bn_uid = None
        if args.bn == "auto":
            bn_uid = apply_bn_calibration(store, stored.net, after_unix=run_np.started_unix)
        ds = _dataset(args, stored.meta)
        n = args.samples or len(ds.y_test)
        loader = DataLoader(TensorDataset(ds.x_test[:n], ds.y_test[:n]),
                            batch_size=args.batch_size)
        with open_station(station, state_path_for(args.store)) as st:
            chip = ChipNetwork(stored.net, stored.placement, st.array)
            chip.read_back()
            t0 = st.clock.now()
            acc = evaluate(chip, loader)
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
    print(f"chip-in-the-loop accuracy on {n} {args.data} test images: {acc:.4f} "
          f"(BN statistics: {bn_uid or 'as trained'}; {chip.round_trips} MVM round trips; "
          f"chip clock {t0:.1f} s)")
    return 0


def _bn_calibrate(args: argparse.Namespace) -> int:
    from cimlab.mitigation.bn_calibration import calibrate_bn
    from cimlab.sim.chip_backend import ChipNetwork
    from cimlab.sim.program_net import (
        apply_bn_calibration,
        load_programmed,
        open_station,
        record_bn_calibration,
        state_path_for,
    )
    from cimlab.store import Store

    with Store.open(args.store, mode="a") as store:
        station = _station_for(store, args.station)
        stored = load_programmed(store)
        run_np = store.run(stored.run_uid)
        apply_bn_calibration(store, stored.net, after_unix=run_np.started_unix)
        ds = _dataset(args, stored.meta)
        with open_station(station, state_path_for(args.store)) as st:
            chip = ChipNetwork(stored.net, stored.placement, st.array)
            rep = calibrate_bn(chip, ds.x_train[: args.samples], batch_size=args.samples)
            record_bn_calibration(store, stored.run_uid, rep, data=args.data,
                                  snapshot=st.snapshot(), clock_s=st.clock.now(),
                                  emulator=getattr(st, "emulator_state", None))
    print(f"BN calibration with {rep.n_samples} samples on the chip: {len(rep.layers)} layers; "
          "mean shift per layer (in old std): "
          + ", ".join(f"{k} {v:.2f}" for k, v in rep.shift.items()))
    return 0

"""``cimlab simulate``: Monte Carlo accuracy of a network on simulated ReRAM tiles."""

from __future__ import annotations

import argparse

from cimlab.cli._common import (
    DATASETS,
    NET_NAMES,
    add_figure_flags,
    add_output_flags,
    bounded_int,
    emit,
    figure_options,
    positive_float,
    positive_int,
    seed_int,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate",
        help="accuracy distribution of a network on simulated ReRAM (device model driven)",
        description=(
            "Convert a trained network to analog ReRAM tiles driven by a fitted device model "
            "(differential conductance pairs, tiles with per-tile ADCs, DACs, programming error, "
            "read noise, stuck-at faults, retention, optionally IR drop), program it --trials "
            "times with independent seeds and print the accuracy distribution; a histogram "
            "(PNG, or --format pdf/svg) and results.json are written under --out. With --layers "
            "the non-idealities go into the named layers only "
            "(paper 000's layer-by-layer study); --per-layer runs that study for every layer and "
            "reports the per-layer NRMSE. See docs/simulator.md."
        ),
        epilog=(
            "Examples: cimlab simulate --net cnn.pt --data digits --trials 20 ; "
            "cimlab simulate --model models/chip01.json --net lenet --trials 10 "
            "--adc-bits 6 --bake 3600 150 ; cimlab simulate --net cnn.pt --per-layer"
        ),
    )
    p.add_argument("--model", default=None,
                   help="device model JSON (default: DeviceModel.default(), literature values)")
    p.add_argument("--net", required=True,
                   help="checkpoint written by 'cimlab train', or a network name "
                        f"({', '.join(NET_NAMES)}) to train briefly first")  # fmt: skip
    p.add_argument("--data", default=None, choices=DATASETS,
                   help="dataset (default: the checkpoint's, else digits)")
    p.add_argument("--root", default=None, help="folder of the MNIST / CIFAR-10 files")
    p.add_argument("--trials", type=positive_int, default=20,
                   help="independent programmings (default: %(default)s, as paper 001)")
    p.add_argument("--seed", type=seed_int, default=0,
                   help="Monte Carlo seed (default: %(default)s)")
    p.add_argument("--workers", type=bounded_int(1, 1024), default=1,
                   help="worker processes (a local Dask cluster when > 1; results do not depend on "
                        "it; default: %(default)s)")
    p.add_argument("--cluster", default=None, metavar="ADDRESS",
                   help="run the trials on the Dask cluster whose scheduler listens at ADDRESS "
                        "(e.g. tcp://10.0.0.5:8786; docs/scale-out.md); default: this machine "
                        "(or $CIMLAB_CLUSTER)")
    p.add_argument("--layers", nargs="+", default=None, metavar="NAME",
                   help="inject non-idealities only into these layers (names as printed)")
    p.add_argument("--per-layer", action="store_true",
                   help="paper 000 study: inject each layer alone, report accuracy and NRMSE")
    p.add_argument("--adc-bits", type=int, default=8, help="ADC bits, 0 = no ADC (default: 8)")
    p.add_argument("--dac-bits", type=int, default=8, help="DAC bits, 0 = no DAC (default: 8)")
    p.add_argument("--tile", type=int, nargs=2, default=(256, 64), metavar=("ROWS", "COLS"),
                   help="cells per tile (default: 256 64, paper 001)")
    p.add_argument("--adc-range", choices=("max", "calibrated"), default="max",
                   help="per-tile ADC full scale: worst case of the weights, or calibrated on "
                        "training images (default: %(default)s)")  # fmt: skip
    p.add_argument("--slices", type=int, default=1, help="cells per weight (bit slicing)")
    p.add_argument("--read-noise", choices=("weight", "output", "off"), default="weight",
                   help="read-noise model (default: %(default)s; docs/simulator.md)")
    p.add_argument("--eval-duration", type=positive_float, default=1.0, metavar="SECONDS",
                   help="how long one evaluation of the test set takes on the chip [s]: with a "
                        "model that has a 1/f read-noise spectrum, fluctuations slower than "
                        "1/SECONDS are frozen per cell for the evaluation, faster ones vary per "
                        "forward (default: %(default)s; docs/simulator.md)")  # fmt: skip
    p.add_argument("--no-programming-error", action="store_true")
    p.add_argument("--no-stuck", action="store_true", help="no stuck-at faults")
    p.add_argument("--ir-drop", action="store_true",
                   help="simulate wire resistance (IR drop; off by default, docs/simulator.md)")
    p.add_argument("--bake", type=float, nargs=2, default=None, metavar=("SECONDS", "TEMP_C"),
                   help="age the programmed chip: SECONDS at TEMP_C °C")
    p.add_argument("--binary-condition", default="strong",
                   help="programming condition of binarized nets (default: %(default)s)")
    p.add_argument("--structure", choices=("1T1R", "2T2R"), default="2T2R",
                   help="cells per binary weight (default: %(default)s)")
    p.add_argument("--test-samples", type=positive_int, default=None,
                   help="evaluate on the first N test images only (quick runs)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="folder for the accuracy histogram and results.json (default: "
                   "<model>-simulate/ next to --model, else results/simulate/)")
    p.add_argument("--png", default=None, help=argparse.SUPPRESS)  # deprecated: a file path
    add_figure_flags(p)
    add_output_flags(p)
    p.add_argument("--device", default="cpu",
                   help="torch device of the network and the simulation: cpu, cuda, cuda:N, "
                        "mps or auto (CUDA when present; default: %(default)s)")  # fmt: skip
    p.set_defaults(func=run)


def _load_net(args: argparse.Namespace):
    """(net, dataset) from a checkpoint or a network name (trained briefly, seeded)."""
    from pathlib import Path

    import torch

    from cimlab.errors import ConfigError
    from cimlab.sim import data, nets, training

    if Path(args.net).is_file():
        net, ckpt = training.load_checkpoint(args.net)
        rec = ckpt["dataset"]
        name = args.data or rec.get("name", "digits")
        ds = data.load_dataset(name, args.root, image_size=rec.get("image_size"))
        if tuple(ds.in_shape) != tuple(rec.get("in_shape", ds.in_shape)):
            raise ConfigError(args.net, "dataset.in_shape", f"inputs of shape {ds.in_shape}",
                              rec.get("in_shape"))  # fmt: skip
        net.to(args.torch_device)
        return net.eval(), ds, f"checkpoint {args.net} (accuracy {ckpt['accuracy']:.4f})"
    if args.net not in NET_NAMES:
        raise ConfigError(None, "--net", f"an existing checkpoint file or one of "
                          f"{', '.join(NET_NAMES)}", args.net)  # fmt: skip
    name = args.data or "digits"
    size = nets.DIGITS_IMAGE_SIZE.get(args.net) if name == "digits" else None
    ds = data.load_dataset(name, args.root, image_size=size)
    with torch.random.fork_rng():
        torch.manual_seed(args.seed)
        net = nets.build(args.net, ds.in_shape, ds.n_classes)
    net.to(args.torch_device)
    training.train(net, ds, training.default_config(net, 5),
                   generator=torch.Generator().manual_seed(args.seed),
                   progress=not args.quiet, desc=f"train {args.net}")  # fmt: skip
    return net.eval(), ds, f"{args.net} trained 5 epochs (seed {args.seed})"


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np

    from cimlab.errors import ConfigError
    from cimlab.models import DeviceModel
    from cimlab.sim import AnalogConfig, convert, evaluate, injection_study, monte_carlo
    from cimlab.sim.devices import resolve_device

    if args.trials < 1:
        raise ConfigError(None, "--trials", "an integer >= 1", args.trials)
    args.torch_device = resolve_device(args.device)
    if args.torch_device.type != "cpu" and args.workers > 1:
        raise ConfigError(None, "--workers", f"1 with --device {args.device} (worker "
                          "processes run on the CPU)", args.workers)  # fmt: skip
    out = _out_dir(args)
    dm = DeviceModel.load(args.model) if args.model else DeviceModel.default()
    net, ds, origin = _load_net(args)
    x_te, y_te = ds.x_test, ds.y_test
    if args.test_samples is not None:
        x_te, y_te = x_te[: args.test_samples], y_te[: args.test_samples]
    loader = [(x_te[i : i + 500], y_te[i : i + 500]) for i in range(0, len(x_te), 500)]
    cfg = AnalogConfig(
        device=dm,
        tile=tuple(args.tile),
        adc_bits=args.adc_bits or None,
        dac_bits=args.dac_bits or None,
        adc_range=args.adc_range,
        slices=args.slices,
        read_noise=None if args.read_noise == "off" else args.read_noise,
        eval_duration_s=args.eval_duration,
        programming_error=not args.no_programming_error,
        stuck=not args.no_stuck,
        ir_drop=args.ir_drop,
        binary_condition=args.binary_condition,
        binary_structure=args.structure,
    )
    anet = convert(net, cfg, inject=args.layers)
    ideal = evaluate(net, loader)
    calib = [ds.x_train[:256]] if args.adc_range == "calibrated" else None
    age = tuple(args.bake) if args.bake else None
    print(f"network: {origin}; layers on tiles: {', '.join(anet.layer_names)}")
    print(f"device model: {dm.name}; injected into: {', '.join(anet.injected)}")
    if args.per_layer:
        if calib is not None or age is not None:
            raise ConfigError(None, "--per-layer", "no --bake / calibrated ADC (plain study)")
        rows = injection_study(anet, loader, seeds=range(args.seed, args.seed + args.trials))
        print(f"\nideal accuracy {ideal:.4f}; one layer injected at a time ({args.trials} "
              "programmings each); NRMSE of each layer's output")  # fmt: skip
        head = "".join(f"{n:>9}" for n in anet.layer_names)
        print(f"{'injected':>9} {'accuracy':>9} {'std':>7}{head}")
        for r in rows:
            errs = "".join(f"{r['nrmse'][n]:>9.3f}" for n in anet.layer_names)
            print(f"{r['injected']:>9} {r['accuracy']:>9.4f} {r['accuracy_std']:>7.4f}{errs}")
        doc = {"ideal": ideal, "per_layer": rows, "seed": args.seed, "trials": args.trials}
        files = [_write_json(out / "per_layer.json", doc)]
        emit(args, {**doc, "files": [str(f) for f in files]},
             f"results written to {files[0]}")
        return 0
    from cimlab.parallel import engine_for

    with engine_for(args.workers, args.cluster) as engine:
        res = monte_carlo(anet, loader, args.trials, args.seed, age=age, calibrate=calib,
                          progress=not args.quiet, engine=engine)
    print(f"\nideal (software) accuracy {ideal:.4f}")
    print(res.table())
    with figure_options(args):
        # the title names what was simulated, not the checkpoint's training-time accuracy
        # (another test set size than the dashed 'ideal' line, which is measured here)
        title = (f"{Path(args.net).name} on {len(y_te)} {ds.name} test images, "
                 f"device model {dm.name}")
        png = _plot(res.accuracies, ideal, args.png or out / "simulate.png", title)
    doc = {"ideal": ideal, "accuracies": np.round(res.accuracies, 6).tolist(),
           "mean": res.mean, "std": res.std, "seed": args.seed, "trials": args.trials,
           "network": origin, "device_model": dm.name}
    files = [png, _write_json(out / "results.json", doc)]
    emit(args, {**doc, "files": [str(f) for f in files]},
         f"written: {', '.join(str(f) for f in files)}")
    return 0


def _out_dir(args: argparse.Namespace):
    """--out, else ``<model>-simulate/`` next to the device model, else results/simulate/."""
    from pathlib import Path

    if args.out:
        return Path(args.out)
    if args.model:
        m = Path(args.model)
        return m.with_name(m.stem + "-simulate")
    return Path("results") / "simulate"


def _write_json(path, doc):
    import json

    from cimlab.cli._common import jsonable

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(jsonable(doc), indent=2, allow_nan=False) + "\n")
    return path


def _plot(acc, ideal: float, path: str, title: str):
    from pathlib import Path

    import numpy as np

    from cimlab.sim import figures

    fig, ax = figures.pyplot().subplots(figsize=(5.5, 3.6))
    ax.hist(acc, bins=min(20, max(5, len(acc))), color="tab:blue", alpha=0.8,
            label=f"{len(acc)} programmings (mean {np.mean(acc):.3f} ± "
                  f"{np.std(acc, ddof=1) if len(acc) > 1 else 0.0:.3f} std)")
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.axvline(ideal, color="k", ls="--", label=f"ideal (software) {ideal:.3f}")
    ax.set_xlabel("test accuracy (fraction correct)")
    ax.set_ylabel("programmings (count)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    return figures.save(fig, out)

"""``cimlab train``: train a reference network and write a baseline checkpoint."""

from __future__ import annotations

import argparse

from cimlab.cli._common import DATASETS, NET_NAMES, add_output_flags, emit, positive_int, seed_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a reference network (papers 000-004) and save a checkpoint",
        description=(
            "Train one of the source papers' networks on the embedded digits data (no download) "
            "or on local MNIST / CIFAR-10 files, and save a checkpoint "
            "({name, kwargs, state_dict, dataset, accuracy}) for 'cimlab simulate' and the "
            "mitigations. Networks are sized for the input: the paper's size on the paper's "
            "dataset, a reduced width on the 8x8 digits (docs/networks.md)."
        ),
        epilog=(
            "Examples: cimlab train --net paper000-cnn --data digits --epochs 20 --out cnn.pt ; "
            "cimlab train --net lenet --data digits --image-size 16 --out lenet.pt ; "
            "cimlab train --net paper003-bnn-mlp --data mnist --root ~/data/mnist --out bnn.pt"
        ),
    )
    p.add_argument("--net", required=True, choices=NET_NAMES, help="network to build")
    p.add_argument(
        "--data",
        default="digits",
        choices=DATASETS,
        help="dataset (default: %(default)s); mnist/cifar10 read local files under --root",
    )
    p.add_argument(
        "--root", default=None, help="folder with the MNIST IDX files or cifar-10-batches-py"
    )
    p.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="resize images to N x N pixels (default: native size, except 16 for lenet and "
        "paper003-bnn-cnn on digits)",
    )
    p.add_argument(
        "--width",
        type=float,
        default=None,
        help="channel/neuron multiplier (default: 1 at the paper's input size, reduced otherwise)",
    )
    p.add_argument(
        "--hidden",
        type=int,
        default=None,
        help="neurons per hidden layer of paper003-bnn-mlp (paper: 4096)",
    )
    p.add_argument("--epochs", type=positive_int, default=20,
                   help="training epochs (default: %(default)s)")
    p.add_argument(
        "--batch-size", type=positive_int, default=64, help="mini-batch size (default: %(default)s)"
    )
    p.add_argument(
        "--lr", type=float, default=None, help="learning rate (default: Adam 1e-3, BNNs 1e-2)"
    )
    p.add_argument(
        "--seed",
        type=seed_int,
        default=0,
        help="seed of weight init and shuffling (default: %(default)s)",
    )
    p.add_argument("--out", required=True, help="checkpoint file to write (.pt)")
    p.add_argument(
        "--device",
        default="cpu",
        help="torch device to train on: cpu, cuda, cuda:N, mps or auto (CUDA when present; "
        "default: %(default)s); the checkpoint is saved for the CPU",
    )
    add_output_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    import torch

    from cimlab.errors import ConfigError
    from cimlab.sim import data, nets, training
    from cimlab.sim.devices import resolve_device

    if args.epochs < 1:
        raise ConfigError(None, "--epochs", "an integer >= 1", args.epochs)
    device = resolve_device(args.device)
    image_size = args.image_size
    if image_size is None and args.data == "digits":
        image_size = nets.DIGITS_IMAGE_SIZE[args.net]
    ds = data.load_dataset(args.data, args.root, image_size=image_size)
    torch.manual_seed(args.seed)  # PyTorch layer init draws from the default generator
    net = nets.build(args.net, ds.in_shape, ds.n_classes, args.width, hidden=args.hidden)
    net.to(device)
    cfg = training.default_config(net, args.epochs)
    cfg = dataclasses.replace(
        cfg, batch_size=args.batch_size, **({"lr": args.lr} if args.lr is not None else {})
    )
    print(
        f"{args.net} on {args.data} {ds.in_shape}: {nets.count_parameters(net)} parameters, "
        f"{len(ds.x_train)} train / {len(ds.x_test)} test images"
    )
    hist = training.train(
        net,
        ds,
        cfg,
        generator=torch.Generator().manual_seed(args.seed),
        progress=not args.quiet,
        desc=args.net,
    )
    acc = training.evaluate(net, ds)
    net.cpu()
    path = training.save_checkpoint(
        args.out,
        net,
        ds,
        acc,
        extra={
            "seed": args.seed,
            "epochs": args.epochs,
            "lr": cfg.lr,
            "batch_size": cfg.batch_size,
        },
    )
    step = max(1, len(hist) // 10)
    shown = sorted(set(range(0, len(hist), step)) | {len(hist) - 1})
    lines = [f"{'epoch':>6} {'loss':>8} {'test_acc':>9}"]
    for _, row in hist.iloc[shown].iterrows():
        lines.append(f"{int(row.epoch):>6} {row.loss:>8.4f} {row.test_acc:>9.4f}")
    lines.append(f"test accuracy {acc:.4f} after {args.epochs} epochs "
                 f"({hist.time_s.sum():.1f} s); checkpoint written to {path}")
    emit(args, {"net": args.net, "data": args.data, "in_shape": list(ds.in_shape),
                "parameters": int(nets.count_parameters(net)), "epochs": args.epochs,
                "seed": args.seed, "lr": cfg.lr, "batch_size": cfg.batch_size,
                "accuracy": float(acc), "checkpoint": str(path),
                "history": hist.to_dict(orient="records")}, "\n".join(lines))
    return 0

"""Generic training and evaluation loops, and checkpoints.

* :func:`train`: mini-batch training with an explicit ``torch.Generator`` for shuffling (and,
  through ``grad_fn``, for any noise a mitigation injects), a tqdm progress bar and a per-epoch
  history DataFrame. Binarized nets get their latent weights clipped after every step
  (:func:`cimlab.sim.binary_layers.clip_latent_weights`). ``grad_fn`` replaces the plain
  forward/backward, which is how HA-SGD (:mod:`cimlab.mitigation.hasgd`) plugs in.
* :func:`evaluate`: top-1 accuracy in eval mode.
* :func:`save_checkpoint` / :func:`load_checkpoint`: ``torch.save({"name", "kwargs",
  "state_dict", "dataset", "accuracy"})`` (docs/architecture.md section 8), loaded with
  ``weights_only=True`` so a checkpoint cannot execute code.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from cimlab.errors import ConfigError
from cimlab.params import check, param
from cimlab.sim.binary_layers import binary_layers, clip_latent_weights
from cimlab.sim.data import Dataset, make_loaders
from cimlab.sim.devices import device_of, to_device
from cimlab.sim.nets import ReferenceNet, rebuild

#: ``grad_fn(net, x, y) -> loss``: computes the gradients of one step into ``.grad``.
GradFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], float]


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of :func:`train`."""

    epochs: int = param(10, unit="1", lo=1, doc="passes over the training set")
    batch_size: int = param(64, unit="1", lo=1, doc="samples per step")
    lr: float = param(1e-3, unit="1", lo=0.0, lo_open=True, doc="learning rate")
    optimizer: str = param("adam", choices=("adam", "sgd"), doc="optimizer")
    momentum: float = param(0.9, unit="1", lo=0.0, hi=1.0, doc="SGD momentum")
    weight_decay: float = param(0.0, unit="1", lo=0.0, doc="L2 penalty")
    cosine: bool = param(True, doc="cosine learning-rate decay to 0 over the epochs")

    def __post_init__(self) -> None:
        check(self)


def default_config(net: nn.Module, epochs: int = 10) -> TrainConfig:
    """Sensible defaults: Adam 1e-3 (BNNs: Adam 1e-2 on latent weights, as in ref. [7] of
    paper 003, which uses larger steps since only the sign matters)."""
    if binary_layers(net):
        return TrainConfig(epochs=epochs, lr=1e-2)
    return TrainConfig(epochs=epochs)


def _loaders(
    data: Dataset | tuple[DataLoader, DataLoader], batch_size: int, generator: torch.Generator
) -> tuple[DataLoader, DataLoader | None]:
    if isinstance(data, Dataset):
        return make_loaders(data, batch_size, generator)
    if isinstance(data, tuple) and len(data) == 2:
        return data
    raise ConfigError(
        None,
        "data",
        "a cimlab.sim.data.Dataset or (train_loader, test_loader)",
        type(data).__name__,
    )


def plain_grad(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Standard step: cross-entropy forward and backward."""
    loss = F.cross_entropy(net(x), y)
    loss.backward()
    return float(loss.detach())


def train(
    net: nn.Module,
    data: Dataset | tuple[DataLoader, DataLoader],
    config: TrainConfig | None = None,
    *,
    generator: torch.Generator | None = None,
    grad_fn: GradFn | None = None,
    progress: bool = True,
    desc: str = "train",
) -> pd.DataFrame:
    """Train ``net`` in place; returns one row per epoch (``epoch, loss, test_acc, lr, time_s``;
    ``loss`` is the mean training loss of the epoch).

    ``generator`` shuffles the training set (seed 0 when None). ``grad_fn`` computes each
    step's gradients (default: :func:`plain_grad`). ``test_acc`` is evaluated after each epoch
    on the test split (NaN when ``data`` has no test loader). Training runs on the device of
    ``net`` (move it first, ``net.to("cuda")``): every batch is moved there.
    """
    config = config or default_config(net)
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    train_loader, test_loader = _loaders(data, config.batch_size, generator)
    grad_fn = grad_fn or plain_grad
    if config.optimizer == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(
            net.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
    else:
        opt = torch.optim.SGD(
            net.parameters(),
            lr=config.lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
        )
    steps = config.epochs * len(train_loader)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        (lambda i: 0.5 * (1.0 + math.cos(math.pi * i / steps)))
        if config.cosine
        else (lambda i: 1.0),
    )
    is_bnn = bool(binary_layers(net))
    rows = []
    from tqdm.auto import tqdm

    bar = tqdm(
        range(1, config.epochs + 1), desc=desc, unit="epoch", leave=False,
        disable=None if progress else True,  # None: off when stderr is not a terminal
    )
    device = device_of(net)
    for epoch in bar:
        net.train()
        t0 = time.perf_counter()
        total, loss_sum = 0, 0.0
        for x, y in train_loader:
            x, y = to_device(x, device), to_device(y, device)
            opt.zero_grad(set_to_none=True)
            loss = grad_fn(net, x, y)
            opt.step()
            sched.step()
            if is_bnn:
                clip_latent_weights(net)
            loss_sum += loss * len(y)
            total += len(y)
        test_acc = evaluate(net, test_loader) if test_loader is not None else float("nan")
        rows.append(
            {
                "epoch": epoch,
                "loss": loss_sum / total,
                "test_acc": test_acc,
                "lr": opt.param_groups[0]["lr"],
                "time_s": time.perf_counter() - t0,
            }
        )
        bar.set_postfix(loss=f"{loss_sum / total:.3f}", test_acc=f"{test_acc:.3f}")
    net.eval()
    return pd.DataFrame(rows)


@torch.no_grad()
def evaluate(
    net: nn.Module,
    data: DataLoader | Dataset | Iterable[tuple[torch.Tensor, torch.Tensor]],
    batch_size: int = 512,
) -> float:
    """Top-1 accuracy of ``net`` (eval mode, on the net's device; the previous mode is
    restored)."""
    if isinstance(data, Dataset):
        data = make_loaders(data, test_batch_size=batch_size)[1]
    was_training = net.training
    net.eval()
    correct = total = 0
    device = device_of(net)
    try:
        for x, y in data:
            pred = net(to_device(x, device)).argmax(dim=1)
            correct += int((pred == to_device(y, device)).sum())
            total += len(y)
    finally:
        net.train(was_training)
    if total == 0:
        raise ConfigError(None, "data", "a non-empty test set", 0)
    return correct / total


def dataset_record(dataset: Dataset) -> dict:
    """What a checkpoint stores about its dataset (to rebuild the same inputs)."""
    return {
        "name": dataset.name,
        "in_shape": list(dataset.in_shape),
        "image_size": dataset.info.get("image_size"),
        "seed": dataset.info.get("seed"),
        "mean": list(dataset.mean),
        "std": list(dataset.std),
    }


def save_checkpoint(
    path: str | Path,
    net: ReferenceNet,
    dataset: Dataset | dict,
    accuracy: float,
    extra: dict | None = None,
) -> Path:
    """Write ``{"name", "kwargs", "state_dict", "dataset", "accuracy"}`` (+ ``extra``)."""
    spec = getattr(net, "spec", None)
    if spec is None:
        raise ConfigError(
            None, "net", "a network from cimlab.sim.nets.build (it has .spec)", type(net).__name__
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = dataset_record(dataset) if isinstance(dataset, Dataset) else dict(dataset)
    payload = {
        "name": spec["name"],
        "kwargs": dict(spec["kwargs"]),
        "state_dict": net.state_dict(),
        "dataset": record,
        "accuracy": float(accuracy),
    }
    if extra:
        payload["extra"] = dict(extra)
    torch.save(payload, path)
    return path


def load_checkpoint(path: str | Path) -> tuple[ReferenceNet, dict]:
    """Rebuild the net of a checkpoint (eval mode) -> ``(net, checkpoint dict)``."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(path, "checkpoint", "an existing file written by 'cimlab train'")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise ConfigError(
            path, "checkpoint", "a cimlab checkpoint (torch.save dict)", str(exc).splitlines()[0]
        ) from exc
    for key in ("name", "kwargs", "state_dict", "dataset", "accuracy"):
        if not isinstance(ckpt, dict) or key not in ckpt:
            raise ConfigError(path, key, "present in a cimlab checkpoint")
    try:
        net = rebuild({"name": ckpt["name"], "kwargs": ckpt["kwargs"]})
    except (TypeError, ConfigError) as exc:
        raise ConfigError(
            path, "kwargs", "arguments of cimlab.sim.nets.build", ckpt["kwargs"]
        ) from exc
    try:
        net.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise ConfigError(
            path, "state_dict", f"weights matching {ckpt['name']}", str(exc).splitlines()[0]
        ) from exc
    net.eval()
    return net, ckpt

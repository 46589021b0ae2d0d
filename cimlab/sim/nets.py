"""Reference networks of the source papers, sized by argument.

``build(name, in_shape, n_classes, width=None, **options)`` returns a :class:`ReferenceNet`
(an :class:`torch.nn.Sequential` that remembers how it was built, so a checkpoint can rebuild
it). Layers are plain :class:`torch.nn.Conv2d` / :class:`torch.nn.Linear` (or the binary
layers of :mod:`cimlab.sim.binary_layers`), with a bias where the layer's output is not
normalized by a following batch-norm (BN's shift makes a bias redundant there); the simulator
folds biases into the crossbar as an extra row (paper 002, ``W~ = [W b/s]``).

Names (paper shape = the input the paper used; ``width`` multiplies every channel/neuron count):

==================  ===========  ===========================================================
name                paper shape  architecture (at width 1)
==================  ===========  ===========================================================
paper000-cnn        3x32x32      paper 000 Table 1: conv 128-128-256-256-512-512 (3x3, pad 1),
                                 each followed by BN; ReLU after conv 1, 3, 5; max-pool 2,
                                 dropout, ReLU after conv 2, 4, 6; FC 1024-1024 each with BN,
                                 dropout, ReLU; FC 10. Kernel size and dropout rate are not in
                                 the table: 3x3 and 0.25 assumed.
paper001-vgg        3x32x32      paper 001 Fig. 2 (CIFAR-10 VGG block): conv 32-32, pool,
                                 64-64, pool, 128-128, pool (3x3, pad 1, ReLU), FC 128, FC 10.
paper001-mnist      1x28x28      paper 001 MNIST toy model: conv 3x3x1x22, pool 2, conv 22x27,
                                 pool 2, conv 27x64 stride 2, max-pool to 1x1 (the paper's
                                 4x4 pool at 28x28), dense 64x10 (padding 1, ReLU).
paper003-bnn-mlp    1x28x28      paper 003 Fig. 2a: binarized MLP, ``n_hidden`` (2) layers of
                                 ``hidden`` (4096) neurons: BinaryLinear-BN-sign, dropout;
                                 BinaryLinear-BN output. Input layer takes real pixels.
paper003-bnn-cnn    3x32x32      paper 003 Fig. 2b / ref. [7] (Courbariaux et al.) CIFAR-10
                                 BNN: 2x128C3-MP2-2x256C3-MP2-2x512C3-MP2-2x1024FC-10, BN and
                                 sign after each layer, real first-layer input.
lenet               1x28x28      LeNet-5 (paper 004's MNIST benchmark): conv 6@5x5 (pad 2),
                                 pool, conv 16@5x5, pool, FC 120-84-10, ReLU. Needs inputs
                                 >= 12x12 (use ``image_size=16`` for digits).
==================  ===========  ===========================================================

Default size: ``width=None`` means 1.0 (the paper's size) when ``in_shape`` equals the paper's
input shape, and the reduced :data:`SMALL_WIDTH` otherwise (e.g. for the 8x8 digits), so that
every network trains on the embedded digits data in about a minute on two CPU cores. The BNN
MLP uses ``hidden`` (4096 at paper size, :data:`SMALL_HIDDEN` otherwise) instead of ``width``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from cimlab.errors import ConfigError
from cimlab.sim.binary_layers import BinaryActivation, BinaryConv2d, BinaryLinear

#: Input shape (C, H, W) each network was designed for in its paper.
PAPER_SHAPE: dict[str, tuple[int, int, int]] = {
    "paper000-cnn": (3, 32, 32),
    "paper001-vgg": (3, 32, 32),
    "paper001-mnist": (1, 28, 28),
    "paper003-bnn-mlp": (1, 28, 28),
    "paper003-bnn-cnn": (3, 32, 32),
    "lenet": (1, 28, 28),
}

#: Width multiplier used by default when the input is not the paper's (e.g. 8x8 digits).
SMALL_WIDTH: dict[str, float] = {
    "paper000-cnn": 0.25,
    "paper001-vgg": 0.5,
    "paper001-mnist": 1.0,
    "paper003-bnn-mlp": 1.0,
    "paper003-bnn-cnn": 0.25,
    "lenet": 1.0,
}
#: Image size to load the 8x8 digits at for each net (``load_dataset("digits", image_size=...)``;
#: None: native 8x8). LeNet needs >= 12 pixels; the BNN CNN trains on 8x8 (three 2x2 pools
#: leave 1x1) but unstably (test accuracy peaks near 0.9, then falls to ~0.6), at 16x16 it
#: reaches ~0.97.
DIGITS_IMAGE_SIZE: dict[str, int | None] = {
    "paper000-cnn": None,
    "paper001-vgg": None,
    "paper001-mnist": None,
    "paper003-bnn-mlp": None,
    "paper003-bnn-cnn": 16,
    "lenet": 16,
}
PAPER_HIDDEN = 4096  # paper 003: two hidden layers of 4096 neurons
SMALL_HIDDEN = 512

NETWORKS: tuple[str, ...] = tuple(PAPER_SHAPE)


class ReferenceNet(nn.Sequential):
    """A :class:`torch.nn.Sequential` with ``spec = {"name", "kwargs"}`` to rebuild it."""

    def __init__(self, layers: Sequence[nn.Module], name: str, kwargs: dict):
        super().__init__(*layers)
        self.spec = {"name": name, "kwargs": dict(kwargs)}

    @property
    def arch(self) -> str:
        return self.spec["name"]


def _ch(n: int, width: float) -> int:
    return max(1, round(n * width))


def _paper000(c: int, n_classes: int, width: float, dropout: float) -> list[nn.Module]:
    chans = [_ch(n, width) for n in (128, 128, 256, 256, 512, 512)]
    fc = [_ch(n, width) for n in (1024, 1024)]
    layers: list[nn.Module] = []
    prev = c
    for i, ch in enumerate(chans):
        layers += [nn.Conv2d(prev, ch, 3, padding=1, bias=False), nn.BatchNorm2d(ch)]
        if i % 2 == 0:
            layers.append(nn.ReLU())
        else:  # Table 1: BN, max pooling, dropout, ReLU
            layers += [nn.MaxPool2d(2), nn.Dropout(dropout), nn.ReLU()]
        prev = ch
    layers.append(nn.Flatten())
    layers.append(_LazyFlatLinear(fc[0], bias=False))
    layers += [nn.BatchNorm1d(fc[0]), nn.Dropout(dropout), nn.ReLU()]
    layers += [
        nn.Linear(fc[0], fc[1], bias=False),
        nn.BatchNorm1d(fc[1]),
        nn.Dropout(dropout),
        nn.ReLU(),
        nn.Linear(fc[1], n_classes),
    ]
    return layers


def _paper001_vgg(c: int, n_classes: int, width: float, dropout: float) -> list[nn.Module]:
    layers: list[nn.Module] = []
    prev = c
    for n in (32, 64, 128):
        ch = _ch(n, width)
        layers += [
            nn.Conv2d(prev, ch, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(ch, ch, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        ]
        prev = ch
    hidden = _ch(128, width)
    layers += [nn.Flatten(), _LazyFlatLinear(hidden), nn.ReLU()]
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(hidden, n_classes))
    return layers


def _paper001_mnist(c: int, n_classes: int, width: float, dropout: float) -> list[nn.Module]:
    c1, c2, c3 = (_ch(n, width) for n in (22, 27, 64))
    return [
        nn.Conv2d(c, c1, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(c2, c3, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveMaxPool2d(1),
        nn.Flatten(),
        nn.Linear(c3, n_classes),
    ]


def _lenet(c: int, n_classes: int, width: float, dropout: float) -> list[nn.Module]:
    c1, c2 = _ch(6, width), _ch(16, width)
    f1, f2 = _ch(120, width), _ch(84, width)
    return [
        nn.Conv2d(c, c1, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        _LazyFlatLinear(f1),
        nn.ReLU(),
        nn.Linear(f1, f2),
        nn.ReLU(),
        nn.Linear(f2, n_classes),
    ]


def _bnn_mlp(
    c: int, n_classes: int, hidden: int, n_hidden: int, dropout: float, in_features: int
) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Flatten()]
    prev = in_features
    for _ in range(n_hidden):
        layers += [BinaryLinear(prev, hidden), nn.BatchNorm1d(hidden), BinaryActivation()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        prev = hidden
    layers += [BinaryLinear(prev, n_classes), nn.BatchNorm1d(n_classes)]
    return layers


def _bnn_cnn(c: int, n_classes: int, width: float, dropout: float) -> list[nn.Module]:
    chans = [_ch(n, width) for n in (128, 128, 256, 256, 512, 512)]
    fc = _ch(1024, width)
    layers: list[nn.Module] = []
    prev = c
    for i, ch in enumerate(chans):
        layers.append(BinaryConv2d(prev, ch, 3, padding=1))
        if i % 2 == 1:
            layers.append(nn.MaxPool2d(2))
        layers += [nn.BatchNorm2d(ch), BinaryActivation()]
        prev = ch
    layers += [nn.Flatten(), _LazyFlatBinaryLinear(fc), nn.BatchNorm1d(fc), BinaryActivation()]
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    layers += [BinaryLinear(fc, fc), nn.BatchNorm1d(fc), BinaryActivation()]
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    layers += [BinaryLinear(fc, n_classes), nn.BatchNorm1d(n_classes)]
    return layers


class _LazyFlatLinear:
    """Placeholder for the first FC layer whose input size is found by a dry run."""

    def __init__(self, out_features: int, bias: bool = True):
        self.out_features, self.bias = out_features, bias

    def make(self, in_features: int) -> nn.Module:
        return nn.Linear(in_features, self.out_features, bias=self.bias)


class _LazyFlatBinaryLinear(_LazyFlatLinear):
    def make(self, in_features: int) -> nn.Module:
        return BinaryLinear(in_features, self.out_features)


_BUILDERS: dict[str, Callable[..., list]] = {
    "paper000-cnn": _paper000,
    "paper001-vgg": _paper001_vgg,
    "paper001-mnist": _paper001_mnist,
    "paper003-bnn-cnn": _bnn_cnn,
    "lenet": _lenet,
}
_DEFAULT_DROPOUT = {
    "paper000-cnn": 0.25,
    "paper001-vgg": 0.0,
    "paper001-mnist": 0.0,
    "paper003-bnn-mlp": 0.2,
    "paper003-bnn-cnn": 0.0,
    "lenet": 0.0,
}


def _resolve(layers: list, in_shape: tuple[int, int, int], name: str) -> list[nn.Module]:
    """Replace a lazy FC placeholder by a real layer sized from a dry run of the layers before."""
    out: list[nn.Module] = []
    x = torch.zeros(2, *in_shape)
    with torch.no_grad():
        for layer in layers:
            if isinstance(layer, _LazyFlatLinear):
                layer = layer.make(int(x.shape[1]))
            out.append(layer)
            if isinstance(layer, nn.Linear):
                break  # shapes after the first FC layer are fixed by construction
            try:
                layer.eval()
                x = layer(x)
            except RuntimeError as exc:
                raise ConfigError(
                    None,
                    "in_shape",
                    f"an input large enough for {name} (it fails at {type(layer).__name__}; "
                    f"for the 8x8 digits pass image_size=16 or larger)",
                    in_shape,
                ) from exc
            if x.dim() == 4 and min(x.shape[-2:]) < 1:
                raise ConfigError(None, "in_shape", f"an input large enough for {name}", in_shape)
    out.extend(layers[len(out) :])
    return out


def build(
    name: str,
    in_shape: Sequence[int] | None = None,
    n_classes: int = 10,
    width: float | None = None,
    *,
    hidden: int | None = None,
    n_hidden: int = 2,
    dropout: float | None = None,
) -> ReferenceNet:
    """Build reference network ``name`` for inputs ``in_shape`` = (C, H, W).

    ``in_shape`` defaults to the paper's input shape; ``width`` (channel/neuron multiplier) and
    ``hidden`` (BNN MLP neurons per hidden layer) default to the paper's size at the paper's
    input shape and to the reduced size otherwise (the table of names, architectures and
    reduced sizes is in ``cimlab.sim.nets.__doc__``). ``dropout`` overrides
    the network's dropout rate. The returned net is in training mode with PyTorch's default
    initialization (seed it with ``torch.manual_seed`` or build under ``torch.random.fork_rng``
    for reproducible weights).
    """
    if name not in PAPER_SHAPE:
        raise ConfigError(None, "net", f"one of {', '.join(NETWORKS)}", name)
    shape = tuple(int(s) for s in (in_shape if in_shape is not None else PAPER_SHAPE[name]))
    if len(shape) != 3 or min(shape) < 1:
        raise ConfigError(None, "in_shape", "(channels, height, width), all >= 1", in_shape)
    if int(n_classes) < 2:
        raise ConfigError(None, "n_classes", "an integer >= 2", n_classes)
    at_paper_size = shape == PAPER_SHAPE[name]
    if width is None:
        width = 1.0 if at_paper_size else SMALL_WIDTH[name]
    if not width > 0:
        raise ConfigError(None, "width", "a multiplier > 0", width)
    if dropout is None:
        dropout = _DEFAULT_DROPOUT[name]
    if not 0.0 <= dropout < 1.0:
        raise ConfigError(None, "dropout", "a rate in [0, 1)", dropout)
    kwargs: dict = {"in_shape": list(shape), "n_classes": int(n_classes), "dropout": dropout}
    if name == "paper003-bnn-mlp":
        if hidden is None:
            hidden = PAPER_HIDDEN if at_paper_size else SMALL_HIDDEN
        if int(hidden) < 1 or int(n_hidden) < 1:
            raise ConfigError(
                None, "hidden", "hidden >= 1 neurons and n_hidden >= 1 layers", (hidden, n_hidden)
            )
        kwargs.update(hidden=int(hidden), n_hidden=int(n_hidden))
        c, h, w = shape
        layers = _bnn_mlp(c, n_classes, int(hidden), int(n_hidden), dropout, c * h * w)
    else:
        kwargs["width"] = float(width)
        layers = _resolve(
            _BUILDERS[name](shape[0], int(n_classes), float(width), dropout), shape, name
        )
    net = ReferenceNet(layers, name, kwargs)
    net.train()
    return net


def rebuild(spec: dict) -> ReferenceNet:
    """Build a net from ``{"name", "kwargs"}`` (a checkpoint's or :attr:`ReferenceNet.spec`)."""
    kwargs = dict(spec["kwargs"])
    return build(spec["name"], **kwargs)


def count_parameters(net: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def is_binary(net: nn.Module) -> bool:
    """True if ``net`` contains binarized layers (a BNN)."""
    from cimlab.sim.binary_layers import binary_layers

    return bool(binary_layers(net))

"""Datasets for the simulator, the reference networks and the mitigations.

Three sources, none of which is ever downloaded:

``"digits"``
    The UCI optical-recognition handwritten digits embedded in scikit-learn
    (:func:`sklearn.datasets.load_digits`: 1797 grey-level 8x8 images, 10 classes, pixel values
    0..16). Split with a fixed seed into a stratified train/test split (default 75 % / 25 %:
    1347 / 450 images). ``image_size`` upsamples the images bilinearly (e.g. to 16 or 28 pixels)
    for convolutional nets that need a larger input (LeNet needs >= 16). It is the dataset every
    test and quick reproduction uses, because it is available offline on any machine.
``"mnist"``
    MNIST from the four local IDX files (LeCun et al., Proc. IEEE 86, 1998) under ``root``:
    ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
    ``t10k-labels-idx1-ubyte``, each optionally gzip-compressed (``.gz``). ``root`` itself,
    ``root/MNIST/raw`` and ``root/mnist`` are searched (the torchvision layout works).
``"cifar10"``
    CIFAR-10 (Krizhevsky 2009) from the python batches ``data_batch_1`` ... ``data_batch_5`` and
    ``test_batch`` in ``root/cifar-10-batches-py`` (or in ``root`` itself). The pickles are read
    with a restricted unpickler that only accepts the NumPy array reconstruction the official
    files use, so a tampered file cannot run code.

Images are float32 tensors shaped ``(N, C, H, W)`` scaled to [0, 1] and then, by default,
standardised per channel with the *training* split's mean and standard deviation (recorded in
:attr:`Dataset.mean` / :attr:`Dataset.std`). Labels are int64.
"""

from __future__ import annotations

import gzip
import io
import pickle
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from cimlab.errors import ConfigError

DATASETS: tuple[str, ...] = ("digits", "mnist", "cifar10")

#: Input shape (C, H, W) of each dataset at its native size.
NATIVE_SHAPE: dict[str, tuple[int, int, int]] = {
    "digits": (1, 8, 8),
    "mnist": (1, 28, 28),
    "cifar10": (3, 32, 32),
}

MNIST_FILES: dict[str, str] = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
CIFAR10_TRAIN_FILES: tuple[str, ...] = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_FILE = "test_batch"
CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


@dataclass(frozen=True, eq=False)
class Dataset:
    """A train/test split held in memory as tensors.

    ``x_*``: float32 ``(N, C, H, W)``; ``y_*``: int64 ``(N,)``. ``mean``/``std`` are the
    per-channel statistics used for standardisation (zeros/ones when not standardised).
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: tuple[str, ...]
    mean: tuple[float, ...] = field(default=())
    std: tuple[float, ...] = field(default=())
    info: dict = field(default_factory=dict)

    @property
    def in_shape(self) -> tuple[int, int, int]:
        """Shape (C, H, W) of one input image."""
        return tuple(int(s) for s in self.x_train.shape[1:])  # type: ignore[return-value]

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    def loaders(
        self,
        batch_size: int = 64,
        generator: torch.Generator | None = None,
        test_batch_size: int = 512,
    ) -> tuple[DataLoader, DataLoader]:
        """(train_loader, test_loader); the training loader shuffles with ``generator``."""
        return make_loaders(self, batch_size, generator, test_batch_size)

    def subset(self, n_train: int | None = None, n_test: int | None = None) -> Dataset:
        """The first ``n_train`` / ``n_test`` samples (for quick runs); the splits are already
        shuffled, so prefixes are random subsets."""
        return Dataset(
            self.name,
            self.x_train[:n_train],
            self.y_train[:n_train],
            self.x_test[:n_test],
            self.y_test[:n_test],
            self.classes,
            self.mean,
            self.std,
            dict(self.info, n_train=n_train, n_test=n_test),
        )


def make_loaders(
    dataset: Dataset,
    batch_size: int = 64,
    generator: torch.Generator | None = None,
    test_batch_size: int = 512,
) -> tuple[DataLoader, DataLoader]:
    """Train and test :class:`~torch.utils.data.DataLoader` over ``dataset``.

    The training loader shuffles with the explicit ``generator`` (a fresh one seeded 0 when
    None, so runs are reproducible); the test loader keeps the order.
    """
    if batch_size < 1 or test_batch_size < 1:
        raise ConfigError(None, "batch_size", "an integer >= 1", batch_size)
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    train = DataLoader(
        TensorDataset(dataset.x_train, dataset.y_train),
        batch_size=batch_size,
        shuffle=True,
        generator=generator,
    )
    test = DataLoader(
        TensorDataset(dataset.x_test, dataset.y_test), batch_size=test_batch_size, shuffle=False
    )
    return train, test


def load_dataset(
    name: str,
    root: str | Path | None = None,
    *,
    image_size: int | None = None,
    standardize: bool = True,
    seed: int = 0,
    test_fraction: float = 0.25,
) -> Dataset:
    """Load ``"digits"``, ``"mnist"`` or ``"cifar10"`` as a :class:`Dataset`.

    ``root``: folder holding the MNIST IDX files or the CIFAR-10 python batches (ignored for
    digits). ``image_size``: resize images to ``image_size`` x ``image_size`` pixels (bilinear;
    None keeps the native size). ``seed`` and ``test_fraction`` fix the digits split (MNIST and
    CIFAR-10 come with their official splits). Nothing is downloaded: a missing file raises
    :class:`~cimlab.errors.ConfigError` naming the folder and the files expected there.
    """
    if name == "digits":
        x_tr, y_tr, x_te, y_te, classes = _load_digits(seed, test_fraction)
        info = {
            "source": "sklearn.datasets.load_digits",
            "seed": seed,
            "test_fraction": test_fraction,
        }
    elif name == "mnist":
        folder = _require_root(name, root)
        x_tr, y_tr, x_te, y_te = _load_mnist(folder)
        classes = tuple(str(i) for i in range(10))
        info = {"source": str(folder)}
    elif name == "cifar10":
        folder = _require_root(name, root)
        x_tr, y_tr, x_te, y_te = _load_cifar10(folder)
        classes = CIFAR10_CLASSES
        info = {"source": str(folder)}
    else:
        raise ConfigError(None, "dataset", f"one of {', '.join(DATASETS)}", name)

    x_train = torch.from_numpy(x_tr)
    x_test = torch.from_numpy(x_te)
    if image_size is not None:
        if int(image_size) < 4:
            raise ConfigError(None, "image_size", "an integer >= 4 (pixels)", image_size)
        x_train = _resize(x_train, int(image_size))
        x_test = _resize(x_test, int(image_size))
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    if standardize:
        m = x_train.mean(dim=(0, 2, 3))
        s = x_train.std(dim=(0, 2, 3)).clamp_min(1e-8)  # only guards a constant channel
        x_train = (x_train - m[:, None, None]) / s[:, None, None]
        x_test = (x_test - m[:, None, None]) / s[:, None, None]
        mean, std = tuple(m.tolist()), tuple(s.tolist())
    info["image_size"] = image_size
    return Dataset(
        name,
        x_train.contiguous(),
        torch.from_numpy(y_tr.astype(np.int64)),
        x_test.contiguous(),
        torch.from_numpy(y_te.astype(np.int64)),
        tuple(classes),
        mean,
        std,
        info,
    )


# --------------------------------------------------------------------------- digits


def _load_digits(seed: int, test_fraction: float):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(None, "test_fraction", "a fraction in (0, 1)", test_fraction)
    bunch = load_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None, :, :]  # pixel values 0..16
    y = bunch.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=test_fraction, random_state=seed, stratify=y
    )
    return x_tr, y_tr, x_te, y_te, tuple(str(i) for i in range(10))


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return torch.nn.functional.interpolate(
        x, size=(size, size), mode="bilinear", align_corners=False
    )


def _require_root(name: str, root: str | Path | None) -> Path:
    if root is None:
        raise ConfigError(
            None,
            "root",
            f"a folder holding the {name} files (cimlab never downloads; pass --root PATH, "
            f"see docs/networks.md for the expected files)",
        )
    return Path(root).expanduser()


# --------------------------------------------------------------------------- MNIST (IDX)

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (LeCun's MNIST format; gzip when the name ends in ``.gz``).

    Header: two zero bytes, a type code (0x08 = unsigned byte, ...), the number of
    dimensions, then one big-endian uint32 per dimension; the data follow in C order.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ConfigError(
            path, "header", "an IDX file (magic 0x00 0x00 <type> <ndim>)", raw[:4].hex()
        )
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    count = int(np.prod(dims)) if dims else 1
    body = raw[4 + 4 * ndim :]
    if len(body) != count * dtype.itemsize:
        raise ConfigError(
            path, "data", f"{count * dtype.itemsize} bytes for shape {dims}", f"{len(body)} bytes"
        )
    return np.frombuffer(body, dtype=dtype).reshape(dims)


def _find_mnist_folder(root: Path) -> Path | None:
    for folder in (root, root / "MNIST" / "raw", root / "mnist", root / "MNIST"):
        if all(_idx_path(folder, f) is not None for f in MNIST_FILES.values()):
            return folder
    return None


def _idx_path(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _load_mnist(root: Path):
    folder = _find_mnist_folder(root)
    if folder is None:
        expected = ", ".join(MNIST_FILES.values())
        raise ConfigError(
            root,
            "mnist files",
            f"the four MNIST IDX files ({expected}; each may end in .gz) in {root} or "
            f"{root / 'MNIST' / 'raw'}. cimlab does not download; fetch them from the MNIST "
            f"site and pass their folder as --root",
        )
    arrays = {k: read_idx(_idx_path(folder, v)) for k, v in MNIST_FILES.items()}  # type: ignore[arg-type]
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ConfigError(
                folder,
                f"{split} files",
                "images (N, H, W) and labels (N,) of the same length",
                f"{images.shape} and {labels.shape}",
            )
    x_tr = (arrays["train_images"].astype(np.float32) / 255.0)[:, None]
    x_te = (arrays["test_images"].astype(np.float32) / 255.0)[:, None]
    return (
        x_tr,
        arrays["train_labels"].astype(np.int64),
        x_te,
        arrays["test_labels"].astype(np.int64),
    )


# --------------------------------------------------------------------------- CIFAR-10


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler accepting only what the official CIFAR-10 batches contain (NumPy arrays)."""

    _ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR-10 batch")


def read_cifar_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch -> (images uint8 (N, 3, 32, 32), labels int64 (N,))."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            obj = _NumpyOnlyUnpickler(io.BytesIO(fh.read()), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise ConfigError(path, "pickle", "a CIFAR-10 python batch", str(exc)) from exc
    if not isinstance(obj, dict):
        raise ConfigError(path, "pickle", "a dict with b'data' and b'labels'", type(obj).__name__)
    data = obj.get(b"data", obj.get("data"))
    labels = obj.get(b"labels", obj.get("labels"))
    if data is None or labels is None:
        raise ConfigError(path, "keys", "b'data' and b'labels'", sorted(map(str, obj)))
    data = np.asarray(data, dtype=np.uint8)
    labels = np.asarray(labels, dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise ConfigError(
            path, "data", "uint8 array (N, 3072) and N labels", f"{data.shape} and {labels.shape}"
        )
    return data.reshape(-1, 3, 32, 32), labels


def _load_cifar10(root: Path):
    folder = None
    for candidate in (root / "cifar-10-batches-py", root):
        if all((candidate / f).is_file() for f in (*CIFAR10_TRAIN_FILES, CIFAR10_TEST_FILE)):
            folder = candidate
            break
    if folder is None:
        expected = ", ".join((*CIFAR10_TRAIN_FILES, CIFAR10_TEST_FILE))
        raise ConfigError(
            root,
            "cifar10 files",
            f"the CIFAR-10 python batches ({expected}) in {root / 'cifar-10-batches-py'} or "
            f"{root}. cimlab does not download; unpack cifar-10-python.tar.gz there and pass "
            f"its parent as --root",
        )
    parts = [read_cifar_batch(folder / f) for f in CIFAR10_TRAIN_FILES]
    x_tr = np.concatenate([p[0] for p in parts]).astype(np.float32) / 255.0
    y_tr = np.concatenate([p[1] for p in parts])
    x_te, y_te = read_cifar_batch(folder / CIFAR10_TEST_FILE)
    return x_tr, y_tr, x_te.astype(np.float32) / 255.0, y_te

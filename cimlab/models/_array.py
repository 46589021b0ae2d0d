"""NumPy / PyTorch dispatch for the device-model formulas and samplers.

The formulas work on ``numpy.ndarray`` (and Python floats) or on ``torch.Tensor`` without
importing torch: a value is a tensor when ``type(x).__module__`` starts with ``"torch"``, and
only then is torch imported (see docs/architecture.md, "cimlab.models supports torch
tensors ...").
"""

from __future__ import annotations

from typing import Any

import numpy as np


def is_torch(x: Any) -> bool:
    """True for a ``torch.Tensor`` or ``torch.Generator`` (checked without importing torch)."""
    return type(x).__module__.startswith("torch")


def xp(x: Any):
    """The array namespace of ``x``: ``torch`` for tensors, ``numpy`` otherwise."""
    if is_torch(x):
        import torch

        return torch
    return np


def asarray(x: Any):
    """``x`` unchanged if a tensor, else a float64 NumPy array (0-d for scalars)."""
    if is_torch(x):
        return x
    return np.asarray(x, dtype=np.float64)


def check_generator(x: Any, generator: Any, what: str) -> None:
    """Raise TypeError unless ``generator`` matches the kind of ``x``.

    NumPy inputs need a ``numpy.random.Generator``; tensors need a ``torch.Generator``.
    There is no fallback to a global RNG.
    """
    if is_torch(x):
        if not is_torch(generator):
            raise TypeError(
                f"{what}: a torch tensor needs a torch.Generator (got {type(generator).__name__})"
            )
    elif not isinstance(generator, np.random.Generator):
        raise TypeError(
            f"{what}: a NumPy array needs a numpy.random.Generator, e.g. "
            f"numpy.random.default_rng(seed) (got {type(generator).__name__})"
        )


def randn_like(x: Any, generator: Any):
    """Standard normal draws with the shape (and dtype/device for tensors) of ``x``."""
    if is_torch(x):
        import torch

        dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()
        return torch.randn(x.shape, generator=generator, dtype=dtype, device=x.device)
    return generator.standard_normal(np.shape(x))


def rand(shape: tuple[int, ...], generator: Any, like: Any = None):
    """Uniform [0, 1) draws of ``shape`` from ``generator`` (NumPy or torch)."""
    if is_torch(generator):
        import torch

        device = like.device if like is not None and is_torch(like) else generator.device
        return torch.rand(shape, generator=generator, device=device)
    return generator.random(shape)

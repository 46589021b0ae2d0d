"""Which torch device a network and its batches live on (``--device`` of the CLI).

One rule for the whole simulator: every tensor follows the network. :func:`device_of` reads
the device of a module's first parameter (or buffer); training and evaluation move each
batch there (:func:`to_device`); the analog layers allocate their cells, derived arrays and
noise generators on the device of the base layer's weight. Generators given to ``program``
may stay on the CPU: draws are made there and moved, so one seed programs the same chip on
CPU and CUDA.
"""

from __future__ import annotations

import torch
from torch import nn

from cimlab.errors import ConfigError

#: Accepted by :func:`resolve_device` besides explicit torch device strings.
AUTO = "auto"


def resolve_device(name: str | torch.device | None) -> torch.device:
    """``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``, ``"meta"`` or ``"auto"`` (CUDA when
    available, else CPU; ``None`` is the same) -> a torch device that exists here.

    Raises a :class:`ConfigError` naming ``--device`` when the device is unknown or absent.
    """
    if name is None or name == AUTO:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(None, "--device", "cpu, cuda, cuda:N, mps, meta or auto", name) from exc
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0 or (dev.index is not None and dev.index >= n):
            raise ConfigError(None, "--device", f"a CUDA device present here ({n} found; use "
                              "--device cpu)", str(dev))  # fmt: skip
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(None, "--device", "an available MPS device (use --device cpu)", str(dev))
    return dev


def device_of(module: nn.Module) -> torch.device:
    """Device of ``module``'s first parameter (else first buffer; CPU for neither)."""
    for p in module.parameters():
        return p.device
    for b in module.buffers():
        return b.device
    return torch.device("cpu")


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``t`` on ``device`` (no copy when it is there; asynchronous from pinned memory)."""
    if t.device == device:
        return t
    return t.to(device, non_blocking=t.device.type == "cpu" and t.is_pinned())

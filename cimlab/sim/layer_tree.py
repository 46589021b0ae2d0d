"""The hardware layers inside a converted network's module tree.

:class:`cimlab.sim.AnalogNetwork` (simulated tiles) and
:class:`cimlab.sim.chip_backend.ChipNetwork` (the chip) both keep a deep copy of the trained
network as ``.net`` with its ``nn.Linear``/``nn.Conv2d`` layers swapped for their own layer
class; these functions swap the layers in, list them and choose which of them are enabled.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

from cimlab.errors import ConfigError


def replace_submodule(root: nn.Module, name: str, new: nn.Module) -> None:
    """Put ``new`` where ``root``'s submodule with qualified name ``name`` is."""
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


def layers_of(network: nn.Module, layer_type: type) -> dict[str, nn.Module]:
    """The ``layer_type`` modules of ``network.net`` by qualified name within ``net`` (as in
    the trained network's ``named_modules()``), in forward (module) order."""
    return {
        n[len("net.") :]: m for n, m in network.named_modules() if isinstance(m, layer_type)
    }


def enable_only(layers: dict[str, nn.Module], names: Iterable[str] | None, what: str) -> None:
    """Set ``enabled`` on the layers named in ``names`` (None: all) and clear it on the others;
    an unknown name raises ``ConfigError`` listing the ``what`` names (nothing is changed)."""
    chosen = set(layers) if names is None else set(names)
    unknown = sorted(chosen - set(layers))
    if unknown:
        raise ConfigError(None, "inject", f"{what} names ({', '.join(layers)})", unknown)
    for n, layer in layers.items():
        layer.enabled = n in chosen


__all__ = ["enable_only", "layers_of", "replace_submodule"]

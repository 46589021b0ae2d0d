"""Global drift compensation: a per-layer output scale (and offset) from a reference input.

The simpler baseline next to BN calibration (:mod:`cimlab.mitigation.bn_calibration`). In the
spirit of aihwkit's ``GlobalDriftCompensation`` (Joshi et al., Nat. Commun. 11, 2473, 2020):
right after programming, each crossbar layer is read with a fixed reference input and its
outputs are stored; later (after drift, a bake) the same reference input is applied again and
one scalar per layer maps the drifted outputs back onto the stored ones. The correction is a
digital multiply-add on the layer's output; the weights stay as programmed.

Two modes:

``"scale"``
    ``alpha = sum|y_ref| / sum|y_now|`` (aihwkit's readout ratio), ``beta = 0``.
``"affine"``
    ``alpha, beta`` by least squares of ``y_ref ~ alpha * y_now + beta`` over all reference
    outputs of the layer.

Unlike BN calibration it needs no data and corrects only a global, layer-wide drift; a
per-channel shift or broadening (programming error, stuck cells) stays. Works on any module:
the layers are found by type (``nn.Conv*``, ``nn.Linear``, or anything with
``effective_weight()``: the simulator's ``AnalogLayer`` and the chip backend's ``ChipLayer``,
whose digital ``base`` child is then skipped) or named explicitly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["DriftCompensation", "crossbar_layers"]

MODES = ("scale", "affine")


def crossbar_layers(model: nn.Module) -> list[str]:
    """Names of the layers computed on a crossbar: convolutions, linears, analog layers."""
    names = []
    for name, m in model.named_modules():
        if not name:
            continue
        analog = callable(getattr(m, "effective_weight", None))  # simulator / chip layer
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)) or analog:
            names.append(name)
    # an analog wrapper holding a Conv/Linear child: keep the outer one only
    return [n for n in names if not any(n.startswith(o + ".") for o in names if o != n)]


@dataclass(frozen=True)
class _LayerRef:
    x: torch.Tensor  # reference input batch
    y: torch.Tensor  # reference output recorded at capture


class DriftCompensation:
    """Per-layer output correction ``y -> alpha * y + beta`` from a stored reference readout.

    Use::

        dc = DriftCompensation.capture(programmed_net, example_batch)   # right after programming
        programmed_net.age(...)                                        # time passes
        dc.apply(programmed_net)       # re-read the reference, install the correction hooks
        dc.remove()                    # take the hooks away again

    ``capture`` may also be given the digital network (same layer names): then the correction
    also removes the programming-time error of the layer's global gain.
    """

    def __init__(self, refs: dict[str, _LayerRef], mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"DriftCompensation: mode must be one of {MODES}, got {mode!r}")
        self.refs = refs
        self.mode = mode
        self.alpha: dict[str, float] = {}
        self.beta: dict[str, float] = {}
        self._hooks: list = []

    @classmethod
    def capture(
        cls,
        model: nn.Module,
        example: torch.Tensor,
        *,
        layers: Sequence[str] | None = None,
        mode: str = "affine",
        n_ref: int = 16,
        seed: int = 0,
    ) -> DriftCompensation:
        """Record the reference readout of each crossbar layer.

        ``example``: one input batch, used only to learn each layer's input shape. The
        reference input of a layer is ``n_ref`` vectors uniform in [0, max|x|] of the layer's
        observed input (the ones vector among them), drawn from ``torch.Generator(seed)``.
        """
        names = list(layers) if layers is not None else crossbar_layers(model)
        if not names:
            raise ValueError("DriftCompensation: no crossbar layers found; pass layers=")
        mods = dict(model.named_modules())
        shapes: dict[str, tuple[tuple[int, ...], float]] = {}
        hooks = []
        for n in names:
            if n not in mods:
                raise ValueError(f"DriftCompensation: no layer named {n!r}")

            def hook(_m, inp, _n=n):
                x = inp[0]
                shapes[_n] = (tuple(x.shape[1:]), float(x.detach().abs().max()))

            hooks.append(mods[n].register_forward_pre_hook(hook))
        was = model.training
        model.eval()
        try:
            with torch.no_grad():
                model(example[:2])
        finally:
            for h in hooks:
                h.remove()
        gen = torch.Generator().manual_seed(seed)
        refs = {}
        with torch.no_grad():
            for n in names:
                if n not in shapes:
                    raise ValueError(f"DriftCompensation: layer {n!r} is not used by forward")
                shape, amp = shapes[n]
                x = torch.rand((n_ref, *shape), generator=gen) * max(amp, 1e-12)
                x[0] = amp
                refs[n] = _LayerRef(x, mods[n](x).detach().clone())
        model.train(was)
        return cls(refs, mode)

    def estimate(self, model: nn.Module) -> dict[str, tuple[float, float]]:
        """Re-read the reference inputs and compute (alpha, beta) per layer (no hooks)."""
        self.remove()
        mods = dict(model.named_modules())
        out = {}
        with torch.no_grad():
            for n, ref in self.refs.items():
                y = mods[n](ref.x).detach().double().flatten()
                r = ref.y.double().flatten()
                if self.mode == "scale":
                    a, b = float(r.abs().sum() / y.abs().sum().clamp_min(1e-300)), 0.0
                else:
                    ym, rm = y.mean(), r.mean()
                    var = ((y - ym) ** 2).sum()
                    a = float(((y - ym) * (r - rm)).sum() / var.clamp_min(1e-300))
                    b = float(rm - a * ym)
                out[n] = (a, b)
        self.alpha = {n: v[0] for n, v in out.items()}
        self.beta = {n: v[1] for n, v in out.items()}
        return out

    def apply(self, model: nn.Module) -> dict[str, tuple[float, float]]:
        """Estimate the correction and install it as forward hooks; returns (alpha, beta)."""
        out = self.estimate(model)
        mods = dict(model.named_modules())
        for n, (a, b) in out.items():

            def hook(_m, _inp, y, _a=a, _b=b):
                return y * _a + _b

            self._hooks.append(mods[n].register_forward_hook(hook))
        return out

    def remove(self) -> None:
        """Remove the correction hooks (the network computes uncorrected again)."""
        for h in self._hooks:
            h.remove()
        self._hooks = []

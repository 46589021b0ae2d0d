"""Binarized layers (BNN) with optional weight bit flips, after paper 003.

Binarized neural networks (Courbariaux et al., arXiv:1602.02830, ref. [7] of paper 003) keep
a real-valued "latent" weight per synapse for the learning rule but compute with its sign
(+1/-1) in both the forward and the backward pass; activations are binarized with the sign
function. Gradients pass the sign with the straight-through estimator (STE): the identity for
weights, the hard-tanh derivative ``1{|x| <= 1}`` for activations. After each optimizer step
the latent weights are clipped to [-1, 1] (:func:`clip_latent_weights`), as in ref. [7].

Bit errors (paper 003, Hirtzlin et al., section IV): an RRAM cell storing a binary weight reads
back the wrong value with probability BER. :class:`BinaryLinear` and :class:`BinaryConv2d`
model this in two ways:

* ``flip_prob`` (training-time errors, *error-aware training*): at every forward pass a fresh
  Bernoulli(``flip_prob``) mask flips weights, ``W_err = sign(W) * (1 - 2 m)``. ``W_err`` is
  what the forward pass uses, and autograd reuses the same ``W_err`` in the backward pass to
  propagate through the depth of the network, exactly as the paper describes. The gradient
  reaching the latent weights is the chain rule through the flip, an unbiased estimate of the
  gradient of the expected loss over the error distribution.
* a fixed flip mask (:meth:`BinaryLayerMixin.set_fixed_flips`, :func:`inject_bit_errors`):
  one realization of programmed errors, persistent over the whole test set, which is what a
  programmed chip has. The errors at test time are drawn independently of those in training.

Layers have no bias by default: in a BNN the neuron threshold ``T`` of paper 003's eq. (2)
comes from the batch-norm layer that follows each binary layer.

Weight bit ``1`` (LRS) <-> +1 and ``0`` (HRS) <-> -1; :meth:`BinaryLayerMixin.binary_weight`
returns the +-1 matrix the simulator programs (one cell per weight in 1T1R, a complementary
pair in 2T2R).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from cimlab.errors import ConfigError


class _SignSTE(torch.autograd.Function):
    """sign(x) in {-1, +1} (0 -> +1); backward multiplies by ``1{|x| <= clip}``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, clip: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.clip = clip
        return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        if ctx.clip == float("inf"):
            return grad, None
        return grad * (x.abs() <= ctx.clip).to(grad.dtype), None


def sign_ste(x: torch.Tensor, clip: float = 1.0) -> torch.Tensor:
    """Binarize with the straight-through estimator (``clip=inf``: plain identity gradient)."""
    return _SignSTE.apply(x, clip)


class BinaryActivation(nn.Module):
    """Sign activation (+1/-1) with the hard-tanh straight-through gradient (ref. [7])."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sign_ste(x, 1.0)


def _check_prob(p: float) -> float:
    p = float(p)
    if not 0.0 <= p <= 0.5:
        raise ConfigError(None, "flip_prob", "a bit error rate in [0, 0.5]", p)
    return p


class BinaryLayerMixin:
    """Shared binarization and bit-flip logic of :class:`BinaryLinear` / :class:`BinaryConv2d`."""

    weight: torch.Tensor
    flip_prob: float
    generator: torch.Generator | None
    fixed_flip_mask: torch.Tensor | None

    def _init_flips(self, flip_prob: float) -> None:
        self.flip_prob = _check_prob(flip_prob)
        self.generator = None
        self.fixed_flip_mask = None

    def binary_weight(self) -> torch.Tensor:
        """The +-1 weights this layer would program (no errors), detached."""
        return torch.where(self.weight >= 0, 1.0, -1.0).to(self.weight.dtype).detach()

    def set_flip_prob(self, p: float, generator: torch.Generator | None = None) -> None:
        """Training-time bit error rate (fresh flips each forward pass)."""
        self.flip_prob = _check_prob(p)
        if generator is not None:
            self.generator = generator

    def set_fixed_flips(self, mask: torch.Tensor | None) -> None:
        """A persistent flip mask (bool, weight-shaped), or None to remove it."""
        if mask is not None:
            if mask.shape != self.weight.shape:
                raise ConfigError(
                    None, "mask", f"shape {tuple(self.weight.shape)}", tuple(mask.shape)
                )
            mask = mask.to(device=self.weight.device, dtype=torch.bool)
        self.fixed_flip_mask = mask

    def effective_weight(self) -> torch.Tensor:
        """sign(W) with the fixed flips and, while training-time flips are on, fresh flips."""
        wb = sign_ste(self.weight, float("inf"))
        flips = None
        if self.fixed_flip_mask is not None:
            flips = self.fixed_flip_mask
        if self.flip_prob > 0.0 and self.training:
            u = torch.rand(self.weight.shape, generator=self.generator, device=self.weight.device)
            fresh = u < self.flip_prob
            flips = fresh if flips is None else flips ^ fresh
        if flips is None:
            return wb
        return wb * (1.0 - 2.0 * flips.to(wb.dtype))


class BinaryLinear(BinaryLayerMixin, nn.Linear):
    """Fully connected layer with binary (+-1) weights, optional bit flips (paper 003)."""

    def __init__(
        self, in_features: int, out_features: int, bias: bool = False, flip_prob: float = 0.0
    ):
        super().__init__(in_features, out_features, bias=bias)
        self._init_flips(flip_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.effective_weight(), self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, flip_prob={self.flip_prob:g}"


class BinaryConv2d(BinaryLayerMixin, nn.Conv2d):
    """2-D convolution with binary (+-1) weights, optional bit flips (paper 003)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        bias: bool = False,
        flip_prob: float = 0.0,
    ):
        super().__init__(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias
        )
        self._init_flips(flip_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.effective_weight(), self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, flip_prob={self.flip_prob:g}"


def binary_layers(net: nn.Module) -> list[BinaryLayerMixin]:
    """The binary layers of ``net`` in module order."""
    return [m for m in net.modules() if isinstance(m, BinaryLayerMixin)]


def set_training_ber(net: nn.Module, ber: float, generator: torch.Generator | None = None) -> None:
    """Set the training-time bit error rate of every binary layer (one shared generator)."""
    for layer in binary_layers(net):
        layer.set_flip_prob(ber, generator)


@torch.no_grad()
def inject_bit_errors(net: nn.Module, ber: float, generator: torch.Generator) -> int:
    """Give every binary layer a fixed random flip mask at bit error rate ``ber``.

    Models one programmed chip (errors persist over the whole evaluation). Replaces any
    previous fixed mask. Returns the number of flipped weights.
    """
    ber = _check_prob(ber)
    flipped = 0
    for layer in binary_layers(net):
        mask = torch.rand(layer.weight.shape, generator=generator) < ber
        layer.set_fixed_flips(mask if ber > 0 else None)
        flipped += int(mask.sum())
    return flipped


def clear_bit_errors(net: nn.Module) -> None:
    """Remove fixed flip masks (training-time ``flip_prob`` is left unchanged)."""
    for layer in binary_layers(net):
        layer.set_fixed_flips(None)


@torch.no_grad()
def clip_latent_weights(net: nn.Module, bound: float = 1.0) -> None:
    """Clip the real-valued latent weights of binary layers to [-bound, bound] (ref. [7])."""
    for layer in binary_layers(net):
        layer.weight.clamp_(-bound, bound)  # BNN learning rule, not a physical value

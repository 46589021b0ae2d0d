"""Architecture-aware training in four levels (paper 001, Wang, Park & Lu).

A network is trained with more and more of the in-memory-computing hardware in its forward
pass, each level fine-tuned from the previous one (paper 001, Sec. IV-B: training level 3 or 4
from scratch fails to converge or loses accuracy):

===== ===========================================================================
level forward pass during training
===== ===========================================================================
0     floating point (the baseline)
1     quantization-aware: weights at ``cell_bits`` (4), activations at ``act_bits`` (8),
      fake-quantized with straight-through estimators (Jacob et al., CVPR 2018)
2     + device-aware: signed weight on a differential pair of cells with a finite on/off
      ratio (G_min = G_max / on_off > 0, model below)
3     + tile-aware: the layer's rows split into ``tile_rows`` (256) row tiles, each tile's
      partial sum digitised by an ``adc_bits`` (8) ADC, tiles added digitally
4A    + variation-aware, approach A: cell conductance noise ``sigma_frac`` of the range
      injected on the weights quantized to the cell resolution (fresh draw every step)
4B    approach B: same noise, weights quantized to a higher ``target_bits`` (8)
===== ===========================================================================

Hardware model (paper 001 gives no equations; these are cimlab's, stated here):

* Weights of a layer are normalized by ``wmax = max|w|``; a cell holds ``|w|/wmax`` on the
  grid ``k / (2^bits - 1)`` as conductance ``k G_max / (2^bits - 1)``: the naive mapping that
  assumes G_off = 0. Levels below ``G_min`` are not programmable and land on ``G_min``; the
  partner cell of the pair sits at ``G_min`` (off). The digital periphery subtracts the two
  column currents, so the effective weight is ``sign(w) * (max(q, 1/on_off) - 1/on_off) *
  wmax``: a dead zone below ``wmax / on_off`` and a shift of every other weight towards 0.
  At on/off >= 1e3 this is plain quantization; at 10 it is what breaks post-quantized
  models (paper 001, Fig. 6), and what device-aware training learns to live with (Fig. 7).
* Programming variation: each of the two cells gets ``N(0, sigma_frac * (1 - 1/on_off))`` in
  units of ``G_max`` (paper 001: up to 1.56 % of the dynamic range), a fixed draw per
  mapping (:func:`program`) at inference, a fresh draw per step in level-4 training.
* Activations: the input of each crossbar layer is quantized by the DAC to ``act_bits`` over
  ``[0, a_max]`` (or ``[-a_max, a_max]`` if it has negative values, e.g. the standardized
  image); ``a_max`` is a running maximum tracked while training (a fixed register at
  inference).
* ADC (level 3 and the tiled hardware): each tile's differential column current, in units of
  ``a_max * wmax``, is quantized with ``adc_bits`` over ``[-FS, FS)``, ``FS = adc_fs_frac *
  rows_in_tile`` (the worst case is every row at full input and full weight;
  ``adc_fs_frac`` = 1/8 by default, an assumption: paper 001 names an 8-bit ADC and 3 uA
  cell read current but not the range). Saturation is the ADC's, not a software clamp.

Every quantizer passes gradients straight through (clipped to its range), so the same layers
train and infer. Use :func:`to_arch_aware` to convert a network, :func:`set_view` to choose
what the forward models, :func:`program` / :func:`unprogram` for a fixed mapping, and
:func:`train_levels` to run the whole ladder.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from cimlab.params import check, param

__all__ = [
    "LEVELS",
    "ArchConv2d",
    "ArchLinear",
    "HardwareSpec",
    "View",
    "calibrate_ranges",
    "clone",
    "evaluate_mappings",
    "level_view",
    "program",
    "set_view",
    "to_arch_aware",
    "train_levels",
    "unprogram",
]

LEVELS = ("0", "1", "2", "3", "4A", "4B")


@dataclass(frozen=True)
class HardwareSpec:
    """The IMC hardware of paper 001 (defaults: its Sec. II-B)."""

    cell_bits: int = param(4, unit="1", lo=1, hi=16, doc="cell resolution (paper 001: 4 bit)")
    target_bits: int = param(8, unit="1", lo=1, hi=16, doc="approach-B target resolution")
    act_bits: int = param(8, unit="1", lo=1, hi=16, doc="activation (DAC) resolution")
    on_off: float = param(
        10.0, unit="1", lo=1.0, lo_open=True, doc="G_max / G_min (paper 001: down to 10)"
    )
    tile_rows: int = param(256, unit="1", lo=1, doc="rows per array (paper 001: 256 x 64)")
    adc_bits: int = param(8, unit="1", lo=1, hi=24, doc="ADC resolution (paper 001: 8 bit)")
    adc_fs_frac: float = param(
        0.125, unit="1", lo=0.0, lo_open=True, hi=1.0,
        doc="ADC full scale / worst-case tile current (assumption, module docstring)",
    )  # fmt: skip
    sigma_frac: float = param(
        0.0156, unit="1", lo=0.0, doc="cell variation / dynamic range (paper 001: <= 1.56 %)"
    )

    def __post_init__(self) -> None:
        check(self)

    def replace(self, **changes) -> HardwareSpec:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class View:
    """What a forward pass models: quantization, device, tiles, variation, weight bits."""

    quant: bool = False
    device: bool = False
    tiles: bool = False
    variation: bool = False
    bits: int | None = None  # weight bits (None: hw.cell_bits)


def level_view(level: str, hw: HardwareSpec) -> View:
    """The training-time :class:`View` of architecture-aware ``level`` (``LEVELS``)."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
    if level == "0":
        return View()
    if level == "1":
        return View(quant=True, bits=hw.cell_bits)
    if level == "2":
        return View(quant=True, device=True, bits=hw.cell_bits)
    if level == "3":
        return View(quant=True, device=True, tiles=True, bits=hw.cell_bits)
    bits = hw.cell_bits if level == "4A" else hw.target_bits
    return View(quant=True, device=True, tiles=True, variation=True, bits=bits)


class _STERound(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return torch.round(x)

    @staticmethod
    def backward(ctx, g):
        return g


def _round(x: torch.Tensor) -> torch.Tensor:
    return _STERound.apply(x)


def _quant_unit(x: torch.Tensor, n_levels: int) -> torch.Tensor:
    """Quantize x in [0, 1] to n_levels uniform levels (STE)."""
    return _round(x * (n_levels - 1)) / (n_levels - 1)


class _ArchMixin:
    """Shared weight/activation/ADC model of :class:`ArchConv2d` and :class:`ArchLinear`."""

    hw: HardwareSpec
    view: View

    def _arch_init(self, hw: HardwareSpec) -> None:
        self.hw = hw
        self.view = View()
        self.register_buffer("a_max", torch.zeros(()))
        self.register_buffer("a_signed", torch.zeros((), dtype=torch.bool))
        self.map_noise: torch.Tensor | None = None  # fixed (2, *weight.shape) per mapping
        self.noise_generator: torch.Generator | None = None
        self.calibrating = False  # True: record a_max (max over the data) in eval mode

    # activations ---------------------------------------------------------------------
    def _act(self, x: torch.Tensor) -> tuple[torch.Tensor, float]:
        if self.training or self.calibrating:
            with torch.no_grad():
                m = x.detach().abs().max()
                if self.calibrating or self.a_max == 0:
                    self.a_max.copy_(torch.maximum(self.a_max, m) if self.calibrating else m)
                else:
                    self.a_max.copy_(torch.maximum(0.9 * self.a_max, m))
                if bool((x < 0).any()):
                    self.a_signed.fill_(True)
        a = float(self.a_max) if float(self.a_max) > 0 else float(x.detach().abs().max()) + 1e-12
        if not self.view.quant:
            return x, a
        n = 2**self.hw.act_bits
        if bool(self.a_signed):
            xn = (x / a).clamp(-1.0, 1.0)
            return _round(xn * (n // 2 - 1)) / (n // 2 - 1) * a, a
        return _quant_unit((x / a).clamp(0.0, 1.0), n) * a, a

    # weights ---------------------------------------------------------------------------
    def effective_weight(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(effective weight in weight units, wmax) under the current view."""
        w = self.weight
        wmax = w.detach().abs().max().clamp_min(1e-12)
        v = self.view
        if not v.quant:
            return w, wmax
        bits = v.bits or self.hw.cell_bits
        wn = w / wmax
        q = _quant_unit(wn.abs(), 2**bits)
        if not v.device and not v.variation:
            return torch.sign(w) * q * wmax, wmax
        g_off = 1.0 / self.hw.on_off if v.device else 0.0
        g_act = q + F.relu(g_off - q).detach() if v.device else q  # max(q, g_off), STE
        pos, neg = (w > 0).to(w.dtype), (w < 0).to(w.dtype)
        g_plus = pos * g_act + (1 - pos) * g_off
        g_minus = neg * g_act + (1 - neg) * g_off
        if v.variation and self.hw.sigma_frac > 0:
            sig = self.hw.sigma_frac * (1.0 - g_off)
            if self.map_noise is not None:
                noise = self.map_noise
            else:
                noise = torch.randn((2, *w.shape), generator=self.noise_generator,
                                    dtype=w.dtype)  # fmt: skip
            g_plus = g_plus + sig * noise[0]
            g_minus = g_minus + sig * noise[1]
        return (g_plus - g_minus) * wmax, wmax

    def _adc(self, psum: torch.Tensor, rows: int) -> torch.Tensor:
        """ADC on one tile's partial sum (units a_max * wmax)."""
        fs = self.hw.adc_fs_frac * rows
        half = 2 ** (self.hw.adc_bits - 1)
        lsb = fs / half
        return torch.clamp(_round(psum / lsb), -half, half - 1) * lsb


class ArchLinear(nn.Linear, _ArchMixin):
    """``nn.Linear`` whose forward models the IMC hardware per :attr:`view` (module doc)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 hw: HardwareSpec | None = None):  # fmt: skip
        super().__init__(in_features, out_features, bias)
        self._arch_init(hw or HardwareSpec())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, a = self._act(x)
        w, wmax = self.effective_weight()
        if not self.view.tiles:
            return F.linear(x, w, self.bias)
        out = 0
        xn, wn = x / a, w / wmax
        for r0 in range(0, self.in_features, self.hw.tile_rows):
            sl = slice(r0, r0 + self.hw.tile_rows)
            rows = wn[:, sl].shape[1]
            out = out + self._adc(F.linear(xn[:, sl], wn[:, sl]), rows)
        out = out * a * wmax
        return out + self.bias if self.bias is not None else out


class ArchConv2d(nn.Conv2d, _ArchMixin):
    """``nn.Conv2d`` whose forward models the IMC hardware per :attr:`view` (module doc)."""

    def __init__(self, *args, hw: HardwareSpec | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._arch_init(hw or HardwareSpec())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, a = self._act(x)
        w, wmax = self.effective_weight()
        if not self.view.tiles:
            return self._conv_forward(x, w, self.bias)
        if self.groups != 1 or self.padding_mode != "zeros":
            raise ValueError("ArchConv2d: tiles need groups=1 and zero padding")
        n, _, h, wd = x.shape
        cols = F.unfold(x / a, self.kernel_size, self.dilation, self.padding, self.stride)
        wm = (w / wmax).reshape(self.out_channels, -1)
        out = 0
        for r0 in range(0, wm.shape[1], self.hw.tile_rows):
            sl = slice(r0, r0 + self.hw.tile_rows)
            rows = wm[:, sl].shape[1]
            out = out + self._adc(torch.einsum("or,nrl->nol", wm[:, sl], cols[:, sl]), rows)
        ho = (h + 2 * self.padding[0] - self.dilation[0] * (self.kernel_size[0] - 1) - 1) // (
            self.stride[0]
        ) + 1
        wo = (wd + 2 * self.padding[1] - self.dilation[1] * (self.kernel_size[1] - 1) - 1) // (
            self.stride[1]
        ) + 1
        out = (out * a * wmax).reshape(n, self.out_channels, ho, wo)
        return out + self.bias.view(1, -1, 1, 1) if self.bias is not None else out


def to_arch_aware(net: nn.Module, hw: HardwareSpec | None = None) -> nn.Module:
    """A deep copy of ``net`` with every ``nn.Conv2d``/``nn.Linear`` replaced by its
    architecture-aware counterpart (same weights; view: floating point)."""
    hw = hw or HardwareSpec()
    net = copy.deepcopy(net)

    def swap(parent: nn.Module) -> None:
        for name, m in parent.named_children():
            if isinstance(m, _ArchMixin):
                continue
            if type(m) is nn.Linear:
                new = ArchLinear(m.in_features, m.out_features, m.bias is not None, hw=hw)
            elif type(m) is nn.Conv2d:
                new = ArchConv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride,
                                 m.padding, m.dilation, m.groups, m.bias is not None,
                                 m.padding_mode, hw=hw)  # fmt: skip
            else:
                swap(m)
                continue
            new.load_state_dict(m.state_dict(), strict=False)
            new.train(m.training)
            setattr(parent, name, new)

    swap(net)
    return net


def arch_layers(net: nn.Module) -> list[_ArchMixin]:
    return [m for m in net.modules() if isinstance(m, _ArchMixin)]


def set_view(net: nn.Module, view: View, hw: HardwareSpec | None = None,
             generator: torch.Generator | None = None) -> None:  # fmt: skip
    """Set what every architecture-aware layer models (and optionally the hardware and the
    generator of training-time variation noise)."""
    layers = arch_layers(net)
    if not layers:
        raise ValueError("set_view: no architecture-aware layers; call to_arch_aware first")
    for m in layers:
        m.view = view
        if hw is not None:
            m.hw = hw
        if generator is not None:
            m.noise_generator = generator


@torch.no_grad()
def calibrate_ranges(net: nn.Module, x: torch.Tensor, batch_size: int = 512) -> None:
    """Set every layer's DAC range ``a_max`` to the maximum |input| over ``x`` (the
    register a deployment loads; used for models trained without quantization)."""
    layers = arch_layers(net)
    for m in layers:
        m.a_max.zero_()
        m.a_signed.fill_(False)
        m.calibrating = True
    was = net.training
    net.eval()
    try:
        for i in range(0, len(x), batch_size):
            net(x[i : i + batch_size])
    finally:
        for m in layers:
            m.calibrating = False
        net.train(was)


def clone(net: nn.Module) -> nn.Module:
    """Deep copy of an architecture-aware network (generators are not copied)."""
    layers = arch_layers(net)
    saved = [(m.noise_generator, m.map_noise) for m in layers]
    for m in layers:
        m.noise_generator, m.map_noise = None, None
    try:
        return copy.deepcopy(net)
    finally:
        for m, (g, n) in zip(layers, saved, strict=True):
            m.noise_generator, m.map_noise = g, n


def program(net: nn.Module, generator: torch.Generator) -> None:
    """Draw one fixed mapping (variation noise per cell) for inference."""
    for m in arch_layers(net):
        m.map_noise = torch.randn((2, *m.weight.shape), generator=generator,
                                  dtype=m.weight.dtype)  # fmt: skip


def unprogram(net: nn.Module) -> None:
    """Forget the fixed mapping (training draws fresh noise every step again)."""
    for m in arch_layers(net):
        m.map_noise = None


@torch.no_grad()
def _acc(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    net.eval()
    return float((net(x).argmax(1) == y).double().mean())


def evaluate_mappings(
    net: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    view: View,
    hw: HardwareSpec,
    *,
    n_mappings: int = 20,
    seed: int = 0,
) -> list[float]:
    """Test accuracy of ``n_mappings`` independent mappings (paper 001: 20 per model).

    Without variation in ``view`` every mapping is identical, so one is evaluated."""
    set_view(net, view, hw)
    n = n_mappings if (view.variation and hw.sigma_frac > 0) else 1
    out = []
    try:
        for k in range(n):
            program(net, torch.Generator().manual_seed(seed * 7919 + k))
            out.append(_acc(net, x, y))
    finally:
        unprogram(net)
    return out


def train_levels(
    net: nn.Module,
    train_fn: Callable[[nn.Module, str], None],
    hw: HardwareSpec,
    levels: Sequence[str] = LEVELS,
    *,
    seed: int = 0,
    calib_x: torch.Tensor | None = None,
) -> dict[str, nn.Module]:
    """Fine-tune the ladder: each level starts from the previous level's weights.

    ``net`` is the trained floating-point model (level 0, an architecture-aware copy is
    kept; ``calib_x`` sets its DAC ranges). ``train_fn(model, level)`` trains ``model`` in
    place (the view is already set; e.g. a call of :func:`cimlab.sim.training.train` with a
    few epochs). Approach B (4B) is fine-tuned from level 3, like 4A. Returns
    ``{level: model}`` (independent copies).
    """
    gen = torch.Generator().manual_seed(seed)
    models: dict[str, nn.Module] = {}
    prev = to_arch_aware(net, hw) if not arch_layers(net) else clone(net)
    set_view(prev, View(), hw)
    if calib_x is not None:
        calibrate_ranges(prev, calib_x)
    for level in levels:
        if level == "0":
            models["0"] = clone(prev)
            continue
        parent = models.get("3") if level in ("4A", "4B") and "3" in models else prev
        m = clone(parent)
        set_view(m, level_view(level, hw), hw, generator=gen)
        train_fn(m, level)
        m.eval()
        models[level] = m
        if level not in ("4A", "4B"):
            prev = m
    return models

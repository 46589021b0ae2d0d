"""The arrays an analog layer's forward pass reads, derived from its crossbar state.

:class:`EffectiveArrays` turns the cells (:mod:`cimlab.sim.crossbar`) into what the forward
pass needs, once per change of the cells (``_refresh``), never per call. A change
(``program()``, ``age()``, ``set_cells``) only marks them stale (``_invalidate``); they are
recomputed when one of them is next read (:data:`DERIVED`, through the layer's
``__getattr__``), so ``program()`` followed by ``age()`` computes them once, not twice:

* the effective weights, i.e. ``(G+ - G-) f`` per slice after the first-order IR-drop
  correction (:func:`cimlab.sim.irdrop.cell_drop_factors`), with the bias row scaled by
  ``bias_s``;
* the read-noise standard deviations (``"weight"`` mode) or variances (``"output"`` mode) of
  the same entries, from the device model's ``read_noise.sigma`` of each cell, or, when the
  model's read-noise spectrum has a 1/f part, from the spectrum's per-forward part (white +
  flicker faster than ``1 / eval_duration_s``); the slower flicker is then a per-cell offset
  drawn here (a new time point: ``program``, ``age``, ``set_cells``) and added to the
  effective weights (:mod:`cimlab.sim.flicker`);
* with ADCs: all of it in the geometry's per-tile arrangement (``w_tiles``, ``sd_tiles`` /
  ``var_tiles``, ``b_slices``, ``sd_b_slices`` / ``var_b_slices``) so that one batched
  matmul or one grouped convolution gives every tile's partial sums, and the worst-case ADC
  ranges of the target cells (``adc_a``, ``adc_b``: (n_tiles_total, S, out), ``range = adc_a
  x_fs + adc_b``);
* without ADCs: dense tensors in the base layer's weight shape (``w_fast``, ``b_fast``,
  ``sd_fast`` / ``var_fast``, ``sd_b_fast`` / ``var_b_fast``).

``slice_f`` holds the weight per siemens of each slice. The mixin expects from its host the
crossbar state (``g_cells``, ``g_target``, ``mapping``, ``layout``, ``bias_s``, ``t_eq_s``),
``config``, ``base``, ``_buf``, ``_chunks``, the noise generators ``_gen``/``_streams`` and the
geometry hooks ``_tiles_shape``, ``_arrange_into``
and ``_from_tiles_layout``.
"""

from __future__ import annotations

import torch

from cimlab.sim import flicker
from cimlab.sim.inplace import read_variance_pair
from cimlab.sim.irdrop import cell_drop_factors
from cimlab.sim.periphery import fill_standard_normal

#: The buffers :meth:`EffectiveArrays._refresh` derives from the cells: reading one while the
#: cells have changed since the last refresh refreshes first (``AnalogLayer.__getattr__``).
DERIVED = frozenset({
    "slice_f", "w_fast", "b_fast", "var_fast", "var_b_fast", "sd_fast", "sd_b_fast",
    "w_tiles", "var_tiles", "sd_tiles", "b_slices", "var_b_slices", "sd_b_slices",
    "adc_a", "adc_b",
})


class EffectiveArrays:
    """Derived per-forward arrays (module docstring)."""

    def _invalidate(self, targets: bool = False) -> None:
        """The cells changed (``targets``: the target cells too, so the worst-case ADC
        ranges change): the derived arrays are recomputed when next read, once for any
        number of changes before that."""
        pending = self.__dict__.get("_pending_refresh", False)
        self.__dict__["_pending_refresh"] = bool(targets or pending)

    def _ensure_fresh(self) -> None:
        """Run the refresh the last changes asked for, if any (``_invalidate``)."""
        pending = self.__dict__.pop("_pending_refresh", None)
        if pending is None:
            return
        try:
            self._refresh(targets=pending)
        except BaseException:
            self.__dict__["_pending_refresh"] = pending  # still stale: retried on next read
            raise

    @torch.no_grad()
    def _refresh(self, targets: bool = False) -> None:
        """Precompute what forward needs from the current cells (module docstring), chunk by
        chunk of outputs (cache-sized temporaries). Run by :meth:`_ensure_fresh` when a
        :data:`DERIVED` buffer is read after ``program``, ``age`` or ``set_cells``; returns
        nothing, sets the buffers listed in the module docstring.
        ``targets``: the target cells changed (program), so the worst-case ADC ranges are
        recomputed too.

        With ADCs the forward pass reads only the per-tile arrangement; the dense weights
        (``effective_weight``) are then derived from it on demand. Tile buffers are reused in
        place when their shape allows (fresh pages cost more than the arithmetic)."""
        cfg, dm, lay = self.config, self.config.device, self.layout
        g_all, gt_all = self.g_cells, self.g_target
        S, out = g_all.shape[1], g_all.shape[2]
        k = lay.k
        has_b = lay.has_bias
        s_b = self.bias_s
        dev, dt = g_all.device, g_all.dtype
        f = self.mapping.slice_factors(dev, dt)
        fs = f.view(-1, 1, 1)
        f_list = [float(v) for v in f]
        rn = cfg.read_noise
        ir = cfg.ir_drop and dm.wire.r_segment_ohm > 0
        r_seg = float(dm.wire.r_segment_ohm)
        adc = cfg.adc_bits is not None
        rn_model = dm.read_noise
        spec = dm.read_noise_spectrum
        # 1/f read noise (flicker.py): per-forward part from the spectrum, slow part frozen
        flick = rn is not None and flicker.has_flicker(spec)
        z_frozen = None
        if flick:
            frozen, fast = flicker.bands(spec, cfg.eval_duration_s, self.t_eq_s)
            if frozen[1] > frozen[0]:  # one normal per pair (only G+ - G- is read)
                z_frozen = torch.empty(g_all.shape[1:], device=dev, dtype=dt)
                fill_standard_normal(z_frozen, self._gen(dev), self._streams)
        nt = lay.n_tiles_total
        if adc:
            w_t = self._reuse("w_tiles", self._tiles_shape(S, out), dev, dt)
            v_t = self._reuse("sd_tiles" if rn == "weight" else "var_tiles",
                              w_t.shape, dev, dt) if rn else None  # fmt: skip
            b_sl = torch.empty(S, out, device=dev, dtype=dt) if has_b else None
            v_bsl = torch.empty(S, out, device=dev, dtype=dt) if (has_b and rn) else None
            if targets:
                adc_a = torch.empty(nt, S, out, device=dev, dtype=dt)
                adc_b = torch.zeros(nt, S, out, device=dev, dtype=dt)
        else:
            w_fast = torch.empty(out, k, device=dev, dtype=dt)
            b_fast = torch.empty(out, device=dev, dtype=dt) if has_b else None
            v_fast = torch.empty(out, k, device=dev, dtype=dt) if rn else None
            v_b = torch.empty(out, device=dev, dtype=dt) if (rn and has_b) else None
        for o0, o1 in self._chunks(out):
            g = g_all[:, :, o0:o1]
            if ir:
                g_eff = cell_drop_factors(g, lay).mul_(r_seg).add_(1.0)
                g_eff = torch.div(g, g_eff, out=g_eff)
            else:
                g_eff = g
            w_s = torch.sub(g_eff[0], g_eff[1])  # (S, co, rows) [S]
            var_s = None
            if flick:
                var_s, var_frozen = flicker.pair_variances(spec, g[0], g[1], frozen, fast)
                if z_frozen is not None:
                    w_s.addcmul_(var_frozen.sqrt_(), z_frozen[:, o0:o1])
            elif rn:
                var_s = read_variance_pair(rn_model, g[0], g[1])
            w_s = w_s.mul_(f_list[0]) if S == 1 else w_s.mul_(fs)  # weight units
            if rn:
                var_s = var_s.mul_(f_list[0] ** 2) if S == 1 else var_s.mul_(fs**2)
                if rn == "weight" and adc:
                    var_s.sqrt_()  # the forward pass needs the standard deviation
            if not adc:
                w_fast[o0:o1] = w_s[..., :k].sum(0)
                if has_b:
                    b_fast[o0:o1] = w_s[..., k].sum(0) * s_b
                if rn:
                    v_fast[o0:o1] = var_s[..., :k].sum(0)
                    if has_b:
                        v_b[o0:o1] = var_s[..., k].sum(0) * s_b**2
                continue
            self._arrange_into(w_t, w_s[..., :k], o0, out)
            if rn:
                self._arrange_into(v_t, var_s[..., :k], o0, out)
            if has_b:
                torch.mul(w_s[..., k], s_b, out=b_sl[:, o0:o1])
                if rn:
                    torch.mul(var_s[..., k], s_b if rn == "weight" else s_b**2,
                              out=v_bsl[:, o0:o1])  # fmt: skip
            if targets:  # worst-case ADC ranges from the *target* cells (design time)
                d = (gt_all[0, :, o0:o1] - gt_all[1, :, o0:o1]).abs_()  # (S, co, rows) [S]
                self._tile_row_sums(d[..., :k], adc_a[:, :, o0:o1])
                if has_b:
                    adc_b[lay.bias_tile, :, o0:o1] = d[..., k] * s_b
        buf = self._buf
        buf("slice_f", f)
        if not adc:
            out_mode = rn == "output"
            buf("w_fast", w_fast.reshape(self.base.weight.shape))
            buf("b_fast", b_fast)
            buf("var_fast", v_fast.reshape(self.base.weight.shape) if out_mode else None)
            buf("var_b_fast", v_b if out_mode else None)
            buf("sd_fast",
                v_fast.sqrt_().reshape(self.base.weight.shape) if rn == "weight" else None)
            buf("sd_b_fast", v_b.sqrt_() if (rn == "weight" and has_b) else None)
            for name in ("w_tiles", "var_tiles", "sd_tiles", "b_slices", "var_b_slices",
                         "sd_b_slices", "adc_a", "adc_b"):  # fmt: skip
                buf(name, None)
            return
        for name in ("w_fast", "b_fast", "var_fast", "var_b_fast", "sd_fast", "sd_b_fast"):
            buf(name, None)  # derived from the tiles on demand (_dense)
        buf("w_tiles", w_t)
        buf("var_tiles", v_t if rn == "output" else None)
        buf("sd_tiles", v_t if rn == "weight" else None)
        buf("b_slices", b_sl.reshape(-1) if has_b else None)
        buf("var_b_slices", v_bsl.reshape(-1) if (has_b and rn == "output") else None)
        buf("sd_b_slices", v_bsl.reshape(-1) if (has_b and rn == "weight") else None)
        if targets:
            buf("adc_a", adc_a)
            buf("adc_b", adc_b)

    def _reuse(self, name: str, shape, dev, dt) -> torch.Tensor:
        """The buffer ``name`` if it has this shape, device and dtype (it is then overwritten
        in place by ``_refresh``), else a new uninitialised tensor."""
        old = self._buffers.get(name)
        if old is not None and old.shape == torch.Size(shape) and old.device == dev \
                and old.dtype == dt:  # fmt: skip
            return old
        return torch.empty(shape, device=dev, dtype=dt)

    def _tile_row_sums(self, d: torch.Tensor, dst: torch.Tensor) -> None:
        """Sum of ``d`` (S, co, k) over the weight rows of each row tile -> ``dst`` (nt, S, co)."""
        lay = self.layout
        S, co, k = d.shape
        n_full = k // lay.stride
        if n_full:
            dst[:n_full] = d[..., : n_full * lay.stride].reshape(S, co, n_full, lay.stride).sum(
                -1).permute(2, 0, 1)  # fmt: skip
        if n_full < lay.n_row_tiles:
            dst[n_full] = d[..., n_full * lay.stride :].sum(-1)
        if dst.shape[0] > lay.n_row_tiles:
            dst[lay.n_row_tiles :] = 0.0

    def _dense(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Effective weight and bias (no read noise): computed by ``_refresh`` without ADCs,
        derived from the tile arrangement (and cached until the next refresh) with them."""
        if self.w_fast is None:
            S = self.slice_f.shape[0]
            w = self._from_tiles_layout(self.w_tiles, S).sum(0)
            self._buf("w_fast", w.reshape(self.base.weight.shape))
            bs = self.b_slices
            self._buf("b_fast", None if bs is None else bs.view(S, -1).sum(0))
        return self.w_fast, self.b_fast


    def effective_weight(self) -> torch.Tensor:
        """Weight the array represents now (programming, faults, retention, IR drop; no read
        noise, no converters), in the base layer's weight shape."""
        self._require_programmed()
        if self.binary:
            return self.w_binary
        return self._dense()[0]

    def effective_bias(self) -> torch.Tensor | None:
        """Bias the array represents now (bias row x s), or the digital bias (binary)."""
        self._require_programmed()
        if self.binary:
            return self.bias
        return self._dense()[1]

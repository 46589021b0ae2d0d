"""``cimlab reproduce PAPER``: the source papers' central experiments on the digits data.

Each reproduction trains its network on the embedded scikit-learn digits (no download), runs
the paper's experiment with cimlab's simulator and mitigations, writes its tables (CSV) and a
figure (PNG) to ``out_dir``, and returns them. The paper's own numbers stand beside ours
where the paper gives them (its data sets are MNIST/CIFAR-10, ours are 8x8 or 16x16 digits,
so the comparison is of trends, not of absolute values).

=====  ======================================================================================
000    Lee et al.: weight error (programming error + read fluctuation, device model) injected
       into one conv layer at a time: accuracy and per-layer NRMSE (Fig. 5, 7); in-field BN
       calibration per injected layer (Fig. 10) and after 150 C bakes (Fig. 11), with global
       drift compensation as the baseline
001    Wang/Park/Lu: architecture-aware training levels 0-4B; accuracy vs on/off ratio
       (Fig. 6/7), on the tiled hardware (Fig. 8), vs programming variation over 20 mappings
       (Fig. 9/10)
002    HA-SGD (:func:`cimlab.mitigation.hasgd.reproduce`)
003    bit-error-aware BNN (:func:`cimlab.mitigation.bnn_error_aware.reproduce`)
004    ReMeCo: sensitivity + redundancy schemes vs the committee machine (the paper's table)
=====  ======================================================================================

``quick=True`` runs reduced versions (fewer epochs, mappings and points) used by the tests.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from cimlab.mitigation.reproduce_common import _acc, _ms, _trained, _write_tables
from cimlab.mitigation.reproduce_paper000 import PAPER000 as PAPER000
from cimlab.mitigation.reproduce_paper000 import _paper000
from cimlab.sim import figures

__all__ = ["PAPERS", "ReproduceResult", "reproduce", "reproduce_paper"]

PAPERS = ("000", "001", "002", "003", "004")


@dataclass
class ReproduceResult:
    """Tables, written files and wall time of one reproduction."""

    paper: str
    tables: dict[str, pd.DataFrame]
    files: list[Path]
    elapsed_s: float
    notes: list[str] = field(default_factory=list)

    def text(self) -> str:
        """The printed summary: every table, the notes, the files and the time."""
        parts = [f"== cimlab reproduce {self.paper} =="]
        for name, df in self.tables.items():
            parts.append(f"\n-- {name} --")
            parts.append(df.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        if self.notes:
            parts.append("")
            parts.extend(f"note: {n}" for n in self.notes)
        parts.append("")
        parts.extend(f"wrote {f}" for f in self.files)
        parts.append(f"elapsed {self.elapsed_s:.1f} s")
        return "\n".join(parts)


def reproduce(
    paper: str, out_dir: str | Path, *, quick: bool = False, seed: int = 0, progress: bool = True
) -> ReproduceResult:
    """Run reproduction ``paper`` (one of :data:`PAPERS`), writing into ``out_dir``."""
    if paper not in PAPERS:
        from cimlab.errors import ConfigError

        raise ConfigError(None, "paper", f"one of {', '.join(PAPERS)}", paper)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    fn = {"000": _paper000, "001": _paper001, "002": _paper002, "003": _paper003,
          "004": _paper004}[paper]  # fmt: skip
    threads = torch.get_num_threads()
    # these networks are small: one intra-op thread is 3-20x cheaper in CPU time than two
    # (measured on the 2-core CI machine), and the results do not depend on it
    torch.set_num_threads(1)
    try:
        tables, files, notes = fn(out, quick, seed, progress)
    finally:
        torch.set_num_threads(threads)
    res = ReproduceResult(paper, tables, files, time.perf_counter() - t0, notes)
    (out / f"reproduce_{paper}.txt").write_text(res.text() + "\n")
    return res


#: Alias exported from :mod:`cimlab.mitigation` (where ``reproduce`` names this module).
reproduce_paper = reproduce


# ------------------------------------------------------------------------------ paper 001


def _paper001(out: Path, quick: bool, seed: int, progress: bool):
    from tqdm.auto import tqdm

    from cimlab.mitigation import architecture_aware as aa
    from cimlab.sim.data import load_dataset
    from cimlab.sim.training import TrainConfig, train

    epochs, ft_epochs, n_map = (10, 2, 5) if quick else (20, 5, 20)
    on_offs = (100.0, 10.0, 3.0) if quick else (1000.0, 100.0, 30.0, 10.0, 5.0, 3.0)
    sigmas = (0.0, 0.0156, 0.0312) if quick else (0.0, 0.0078, 0.0156, 0.0312, 0.0624)
    # quick: the paper's MNIST toy model on 8x8 digits (every layer fits one array);
    # full: the CIFAR-10 VGG block on 16x16 digits (layers span up to 3 row tiles)
    net_name, size = ("paper001-mnist", None) if quick else ("paper001-vgg", 16)
    ds = load_dataset("digits", seed=seed, image_size=size)
    net = _trained(net_name, ds, epochs, seed, progress)
    hw = aa.HardwareSpec(on_off=10.0, sigma_frac=0.0156)
    xt, yt = ds.x_test, ds.y_test
    bar = tqdm(desc="paper 001 training", total=5 + len(on_offs),
               disable=None if progress else True)

    def tf(m: nn.Module, level: str) -> None:
        train(m, ds, TrainConfig(epochs=ft_epochs, lr=3e-4),
              generator=torch.Generator().manual_seed(seed + 1), progress=False)  # fmt: skip
        bar.update()

    models = aa.train_levels(net, tf, hw, seed=seed, calib_x=ds.x_train)
    views = {
        "software": None,  # each model under its own training view
        "post_quant_4b": aa.View(quant=True, bits=4),
        "device_onoff10": aa.View(quant=True, device=True, bits=4),
        "tiled_adc8": aa.View(quant=True, device=True, tiles=True, bits=4),
        "tiled_var1.56%": aa.View(quant=True, device=True, tiles=True, variation=True, bits=4),
    }
    rows = []
    for lv, m in models.items():
        row: dict = {"level": lv}
        for vn, v in views.items():
            if v is None:
                v = aa.level_view(lv, hw)
                if v.variation:
                    v = aa.View(**{**v.__dict__, "variation": False})
            elif lv == "4B" and v.quant:
                v = aa.View(**{**v.__dict__, "bits": hw.target_bits})
            accs = aa.evaluate_mappings(m, xt, yt, v, hw, n_mappings=n_map, seed=seed)
            row[vn], std = _ms(accs)
            if len(accs) > 1:
                row[vn + "_std"] = std
        sim = _sim_check_001(m, ds, hw, lv, n_map, seed)
        row["sim_tiled_var1.56%"], row["sim_tiled_var1.56%_std"] = sim.mean, sim.std
        rows.append(row)
    levels_tab = pd.DataFrame(rows)

    # accuracy vs on/off (Fig. 6/7): L0 and L1 post-mapped, L2 retrained at each on/off
    sweep = []
    for r in on_offs:
        hw_r = hw.replace(on_off=r)
        dev_view = aa.View(quant=True, device=True, bits=4)
        l2 = aa.clone(models["1"])
        aa.set_view(l2, aa.level_view("2", hw_r), hw_r)
        tf(l2, "2")
        for name, m in (("0 (float)", models["0"]), ("1 (quant-aware)", models["1"]),
                        ("2 (device-aware)", l2)):  # fmt: skip
            sweep.append({"on_off": r, "level": name,
                          "acc": aa.evaluate_mappings(m, xt, yt, dev_view, hw_r)[0]})  # fmt: skip
    bar.close()
    onoff_tab = pd.DataFrame(sweep)

    # accuracy vs programming variation, 20 mappings (Fig. 9/10)
    var_rows = []
    for s in sigmas:
        hw_s = hw.replace(sigma_frac=s)
        for lv in ("3", "4A", "4B"):
            bits = hw.target_bits if lv == "4B" else hw.cell_bits
            v = aa.View(quant=True, device=True, tiles=True, variation=True, bits=bits)
            accs = aa.evaluate_mappings(models[lv], xt, yt, v, hw_s, n_mappings=n_map,
                                        seed=seed + 17)  # fmt: skip
            m_, s_ = _ms(accs)
            var_rows.append({"sigma_frac": s, "level": lv, "acc": m_, "acc_std": s_,
                             "acc_min": min(accs), "n_mappings": len(accs)})  # fmt: skip
    var_tab = pd.DataFrame(var_rows)

    files = _write_tables(out, "001",
                          {"levels": levels_tab, "onoff": onoff_tab, "variation": var_tab})
    fig, ax = figures.pyplot().subplots(1, 3, figsize=(16, 4.5))
    for name, g in onoff_tab.groupby("level"):
        ax[0].plot(g["on_off"], g["acc"], "o-", label=f"level {name}")
    ax[0].set_xscale("log")
    ax[0].set_xlabel("on/off ratio")
    ax[0].set_ylabel("test accuracy (4-bit cells)")
    ax[0].set_title("device-aware training (paper 001 Fig. 6/7)")
    ax[0].legend(fontsize=8)
    ax[1].bar(levels_tab["level"], levels_tab["tiled_adc8"], color="C1")
    ax[1].axhline(float(levels_tab.loc[levels_tab.level == "0", "software"].iloc[0]), color="k",
                  ls="--", label="float baseline")  # fmt: skip
    ax[1].set_ylim(max(0.0, float(levels_tab["tiled_adc8"].min()) - 0.1), 1.0)
    ax[1].set_xlabel("training level")
    ax[1].set_ylabel("accuracy on tiled hardware")
    ax[1].set_title("256x64 tiles, 8-bit ADC, on/off 10 (Fig. 8)")
    ax[1].legend(fontsize=8)
    for lv, g in var_tab.groupby("level"):
        ax[2].errorbar(g["sigma_frac"] * 100, g["acc"], g["acc_std"], marker="o", capsize=3,
                       label=f"level {lv}")  # fmt: skip
    ax[2].set_xlabel("programming variation [% of range]")
    ax[2].set_ylabel(f"accuracy (mean ± std, {n_map} mappings)")
    ax[2].set_title("variation-aware A vs B (Fig. 9/10)")
    ax[2].legend(fontsize=8)
    files.append(figures.save(fig, out / "paper001.png", dpi=110))
    notes = [
        f"{net_name} on digits {ds.in_shape[1]}x{ds.in_shape[2]}; hardware: 4-bit cells, "
        "on/off 10, 256x64 tiles, 8-bit ADC (full scale 1/8 of the worst case), 8-bit activations; "
        "device model of architecture_aware (naive off=0 mapping, G_min offset)",
        "paper 001 (CIFAR-10 VGG block): device-aware model 1.21 % below baseline on tiles, "
        "tile-aware 0.15 %; MNIST: most of 20 mappings within 1 % at 1.56 % variation",
    ]
    return {"levels": levels_tab, "onoff": onoff_tab, "variation": var_tab}, files, notes


def _sim_check_001(model: nn.Module, ds, hw, level: str, n_map: int, seed: int):
    """The level's weights on cimlab's simulator (``convert`` + ``monte_carlo``): 256x64
    tiles, 8-bit DAC/ADC, on/off ``hw.on_off``, 4-bit cells (256 levels for approach B),
    programming sigma ``hw.sigma_frac`` of the range; no read noise, faults or IR drop."""
    import dataclasses

    from cimlab.models import DeviceModel
    from cimlab.sim.config import AnalogConfig
    from cimlab.sim.convert import convert
    from cimlab.sim.evaluate import monte_carlo

    dm = DeviceModel.default()
    g_max = dm.window.g_max
    g_min = g_max / hw.on_off
    levels = 2 ** (hw.target_bits if level == "4B" else hw.cell_bits)
    dm = dm.replace(
        window=dataclasses.replace(dm.window, g_min=g_min, levels=levels),
        programming=dataclasses.replace(dm.programming, form="constant",
                                        s0=hw.sigma_frac * (g_max - g_min), s1=0.0, s2=0.0),
    )  # fmt: skip
    cfg = AnalogConfig(device=dm, tile=(hw.tile_rows, 64), adc_bits=hw.adc_bits,
                       dac_bits=hw.act_bits, read_noise=None, stuck=False,
                       ir_drop=False)  # fmt: skip
    anet = convert(model, cfg)
    loader = [(ds.x_test, ds.y_test)]
    return monte_carlo(anet, loader, n_trials=n_map, seed=seed,
                       calibrate=[ds.x_train[:512]])  # fmt: skip


# ------------------------------------------------------------------------------ 002, 003


def _delegate(module: str, out: Path, quick: bool, seed: int, progress: bool):
    import importlib

    before = {p: p.stat().st_mtime for p in out.glob("*")}
    mod = importlib.import_module(f"cimlab.mitigation.{module}")
    res = mod.reproduce(out, quick=quick, seed=seed, progress=progress)
    tables = res if isinstance(res, dict) else {"result": res}
    tables = {k: v for k, v in tables.items() if isinstance(v, pd.DataFrame)}
    files = sorted(
        p for p in out.glob("*")
        if p.suffix in (".csv", ".png") and before.get(p) != p.stat().st_mtime
    )  # fmt: skip
    return tables, files, [f"delegated to cimlab.mitigation.{module}.reproduce"]


def _paper002(out, quick, seed, progress):
    return _delegate("hasgd", out, quick, seed, progress)


def _paper003(out, quick, seed, progress):
    from cimlab.mitigation.bench_ber import SOURCE_LABEL

    tables, files, notes = _delegate("bnn_error_aware", out, quick, seed, progress)
    notes.append(
        f"ber_measured: BER counted by the BER campaign on the emulated bench ({SOURCE_LABEL}); "
        "ber_working excludes the stuck cells the run finds; paper_ber is paper 003 Table I "
        "(1T1R). In 'conditions', input_ber_* are the device model's BERs: inputs (the paper's "
        "Table I), not results; measured_ber_* are the bench's working-cell BERs")
    return tables, files, notes


# ------------------------------------------------------------------------------ paper 004


def _paper004(out: Path, quick: bool, seed: int, progress: bool):
    from cimlab.mitigation.remeco import PAPER_TABLE, SCHEMES, CrossbarNonideality, remeco_table
    from cimlab.mitigation.sensitivity import sensitivity
    from cimlab.models import DeviceModel
    from cimlab.sim.data import load_dataset

    epochs, n_inst = (15, 6) if quick else (25, 20)
    fractions = (0.8,) if quick else (0.2, 0.4, 0.6, 0.8)
    ds = load_dataset("digits", seed=seed, image_size=16)
    net = _trained("lenet", ds, epochs, seed, progress)
    xt, yt = ds.x_test, ds.y_test
    software = _acc(net, xt, yt)
    train_loader, _ = ds.loaders(64, generator=torch.Generator().manual_seed(seed))
    sens = sensitivity(net, train_loader)
    ni = CrossbarNonideality.from_device_model(DeviceModel.default())
    top_layer = sens.ranked_layers()[:1]
    tabs = {}
    for f in fractions:
        schemes = SCHEMES if f == 0.8 else ("sensitive_neuron", "msb")
        tabs[f] = remeco_table(net, xt, yt, sens.top_neurons(f), top_layer, ni=ni,
                               n_instances=n_inst, seed=seed, schemes=schemes)  # fmt: skip
    main = tabs[0.8]
    base, cm = main["base"], main["committee"]
    paper = PAPER_TABLE["LeNet"]
    p_base, p_sw = paper["base"], paper["software"]

    def rec(acc, b, sw):
        return 100.0 * (acc - b) / (sw - b) if sw != b else math.nan

    rows = []
    for s, r in main.items():
        pa, parea, pen = paper[s]
        rows.append({
            "scheme": s, "acc": r.mean, "acc_std": r.std,
            "recovery_%": rec(r.mean, base.mean, software),
            "area_overhead_%": 100 * (r.cells / base.cells - 1),
            "energy_overhead_%": 100 * (r.cell_reads / base.cell_reads - 1),
            "paper_acc": pa / 100, "paper_recovery_%": rec(pa, p_base[0], p_sw),
            "paper_area_overhead_%": 100 * (parea / p_base[1] - 1),
            "paper_energy_overhead_%": 100 * (pen / p_base[2] - 1),
        })  # fmt: skip
    table = pd.DataFrame(rows)
    sweep = pd.DataFrame([
        {"fraction": f, "scheme": s, "acc": r.mean, "acc_std": r.std,
         "recovery_%": rec(r.mean, base.mean, software),
         "area_overhead_%": 100 * (r.cells / base.cells - 1),
         "energy_overhead_%": 100 * (r.cell_reads / base.cell_reads - 1)}
        for f, t in tabs.items() for s, r in t.items() if s in ("sensitive_neuron", "msb")
    ])  # fmt: skip
    # which layer is worth duplicating? every layer in turn (the same faulty chips), beside
    # its rank by the paper's gradient sensitivity and by the Taylor saliency |dE/dw w|
    taylor = sensitivity(net, train_loader, method="taylor")
    grad_rank = {n: i + 1 for i, n in enumerate(sens.ranked_layers())}
    taylor_rank = {n: i + 1 for i, n in enumerate(taylor.ranked_layers())}
    layer_rows = []
    for n in sens.layers:
        t = remeco_table(net, xt, yt, sens.top_neurons(0.8), [n], ni=ni, n_instances=n_inst,
                         seed=seed, schemes=("base", "sensitive_layer"))  # fmt: skip
        r = t["sensitive_layer"]
        diff = torch.tensor(r.accuracy, dtype=torch.float64) - torch.tensor(t["base"].accuracy,
                                                                        dtype=torch.float64)
        layer_rows.append({
            "layer": n, "gradient_sensitivity": sens.layer[n], "gradient_rank": grad_rank[n],
            "taylor_sensitivity": taylor.layer[n], "taylor_rank": taylor_rank[n],
            "acc": r.mean, "acc_gain": float(diff.mean()),
            "acc_gain_se": float(diff.std() / math.sqrt(len(diff))) if len(diff) > 1 else 0.0,
            "recovery_%": rec(r.mean, base.mean, software),
            "area_overhead_%": 100 * (r.cells / base.cells - 1),
            "energy_overhead_%": 100 * (r.cell_reads / base.cell_reads - 1),
        })  # fmt: skip
    layer_tab = pd.DataFrame(layer_rows)
    sens_tab = pd.DataFrame([{"layer": n, "sensitivity": sens.layer[n],
                              "neurons": sens.neuron[n].numel()} for n in sens.layers])  # fmt: skip
    files = _write_tables(out, "004", {"table": table, "fraction_sweep": sweep,
                                       "sensitivity": sens_tab, "layer_duplication": layer_tab})
    fig, ax = figures.pyplot().subplots(1, 3, figsize=(16, 4.5))
    ax[0].hist(torch.cat([sens.neuron[n] for n in sens.layers]).numpy(), bins=40)
    ax[0].set_xlabel("|neuron sensitivity| (mean |dE/dw|)")
    ax[0].set_ylabel("neurons")
    ax[0].set_title("LeNet neuron sensitivity (paper 004)")
    for k, col in enumerate(("area_overhead_%", "energy_overhead_%")):
        a = ax[k + 1]
        a.scatter(table[col], table["recovery_%"], c="C0", label="cimlab (digits)")
        a.scatter(table["paper_" + col], table["paper_recovery_%"], c="C3", marker="x",
                  label="paper 004 (MNIST)")  # fmt: skip
        for _, r in table.iterrows():
            a.annotate(r["scheme"], (r[col], r["recovery_%"]), fontsize=7)
        for s, g in sweep.groupby("scheme"):
            a.plot(g[col], g["recovery_%"], ":", alpha=0.6, label=f"{s} vs fraction")
        a.set_xlabel(col.replace("_", " "))
        a.set_ylabel("accuracy recovery [%] of the fault-induced drop")
        a.legend(fontsize=7)
    ax[1].set_title("recovery vs area")
    ax[2].set_title("recovery vs energy")
    files.append(figures.save(fig, out / "paper004.png", dpi=110))
    notes = [
        f"LeNet on digits 16x16: software accuracy {software:.4f} (paper, MNIST: 98.8 %); "
        f"{n_inst} faulty chips per scheme; base {base.mean:.4f}, committee {cm.mean:.4f}",
        f"non-idealities: {ni}",
        "sensitive_neuron and msb use the 80 % most sensitive neurons (paper: 'MSB (80%)'); "
        f"sensitive layer: {top_layer[0]}",
        "paper overheads are relative to its base (area mm^2, energy per inference); ours count "
        "cells and cell reads",
    ]
    best = layer_tab.loc[layer_tab["acc_gain"].idxmax()]
    notes.append(
        f"layer_duplication: duplicating each layer in turn on the same {n_inst} chips; the "
        f"paper's gradient sensitivity picks {top_layer[0]} (its |dE/dw| is largest next to "
        f"the loss), the best layer to duplicate is {best['layer']} (gain "
        f"{best['acc_gain']:+.4f} ± {best['acc_gain_se']:.4f} s.e., area "
        f"{best['area_overhead_%']:+.1f} %); Taylor saliency ranks it "
        f"{int(best['taylor_rank'])} of {len(layer_tab)}")
    return {"remeco": table, "fraction_sweep": sweep, "sensitivity": sens_tab,
            "layer_duplication": layer_tab}, files, notes

"""Paper 000 (Lee et al.) reproduced on the digits data (``cimlab reproduce 000``).

Weight error (programming error + read fluctuation, from the fitted device model) injected
into one conv layer at a time: accuracy and per-layer NRMSE (Fig. 5, 7); in-field BN
calibration per injected layer (Fig. 10) and after 150 C bakes (Fig. 11), with global drift
compensation as the baseline; and the layer study with paper 000's offset mapping vs the
differential pair. Run through :func:`cimlab.mitigation.reproduce.reproduce`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from cimlab.mitigation.reproduce_common import _acc, _ms, _trained, _write_tables
from cimlab.sim import figures

#: Paper 000 (Lee et al.) numbers given in its text: floating-point CIFAR-10 accuracy and the
#: accuracy with weight errors injected into the first conv layer only (Fig. 5).
PAPER000 = {"ideal_accuracy": 0.904, "first_layer_injected_accuracy": 0.2}




def _conv_outputs(model: nn.Module, names: Sequence[str], x: torch.Tensor) -> dict:
    mods = dict(model.named_modules())
    outs: dict[str, torch.Tensor] = {}
    hooks = [
        mods[n].register_forward_hook(lambda _m, _i, y, _n=n: outs.__setitem__(_n, y.detach()))
        for n in names
    ]
    try:
        with torch.no_grad():
            model.eval()
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return outs


def _paper000(out: Path, quick: bool, seed: int, progress: bool):
    from tqdm.auto import tqdm

    from cimlab.mitigation.bn_calibration import calibrate_bn, restore_bn, snapshot_bn
    from cimlab.mitigation.drift_compensation import DriftCompensation
    from cimlab.models import DeviceModel
    from cimlab.sim.analysis import nrmse
    from cimlab.sim.config import AnalogConfig
    from cimlab.sim.convert import convert
    from cimlab.sim.data import load_dataset

    epochs, n_prog, n_cal = (10, 2, 256) if quick else (15, 5, 1024)
    bake_h = (0.0, 1.0) if quick else (0.0, 0.01, 0.1, 1.0, 10.0, 100.0)
    ds = load_dataset("digits", seed=seed)
    net = _trained("paper000-cnn", ds, epochs, seed, progress)
    xt, yt = ds.x_test, ds.y_test
    ideal = _acc(net, xt, yt)
    dm = DeviceModel.default()
    # paper 000 studies weight errors only: programming error + read fluctuation
    cfg = AnalogConfig.ideal(device=dm, programming_error=True, read_noise="weight")
    anet = convert(net, cfg)
    convs = [n for n, m in net.named_modules() if isinstance(m, nn.Conv2d)]
    base_bn = snapshot_bn(anet)
    ref_out = _conv_outputs(net, convs, xt)
    cal_x = ds.x_train[:n_cal]
    notes = [
        f"paper000-cnn (width {net.spec['kwargs']['width']}) on digits 8x8: ideal test "
        f"accuracy {ideal:.4f} (paper, CIFAR-10: {PAPER000['ideal_accuracy']})",
        f"device model: DeviceModel.default() (programming sigma "
        f"{dm.programming.sigma(dm.window.g_max) / (dm.window.g_max - dm.window.g_min):.3f} "
        "of range, paper 000: 0.07); BN calibration: layer by layer, "
        f"{n_cal} training images",
    ]

    # --- per-layer injection (Fig. 5, 7, 10): right after programming (programming error +
    # read fluctuation, as Fig. 5) and after a 1 h bake at 150 C (+ retention loss)
    rows, nrm_rows = [], []
    targets = [[c] for c in (convs[:2] if quick else convs)] + [convs]
    states = (("programmed", 0.0), ("baked_1h_150C", 3600.0))
    bar = tqdm(total=len(targets) * n_prog, desc="paper 000 injection",
               disable=None if progress else True)
    for tgt in targets:
        label = tgt[0] if len(tgt) == 1 else "all conv"
        accs = {st: [] for st, _ in states}
        accs_bn = {st: [] for st, _ in states}
        nrm = {(st, c): [] for st, _ in states for c in convs}
        anet.set_injection(tgt)
        for k in range(n_prog):
            anet.program(torch.Generator().manual_seed(seed * 1000 + k))
            for st, bake_s in states:
                anet.age(bake_s, temp_c=150.0)
                restore_bn(anet, base_bn)
                outs = _conv_outputs(anet, ["net." + c for c in convs], xt)
                for c in convs:
                    nrm[(st, c)].append(nrmse(outs["net." + c], ref_out[c]))
                accs[st].append(_acc(anet, xt, yt))
                calibrate_bn(anet, cal_x)
                accs_bn[st].append(_acc(anet, xt, yt))
            bar.update()
        row = {"injected": label}
        for st, _ in states:
            row[f"acc_{st}"], row[f"acc_{st}_std"] = _ms(accs[st])
            row[f"acc_{st}_bn_cal"], row[f"acc_{st}_bn_cal_std"] = _ms(accs_bn[st])
            row[f"nrmse_own_{st}"] = _ms(nrm[(st, tgt[-1])])[0]
        row["ideal"] = ideal
        row["paper_acc_programmed"] = (PAPER000["first_layer_injected_accuracy"]
                                       if tgt == [convs[0]] else math.nan)  # fmt: skip
        row["paper_ideal"] = PAPER000["ideal_accuracy"]
        rows.append(row)
        if len(tgt) == 1:
            for st, _ in states:
                vals = {f"nrmse_{c}": _ms(nrm[(st, c)])[0] for c in convs}
                nrm_rows.append({"injected": label, "state": st, **vals})
    bar.close()
    anet.set_injection(None)
    per_layer = pd.DataFrame(rows)
    nrmse_tab = pd.DataFrame(nrm_rows)

    # --- retention: 150 C bake, all conv layers on ReRAM (Fig. 11)
    anet.set_injection(convs)
    first_bn = next(n for n, m in anet.named_modules() if isinstance(m, nn.BatchNorm2d))
    ret: dict[tuple[float, str], list[float]] = {}
    bar = tqdm(total=len(bake_h) * n_prog, desc="paper 000 bake",
               disable=None if progress else True)
    for k in range(n_prog):
        anet.program(torch.Generator().manual_seed(seed * 1000 + 500 + k))
        restore_bn(anet, base_bn)
        dc = DriftCompensation.capture(anet, cal_x[:64], mode="affine", seed=seed)
        done_h = 0.0
        for h in bake_h:
            anet.age((h - done_h) * 3600.0, temp_c=150.0)
            done_h = h
            restore_bn(anet, base_bn)
            ret.setdefault((h, "none"), []).append(_acc(anet, xt, yt))
            dc.apply(anet)
            ret.setdefault((h, "drift_comp"), []).append(_acc(anet, xt, yt))
            dc.remove()
            calibrate_bn(anet, cal_x, layers=[first_bn])
            ret.setdefault((h, "bn_first_layer"), []).append(_acc(anet, xt, yt))
            restore_bn(anet, base_bn)
            calibrate_bn(anet, cal_x)
            ret.setdefault((h, "bn_all_layers"), []).append(_acc(anet, xt, yt))
            bar.update()
    bar.close()
    bake = pd.DataFrame([
        {"bake_h_150C": h, "method": meth, "acc": _ms(v)[0], "acc_std": _ms(v)[1],
         "n_programs": len(v)} for (h, meth), v in ret.items()
    ])  # fmt: skip
    mapping = _mapping_study000(net, ds, dm, quick, seed, progress)
    files = _write_tables(out, "000", {"per_layer": per_layer, "nrmse": nrmse_tab, "bake": bake,
                                       "mapping": mapping})

    fig, ax = figures.pyplot().subplots(1, 3, figsize=(16, 4.5))
    xs = range(len(per_layer))
    for j, (st, lab) in enumerate((("programmed", "programmed"),
                                   ("baked_1h_150C", "1 h 150 C"))):  # fmt: skip
        off = -0.3 + 0.2 * j * 2
        ax[0].bar([i + off for i in xs], per_layer[f"acc_{st}"], 0.2,
                  yerr=per_layer[f"acc_{st}_std"], label=lab, color=f"C{2 * j}")  # fmt: skip
        ax[0].bar([i + off + 0.2 for i in xs], per_layer[f"acc_{st}_bn_cal"], 0.2,
                  yerr=per_layer[f"acc_{st}_bn_cal_std"], label=f"{lab} + BN cal.",
                  color=f"C{2 * j + 1}")  # fmt: skip
    ax[0].axhline(ideal, color="k", ls="--", label="ideal")
    ax[0].set_xticks(list(xs), [f"conv {convs.index(n) + 1}" if n in convs else n
                                for n in per_layer["injected"]])  # fmt: skip
    ax[0].set_ylabel("test accuracy")
    ax[0].set_title("error in one layer (paper 000 Fig. 5/10)")
    ax[0].legend(fontsize=7)
    for _, r in nrmse_tab.iterrows():
        k = convs.index(r["injected"])  # layers before the injected one are exact: not drawn
        ax[1].plot(range(k + 1, len(convs) + 1), [r[f"nrmse_{c}"] for c in convs[k:]],
                   "o-" if r["state"] == "programmed" else "s--", color=f"C{k}",
                   label=f"conv {k + 1}, {r['state']}")  # fmt: skip
    ax[1].set_yscale("log")
    ax[1].set_xlabel("conv layer observed")
    ax[1].set_ylabel("NRMSE of the layer output")
    ax[1].set_title("error propagation (paper 000 Fig. 7)")
    ax[1].legend(fontsize=6, ncol=2)
    for meth, g in bake.groupby("method"):
        xh = [max(h, 1e-3) for h in g["bake_h_150C"]]
        ax[2].errorbar(xh, g["acc"], g["acc_std"], marker="o", capsize=3, label=meth)
    ax[2].set_xscale("log")
    ax[2].set_xlabel("bake time at 150 C [h] (0 plotted at 1e-3)")
    ax[2].set_ylabel("test accuracy")
    ax[2].set_title("retention + BN calibration (paper 000 Fig. 11)")
    ax[2].legend(fontsize=8)
    files.append(figures.save(fig, out / "paper000.png", dpi=110))
    notes.append(
        "mapping: paper 000's own mapping (one cell per weight, w = 0 mid-window: 'offset') vs "
        "the differential pair, errors injected into the weights "
        "(cimlab.mitigation.weight_mapping), standardized inputs (this net) and raw pixels in "
        "[0, 1] (a second net trained on them); bake_s at 150 C; acc_bn_cal: all BN layers")
    return {"per_layer": per_layer, "nrmse": nrmse_tab, "bake": bake, "mapping": mapping}, \
        files, notes


def _mapping_study000(net: nn.Module, ds, dm, quick: bool, seed: int, progress: bool
                      ) -> pd.DataFrame:
    """Paper 000's layer study with both mappings (offset, differential) and both input
    scalings (standardized: ``net``; raw pixels: a net trained on ``standardize=False``)."""
    from cimlab.mitigation.weight_mapping import layer_study
    from cimlab.sim.data import load_dataset

    epochs, n_prog = (10, 2) if quick else (15, 3)
    # quick (tests): the first conv, one conv fed by a ReLU and all of them; no 36 s bake
    convs = [n for n, m in net.named_modules() if isinstance(m, nn.Conv2d)]
    targets = [[convs[0]], [convs[1]], convs] if quick else None
    bake_s = (0.0, 3600.0) if quick else (0.0, 36.0, 3600.0)
    raw = load_dataset("digits", seed=seed, standardize=False)
    nets = {"standardized": (net, ds),
            "raw [0, 1]": (_trained("paper000-cnn", raw, epochs, seed, progress), raw)}
    frames = []
    for inputs, (m, d) in nets.items():
        df = layer_study(m, d, dm, targets=targets, bake_s=bake_s, n_programs=n_prog,
                         calib_x=d.x_train[:512], seed=seed)  # fmt: skip
        df.insert(0, "inputs", inputs)
        frames.append(df)
    return pd.concat(frames, ignore_index=True)

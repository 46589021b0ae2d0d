"""Report: summary numbers against the known truth of synthetic stores, the techC figures,
plots, and the store commands of the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest

from cimlab.cli.main import main
from cimlab.procedures.importer import import_techc
from cimlab.procedures.report import format_report, report, summarize_run, time_points
from cimlab.procedures.report.plots import time_label
from cimlab.stats import clopper_pearson
from cimlab.store import Store

ROOT = Path(__file__).resolve().parents[2]
TECHC = ROOT / "data" / "reference" / "techC" / "relaxdata.min.tsv.gz"
US = 1e-6
PNG = b"\x89PNG\r\n\x1a\n"


def make_run(path: Path, kind: str, tables: dict[str, dict], plan: dict | None = None) -> str:
    with Store.open(path) as store:
        run = store.begin_run(kind, plan or {"kind": kind}, resume=False)
        for name, cols in tables.items():
            run.append(name, cols)
        run.finish()
        return run.uid


def sigma_se(sigma: float, n: int) -> float:
    """Standard error of a normal sample standard deviation."""
    return sigma / np.sqrt(2 * (n - 1))


def one_report(path: Path, uid: str, out: Path | None = None):
    with Store.open(path, "r") as store:
        return summarize_run(store.run(uid), out)


def test_programming_error_sigma_per_level_and_mode(tmp_path):
    rng = np.random.default_rng(1)
    levels = np.arange(8)
    target = 2 * US + levels * 38 * US / 7
    n = 1500
    truth = {"single_shot": 0.07 * 38 * US, "verify": 0.4 * US}
    cols = {
        k: [] for k in ("cell", "level", "target_siemens", "g_siemens", "pulses", "mode", "time_s")
    }
    for mode, sigma in truth.items():
        for lv in levels:
            cols["cell"].append(np.arange(n) + lv * n)
            cols["level"].append(np.full(n, lv))
            cols["target_siemens"].append(np.full(n, target[lv]))
            cols["g_siemens"].append(target[lv] + rng.normal(0, sigma, n))
            cols["pulses"].append(rng.poisson(9 if mode == "verify" else 1, n))
            cols["mode"].append(np.full(n, mode))
            cols["time_s"].append(np.full(n, 1e-3))
    path = tmp_path / "pe.h5"
    uid = make_run(path, "programming_error",
                   {"programmed": {k: np.concatenate(v) for k, v in cols.items()}})
    rep = one_report(path, uid, tmp_path / "plots")
    per_level = rep.section("programming error per level").frame
    for mode, sigma in truth.items():
        s = per_level[per_level["mode"] == mode]
        assert len(s) == 8
        assert np.all(np.abs(s["sigma_siemens"] - sigma) < 5 * sigma_se(sigma, n))
        assert np.all(np.abs(s["mean_error_siemens"]) < 5 * sigma / np.sqrt(n))
        assert np.all(
            (s["sigma_lo_siemens"] < s["sigma_siemens"])
            & (s["sigma_siemens"] < s["sigma_hi_siemens"])
        )
    pooled = rep.section("programming error per mode (pooled over levels)").frame
    pooled = pooled.set_index("mode")
    assert pooled.loc["single_shot", "sigma_frac"] == pytest.approx(0.07, abs=5 * 0.07 / np.sqrt(
        2 * 8 * n))
    assert pooled.loc["verify", "pulses"] == pytest.approx(9, abs=5 * 3 / np.sqrt(8 * n))
    assert len(rep.plots) == 2 and all(p.read_bytes()[:8] == PNG for p in rep.plots)


def test_read_fluctuation_separates_read_noise_from_programming_spread(tmp_path):
    rng = np.random.default_rng(2)
    targets = np.array([4, 10, 20, 35]) * US
    rel = np.array([0.04, 0.02, 0.012, 0.008])  # read sigma / g, per level
    cells, repeats = 200, 20
    cols = {k: [] for k in ("cell", "level", "target_siemens", "repeat", "time_s", "g_siemens")}
    for lv, (tg, r) in enumerate(zip(targets, rel, strict=True)):
        g_cell = tg + rng.normal(0, 0.1 * US, cells)  # programming spread, removed by the stat
        for k in range(repeats):
            cols["cell"].append(np.arange(cells) + lv * cells)
            cols["level"].append(np.full(cells, lv))
            cols["target_siemens"].append(np.full(cells, tg))
            cols["repeat"].append(np.full(cells, k))
            cols["time_s"].append(np.full(cells, k * 1e-3))
            cols["g_siemens"].append(g_cell + rng.normal(0, r * tg, cells))
    path = tmp_path / "rf.h5"
    uid = make_run(path, "read_fluctuation", {"reads": {k: np.concatenate(v)
                                                        for k, v in cols.items()}})
    rep = one_report(path, uid, tmp_path / "plots")
    s = rep.section("read fluctuation per level (array reads)").frame
    tol = 5 / np.sqrt(2 * cells * (repeats - 1))  # relative SE of a pooled sigma
    np.testing.assert_allclose(s["sigma_siemens"], rel * targets, rtol=tol)
    np.testing.assert_allclose(s["rel_sigma"], rel, rtol=tol)
    assert (s["cells"] == cells).all() and (s["repeats"] == repeats).all()
    assert len(rep.plots) == 1


def test_relaxation_sigma_shift_and_variance_slope(tmp_path):
    rng = np.random.default_rng(3)
    levels, n = 5, 1500
    s0 = 0.35 * US
    k = 1.5 * US**2  # variance growth per decade
    times = np.array([0, 0.01, 0.1, 1, 10, 100, 1000])
    cols = {
        c: []
        for c in ("cell", "level", "target_siemens", "g0_siemens", "time_s", "g_siemens", "temp_k")
    }
    truth = {}
    for lv in range(levels):
        tg = (5 + 7 * lv) * US
        g0 = tg + rng.normal(0, s0, n)
        for t in times:
            var_relax = 0.0 if t == 0 else k * (np.log10(t) + 3)
            shift = -0.1 * US * (np.log10(t) + 3) if t > 0 else 0.0
            truth[(lv, t)] = (np.sqrt(s0**2 + var_relax), shift, np.sqrt(var_relax))
            cols["cell"].append(np.arange(n) + lv * n)
            cols["level"].append(np.full(n, lv))
            cols["target_siemens"].append(np.full(n, tg))
            cols["g0_siemens"].append(g0)
            # measured times scatter around the nominal point (up to +-5 %)
            cols["time_s"].append(t * rng.uniform(0.95, 1.05, n))
            cols["g_siemens"].append(g0 + shift + rng.normal(0, np.sqrt(var_relax), n))
            cols["temp_k"].append(np.full(n, 300.0))
    path = tmp_path / "rx.h5"
    uid = make_run(path, "relaxation", {"reads": {c: np.concatenate(v)
                                                  for c, v in cols.items()}})
    rep = one_report(path, uid, tmp_path / "plots")
    s = rep.section("relaxation per level and time point").frame
    assert len(s) == levels * times.size
    for row in s.itertuples():
        t = times[np.argmin(np.abs(np.log10(np.maximum(times, 1e-9)) -
                                   np.log10(max(row.time_s, 1e-9))))]
        sigma, shift, sig_r = truth[(row.level, t)]
        assert abs(row.sigma_siemens - sigma) < 5 * sigma_se(sigma, n)
        assert abs(row.mean_shift_siemens - shift) < 5 * max(sig_r, 1e-12) / np.sqrt(n)
        assert abs(row.sigma_relax_siemens - sig_r) < 5 * sigma_se(sig_r, n) + 1e-15
    # variance grows by k per decade: least squares over 3 mid levels x 6 times
    slope = rep.figures["variance_slope_s2_per_decade"]
    assert slope == pytest.approx(k, rel=0.08)
    assert list(rep.figures["sigma_siemens"]) == [f"{t:g}" for t in
                                            rep.section("relaxation, mid-range levels, per time "
                                                        "point").frame["time_s"]]


def test_time_points_cluster_and_time_index():
    df = pd.DataFrame({"time_s": [0, 0, 1.0, 1.02, 0.98, 100, 101] * 10})
    assert time_points(df).nunique() == 3  # 0, ~1 s, ~100 s
    jitter = np.random.default_rng(0).uniform(0.97, 1.03, 300)
    df = pd.DataFrame({"time_s": np.concatenate([[0] * 100, jitter, 1e3 * jitter])})
    labels = time_points(df)
    assert labels.nunique() == 3 and labels.iloc[0] == 0
    df["time_index"] = np.repeat([4, 5, 6], [100, 300, 300])
    assert (time_points(df) == df["time_index"]).all()


def test_bake_retention_shift_per_step(tmp_path):
    rng = np.random.default_rng(5)
    n, bake_times, temps = 800, [0, 100, 1000, 10000], [423.15, 473.15]
    cols = {
        c: []
        for c in (
            "cell",
            "level",
            "target_siemens",
            "step",
            "temp_k",
            "bake_time_s",
            "g_siemens",
            "temp_index",
        )
    }
    truth = {}
    for j, tk in enumerate(temps):
        for lv in range(2):
            tg = (10 + 20 * lv) * US
            g_prog = tg + rng.normal(0, 0.4 * US, n)
            for step, tb in enumerate(bake_times):
                shift = -(0.3 + 0.5 * j) * US * np.log10(1 + tb) * (1 + lv)
                broad = 0.1 * US * np.log10(1 + tb)
                truth[(tk, lv, step)] = shift
                cols["cell"].append(np.arange(n) + lv * n)
                cols["level"].append(np.full(n, lv))
                cols["target_siemens"].append(np.full(n, tg))
                cols["step"].append(np.full(n, step))
                cols["temp_k"].append(np.full(n, tk))
                cols["bake_time_s"].append(np.full(n, float(tb)))
                cols["g_siemens"].append(
                    g_prog + shift + rng.normal(0, broad, n) if step else g_prog
                )
                cols["temp_index"].append(np.full(n, j))
    path = tmp_path / "bk.h5"
    uid = make_run(path, "bake_retention", {"reads": {c: np.concatenate(v)
                                                      for c, v in cols.items()}})
    rep = one_report(path, uid, tmp_path / "plots")
    s = rep.section("bake retention per bake step and level").frame
    assert len(s) == 2 * 2 * 4
    for row in s.itertuples():
        want = truth[(row.temp_k, row.level, row.step)]
        broad = 0.1 * US * np.log10(1 + row.bake_time_s)
        assert abs(row.mean_shift_siemens - want) < 5 * broad / np.sqrt(n) + 1e-15
    by_step = rep.section("bake retention per bake step (levels pooled: mean shift averaged, "
                          "sigma RMS)").frame
    assert len(by_step) == 8 and (by_step.loc[by_step.step == 0, "mean_shift_siemens"] == 0).all()
    assert rep.plots[0].read_bytes()[:8] == PNG


def test_ber_with_exact_intervals_and_energy(tmp_path):
    rng = np.random.default_rng(6)
    p = {("600uA", "1T1R"): 0.0, ("55uA", "1T1R"): 2e-3, ("20uA", "1T1R"): 3e-2,
         ("600uA", "2T2R"): 0.0, ("55uA", "2T2R"): 4e-4, ("20uA", "2T2R"): 8e-3}
    n = 40_000
    cols = {
        c: [] for c in ("condition", "structure", "cycle", "cell", "bit", "read_bit", "g_siemens")
    }
    for (cond, st), pe in p.items():
        bit = rng.integers(0, 2, n)
        flip = rng.random(n) < pe
        cols["condition"].append(np.full(n, cond))
        cols["structure"].append(np.full(n, st))
        cols["cycle"].append(np.arange(n) // 1000)
        cols["cell"].append(np.arange(n) % 1000)
        cols["bit"].append(bit)
        cols["read_bit"].append(np.where(flip, 1 - bit, bit))
        cols["g_siemens"].append(np.where(bit == 1, 30 * US, 3 * US))
    conditions = {"condition": ["600uA", "55uA", "20uA"], "icc_a": [600e-6, 55e-6, 20e-6],
                  "v_reset": [2.5, 2.5, 1.5], "width_s": [1e-6] * 3,
                  "energy_per_bit_j": [135e-12, 12e-12, 4.5e-12]}
    path = tmp_path / "ber.h5"
    uid = make_run(path, "ber", {"bits": {c: np.concatenate(v) for c, v in cols.items()},
                                 "conditions": conditions})
    rep = one_report(path, uid, tmp_path / "plots")
    s = rep.sections[0].frame
    assert len(s) == 6
    for row in s.itertuples():
        pe = p[(row.condition, row.structure)]
        assert row.bits == n
        assert abs(row.ber - pe) <= 5 * np.sqrt(pe * (1 - pe) / n)
        ci = binomtest(int(row.errors), n).proportion_ci(0.95, method="exact")
        assert (row.ber_lo, row.ber_hi) == pytest.approx((ci.low, ci.high), rel=1e-9, abs=1e-15)
    zero = s[s["errors"] == 0]
    assert len(zero) >= 1 and np.allclose(zero["ber_hi"], 1 - 0.025 ** (1 / n))
    assert s.set_index("condition").loc["55uA", "energy_per_bit_j"].tolist() == [12e-12] * 2
    assert rep.plots[0].read_bytes()[:8] == PNG
    # printed as narrow tables (an 80-110 column terminal): raw, working cells, energy
    text = format_report([rep])
    assert max(len(x) for x in text.splitlines() if not x.startswith("plot: ")) <= 110
    assert "\\" not in text  # no table wrapped onto a second block
    energy = next(x for x in rep.sections if "energy" in x.title)
    assert energy.display().columns.tolist() == ["condition", "energy_per_bit_j"]


def _ber_bits(rng, n: int, n_on: int, n_off: int, n_unswitchable: int):
    """One condition, 1T1R, one cycle with precondition reads: working cells switch between
    LN(40 uS, 0.05) after SET and LN(8 uS, 0.5) after RESET (read against 20 uS, so some bits
    are wrong); stuck-on cells sit at ~60 uS, stuck-off at ~0.3 uS whatever they are sent;
    'unswitchable' working cells stay in their LRS after RESET (a RESET above their floor)."""
    cell = np.arange(n)
    bit = rng.integers(0, 2, n)
    lrs = 40 * US * np.exp(0.05 * rng.standard_normal((2, n)))
    hrs = 8 * US * np.exp(0.5 * rng.standard_normal((2, n)))
    g_after = {0: lrs, 1: hrs}
    g = np.where(bit == 0, g_after[0][0], g_after[1][0])
    g_pre = np.where(bit == 0, g_after[1][1], g_after[0][1])  # opposite state
    kind = np.zeros(n, dtype=int)  # 0 ok, 1 stuck-on, -1 stuck-off, 2 unswitchable
    sel = rng.permutation(n)
    kind[sel[:n_on]] = 1
    kind[sel[n_on: n_on + n_off]] = -1
    kind[sel[n_on + n_off: n_on + n_off + n_unswitchable]] = 2
    for k, level in ((1, 60 * US), (-1, 0.3 * US)):
        m = kind == k
        g[m] = level * (1 + 0.01 * rng.standard_normal(m.sum()))
        g_pre[m] = level * (1 + 0.01 * rng.standard_normal(m.sum()))
    m = kind == 2
    g[m], g_pre[m] = lrs[0][m], lrs[1][m]
    read_bit = (g < 20 * US).astype(np.int8)
    return {
        "condition": np.full(n, "c"),
        "structure": np.full(n, "1T1R"),
        "cycle": np.zeros(n, int),
        "cell": cell,
        "bit": bit,
        "read_bit": read_bit,
        "g_siemens": g,
        "cell_b": np.full(n, -1),
        "g_b_siemens": np.full(n, np.nan),
        "g_pre_siemens": g_pre,
        "g_b_pre_siemens": np.full(n, np.nan),
    }, kind


def test_ber_on_working_cells_excludes_stuck_cells(tmp_path):
    """Working-cell BER: the stuck cells (known here) are found from the BER run's own reads
    after SET and RESET, or from a fault map in the same store (which wins where it covers a
    cell); cells that a RESET cannot switch but sit in the LRS stay (their errors count)."""
    rng = np.random.default_rng(12)
    n = 20_000
    cols, kind = _ber_bits(rng, n, n_on=170, n_off=30, n_unswitchable=100)
    path = tmp_path / "ber.h5"
    uid = make_run(path, "ber", {"bits": cols})
    rep = one_report(path, uid, tmp_path / "plots")
    r = rep.sections[0].frame.iloc[0]
    working = (kind == 0) | (kind == 2)
    err = cols["read_bit"] != cols["bit"]
    assert r.excluded_cells == 200 and r.bits_working == working.sum()
    assert r.errors_working == err[working].sum() and r.errors == err.sum()
    ci = binomtest(int(err[working].sum()), int(working.sum())).proportion_ci(0.95)
    assert (r.ber_working_lo, r.ber_working_hi) == pytest.approx((ci.low, ci.high), rel=1e-9)
    assert r.ber > r.ber_working
    assert "200 cells by ber_run" in rep.sections[0].note
    assert rep.figures["c/1T1R"]["excluded_cells"] == 200
    assert rep.plots[0].read_bytes()[:8] == PNG
    # a fault map in the same store decides the cells it covers: it knows one more stuck-on
    # cell (e.g. one that a condition switched once) and calls one of ours ok
    cells = np.arange(n)
    state = np.where(kind == 1, "stuck_on", np.where(kind == -1, "stuck_off", "ok"))
    extra = int(np.flatnonzero(kind == 0)[0])
    freed = int(np.flatnonzero(kind == 1)[0])
    state[extra], state[freed] = "stuck_on", "ok"
    make_run(path, "fault_map", {"faults": {"cell": cells, "state": state,
                                            "g_after_set_siemens": np.zeros(n),
                                            "g_after_reset_siemens": np.zeros(n)}})
    reps = report(path, plots=False)
    b = next(x for x in reps if x.kind == "ber")
    r2 = b.sections[0].frame.iloc[0]
    assert r2.excluded_cells == 200 and "200 cells by fault_map" in b.sections[0].note
    w2 = working.copy()
    w2[extra], w2[freed] = False, True
    assert r2.bits_working == w2.sum() and r2.errors_working == err[w2].sum()


def test_fault_map_fractions(tmp_path):
    rng = np.random.default_rng(7)
    n = 2 * 256 * 64
    u = rng.random(n)
    p_stuck, on_share = 0.05, 0.838
    state = np.where(u < p_stuck * on_share, "stuck_on",
                     np.where(u < p_stuck, "stuck_off", "ok"))
    path = tmp_path / "fm.h5"
    uid = make_run(path, "fault_map", {"faults": {
        "cell": np.arange(n, dtype=np.uint32), "state": state,
        "g_after_set_siemens": np.where(state == "stuck_off", 1 * US, 30 * US),
        "g_after_reset_siemens": np.where(state == "stuck_on", 35 * US, 2 * US)}},
        plan={"rows": 256, "cols": 64})
    rep = one_report(path, uid, tmp_path / "plots")
    s = rep.sections[0].frame.set_index("state")
    for st, pt in (("stuck_on", p_stuck * on_share), ("stuck_off", p_stuck * (1 - on_share)),
                   ("ok", 1 - p_stuck)):
        assert abs(s.loc[st, "fraction"] - pt) < 5 * np.sqrt(pt * (1 - pt) / n)
        assert s.loc[st, "fraction_lo"] < pt < s.loc[st, "fraction_hi"]
    share = rep.sections[1].frame.iloc[0]
    assert abs(share.stuck_on_share - on_share) < 5 * np.sqrt(on_share * (1 - on_share) /
                                                              share.stuck_cells)
    assert rep.plots[0].read_bytes()[:8] == PNG


def test_endurance_window(tmp_path):
    rng = np.random.default_rng(8)
    cells, cycles = 300, np.unique(np.round(np.geomspace(1, 1e4, 12)).astype(int))
    cols = {c: [] for c in ("condition", "cycle", "cell", "g_lrs_siemens", "g_hrs_siemens")}
    for cond, slope in (("55uA", 2.0), ("20uA", 4.0)):
        for c in cycles:
            cols["condition"].append(np.full(cells, cond))
            cols["cycle"].append(np.full(cells, c))
            cols["cell"].append(np.arange(cells))
            cols["g_lrs_siemens"].append((30 - slope * np.log10(c)) * US + rng.normal(0, US, cells))
            cols["g_hrs_siemens"].append(np.full(cells, 3 * US))
    path = tmp_path / "en.h5"
    uid = make_run(path, "endurance", {"cycles": {c: np.concatenate(v)
                                                  for c, v in cols.items()}})
    rep = one_report(path, uid, tmp_path / "plots")
    s = rep.sections[-1].frame
    slope = s["condition"].map({"55uA": 2.0, "20uA": 4.0})
    want = (27 - slope * np.log10(s["cycle"])) * US
    se_median = 1.2533 * US / np.sqrt(cells)
    assert np.all(np.abs(s["median_window_siemens"] - want) < 5 * se_median)
    assert rep.plots[0].read_bytes()[:8] == PNG


def test_time_labels_two_significant_digits():
    assert [time_label(t) for t in (0.0194746, 0.1095, 1.009, 10.01, 1e4, 0.0)] == [
        "0.019 s", "0.11 s", "1 s", "10 s", "10000 s", "0 s"]


def test_clopper_pearson_edges():
    lo, hi = clopper_pearson([0, 10, 10], [10, 10, 0])
    assert lo[0] == 0 and hi[1] == 1 and lo[1] == pytest.approx(0.025 ** (1 / 10))


# --------------------------------------------------------------------------- techC
@pytest.fixture(scope="module")
def techc(tmp_path_factory):
    assert TECHC.exists(), f"{TECHC} is missing: the techC data ships with the repository"
    path = tmp_path_factory.mktemp("techc") / "techC.h5"
    import_techc(TECHC, path)
    return path


def test_techc_sigma_grows_with_log_time(techc):
    (rep,) = report(techc, plots=False)
    mid = rep.section("relaxation, mid-range levels, per time point").frame
    sigma_us = dict(zip(mid["time_s"], mid["sigma_siemens"] / US, strict=True))
    # published figures (README of the set): ~0.35 uS after verify, ~3-4 uS at 1e5 s
    assert 0.30 < sigma_us[0.0] < 0.40
    assert 0.8 < sigma_us[0.01] < 1.3
    assert 1.4 < sigma_us[0.1] < 2.1
    assert 1.9 < sigma_us[1.0] < 2.6
    assert 3.0 < sigma_us[1e5] < 4.5
    assert np.all(np.diff(mid["sigma_siemens"]) > 0)
    # variance roughly linear in log time: 1.2-2.5 uS^2 per decade
    assert 1.2 < rep.figures["variance_slope_s2_per_decade"] / US**2 < 2.5
    assert any("369 outlier rows (69 cells)" in n for n in rep.notes)


def test_cli_runs_report_import(tmp_path, capsys, techc):
    assert main(["runs", str(techc)]) == 0
    out = capsys.readouterr().out
    assert "imported" in out and "completed" in out and "reads 88746" in out
    assert main(["runs", str(techc), "--run", "last"]) == 0
    assert '"source_sha256"' in capsys.readouterr().out
    plots = tmp_path / "plots"
    assert main(["report", str(techc), "--out", str(plots)]) == 0
    out = capsys.readouterr().out
    assert "sigma_uS" in out and "µS² per decade" in out
    assert len(list(plots.glob("*.png"))) == 1
    src = tmp_path / "lab.csv"
    src.write_text("addr,t,G\n1,0,10\n1,1,11\n2,0,20\n2,1,19\n")
    store = tmp_path / "lab.h5"
    args = ["import", str(src), "--format", "tidy", "--cell-col", "addr", "--time-col", "t",
            "--g-col", "G", "--g-unit", "uS", "--target-col", "G", "--out", str(store)]
    assert main(args) == 0
    assert "4 reads of 2 cells" in capsys.readouterr().out
    bad = tmp_path / "bad.csv"
    bad.write_text("addr,t,G\n1,0,x\n")
    assert main([*args[:1], str(bad), *args[2:]]) == 1
    err = capsys.readouterr().err
    assert str(bad) in err and 'line 2, column "G"' in err
    assert main(["runs", str(tmp_path / "missing.h5")]) == 1
    assert "no such file" in capsys.readouterr().err


def test_report_text_and_unknown_kind(tmp_path):
    path = tmp_path / "x.h5"
    make_run(path, "custom", {"log": {"a": [1, 2, 3]}})
    make_run(
        path,
        "relaxation",
        {"reads": {"cell": [1], "level": [0], "time_s": [1.0], "g_siemens": [1e-5]}},
    )  # no g0_siemens, no target_siemens
    text = format_report(report(path, tmp_path / "p"))
    assert "kind custom" in text and "log" in text
    assert "column 'target_siemens' is missing" in text or "column 'g0_siemens' is missing" in text


# --------------------------------------------------------------------------- stuck cells
def _inject_stuck(rng, n_cells: int, frac: float = 0.01):
    """Cell ids and stuck conductances [S] of ~1 % stuck cells (paper 004: 84 % stuck-on at
    ~60 uS, the rest stuck-off at ~0.3 uS)."""
    k = round(frac * n_cells)
    cells = rng.choice(n_cells, k, replace=False)
    g = np.where(rng.random(k) < 0.84, 60 * US, 0.3 * US) * (1 + 0.01 * rng.standard_normal(k))
    return cells, g


def _faults(cells: np.ndarray, stuck: np.ndarray, g_stuck: np.ndarray) -> dict:
    state = np.full(cells.size, "ok", dtype=object)
    state[np.isin(cells, stuck)] = np.where(g_stuck > 10 * US, "stuck_on", "stuck_off")[
        np.argsort(stuck)][np.searchsorted(np.sort(stuck), cells[np.isin(cells, stuck)])]
    return {"cell": cells, "state": state.astype(str), "g_after_set_siemens": np.zeros(cells.size),
            "g_after_reset_siemens": np.zeros(cells.size)}


@pytest.mark.parametrize("with_fault_map", [True, False])
def test_programming_sigma_leaves_out_stuck_cells(tmp_path, with_fault_map):
    """~1 % stuck cells double the plain sigma; the report's sigma (fault map: std of the
    other cells; no fault map: robust sigma) matches the truth, sigma_raw keeps the plain one."""
    rng = np.random.default_rng(21)
    levels, n = 8, 2000
    target = 2 * US + np.arange(levels) * 38 * US / (levels - 1)
    sigma = 0.07 * 38 * US
    cell = np.arange(levels * n)
    level = cell // n
    g = target[level] + rng.normal(0, sigma, cell.size)
    stuck, g_stuck = _inject_stuck(rng, cell.size)
    g[stuck] = g_stuck
    path = tmp_path / "pe.h5"
    if with_fault_map:
        make_run(path, "fault_map", {"faults": _faults(cell, stuck, g_stuck)})
    make_run(path, "programming_error", {"programmed": {
        "cell": cell, "level": level, "target_siemens": target[level], "g_siemens": g,
        "pulses": np.ones(cell.size, int), "mode": np.full(cell.size, "single_shot"),
        "time_s": np.full(cell.size, 1e-3)}})
    rep = next(r for r in report(path, tmp_path / "plots") if r.kind == "programming_error")
    pooled = rep.section("programming error per mode (pooled over levels)").frame.iloc[0]
    per_level = rep.section("programming error per level").frame
    ok = cell.size - stuck.size
    # the MAD sigma has ~1/0.37 the variance of a plain std, and a ~1 % bias from 1 % outliers
    se = sigma_se(sigma, ok) if with_fault_map else sigma_se(sigma, ok) / np.sqrt(0.37)
    bias = 0 if with_fault_map else 0.02 * sigma
    assert abs(pooled.sigma_siemens - sigma) < 5 * se + bias
    assert pooled.sigma_frac == pytest.approx(0.07, abs=(5 * se + bias) / (38 * US))
    assert pooled.sigma_raw_siemens > 1.5 * sigma  # the plain std over all cells: the QA figure
    assert pooled.sigma_frac_raw > 0.1
    assert pooled.excluded == (stuck.size if with_fault_map else 0)
    if with_fault_map:
        assert per_level["excluded"].sum() == stuck.size
        want = pd.Series(g - target[level]).drop(stuck).groupby(level[np.setdiff1d(
            cell, stuck)]).std().to_numpy()
        np.testing.assert_allclose(per_level["sigma_siemens"], want, rtol=1e-9)
        assert "stuck cells excluded (flagged by the fault map" in rep.sections[0].note
    else:
        assert "no fault map" in rep.sections[0].note
    assert rep.figures["single_shot"]["sigma_raw_siemens"] == pytest.approx(
        pooled.sigma_raw_siemens
    )
    text = format_report([rep])
    assert max(len(x) for x in text.splitlines() if not x.startswith("plot: ")) <= 110


def test_relaxation_and_bake_sigma_leave_out_stuck_cells(tmp_path):
    """Relaxation and bake sigma per level: stuck cells (~1 %) out by the fault map; the raw
    std, ~10x larger at a mid level, stays in sigma_raw_siemens."""
    rng = np.random.default_rng(22)
    levels, n, s0 = 4, 1500, 0.4 * US
    cell = np.arange(levels * n)
    level = cell // n
    target = (5 + 8 * level) * US
    g0 = target + rng.normal(0, s0, cell.size)
    stuck, g_stuck = _inject_stuck(rng, cell.size)
    g0[stuck] = g_stuck
    path = tmp_path / "rb.h5"
    make_run(path, "fault_map", {"faults": _faults(cell, stuck, g_stuck)})
    make_run(path, "relaxation", {"reads": {
        "cell": np.tile(cell, 2), "level": np.tile(level, 2), "target_siemens": np.tile(target, 2),
        "g0_siemens": np.tile(g0, 2), "time_s": np.repeat([0.0, 10.0], cell.size),
        "g_siemens": np.concatenate([g0, g0]), "temp_k": 300.0}})
    make_run(path, "bake_retention", {"reads": {
        "cell": cell, "level": level, "target_siemens": target, "step": 0, "temp_k": 423.15,
        "bake_time_s": 0.0, "g_siemens": g0}})
    reps = {r.kind: r for r in report(path, tmp_path / "plots")}
    tol = 5 * sigma_se(s0, n)
    rx = reps["relaxation"].section("relaxation per level and time point").frame
    bk = reps["bake_retention"].section("bake retention per bake step and level").frame
    for s in (rx, bk):
        assert np.all(np.abs(s["sigma_siemens"] - s0) < tol)
        assert (s["sigma_raw_siemens"] > 5 * s0).any()
        assert s["excluded"].sum() in (stuck.size, 2 * stuck.size)
    assert reps["relaxation"].figures["excluded"] == stuck.size
    assert len(reps["relaxation"].plots) == 1 and len(reps["bake_retention"].plots) == 1


# a real campaign on the emulated bench: the fault map covers the analog runs' cells
TILE = 256 * 64
STUCK_PLAN = {"plan": {"name": "stuck", "seed": 3}, "experiment": [
    {"kind": "fault_map", "cells": {"ranges": [[TILE, 2 * TILE + 1024]]}},
    {"kind": "programming_error", "cells": {"start": TILE, "count": 4096},
     "calibration_cells": 256, "calibration_points": 26},
    {"kind": "read_fluctuation", "cells": {"start": 2 * TILE, "count": 1024},
     "repeats": 20, "settle_s": 3600.0, "smu_cells": 0}]}


@pytest.fixture(scope="module")
def stuck_campaign(tmp_path_factory):
    from cimlab.instruments.station import Station
    from cimlab.procedures.campaign import run_plan
    from cimlab.procedures.plan import plan_from_mapping
    from tests.procedures.bench_util import station_file

    tmp = tmp_path_factory.mktemp("stuck")
    with Station.open(station_file(tmp, seed=5)) as st:
        chip = st.bench.chip
        run_plan(plan_from_mapping(STUCK_PLAN, source="stuck-test"), st, tmp / "s.h5",
                 progress=False)
        stuck = chip.truth.stuck_mask().copy()
        truth = chip.truth
    return {"path": tmp / "s.h5", "stuck": stuck, "truth": truth, "tmp": tmp}


def test_campaign_read_sigma_matches_truth_without_stuck_cells(stuck_campaign):
    """Real campaign with a fault map: the report excludes exactly the chip's stuck cells;
    its read sigma per level matches the truth read_sigma of the working cells within the
    sample-size tolerance, the raw one (stuck cells in) does not."""
    c = stuck_campaign
    reps = {r.kind: r for r in report(c["path"], c["tmp"] / "plots")}
    with Store.open(c["path"], "r") as store:
        run = next(r for r in store if r.kind == "read_fluctuation")
        reads = run.table("reads")
    stuck_cells = np.flatnonzero(c["stuck"])
    run_cells = np.unique(reads["cell"])
    n_stuck = int(np.isin(run_cells, stuck_cells).sum())
    assert n_stuck >= 3  # ~1 % of 1024
    s = reps["read_fluctuation"].section("read fluctuation per level (array reads)").frame
    assert s["excluded"].sum() == n_stuck
    ok = reads[~reads["cell"].isin(stuck_cells)]
    raw_off = []
    for row in s.itertuples():
        per_cell = ok[ok["level"] == row.level].groupby("cell")["g_siemens"].agg(["mean", "size"])
        var_true = float(np.mean(c["truth"].read_sigma(per_cell["mean"].to_numpy()) ** 2))
        rel = 5 * np.sqrt(2.0 / float((per_cell["size"] - 1).sum()))  # 5 SE of a variance
        assert abs(row.sigma_siemens**2 / var_true - 1) < rel, row
        raw_off.append(abs(row.sigma_raw_siemens**2 / var_true - 1) > rel)
    assert any(raw_off)
    pe = reps["programming_error"].section("programming error per mode (pooled over levels)")
    f = pe.frame.set_index("mode")
    assert (f["excluded"] > 0).all() and (f["sigma_raw_siemens"] > 1.5 * f["sigma_siemens"]).all()
    assert 0.05 < f.loc["single_shot", "sigma_frac"] < 0.09  # paper 000: ~0.07
    assert f.loc["verify", "sigma_siemens"] < 2 * US

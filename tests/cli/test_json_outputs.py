"""Every reporting command's ``--json``: stdout holds exactly one JSON object (parsed here
whole, so any stray print fails the test), messages go to stderr, and files land under
``--out`` or next to the store; figures take ``--format``/``--dpi``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cimlab.cli.main import build_parser, main
from cimlab.models.serialization import SCHEMA_VERSION
from cimlab.store import Store
from tests.procedures.bench_util import station_file

#: A small campaign: one read-fluctuation experiment on 64 cells (a second or two).
PLAN = """
[plan]
name = "tiny"
seed = 5

[[experiment]]
kind = "read_fluctuation"
cells = { start = 32768, count = 64 }
repeats = 4
settle_s = 10.0
smu_cells = 0
"""


def _json(capsys) -> dict:
    """The whole of stdout as one JSON object (fails on anything else there)."""
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert isinstance(doc, dict)
    assert captured.out.count("\n") == 1  # one line: one object
    return doc


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    """(station file, plan file, store) after one tiny characterize run."""
    d = tmp_path_factory.mktemp("json")
    st = station_file(d, seed=2)
    plan = d / "tiny.toml"
    plan.write_text(PLAN)
    store = d / "tiny.h5"
    assert main(["characterize", str(plan), "--station", str(st), "--out", str(store),
                 "-q"]) == 0
    return st, plan, store


def test_every_reporting_command_has_the_output_flags():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices
    reporting = ["runs", "report", "fit", "characterize", "evaluate", "simulate", "validate",
                 "export", "program-verify", "program-net", "bn-calibrate", "reproduce",
                 "train", "demo", "import", "model-export"]
    for name in reporting:
        flags = {o for a in sub[name]._actions for o in a.option_strings}
        assert "--json" in flags, name
    nested = {"model": ("show", "extrapolate", "plot"), "station": ("check",)}
    for group, actions in nested.items():
        inner = next(a for a in sub[group]._actions if a.dest.endswith("_command")).choices
        for name in actions:
            assert "--json" in {o for a in inner[name]._actions for o in a.option_strings}
    for name in ("characterize", "program-verify", "simulate", "train", "demo", "reproduce",
                 "program-net", "evaluate", "bn-calibrate", "fit"):
        flags = {o for a in sub[name]._actions for o in a.option_strings}
        assert {"-q", "--quiet", "--no-progress"} <= flags, name
        assert "--no-progress" not in sub[name].format_help()  # the old spelling is hidden
    for name in ("report", "simulate", "reproduce", "demo"):
        flags = {o for a in sub[name]._actions for o in a.option_strings}
        assert {"--format", "--dpi"} <= flags, name


def test_station_check_json(tmp_path, capsys):
    st = station_file(tmp_path, seed=1)
    assert main(["station", "check", str(st), "--json"]) == 0
    doc = _json(capsys)
    assert doc["ok"] is True and doc["geometry"]["rows"] > 0
    assert set(doc["instruments"]) >= {"array", "smu", "oven", "clock"}
    assert doc["limits"]["set_icc_max_a"]["unit"] == "A"


def test_characterize_runs_report_export_json(campaign, tmp_path, capsys):
    st, plan, store = campaign
    capsys.readouterr()
    # a re-run resumes: nothing left to measure, and the summary says so (no per-op time)
    assert main(["characterize", str(plan), "--station", str(st), "--out", str(store),
                 "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "per cell operation" not in captured.out
    assert "deprecated" in captured.err  # --no-progress still works, and says so
    assert main(["characterize", str(plan), "--station", str(st), "--out", str(store),
                 "--json", "-q"]) == 0
    doc = _json(capsys)
    assert doc["store"] == str(store) and doc["cell_operations"] == 0
    assert main(["characterize", str(plan), "--station", str(st), "--check", "--json"]) == 0
    assert _json(capsys)["cell_selections"] == 64

    assert main(["runs", str(store), "--json"]) == 0
    runs = _json(capsys)["runs"]
    assert [r["kind"] for r in runs] == ["read_fluctuation"]
    assert runs[0]["status"] == "completed"
    assert main(["runs", str(store), "--run", "last", "--json"]) == 0
    assert "reads" in _json(capsys)["columns"]

    out = tmp_path / "rep"
    assert main(["report", str(store), "--out", str(out), "--json", "--format", "svg"]) == 0
    rep = _json(capsys)["runs"][0]
    assert rep["kind"] == "read_fluctuation" and rep["sections"][0]["rows"]
    assert rep["plots"] and all(p.endswith(".svg") for p in rep["plots"])
    assert all(Path(p).parent == out for p in rep["plots"])
    assert Path(rep["plots"][0]).read_text().lstrip().startswith("<?xml")

    assert main(["export", str(store), "--to", "csv", "--out", str(tmp_path / "x"),
                 "--json"]) == 0
    assert _json(capsys)["files"]


def test_report_png_dpi(campaign, tmp_path, capsys):
    _, _, store = campaign
    from PIL import Image

    sizes = {}
    for dpi in (100, 200):
        out = tmp_path / str(dpi)
        assert main(["report", str(store), "--out", str(out), "--dpi", str(dpi)]) == 0
        png = sorted(out.glob("*.png"))[0]
        sizes[dpi] = Image.open(png).size
    assert sizes[200][0] == pytest.approx(2 * sizes[100][0], rel=0.02)
    capsys.readouterr()


def test_program_verify_saves_results_json(tmp_path, capsys):
    st = station_file(tmp_path, seed=4)
    out = tmp_path / "pv"
    assert main(["program-verify", "--station", str(st), "--tile", "1", "--levels", "4",
                 "--max-pulses", "12", "--out", str(out), "--json", "-q"]) == 0
    doc = _json(capsys)
    assert doc["tile"] == 1 and doc["results"][0]["scheme"] == "adaptive"
    saved = json.loads((out / "tile1-seed0.json").read_text())
    assert saved["results"] == doc["results"]
    arrays = np.load(out / "tile1-seed0.npz")
    assert arrays["adaptive__target_siemens"].size == doc["cells"]
    assert np.all(np.isin(arrays["adaptive__cells"], np.arange(16384, 32768)))


def test_program_verify_reports_what_the_cells_hold(tmp_path, capsys):
    """Every scheme gets fresh averaged reads at the --hold delays after its tile is finished
    and counts every pulse (calibration sweep included); the monitored settle holds far more
    cells a minute later than the verify loop whose stopping rule it shares (benchmark: ~30 %
    against ~80 %), and the delays go into the saved JSON."""
    st = station_file(tmp_path, seed=4)
    out = tmp_path / "pv"
    assert main(["program-verify", "--station", str(st), "--tile", "2", "--levels", "8",
                 "--scheme", "adaptive", "--scheme", "settle", "--hold", "0,60",
                 "--out", str(out), "--json", "-q"]) == 0
    doc = _json(capsys)
    adaptive, settle = doc["results"]
    assert [r["scheme"] for r in doc["results"]] == ["adaptive", "settle"]
    for r in doc["results"]:
        assert set(r["held_within_tol_at_s"]) == {"0", "60"}
        assert r["pulses_per_cell_all"] > r["pulses_mean"]          # the calibration sweep
    assert settle["held_within_tol_at_s"]["60"] > adaptive["held_within_tol_at_s"]["60"] + 0.3
    assert settle["wait_time_s"] == pytest.approx(86400.0, rel=1e-6)
    saved = json.loads((out / "tile2-seed0.json").read_text())
    assert saved["hold_delays_s"] == [0.0, 60.0] and saved["results"] == doc["results"]


def test_import_and_validate_json(tmp_path, capsys):
    gen = np.random.default_rng(0)
    n = 40
    df = pd.DataFrame({"cell": np.tile(np.arange(n), 2), "level": 0,
                       "time_s": np.repeat([0.0, 1.0], n),
                       "g_uS": 10 + gen.normal(0, 1, 2 * n)})
    src = tmp_path / "r.csv"
    df.to_csv(src, index=False)
    store = tmp_path / "s.h5"
    assert main(["import", str(src), "--g-col", "g_uS", "--g-unit", "uS", "--level-step",
                 "20uS", "--level-col", "level", "--out", str(store), "--json"]) == 0
    doc = _json(capsys)
    assert doc["store"] == str(store) and doc["run"]["rows"] == 2 * n
    with Store.open(store, "r") as s:
        assert doc["run"]["uid"] in s.uids


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A small store with relaxation, read-fluctuation and bake runs from the emulated chip
    (the store of tests/models/test_cli.py)."""
    from tests.models.chipdata import chip_tables

    d = chip_tables("default")
    path = tmp_path_factory.mktemp("fit") / "chip.h5"
    with Store.open(path, mode="a") as st:
        for kind, tables in (("relaxation", {"reads": d["relax"], "programmed": d["programmed"]
                                             .drop(columns="g_true_siemens")}),
                             ("read_fluctuation", {"reads": d["reads"]}),
                             ("bake_retention", {"reads": d["bake"],
                                                 "programmed": d["bake_programmed"]})):
            run = st.begin_run(kind=kind, plan={"kind": kind}, snapshot={}, seeds={"p": 1})
            for name, df in tables.items():
                run.append(name, {c: df[c].to_numpy() for c in df.columns})
            run.complete_step("all")
            run.finish("completed")
    return path


def test_fit_model_show_extrapolate_plot_json(fitted, tmp_path, capsys):
    store = fitted
    model = tmp_path / "m.json"
    assert main(["fit", str(store), "--out", str(model), "--json"]) == 0
    doc = _json(capsys)
    assert doc["model"] == str(model) and model.exists()
    assert {e["effect"] for e in doc["effects"]} >= {"relaxation", "retention"}
    assert main(["model", "show", str(model), "--json"]) == 0
    assert _json(capsys)["schema_version"] == SCHEMA_VERSION
    assert main(["model", "extrapolate", str(model), "--draws", "200", "--json"]) == 0
    assert _json(capsys)["levels"]
    plots = tmp_path / "plots"
    assert main(["model", "plot", str(model), "--data", str(store), "--out", str(plots),
                 "--format", "pdf", "--json"]) == 0
    files = _json(capsys)["files"]
    assert files and all(f.endswith(".pdf") for f in files)
    assert all(Path(f).read_bytes()[:5] == b"%PDF-" for f in files)
    assert main(["model-export", str(model), "--json"]) == 0
    assert all(Path(f).parent == tmp_path for f in _json(capsys)["files"])
    # the default model file goes next to the store, not into the current folder
    assert main(["fit", str(store), "--json", "-q"]) == 0
    assert Path(_json(capsys)["model"]) == store.with_name(store.stem + ".model.json")


def _checkpoint(tmp_path: Path) -> Path:
    import torch

    from cimlab.sim.data import load_dataset
    from cimlab.sim.nets import build
    from cimlab.sim.training import TrainConfig, save_checkpoint, train

    ds = load_dataset("digits")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = build("paper001-mnist", ds.in_shape, ds.n_classes)
    train(net, ds, TrainConfig(epochs=1), generator=torch.Generator().manual_seed(0),
          progress=False)
    return save_checkpoint(tmp_path / "net.pt", net, ds, 0.0)


def test_simulate_json_writes_under_out(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may land in the current folder
    ckpt = _checkpoint(tmp_path)
    out = tmp_path / "sim"
    before = set(tmp_path.iterdir())
    assert main(["simulate", "--net", str(ckpt), "--trials", "2", "--test-samples", "60",
                 "--out", str(out), "--format", "pdf", "--json", "-q"]) == 0
    doc = _json(capsys)
    assert len(doc["accuracies"]) == 2 and 0 <= doc["mean"] <= 1
    assert sorted(Path(f).name for f in doc["files"]) == ["results.json", "simulate.pdf"]
    assert all(Path(f).parent == out for f in doc["files"])
    assert set(tmp_path.iterdir()) - before == {out}


def test_train_json(tmp_path, capsys):
    ckpt = tmp_path / "t.pt"
    assert main(["train", "--net", "paper001-mnist", "--epochs", "1", "--out", str(ckpt),
                 "--json", "-q"]) == 0
    doc = _json(capsys)
    assert doc["checkpoint"] == str(ckpt) and ckpt.exists()
    assert 0 <= doc["accuracy"] <= 1 and len(doc["history"]) == 1


@pytest.mark.slow
def test_reproduce_json(tmp_path, capsys):
    assert main(["reproduce", "004", "--quick", "--out", str(tmp_path), "--json", "-q",
                 "--format", "svg"]) == 0
    doc = _json(capsys)
    assert doc["paper"] == "004" and doc["tables"]
    assert any(f.endswith(".svg") for f in doc["files"])


def test_simulate_eval_duration_reaches_the_config(tmp_path, capsys, monkeypatch):
    import cimlab.sim as sim

    seen = []
    real_convert = sim.convert

    def spy(net, cfg, **kw):
        seen.append(cfg.eval_duration_s)
        return real_convert(net, cfg, **kw)

    monkeypatch.setattr(sim, "convert", spy)
    ckpt = _checkpoint(tmp_path)
    assert main(["simulate", "--net", str(ckpt), "--trials", "1", "--test-samples", "30",
                 "--eval-duration", "3600", "--out", str(tmp_path / "s"), "--json", "-q"]) == 0
    assert seen == [3600.0]
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(["simulate", "--net", str(ckpt), "--eval-duration", "0"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--eval-duration" in err and "> 0" in err

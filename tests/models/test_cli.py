"""``cimlab fit`` and ``cimlab model show|plot|extrapolate`` on a small store."""

from __future__ import annotations

import json

import pytest

from cimlab.cli.main import main
from cimlab.store import Store
from tests.models.chipdata import chip_tables


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    """A store with relaxation, read-fluctuation and bake runs written through the Store API
    from tables drawn from the emulated chip (tests/models/chipdata.py)."""
    d = chip_tables("default")
    path = tmp_path_factory.mktemp("cli") / "chip.h5"
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


def test_fit_show_extrapolate_plot(store_path, tmp_path, capsys):
    out = tmp_path / "m.json"
    assert main(["fit", str(store_path), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "relaxation" in text and "wrote" in text
    doc = json.loads(out.read_text())
    assert doc["schema_version"] == 5
    assert doc["effects"]["relaxation"]["parameters"]["k_peak"]["unit"] == "S^2"
    assert len(doc["provenance"]["data_sha256"]) == 64
    assert main(["model", "show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "95% CI" in shown and "sha256" in shown and "forms tried" in shown
    assert main(["model", "extrapolate", str(out), "--years", "10", "--temp-c", "85",
                 "--draws", "300"]) == 0
    ex = capsys.readouterr().out
    assert "acceleration" in ex and "sigma of a read" in ex
    assert main(["model", "extrapolate", str(out), "--json", "--draws", "200"]) == 0
    assert json.loads(capsys.readouterr().out)["levels"]
    plots = tmp_path / "plots"
    assert main(["model", "plot", str(out), "--data", str(store_path), "--out",
                 str(plots)]) == 0
    pngs = sorted(p.name for p in plots.glob("*.png"))
    assert {"relaxation.png", "read_noise.png", "retention.png"} <= set(pngs)
    assert all((plots / p).stat().st_size > 10_000 for p in pngs)


def test_bad_model_file_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema_version": 2, "kind": "cimlab.device_model", "effects": {"wire": '
                   '{"parameters": {"r_segment_ohm": {"value": 2.0, "unit": "mohm"}}}}}')
    assert main(["model", "show", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "bad.json" in err and "effects.wire.parameters.r_segment_ohm.unit" in err
    assert main(["fit", str(tmp_path / "missing.h5")]) == 1
    assert "missing.h5" in capsys.readouterr().err


def test_show_default_model(capsys):
    from pathlib import Path

    p = Path(__file__).parents[2] / "models" / "default.json"
    assert main(["model", "show", str(p)]) == 0
    assert "paper 003" in capsys.readouterr().out


def test_help_and_use_condition_bounds(capsys):
    from pathlib import Path

    for action in ("show", "extrapolate"):
        with pytest.raises(SystemExit):
            main(["model", action, "--help"])
        out = capsys.readouterr().out
        assert "95%" in out and "95%%" not in out
    default = Path(__file__).parents[2] / "models" / "default.json"
    for args, field, what in ((["--temp-c", "5000"], "--temp-c", "at most 400"),
                              (["--temp-c", "-300"], "--temp-c", "above -273.15"),
                              (["--years", "0"], "--years", "a positive number of years")):
        assert main(["model", "extrapolate", str(default), *args]) == 1
        err = capsys.readouterr().err
        assert field in err and what in err, err

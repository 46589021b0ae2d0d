"""``cimlab validate``: help, one-line errors, JSON on a small store built by the importer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from cimlab.cli.main import build_parser, main
from cimlab.models import DeviceModel

ROOT = Path(__file__).resolve().parents[2]


def test_help_lists_validate():
    text = build_parser().format_help()
    assert "validate" in text


def _store(tmp_path: Path) -> Path:
    gen = np.random.default_rng(0)
    n = 50
    df = pd.DataFrame({"cell": np.tile(np.arange(n), 2), "level": 0,
                       "time_s": np.repeat([0.0, 1.0], n),
                       "g_uS": 10 + gen.normal(0, 1, 2 * n)})
    src = tmp_path / "r.csv"
    df.to_csv(src, index=False)
    out = tmp_path / "s.h5"
    assert main(["import", str(src), "--g-col", "g_uS", "--g-unit", "uS", "--level-step", "20uS",
                 "--level-col", "level", "--out", str(out)]) == 0
    return out


def test_validate_json_and_errors(tmp_path, capsys):
    store = _store(tmp_path)
    model = DeviceModel.default().save(tmp_path / "m.json")
    capsys.readouterr()
    assert main(["validate", str(model), str(store), "--json"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert len(obj["cells"]) == 1 and obj["cells"][0]["n"] == 50
    assert obj["cells"][0]["time_s"] == 1.0 and obj["summary"]["tolerance"] == 0.15
    for argv, what in (
        (["validate", str(tmp_path / "none.json"), str(store)], "none.json"),
        (["validate", str(model), str(store), "--tolerance", "0"], "--tolerance"),
    ):
        assert main(argv) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and what in err


def test_import_bad_unit_is_one_line(tmp_path, capsys):
    src = tmp_path / "r.csv"
    src.write_text("cell,level,time_s,g_siemens\n1,0,0,1e-6\n")
    rc = main(["import", str(src), "--g-unit", "furlong", "--level-step", "1uS",
               "--out", str(tmp_path / "s.h5")])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and len(err.splitlines()) == 1 and "--g-unit" in err and "kohm" in err
    assert str(src) in err
    assert not (tmp_path / "s.h5").exists()

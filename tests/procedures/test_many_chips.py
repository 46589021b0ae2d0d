"""One plan on several emulated chips: chip identity in every run's metadata, the same values
serially and on a local Dask cluster, one station and store per chip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cimlab.errors import ConfigError
from cimlab.parallel import DaskEngine, task_seeds
from cimlab.procedures.many_chips import chip_station_text, run_plan_on_chips
from cimlab.store import Store

ROOT = Path(__file__).resolve().parents[2]
PLAN = """\
[plan]
name = "tiny"
seed = 11

[[experiment]]
kind = "read_fluctuation"
cells = { start = 0, count = 32 }
repeats = 4
settle_s = 10.0
smu_cells = 0
"""


def _tables(store_path: str) -> dict[str, np.ndarray]:
    out = {}
    with Store.open(store_path, "r") as store:
        for uid in store.uids:
            run = store.run(uid)
            for name in run.tables:
                df = run.table(name)
                for col in df.columns:
                    out[f"{run.kind}/{name}/{col}"] = df[col].to_numpy()
    return out


def test_plan_on_chips_serial_equals_local_cluster(tmp_path):
    plan = tmp_path / "tiny.toml"
    plan.write_text(PLAN)
    station = ROOT / "instruments" / "emulated.toml"
    serial = run_plan_on_chips(plan, station, tmp_path / "serial", 2, seed=3, wafer="WX")
    with DaskEngine(workers=2, processes=False) as eng:
        par = run_plan_on_chips(plan, station, tmp_path / "par", 2, seed=3, wafer="WX",
                                engine=eng)
    seeds = [s % 2**32 for s in task_seeds(3, 2)]
    assert [c.emulator_seed for c in serial] == seeds == [c.emulator_seed for c in par]
    for a, b in zip(serial, par, strict=True):
        assert a.identity == b.identity and a.identity.chip == f"WX-D{a.index:03d}"
        ta, tb = _tables(a.store_path), _tables(b.store_path)
        assert ta.keys() == tb.keys() and ta
        for k in ta:
            np.testing.assert_array_equal(ta[k], tb[k], err_msg=k)
        with Store.open(a.store_path, "r") as store:
            for uid in store.uids:
                meta = store.run(uid).meta["chip"]
                assert meta["chip"] == a.identity.chip and meta["wafer"] == "WX"
                assert meta["emulator_seed"] == a.emulator_seed
    # different chips measure different values
    t0, t1 = _tables(serial[0].store_path), _tables(serial[1].store_path)
    assert any(not np.array_equal(t0[k], t1[k]) for k in t0 if t0[k].dtype.kind == "f")


def test_station_template_must_start_an_emulator(tmp_path):
    real = ROOT / "instruments" / "example-real-bench.toml"
    with pytest.raises(ConfigError, match="emulator"):
        chip_station_text(real, 1)
    text = chip_station_text(ROOT / "instruments" / "emulated.toml", 42)
    assert "seed = 42" in text


def test_cli_chip_identity_and_many_chips(tmp_path, capsys):
    from cimlab.cli.main import main

    plan = tmp_path / "tiny.toml"
    plan.write_text(PLAN)
    station = str(ROOT / "instruments" / "emulated.toml")
    one = tmp_path / "one.h5"
    assert main(["characterize", str(plan), "--station", station, "--out", str(one),
                 "--no-progress", "--wafer", "W7", "--die", "D3", "--chip-id", "W7-D3"]) == 0
    with Store.open(one, "r") as store:
        assert [store.run(u).meta["chip"] for u in store.uids] == [
            {"wafer": "W7", "die": "D3", "chip": "W7-D3"}]
    assert main(["characterize", str(plan), "--station", station, "--out",
                 str(tmp_path / "many"), "--no-progress", "--chips", "2", "--wafer", "W7"]) == 0
    out = capsys.readouterr().out
    assert "W7-D000" in out and "W7-D001" in out and "2 chips on serial" in out
    assert (tmp_path / "many" / "chip-001" / "store.h5").exists()

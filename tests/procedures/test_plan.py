"""Plan files: strict validation before the first pulse; a bad plan writes nothing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cimlab.cli.main import main
from cimlab.errors import ConfigError, LimitError
from cimlab.procedures.plan import (
    CellSet,
    LevelSet,
    ProgrammingErrorExp,
    load_plan,
    plan_from_mapping,
)
from tests.procedures.bench_util import station_file

ROOT = Path(__file__).resolve().parents[2]
GEOMETRY = (32, 256, 64)

GOOD = """
[plan]
name = "tiny"
seed = 1

[[experiment]]
kind = "read_fluctuation"
cells = { start = 0, count = 64 }
repeats = 3
levels = { levels = 4 }
"""


def _write(tmp_path: Path, text: str, name: str = "plan.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize("name", ["quick.toml", "full.toml"])
def test_shipped_plans_load_and_fit_the_default_chip(name):
    plan = load_plan(ROOT / "plans" / name)
    cells = plan.resolve_cells(GEOMETRY)
    assert len(cells) == len(plan.experiments) >= 7
    kinds = {e.kind for e in plan.experiments}
    assert kinds == {"fault_map", "programming_error", "read_fluctuation", "relaxation",
                     "bake_retention", "ber", "endurance"}


def test_quick_plan_has_the_required_sizes():
    plan = load_plan(ROOT / "plans" / "quick.toml")
    cells = dict(zip([e.kind for e in plan.experiments], plan.resolve_cells(GEOMETRY),
                     strict=True))
    by_kind = {e.kind: e for e in plan.experiments}
    pe = by_kind["programming_error"]
    assert pe.levels.levels == 16 and cells["programming_error"].size // len(pe.modes) == 4096
    rf = by_kind["read_fluctuation"]
    assert rf.repeats == 100 and cells["read_fluctuation"].size == 1024
    assert len(by_kind["bake_retention"].schedule_s) == 6
    ber = by_kind["ber"]
    assert [(c.icc_a, c.v_reset, c.width_s) for c in ber.conditions] == [
        (600e-6, 2.5, 100e-9), (55e-6, 2.5, 100e-9), (20e-6, 1.5, 100e-9)]
    assert ber.bits == 16384


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (("repeats = 3", "repeats = 3\nrepeatz = 4"), "experiment[0].repeatz"),
        (("repeats = 3", "repeats = -2"), "experiment[0].repeats"),
        (("repeats = 3", "repeats = 'many'"), "experiment[0].repeats"),
        (("levels = { levels = 4 }", "levels = { levels = 4, g_min_siemens = 0.5 }"),
         "experiment[0].levels.g_min_siemens"),
        (('kind = "read_fluctuation"', 'kind = "read_fluctuations"'), "experiment[0].kind"),
        (("count = 64", "count = 64, bogus = 1"), "experiment[0].cells.bogus"),
        (("seed = 1", "seed = 1\ncolour = 'red'"), "plan.colour"),
    ],
)
def test_bad_plan_names_file_and_field(tmp_path, edit, field):
    p = _write(tmp_path, GOOD.replace(*edit))
    with pytest.raises(ConfigError) as exc:
        load_plan(p)
    assert exc.value.field == field
    assert str(p) in str(exc.value)


def test_plan_larger_than_chip_is_a_clear_error(tmp_path):
    plan = load_plan(_write(tmp_path, GOOD.replace("start = 0", "start = 524280")))
    with pytest.raises(ConfigError) as exc:
        plan.check_geometry(GEOMETRY)
    assert exc.value.field == "experiment[0].cells.start/count"
    assert "524288" in str(exc.value) and "ends at cell 524343" in str(exc.value)
    plan = load_plan(_write(tmp_path, GOOD.replace("start = 0, count = 64",
                                                   "ranges = [[0, 8], [524280, 524300]]")))
    with pytest.raises(ConfigError) as exc:
        plan.check_geometry(GEOMETRY)
    assert exc.value.field == "experiment[0].cells.ranges[1]"
    plan = load_plan(_write(tmp_path, GOOD.replace("start = 0, count = 64", "tiles = [32]")))
    with pytest.raises(ConfigError, match="tiles"):
        plan.check_geometry(GEOMETRY)


def test_cell_sets_and_levels():
    cs = CellSet(tiles=(1,), ranges=((0, 10),), sample=100)
    cells = cs.resolve(GEOMETRY, seed=3)
    assert cells.size == 100 and np.all(np.diff(cells.astype(int)) > 0)
    assert np.array_equal(cells, cs.resolve(GEOMETRY, seed=3))
    lv = LevelSet(levels=16)
    idx = lv.assign(4096, seed=1)
    assert np.all(np.bincount(idx) == 256)
    assert lv.targets()[0] == 2e-6 and lv.targets()[-1] == 40e-6
    with pytest.raises(ConfigError):
        LevelSet(g_min_siemens=40e-6, g_max_siemens=2e-6)
    with pytest.raises(ConfigError):
        ProgrammingErrorExp(modes=("sometimes",))


def _run_cli(tmp_path, plan_text, station, out):
    plan = _write(tmp_path, plan_text, "cli-plan.toml")
    return main(["characterize", str(plan), "--station", str(station), "--out", str(out),
                 "--quiet"])


@pytest.mark.parametrize(
    ("text", "messages"),
    [
        (GOOD.replace("repeats = 3", "repeats = 3\nrepeatz = 4"), ["repeatz"]),
        (GOOD.replace("start = 0", "start = 524280"),
         ["cli-plan.toml", "experiment[0].cells.start/count", "524288"]),
        (GOOD + """
[[experiment]]
kind = "ber"
cells = { start = 1000, count = 300 }
bits = 10
conditions = [{ name = "hot", icc_a = 900e-6, v_reset = 2.5 }]
""", ["cli-plan.toml", "experiment[1].conditions[0].icc_a", "0.0009", "set_icc_max_a",
      "0.0007", "station.toml"]),
        (GOOD + """
[[experiment]]
kind = "bake_retention"
cells = { start = 1000, count = 64 }
temps_c = [260.0]
""", ["cli-plan.toml", "experiment[1].temps_c[0]", "260", "oven_temp_max_c", "200",
      "station.toml"]),
    ],
)
def test_bad_plan_writes_nothing(tmp_path, capsys, text, messages):
    """Unknown key, larger than the chip, beyond the station's limits: the CLI fails with a
    clear message (plan file, the field as written, value, limit, station file) before the
    first pulse and creates no store."""
    station = station_file(tmp_path, seed=2)
    out = tmp_path / "never.h5"
    assert _run_cli(tmp_path, text, station, out) == 1
    err = capsys.readouterr().err
    for message in messages:
        assert message in err
    assert not out.exists()


def test_limit_error_is_raised_before_the_store_opens(tmp_path):
    from cimlab.instruments.station import Station
    from cimlab.procedures.campaign import run_plan

    plan = plan_from_mapping({"plan": {"name": "x"}, "experiment": [
        {"kind": "fault_map", "cells": {"count": 64},
         "condition": {"name": "p", "icc_a": 100e-6, "v_reset": 3.5}}]}, source="mem")
    out = tmp_path / "s.h5"
    with Station.open(station_file(tmp_path, seed=2)) as st:
        n0 = len(st.bench.log("array"))
        with pytest.raises(LimitError, match="reset_sl_max_v"):
            run_plan(plan, st, out, progress=False)
        sent = [m for m in st.bench.log("array")[n0:] if m.startswith("ARR:PULS")]
    assert sent == [] and not out.exists()


def test_good_plan_runs_from_the_cli_and_resumes_as_complete(tmp_path, capsys):
    station = station_file(tmp_path, seed=2)
    out = tmp_path / "ok.h5"
    assert _run_cli(tmp_path, GOOD, station, out) == 0
    first = capsys.readouterr().out
    assert "read_fluctuation" in first and out.exists()
    assert _run_cli(tmp_path, GOOD, station, out) == 0      # nothing left to do
    assert "completed before" in capsys.readouterr().out
    from cimlab.store import Store

    with Store.open(out, mode="r") as s:
        runs = s.runs()
        assert list(runs["kind"]) == ["read_fluctuation"]
        reads = s.run("last").table("reads")
    assert len(reads) == 64 * 3

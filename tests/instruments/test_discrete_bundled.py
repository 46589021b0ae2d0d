"""Bundled stations, plans and model: package data equal to the repository's files, and a
wheel that runs from outside the repository (slow)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cimlab.instruments.station_config import bundled_stations, load_station_config
from cimlab.models.bundled import DEFAULT_MODEL
from cimlab.procedures.plans import bundled_plan

ROOT = Path(__file__).resolve().parents[2]


def test_bundled_copies_equal_the_repository_files():
    for name in ("quick", "full"):
        assert bundled_plan(name).read_bytes() == (ROOT / "plans" / f"{name}.toml").read_bytes()
    assert DEFAULT_MODEL.read_bytes() == (ROOT / "models" / "default.json").read_bytes()
    assert (ROOT / "instruments" / "emulated.toml").read_text() == \
        load_station_config("emulated")[1]


def test_both_bundled_stations_load():
    assert {"emulated", "emulated-discrete"} <= set(bundled_stations())
    cfg, _ = load_station_config("emulated-discrete")
    assert cfg.station.topology == "discrete"
    assert cfg.instruments.array is None and cfg.instruments.switch is not None


@pytest.mark.slow
def test_wheel_runs_outside_the_repository(tmp_path):
    script = ROOT / "scripts" / "check_wheel.sh"
    env = {**os.environ, "WORK": str(tmp_path), "PYTHON": sys.executable}
    env.pop("PYTHONPATH", None)
    r = subprocess.run(["bash", str(script)], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=1800)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "WHEEL CHECK OK" in r.stdout

"""``cimlab program-verify`` checks every scheme's whole pulse schedule (the ISPP staircase up
to its maximum, the adaptive candidates, the deep RESET) against the station's limits before
the first pulse: a schedule beyond a limit sends nothing."""

from __future__ import annotations

import pytest

from cimlab.cli.main import main
from cimlab.instruments.emulator import EmulatedBench
from tests.procedures.bench_util import station_file


@pytest.fixture
def bench():
    b = EmulatedBench("default", seed=3).start()
    try:
        yield b
    finally:
        b.stop()


def _pulses(bench: EmulatedBench) -> int:
    return sum(m.startswith("ARR:PULS") for m in bench.log("array"))


@pytest.mark.parametrize("scheme", ["ispp", "adaptive"])
def test_staircase_beyond_the_set_limit_is_refused_before_any_pulse(tmp_path, bench, capsys,
                                                                      scheme):
    station = station_file(tmp_path, addresses=bench.addresses)
    # the staircase climbs 0.8 V -> 2.0 V (v_set_max); the station allows 1.5 V on the BL
    station.write_text(station.read_text().replace("set_bl_max_v = 3.0", "set_bl_max_v = 1.5"))
    rc = main(["program-verify", "--station", str(station), "--scheme", scheme,
               "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "set_bl_max_v" in err and "program-verify --scheme" in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert _pulses(bench) == 0


def test_schedule_within_the_limits_runs(tmp_path, bench, capsys):
    station = station_file(tmp_path, addresses=bench.addresses)
    rc = main(["program-verify", "--station", str(station), "--scheme", "ispp",
               "--max-pulses", "2", "--quiet"])
    assert rc == 0, capsys.readouterr().err
    assert _pulses(bench) > 0


def test_settle_bake_beyond_the_oven_limit_is_refused_before_any_pulse(tmp_path, bench,
                                                                        capsys):
    station = station_file(tmp_path, addresses=bench.addresses)
    station.write_text(station.read_text().replace("oven_temp_max_c = 200.0",
                                                   "oven_temp_max_c = 120.0"))
    rc = main(["program-verify", "--station", str(station), "--scheme", "adaptive",
               "--scheme", "settle-bake", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "oven_temp_max_c" in err and "settle-bake" in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert _pulses(bench) == 0

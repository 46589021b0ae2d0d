"""Station files for real labs: VISA options passed through, a VISA library path relative to
the station file, driver plug-ins by entry point with the real import error."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import pytest

from cimlab.errors import ConfigError
from cimlab.instruments.drivers import BakeOven
from cimlab.instruments.limited_drivers import LimitedBakeOven, driver_class
from cimlab.instruments.station import Station
from cimlab.instruments.station_config import STATIONS_DIR, load_station_config

BASE = (STATIONS_DIR / "emulated.toml").read_text()


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "bench.toml"
    p.write_text(text)
    return p


def test_options_reach_the_visa_session(tmp_path):
    text = BASE.replace("[instruments.oven]\naddress = \"emulator\"",
                        "[instruments.oven]\naddress = \"emulator\"\n"
                        "options = { query_delay = 0.001, chunk_size = 4096 }")
    with Station.open(_write(tmp_path, text)) as st:
        assert st.oven.adapter.connection.query_delay == pytest.approx(0.001)
        assert st._open_kwargs["oven"]["chunk_size"] == 4096


@pytest.mark.parametrize("opts, field", [("{ bogus = 1 }", "options.bogus"),
                                         ("{ baud_rate = \"fast\" }", "options.baud_rate"),
                                         ("{ send_end = 1 }", "options.send_end")])
def test_bad_options_are_one_line_errors(tmp_path, opts, field):
    text = BASE.replace("[instruments.oven]\naddress = \"emulator\"",
                        f"[instruments.oven]\naddress = \"emulator\"\noptions = {opts}")
    with pytest.raises(ConfigError, match=re.escape(field)):
        load_station_config(_write(tmp_path, text))


def test_visa_library_path_is_relative_to_the_station_file(tmp_path, monkeypatch):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "libvisa.so").write_bytes(b"")
    text = BASE.replace("[instruments.oven]\naddress = \"emulator\"\nbackend = \"@py\"",
                        "[instruments.oven]\naddress = \"emulator\"\n"
                        "backend = \"lib/libvisa.so@ivi\"")
    p = _write(tmp_path, text)
    monkeypatch.chdir(Path(__file__).parent)  # elsewhere: the path is the file's, not the cwd's
    cfg, _ = load_station_config(p)
    assert cfg.instruments.oven.backend == f"{(tmp_path / 'lib' / 'libvisa.so').resolve()}@ivi"
    with pytest.raises(ConfigError, match=r"instruments\.smu\.backend"):
        load_station_config(_write(tmp_path, text.replace(
            "[instruments.smu]            # Keithley 2450 (PyMeasure's driver, unmodified)\n"
            "address = \"emulator\"\nbackend = \"@py\"",
            "[instruments.smu]\naddress = \"emulator\"\nbackend = \"lib/missing.so@ivi\"")))


class _EP:
    def __init__(self, name: str, value: str, target: object):
        self.name, self.value, self._target = name, value, target

    def load(self) -> object:
        if isinstance(self._target, Exception):
            raise self._target
        return self._target


class MyChamber(BakeOven):
    pass


def test_driver_plugin_by_entry_point(monkeypatch, tmp_path):
    eps = [_EP("mychamber", "mylab.chambers:MyChamber", MyChamber),
           _EP("broken", "mylab.broken:Chamber", ImportError("No module named 'mylab'"))]
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: eps)
    cfg, _ = load_station_config(_write(tmp_path, BASE.replace(
        "[instruments.oven]\naddress = \"emulator\"",
        "[instruments.oven]\naddress = \"emulator\"\ndriver = \"plugin:mychamber\"")))
    cls = driver_class(cfg.instruments.oven, LimitedBakeOven, BakeOven, "instruments.oven.driver",
                       tmp_path / "bench.toml")
    assert issubclass(cls, MyChamber) and issubclass(cls, LimitedBakeOven)
    broken = cfg.instruments.oven.__class__(address="emulator", driver="plugin:broken")
    with pytest.raises(ConfigError, match="No module named 'mylab'"):
        driver_class(broken, LimitedBakeOven, BakeOven, "instruments.oven.driver", tmp_path)
    missing = cfg.instruments.oven.__class__(address="emulator", driver="plugin:nope")
    with pytest.raises(ConfigError, match="mychamber"):
        driver_class(missing, LimitedBakeOven, BakeOven, "instruments.oven.driver", tmp_path)

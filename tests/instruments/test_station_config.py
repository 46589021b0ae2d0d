"""Station files: every bad input is one ConfigError line (file, field, expected) and a
non-zero exit from ``cimlab station check``; nothing is imported or opened first."""

from __future__ import annotations

import logging
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from cimlab.cli.main import main
from cimlab.errors import ConfigError
from cimlab.instruments.station_config import (
    TransistorCalibration,
    is_loopback,
    load_station_config,
)
from cimlab.physics.profile import Transistor
from cimlab.transistor import square_law_gate_voltage

ROOT = Path(__file__).resolve().parents[2]
EMULATED = ROOT / "instruments" / "emulated.toml"


def _variant(tmp_path: Path, old: str, new: str) -> Path:
    text = EMULATED.read_text()
    assert re.search(old, text, flags=re.M), old
    p = tmp_path / "station.toml"
    p.write_text(re.sub(old, new, text, count=1, flags=re.M))
    return p


def _raw(tmp_path: Path, data: bytes) -> Path:
    p = tmp_path / "station.toml"
    p.write_bytes(data)
    return p


def _check_cli(path: Path, capsys) -> str:
    """``cimlab station check PATH`` fails with exit 1 and one line naming the file."""
    assert main(["station", "check", str(path)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err and "Traceback" not in err
    return err


@pytest.mark.parametrize(
    "data, field",
    [
        (np.random.default_rng(3).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
         "<encoding>"),
        ("[station]\nname = \"caf\xe9\"\n".encode("latin-1"), "<encoding>"),
        (b"a = " + b"[" * 5000 + b"]" * 5000 + b"\n", "<syntax>"),
        (b"x = {" + b"a = {" * 3000 + b"}" * 3001 + b"\n", "<syntax>"),
    ],
    ids=["random-bytes", "latin-1", "deep-arrays", "deep-tables"],
)
def test_unreadable_files_are_one_line(tmp_path, capsys, data, field):
    p = _raw(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        load_station_config(p)
    assert info.value.field == field and info.value.source == str(p)
    _check_cli(p, capsys)


def test_directory_and_oversized_file(tmp_path, capsys):
    with pytest.raises(ConfigError, match="not a directory"):
        load_station_config(tmp_path)
    big = _raw(tmp_path, b"# " + b"x" * (2 << 20) + b"\n")
    with pytest.raises(ConfigError, match="at most"):
        load_station_config(big)
    _check_cli(big, capsys)


@pytest.mark.parametrize(
    "old, new, field, expected",
    [
        (r'^backend = "@py"', 'backend = "@nonsense"', "instruments.array.backend",
         "PyVISA backend"),
        (r'^backend = "@py"', 'backend = "/no/such/libvisa.so@ivi"', "instruments.array.backend",
         "existing VISA library"),
        (r'^host = "127.0.0.1"', 'host = "0.0.0.0"', "emulator.host", "loopback"),
        (r'^host = "127.0.0.1"', 'host = "192.168.1.5"', "emulator.host", "allow_remote"),
        (r'^address = "emulator"', 'address = "emulator"\ndriver = "os.system()"',
         "instruments.array.driver", "package.module:Class"),
        (r'^address = "emulator"', 'address = "emulator"\ndriver = "../evil:Thing"',
         "instruments.array.driver", "package.module:Class"),
        (r'^address = "emulator"', 'address = "emulator"\ndriver = "just_a_module"',
         "instruments.array.driver", "package.module:Class"),
    ],
)
def test_bad_values_are_refused_before_anything_is_opened(tmp_path, capsys, old, new, field,
                                                          expected):
    p = _variant(tmp_path, old, new)
    with pytest.raises(ConfigError) as info:
        load_station_config(p)
    assert info.value.field == field and info.value.source == str(p)
    assert expected in str(info.value)
    err = _check_cli(p, capsys)
    assert field in err


def test_driver_form_is_checked_before_import(tmp_path, monkeypatch):
    """A driver string of the wrong form never reaches importlib."""
    import importlib

    imported = []
    monkeypatch.setattr(importlib, "import_module", lambda name, *a: imported.append(name))
    p = _variant(tmp_path, r'^address = "emulator"',
                 'address = "emulator"\ndriver = "os;print(1):X"')
    with pytest.raises(ConfigError, match=r"package\.module:Class"):
        load_station_config(p)
    assert imported == []


def test_driver_import_error_is_shown(tmp_path, capsys):
    """An importable-looking driver whose module fails to import: the real error is shown."""
    pkg = tmp_path / "labdrivers_x1"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("import a_dependency_that_is_not_installed\n")
    sys.path.insert(0, str(tmp_path))
    try:
        p = _variant(tmp_path, r'^address = "emulator"',
                     'address = "emulator"\ndriver = "labdrivers_x1:Board"')
        err = _check_cli(p, capsys)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("labdrivers_x1", None)
    assert "instruments.array.driver" in err
    assert "ModuleNotFoundError" in err and "a_dependency_that_is_not_installed" in err


def test_remote_host_needs_allow_remote_and_warns(tmp_path, caplog):
    p = _variant(tmp_path, r'^host = "127.0.0.1"', 'host = "0.0.0.0"\nallow_remote = true')
    with caplog.at_level(logging.WARNING, logger="cimlab.instruments.station_config"):
        cfg, _ = load_station_config(p)
    assert cfg.emulator.allow_remote and cfg.emulator.host == "0.0.0.0"
    assert any("not loopback" in r.getMessage() for r in caplog.records)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.org")


def test_the_shipped_station_files_load():
    for name in ("emulated.toml", "example-real-bench.toml"):
        load_station_config(ROOT / "instruments" / name)


def test_one_gate_curve_inversion_refuses_out_of_range_targets():
    """The station's calibration and the emulated chip's transistor invert the gate curve
    with the same function: equal results, and a negative or non-finite target is refused
    (never clamped) by both."""
    cal = TransistorCalibration(k_a_per_v2=2e-4, v_th_v=0.5)
    tr = Transistor(k_a_per_v2=2e-4, v_th=0.5)
    for icc in (20e-6, 55e-6, 600e-6):
        assert cal.v_gate_for(icc) == tr.v_gate_for_icc(icc) == square_law_gate_voltage(
            icc, 2e-4, 0.5)
        assert cal.icc(cal.v_gate_for(icc)) == pytest.approx(icc, rel=1e-12)
    for bad in (-1e-6, math.nan, math.inf):
        with pytest.raises(ValueError, match="compliance current"):
            cal.v_gate_for(bad)
        with pytest.raises(ValueError, match="compliance current"):
            tr.v_gate_for_icc(np.array([10e-6, bad]))


def test_the_station_layer_never_imports_the_physics():
    """The station's calibration shares the gate curve with the emulated chip through the
    layer-0 module cimlab.transistor, not by importing the emulator's physics."""
    import ast

    import cimlab.instruments as pkg

    folder = Path(pkg.__file__).parent
    for name in ("station.py", "station_config.py", "limits.py", "limited_drivers.py"):
        tree = ast.parse((folder / name).read_text())
        mods = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        mods |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not {m for m in mods if m.startswith("cimlab.physics")}, name

"""Nothing bypasses VISA: drivers and station never import the physics or the emulator, and
the physics only ever runs on the emulator's server threads."""

from __future__ import annotations

import ast
import threading
from pathlib import Path

import numpy as np

import cimlab.instruments.drivers as drivers_pkg
import cimlab.instruments.station as station_mod

FORBIDDEN = ("cimlab.physics", "cimlab.instruments.emulator")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_drivers_never_import_physics_or_emulator():
    files = list(Path(drivers_pkg.__file__).parent.glob("*.py"))
    assert len(files) >= 4
    for f in files:
        bad = {m for m in _imports(f) if m.startswith(FORBIDDEN)}
        assert not bad, f"{f.name} imports {bad}"


def test_station_imports_emulator_only_to_start_it():
    src = Path(station_mod.__file__)
    mods = _imports(src)
    assert not any(m.startswith("cimlab.physics") for m in mods)
    # the one emulator import starts an in-process bench; no instrument is reached through it
    text = src.read_text()
    assert text.count("cimlab.instruments.emulator") == 1
    assert "from cimlab.instruments.emulator import EmulatedBench" in text


def test_physics_runs_only_on_server_threads(bench, array, smu):
    chip = bench.chip
    calls: list[str] = []
    for name in ("read", "pulse", "mvm", "cell_current"):
        original = getattr(chip, name)

        def spy(*a, _orig=original, **k):
            calls.append(threading.current_thread().name)
            return _orig(*a, **k)

        setattr(chip, name, spy)
    array.enable()
    array.read(np.arange(10))
    array.pulse_set(np.arange(4), 1.0, 1.0, 1e-6)
    array.mvm(0, np.zeros(256))
    array.select(3)
    smu.apply_voltage(compliance_current=1e-3)
    smu.enable_source()
    _ = smu.current
    smu.disable_source()
    assert len(calls) == 4
    main = threading.main_thread().name
    assert all(name != main for name in calls)

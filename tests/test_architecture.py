"""The layering of docs/architecture.md, checked on the source: a lower layer never imports a
higher one, and the bench side never imports torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "cimlab"

#: package prefix -> layer number (docs/architecture.md); longest prefix wins.
LAYERS = {
    "cimlab.errors": 0,
    "cimlab.params": 0,
    "cimlab.stats": 0,
    "cimlab.units": 0,
    "cimlab.parallel": 0,
    "cimlab.transistor": 0,
    "cimlab.physics": 1,
    "cimlab.instruments.emulator": 2,
    "cimlab.instruments.drivers": 3,
    "cimlab.instruments.station": 4,
    "cimlab.instruments": 4,
    "cimlab.store": 5,
    "cimlab.procedures": 6,
    "cimlab.models": 7,
    "cimlab.sim": 8,
    "cimlab.mitigation": 9,
    "cimlab.demo": 10,
    "cimlab.cli": 10,
    "cimlab.watch": 10,
}


def layer_of(module: str) -> int | None:
    if module == "cimlab":
        return 0  # the package itself holds only its version
    best = None
    for prefix, layer in LAYERS.items():
        if (module == prefix or module.startswith(prefix + ".")) and (
            best is None or len(prefix) > len(best[0])
        ):
            best = (prefix, layer)
    return None if best is None else best[1]


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out: list[str] = []
    pkg = module_name(path)
    if path.name != "__init__.py":
        pkg = pkg.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.append(mod)
            out.extend(f"{mod}.{alias.name}" for alias in node.names)
    return out


SOURCES = sorted(ROOT.rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT.parent)))
def test_no_upward_imports(path: Path):
    me = module_name(path)
    mine = layer_of(me)
    assert mine is not None, f"{me} is in no layer of docs/architecture.md"
    bad = []
    for imp in imports_of(path):
        if not imp.startswith("cimlab"):
            continue
        theirs = layer_of(imp)
        if theirs is not None and theirs > mine:
            bad.append(f"{imp} (layer {theirs})")
    assert not bad, f"{me} (layer {mine}) imports higher layers: {sorted(set(bad))}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT.parent)))
def test_bench_side_never_imports_torch_at_module_level(path: Path):
    """Layers 0-7 (bench, store, procedures, models) keep torch out of their import graph."""
    mine = layer_of(module_name(path))
    if mine is None or mine > 7:
        return
    tree = ast.parse(path.read_text())
    for node in tree.body:  # module level only: a lazy import inside a function is allowed
        if isinstance(node, ast.Import):
            assert all(not a.name.startswith("torch") for a in node.names), path
        if isinstance(node, ast.ImportFrom):
            assert not (node.module or "").startswith("torch"), path


@pytest.mark.parametrize(
    "code",
    [
        "import cimlab",
        "import cimlab.instruments, cimlab.store, cimlab.procedures, cimlab.models",
        "from cimlab.cli.main import build_parser; build_parser()",
    ],
)
def test_import_does_not_load_torch(code: str):
    probe = f"{code}\nimport sys\nprint('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip().endswith("False"), f"'{code}' imported torch"


SIM_SOURCES = sorted((ROOT / "sim").rglob("*.py"))


@pytest.mark.parametrize("path", SIM_SOURCES, ids=lambda p: str(p.relative_to(ROOT.parent)))
def test_simulator_never_imports_the_emulator_physics(path: Path):
    """The simulator is driven by fitted device models and by what the bench answers, never
    by the emulated chip's ground truth (cimlab.physics), not even lazily in a function."""
    bad = [imp for imp in imports_of(path)
           if imp == "cimlab.physics" or imp.startswith("cimlab.physics.")]
    assert not bad, f"{module_name(path)} imports the emulator physics: {sorted(set(bad))}"

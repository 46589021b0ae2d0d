"""Bundled characterization plans (copies of the repository's plans/*.toml, kept equal by
tests/instruments/test_discrete_bundled.py): ``bundled_plan("quick")``."""

from __future__ import annotations

from pathlib import Path

PLANS_DIR = Path(__file__).resolve().parent


def bundled_plan(name: str) -> Path:
    """Path of the bundled plan ``name`` (``"quick"``, ``"full"``)."""
    p = PLANS_DIR / f"{name}.toml"
    if not p.is_file():
        names = sorted(x.stem for x in PLANS_DIR.glob("*.toml"))
        raise FileNotFoundError(f"no bundled plan {name!r}; bundled: {names}")
    return p

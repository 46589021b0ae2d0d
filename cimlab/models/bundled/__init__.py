"""Bundled device model (a copy of the repository's models/default.json, kept equal by
tests/instruments/test_discrete_bundled.py)."""

from pathlib import Path

DEFAULT_MODEL = Path(__file__).resolve().parent / "default.json"

"""The fuzz/fault suite's ``tally`` fixture (tests/fuzz/tally.py); its summary is printed by
tests/conftest.py, which also sums the workers' tallies under pytest-xdist."""

from __future__ import annotations

import pytest

from tests.fuzz.tally import TALLY, Tally


@pytest.fixture(scope="session")
def tally() -> Tally:
    return TALLY

"""Shared fixtures: a small emulated chip (2 tiles) served on ephemeral ports."""

from __future__ import annotations

import dataclasses

import pytest

from cimlab.instruments.drivers import ArrayController, BakeOven, VirtualClock, open_keithley2450
from cimlab.instruments.emulator import EmulatedBench

SEED = 7


@pytest.fixture(scope="session")
def small_profile():
    from cimlab.physics import load_profile
    from cimlab.physics.profile import Geometry

    return dataclasses.replace(load_profile("default"), geometry=Geometry(n_tiles=2))


@pytest.fixture
def bench(small_profile):
    with EmulatedBench(small_profile, SEED) as b:
        yield b


@pytest.fixture
def array(bench):
    arr = ArrayController.open(bench.addresses["array"], timeout_s=5)
    yield arr
    arr.adapter.close()


@pytest.fixture
def smu(bench):
    k = open_keithley2450(bench.addresses["smu"], timeout_s=5)
    yield k
    k.adapter.close()


@pytest.fixture
def oven(bench):
    o = BakeOven.open(bench.addresses["oven"], timeout_s=5)
    yield o
    o.adapter.close()


@pytest.fixture
def clock(bench):
    c = VirtualClock.open(bench.addresses["clock"], timeout_s=5)
    yield c
    c.adapter.close()

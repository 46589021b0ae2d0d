from dataclasses import dataclass

import pytest

from cimlab.errors import ConfigError
from cimlab.params import check, from_dict, param, to_dict, unit_of


@dataclass(frozen=True)
class Inner:
    r_ohm: float = param(2.0, unit="ohm", lo=0.0, doc="wire resistance")

    def __post_init__(self):
        check(self)


@dataclass(frozen=True)
class Outer:
    g_max: float = param(40e-6, unit="S", lo=0.0, lo_open=True, hi=1e-3)
    mode: str = param("pair", choices=("pair", "single"))
    levels: int = param(16, unit="1", lo=2, hi=1024)
    inner: Inner = param(default_factory=Inner)
    temps: tuple[float, ...] = param((300.0,), unit="K", lo=0.0)

    def __post_init__(self):
        check(self)


def test_round_trip_and_units():
    o = from_dict(Outer, {"g_max": 3e-5, "inner": {"r_ohm": 1.5}, "temps": [300, 400]})
    assert o.inner.r_ohm == 1.5 and o.temps == (300.0, 400.0)
    assert from_dict(Outer, to_dict(o)) == o
    assert unit_of(Outer, "g_max") == "S"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"g_max": 0.0}, "g_max"),
        ({"g_max": 2e-3}, "g_max"),
        ({"g_max": "big"}, "g_max"),
        ({"mode": "triple"}, "mode"),
        ({"levels": 3.5}, "levels"),
        ({"inner": {"r_ohm": -1}}, "inner.r_ohm"),
        ({"inner": {"bogus": 1}}, "inner.bogus"),
        ({"temps": [300, -1]}, "temps"),
        ({"nonsense": 1}, "nonsense"),
    ],
)
def test_bad_values_name_file_and_field(data, field):
    with pytest.raises(ConfigError) as exc:
        from_dict(Outer, data, source="chip.toml")
    assert exc.value.field == field
    assert "chip.toml" in str(exc.value)


def test_never_clamps_on_direct_construction():
    with pytest.raises(ConfigError):
        Outer(g_max=-1.0)


def test_a_conductance_key_spelled_the_old_way_names_its_new_spelling(tmp_path):
    """Plan files written before conductances were named *_siemens get one line saying so."""
    from cimlab.procedures.plan import load_plan

    plan = tmp_path / "old.toml"
    plan.write_text('[plan]\nname = "old"\n\n[[experiment]]\nkind = "programming_error"\n'
                    'cells = {tiles = [0], count = 64}\n'
                    'levels = {levels = 4, g_min_s = 2e-6, g_max_s = 40e-6}\n')
    with pytest.raises(ConfigError, match=r"the key 'g_m(in|ax)_siemens' \(conductances"):
        load_plan(plan)

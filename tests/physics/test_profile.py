from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from cimlab.errors import ConfigError
from cimlab.params import to_dict
from cimlab.physics import BUNDLED_PROFILES, ChipProfile, load_profile


def test_default_file_equals_field_defaults():
    assert load_profile("default") == ChipProfile()


def _flat(x, path=""):
    """{dotted path: leaf} of nested dicts and lists (lists indexed by position)."""
    if isinstance(x, dict):
        return {k: v for key, val in x.items() for k, v in _flat(val, f"{path}{key}.").items()}
    if isinstance(x, (list, tuple)) and any(isinstance(v, (dict, list, tuple)) for v in x):
        return {k: v for i, val in enumerate(x) for k, v in _flat(val, f"{path}{i}.").items()}
    return {path[:-1]: list(x) if isinstance(x, tuple) else x}


@pytest.mark.parametrize("name", BUNDLED_PROFILES)
def test_bundled_profiles_load_exactly_as_written(name):
    """Every value a bundled profile file sets is the loaded value, and every field it leaves
    out is the profile.py default: nothing is dropped, renamed or defaulted silently."""
    from cimlab.params import load_toml
    from cimlab.physics.profile import profile_path

    written = _flat(load_toml(profile_path(name)))
    loaded = _flat(to_dict(load_profile(name)))
    default = _flat(to_dict(ChipProfile()))
    assert set(written) <= set(loaded), sorted(set(written) - set(loaded))
    assert loaded["name"] == name
    for key, value in loaded.items():
        want = written.get(key, default.get(key))
        assert value == want, (key, value, want)


def test_load_by_path_round_trip(tmp_path: Path):
    import tomli_w

    p = tmp_path / "mine.toml"
    data = to_dict(ChipProfile())
    data["name"] = "mine"
    data["retention"]["ea_ev"] = 1.7
    p.write_bytes(tomli_w.dumps(data).encode())
    prof = load_profile(p)
    assert prof.name == "mine" and prof.retention.ea_ev == 1.7
    assert prof == replace(ChipProfile(), name="mine",
                           retention=replace(ChipProfile().retention, ea_ev=1.7))


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("[window]\ng_min = -1e-6\n", "window.g_min"),
        ("[window]\ng_max = 'big'\n", "window.g_max"),
        ("[retention]\nea_ev = 9.0\n", "retention.ea_ev"),
        ("[bogus]\nx = 1\n", "bogus"),
        ("[read]\nsigma_floor = 1e-7\nnoise = 2\n", "read.noise"),
        ("[geometry]\nrows = 2.5\n", "geometry.rows"),
        ("[[conditions]]\nname = 'x'\nicc_a = -1.0\n", "conditions[0].icc_a"),
        ("[window]\ng_min = 5e-5\n", "g_max"),
        ("name = = 3\n", "<syntax>"),
    ],
)
def test_bad_profile_names_file_and_field(tmp_path: Path, text: str, field: str):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(ConfigError) as exc:
        load_profile(p)
    assert exc.value.field.endswith(field)
    assert "bad.toml" in str(exc.value)


def test_missing_profile_file(tmp_path: Path):
    with pytest.raises(ConfigError) as exc:
        load_profile(tmp_path / "nope.toml")
    assert "default" in exc.value.expected and "nope.toml" in str(exc.value)


def test_transistor_icc_and_inverse():
    tr = ChipProfile().transistor
    for icc in (20e-6, 55e-6, 600e-6):
        vg = tr.v_gate_for_icc(icc)
        assert tr.icc(vg) == pytest.approx(icc, rel=1e-12)
    assert tr.icc(tr.v_th - 0.1) == 0.0
    vg = np.linspace(0, 3, 7)
    assert np.all(np.diff(tr.icc(vg)) >= 0)
    with pytest.raises(ValueError):
        tr.v_gate_for_icc(-1e-6)


def test_condition_lookup():
    p = ChipProfile()
    assert p.condition("strong").icc_a == 55e-6
    with pytest.raises(KeyError, match="very_strong"):
        p.condition("medium")

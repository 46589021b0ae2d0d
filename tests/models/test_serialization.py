"""JSON export / import: round trip, golden file, strict errors naming file and field."""

import copy
import dataclasses
import json
from pathlib import Path

import pytest

from cimlab.errors import ConfigError
from cimlab.models import DeviceModel
from cimlab.models import serialization as ser

GOLDEN = Path(__file__).parent / "golden"


def test_round_trip_default(tmp_path):
    dm = DeviceModel.default()
    p = dm.save(tmp_path / "m.json")
    assert DeviceModel.load(p) == dm
    doc = json.loads(p.read_text())
    assert doc["schema_version"] == ser.SCHEMA_VERSION
    assert doc["effects"]["read_noise"]["parameters"]["s1"]["unit"] == "S"
    assert set(doc["effects"]["read_noise"]["parameters"]["s1"]) == {
        "value", "stderr", "unit", "ci95"
    }


def test_shipped_default_json_is_current():
    p = Path(__file__).parents[2] / "models" / "default.json"
    assert DeviceModel.load(p) == DeviceModel.default()


@pytest.mark.parametrize("path", sorted(GOLDEN.glob("*.json")), ids=lambda p: p.name)
def test_golden_files_load(path):
    dm = DeviceModel.load(path)
    # re-export gives the current schema and loads back to the same model
    assert ser.from_document(json.loads(ser.dumps(dm))) == dm


def _corrupt(tmp_path, edit):
    doc = DeviceModel.default().to_json_dict()
    doc = copy.deepcopy(doc)
    edit(doc)
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(doc))
    return p


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda d: d["effects"]["window"]["parameters"].update(g_mn={"value": 1, "unit": "S"}),
         "effects.window.parameters.g_mn"),
        (lambda d: d["effects"]["read_noise"]["parameters"]["s1"].update(unit="uS"),
         "effects.read_noise.parameters.s1.unit"),
        (lambda d: d["effects"]["relaxation"]["parameters"]["t0_s"].update(value=-1.0),
         "effects.relaxation.parameters.t0_s.value"),
        (lambda d: d["effects"]["window"]["parameters"]["g_max"].update(value=1e-6),
         "effects.window.parameters.g_max.value"),
        (lambda d: d["effects"]["programming"]["settings"].update(form="cubic"),
         "effects.programming.settings.form"),
        (lambda d: d["effects"]["binary"]["conditions"][1]["parameters"]["ber_1t1r"].update(
            value=1.5), "effects.binary.conditions[1].parameters.ber_1t1r.value"),
        (lambda d: d["effects"]["stuck"].update(extra=1), "effects.stuck.extra"),
        (lambda d: d.update(colour="blue"), "colour"),
        (lambda d: d["provenance"].update(source="guess"), "provenance.source"),
        (lambda d: d["effects"]["wire"]["parameters"]["r_segment_ohm"].update(stderr=0.1),
         "effects.wire.parameters.r_segment_ohm.stderr"),
        (lambda d: d.update(schema_version=99), "schema_version"),
        (lambda d: d.update(schema_version=1), "schema_version"),
    ],
)
def test_corrupted_files_name_file_and_field(tmp_path, edit, field):
    p = _corrupt(tmp_path, edit)
    with pytest.raises(ConfigError) as exc:
        DeviceModel.load(p)
    assert exc.value.field == field
    assert str(p) in str(exc.value)


def test_truncated_json(tmp_path):
    p = tmp_path / "trunc.json"
    p.write_text(ser.dumps(DeviceModel.default())[:500])
    with pytest.raises(ConfigError) as exc:
        DeviceModel.load(p)
    assert exc.value.field == "<syntax>" and "line" in str(exc.value)
    with pytest.raises(ConfigError, match="existing"):
        DeviceModel.load(tmp_path / "missing.json")


def test_migration_machinery(monkeypatch):
    """Registered migrations are applied in order (v1 -> v2 -> ... -> v5 here)."""
    doc = DeviceModel.default().to_json_dict()
    old = copy.deepcopy(doc)
    old["schema_version"] = 1
    del old["effects"]["retention"]["parameters"]["t_fail_k"]  # added by v3
    del old["effects"]["read_noise_spectrum"]  # added by v4 (white only, as the default)
    old["effects"]["wire"]["parameters"]["r_ohm"] = old["effects"]["wire"]["parameters"].pop(
        "r_segment_ohm"
    )

    def v1_to_v2(d):
        d = copy.deepcopy(d)
        w = d["effects"]["wire"]["parameters"]
        w["r_segment_ohm"] = w.pop("r_ohm")
        return d

    monkeypatch.setattr(ser, "MIGRATIONS", {1: v1_to_v2, 2: ser.MIGRATIONS[2],
                                            3: ser.MIGRATIONS[3], 4: ser.MIGRATIONS[4]})
    monkeypatch.setattr(ser, "OLDEST_SUPPORTED", 1)
    got, default = ser.from_document(old), DeviceModel.default()
    spectrum = got.read_noise_spectrum  # v4 adds it as white only, saying so in its source
    assert spectrum == dataclasses.replace(default.read_noise_spectrum, source=spectrum.source)
    assert dataclasses.replace(got, read_noise_spectrum=default.read_noise_spectrum) == default


# ---------------------------------------------------------------- schema 3, strict loading
@pytest.mark.parametrize("path", sorted(GOLDEN.glob("v2_*.json")), ids=lambda p: p.name)
def test_v2_migrates_to_current(path):
    doc = json.loads(path.read_text())
    assert doc["schema_version"] == 2
    assert "t_fail_k" not in doc["effects"]["retention"]["parameters"]
    dm = DeviceModel.load(path)
    assert dm.retention.t_fail_k == 0.0
    out = json.loads(ser.dumps(dm))
    assert out["schema_version"] == ser.SCHEMA_VERSION == 5
    assert out["effects"]["retention"]["parameters"]["t_fail_k"]["value"] == 0.0
    # everything else carried over unchanged
    assert dm.relaxation == ser.from_document(doc).relaxation


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda d: d["effects"].pop("relaxation"), "effects.relaxation"),
        (lambda d: d["effects"]["relaxation"]["parameters"].pop("t0_s"),
         "effects.relaxation.parameters.t0_s"),
        (lambda d: d["effects"]["read_noise"]["settings"].pop("form"),
         "effects.read_noise.settings.form"),
        (lambda d: d["effects"]["stuck"].pop("source"), "effects.stuck.source"),
        (lambda d: d["effects"].pop("binary"), "effects.binary"),
    ],
)
def test_missing_piece_is_an_error_unless_asked(tmp_path, edit, field):
    p = _corrupt(tmp_path, edit)
    with pytest.raises(ConfigError) as ei:
        DeviceModel.load(p)
    assert ei.value.field == field and "fill_defaults" in str(ei.value)
    with pytest.warns(ser.FilledDefaultsWarning, match=field.replace(".", r"\.")):
        dm = DeviceModel.load(p, fill_defaults=True)
    assert field in dm.provenance.notes
    # what was filled is the literature default; the rest is the file's
    assert dm.replace(provenance=DeviceModel.default().provenance) == DeviceModel.default()


def test_deep_nesting_is_one_line(tmp_path):
    p = tmp_path / "deep.json"
    p.write_text('{"effects": ' + "[" * 100000 + "]" * 100000 + "}")
    with pytest.raises(ConfigError) as ei:
        DeviceModel.load(p)
    assert "nesting" in str(ei.value) and "\n" not in str(ei.value)
    deep = DeviceModel.default().to_json_dict()
    x = deep["effects"]["window"]["fit"] = {"method": "m", "n": 1, "gof": {}}
    for _ in range(20):
        x["gof"] = {"a": {}}
        x = x["gof"]
    with pytest.raises(ConfigError, match="nesting"):
        ser.from_document(deep)


def test_huge_value_is_not_echoed(tmp_path):
    big = list(range(300_000))
    p = _corrupt(tmp_path, lambda d: d["effects"]["window"]["parameters"]["g_max"].update(
        value=big))
    with pytest.raises(ConfigError) as ei:
        DeviceModel.load(p)
    msg = str(ei.value)
    assert "effects.window.parameters.g_max" in msg and len(msg) < 400, msg[:500]
    s = _corrupt(tmp_path, lambda d: d["effects"]["window"]["settings"].update(
        source="x" * 10_000))
    with pytest.raises(ConfigError) as ei:
        DeviceModel.load(s)
    assert len(str(ei.value)) < 400


def test_oversized_file_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(ser, "MAX_BYTES", 1000)
    p = DeviceModel.default().save(tmp_path / "m.json")
    with pytest.raises(ConfigError, match="at most 1000 bytes"):
        DeviceModel.load(p)
    with pytest.raises(ConfigError, match="directory"):
        DeviceModel.load(tmp_path)


def test_schema3_file_gains_a_white_only_read_noise_spectrum():
    """A schema-3 model never measured 1/f noise: migrating adds the spectrum with no 1/f part
    and the white part of the file's own read-noise law."""
    doc = copy.deepcopy(DeviceModel.default().to_json_dict())
    doc["schema_version"] = 3
    del doc["effects"]["read_noise_spectrum"]
    doc["effects"]["read_noise"]["parameters"]["s0"]["value"] = 1.5e-7
    dm = ser.from_document(doc)
    spec = dm.read_noise_spectrum
    assert spec.a_peak == 0.0
    assert spec.s0 == 1.5e-7
    assert spec.s1 == dm.read_noise.s1
    assert "schema 3" in spec.source


def test_schema4_conductance_names_migrate_to_siemens():
    """Schema 4 spelled conductances ``*_s`` (also seconds): a v4 file loads with every such key
    renamed ``*_siemens`` and equals the current default model it was written from."""
    path = GOLDEN / "v4_default.json"
    doc = json.loads(path.read_text())
    assert doc["schema_version"] == 4
    assert "g_on_s" in doc["effects"]["stuck"]["parameters"]
    assert DeviceModel.load(path) == DeviceModel.default()
    out = json.loads(ser.dumps(DeviceModel.load(path)))
    assert "g_on_siemens" in out["effects"]["stuck"]["parameters"]
    assert "g_on_s" not in out["effects"]["stuck"]["parameters"]

"""JSON export / import: round trip, golden file, strict errors naming file and field."""

import copy
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
    """A registered migration is applied in order (the table is empty for schema 2)."""
    doc = DeviceModel.default().to_json_dict()
    old = copy.deepcopy(doc)
    old["schema_version"] = 1
    old["effects"]["wire"]["parameters"]["r_ohm"] = old["effects"]["wire"]["parameters"].pop(
        "r_segment_ohm"
    )

    def v1_to_v2(d):
        d = copy.deepcopy(d)
        w = d["effects"]["wire"]["parameters"]
        w["r_segment_ohm"] = w.pop("r_ohm")
        return d

    monkeypatch.setattr(ser, "MIGRATIONS", {1: v1_to_v2})
    monkeypatch.setattr(ser, "OLDEST_SUPPORTED", 1)
    assert ser.from_document(old) == DeviceModel.default()

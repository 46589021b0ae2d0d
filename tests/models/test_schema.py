"""The published JSON Schema of device-model files: generated from the serialization code,
equal to the committed copy, and every shipped model validates (a broken one does not)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from cimlab.models import DeviceModel
from cimlab.models.schema import device_model_schema, schema_text
from cimlab.models.serialization import to_document

jsonschema = pytest.importorskip("jsonschema")
ROOT = Path(__file__).resolve().parents[2]
PUBLISHED = ROOT / "docs" / "schema" / "device-model.schema.json"
SHIPPED = sorted((ROOT / "models").glob("*.json"))


@pytest.fixture(scope="module")
def validator():
    schema = device_model_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_published_copy_is_current():
    assert PUBLISHED.read_text() == schema_text(), (
        "regenerate: cimlab model-export default --to json-schema --out docs/schema")


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_model_validates(validator, path):
    errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(
        json.loads(path.read_text()))]
    assert not errors, errors[:5]


def test_a_written_model_validates(validator):
    assert not list(validator.iter_errors(to_document(DeviceModel.default())))


@pytest.mark.parametrize("edit, where", [
    (lambda d: d["effects"]["read_noise"]["parameters"]["s1"].update(unit="uS"), "unit"),
    (lambda d: d["effects"]["window"]["parameters"]["g_max"].update(value=-1.0), "value"),
    (lambda d: d["effects"]["relaxation"]["settings"].update(form="cubic"), "form"),
    (lambda d: d["effects"]["programming"].update(colour="red"), "programming"),
    (lambda d: d.update(kind="something.else"), "kind"),
    (lambda d: d["effects"]["binary"]["conditions"][0]["parameters"].pop("icc_a").clear()
     or d["effects"]["binary"]["conditions"][0]["parameters"].update(icc_a={"unit": "A"}),
     "icc_a"),
])
def test_broken_models_do_not_validate(validator, edit, where):
    doc = copy.deepcopy(json.loads(SHIPPED[0].read_text()))
    edit(doc)
    errors = list(validator.iter_errors(doc))
    assert errors and any(where in (e.json_path + e.message) for e in errors), [
        e.message for e in errors]


def test_cli_writes_the_schema(tmp_path, capsys):
    from cimlab.cli.main import main

    assert main(["model-export", "default", "--to", "json-schema", "--out", str(tmp_path)]) == 0
    written = tmp_path / "device-model.schema.json"
    assert str(written) in capsys.readouterr().out
    assert written.read_text() == PUBLISHED.read_text()

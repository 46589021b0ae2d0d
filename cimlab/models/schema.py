"""The JSON Schema (draft 2020-12) of a device-model file, generated from the serialization
code: every effect, setting and parameter the strict loader accepts, with units, bounds and
choices taken from the effect dataclasses' ``cimlab.params.param`` declarations.

The published copy is ``docs/schema/device-model.schema.json`` (kept equal to
:func:`device_model_schema` by tests/models/test_schema.py); every model file under
``models/`` validates against it. The schema checks structure, units and bounds; the loader
(:func:`cimlab.models.serialization.load`) also checks relations between fields (a model form's
unused coefficients are zero, a stderr needs a fit block, condition names are unique).
"""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path
from typing import Any

from cimlab.models.device_model import Provenance
from cimlab.models.effects import BinaryCondition, ProgrammingError
from cimlab.models.params import FitInfo
from cimlab.models.serialization import KIND, SCHEMA_VERSION, SIMPLE_EFFECTS

#: ``$id`` of the schema (the path of the published copy in the repository).
SCHEMA_ID = "https://cimlab.invalid/docs/schema/device-model.schema.json"
_NUMBER = {"type": "number"}
_NULLABLE_NUMBER = {"type": ["number", "null"]}


def _json_type(tp: Any) -> dict[str, Any]:
    origin = typing.get_origin(tp)
    if tp is int:
        return {"type": "integer"}
    if tp is float:
        return {"type": "number"}
    if tp is str:
        return {"type": "string"}
    if origin in (tuple, list):
        (inner, *_rest) = typing.get_args(tp) or (str,)
        return {"type": "array", "items": _json_type(inner)}
    return {}


def _value_schema(f: dataclasses.Field, tp: Any) -> dict[str, Any]:
    out = dict(_json_type(tp)) or dict(_NUMBER)
    lo, hi = f.metadata.get("lo"), f.metadata.get("hi")
    if lo is not None:
        out["exclusiveMinimum" if f.metadata.get("lo_open") else "minimum"] = lo
    if hi is not None:
        out["maximum"] = hi
    return out


def _effect_schema(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    params: dict[str, Any] = {}
    settings: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name == "fit" or not f.metadata or f.name == "source":
            continue
        tp = hints[f.name]
        if tp in (int, float):
            params[f.name] = {
                "type": "object",
                "description": f"{f.metadata.get('doc', '')} [{f.metadata.get('unit', '')}]",
                "properties": {
                    "value": _value_schema(f, tp),
                    "unit": {"const": f.metadata.get("unit", "")},
                    "stderr": {"type": ["number", "null"], "minimum": 0},
                    "ci95": {"oneOf": [{"type": "null"}, {"type": "array", "items": _NUMBER,
                                                          "minItems": 2, "maxItems": 2}]},
                },
                "required": ["value", "unit"],
                "additionalProperties": False,
            }
        else:
            s: dict[str, Any] = {"type": "string", "description": f.metadata.get("doc", "")}
            if f.metadata.get("choices"):
                s["enum"] = list(f.metadata["choices"])
            settings[f.name] = s
    return {
        "type": "object",
        "description": (cls.__doc__ or "").strip().splitlines()[0],
        "properties": {
            "source": {"type": "string"},
            "settings": {"type": "object", "properties": settings,
                         "additionalProperties": False},
            "parameters": {"type": "object", "properties": params,
                           "additionalProperties": False},
            "fit": {"oneOf": [{"type": "null"}, {"$ref": "#/$defs/fit"}]},
        },
        "additionalProperties": False,
    }


def _fit_schema() -> dict[str, Any]:
    hints = typing.get_type_hints(FitInfo)
    props: dict[str, Any] = {}
    for f in dataclasses.fields(FitInfo):
        if f.name in ("stderr", "ci95"):
            continue  # written next to each parameter
        tp = hints[f.name]
        if f.name in ("aic", "bic"):
            props[f.name] = _NULLABLE_NUMBER
        elif f.name == "gof":
            props[f.name] = {"type": "object", "additionalProperties": _NULLABLE_NUMBER}
        elif f.name == "candidates":
            props[f.name] = {"type": "object", "additionalProperties": {
                "type": "object", "additionalProperties": _NULLABLE_NUMBER}}
        elif f.name == "covariance":
            props[f.name] = {"type": ["object", "null"]}
        else:
            props[f.name] = _json_type(tp)
    return {"type": "object", "description": "how the effect was fitted",
            "properties": props, "required": ["method", "n"], "additionalProperties": False}


def _provenance_schema() -> dict[str, Any]:
    hints = typing.get_type_hints(Provenance)
    props = {}
    for f in dataclasses.fields(Provenance):
        s = _json_type(hints[f.name])
        if f.metadata.get("choices"):
            s = {**s, "enum": list(f.metadata["choices"])}
        props[f.name] = {**s, "description": f.metadata.get("doc", "")}
    return {"type": "object", "properties": props, "additionalProperties": False}


def device_model_schema() -> dict[str, Any]:
    """The JSON Schema of a device-model file of the current ``schema_version``."""
    effects = {name: {"$ref": f"#/$defs/{cls.__name__}"} for name, cls in SIMPLE_EFFECTS.items()}
    effects["programming_other"] = {"type": "array",
                                    "items": {"$ref": f"#/$defs/{ProgrammingError.__name__}"}}
    effects["binary"] = {
        "type": "object",
        "properties": {"source": {"type": "string"},
                       "fit": {"oneOf": [{"type": "null"}, {"$ref": "#/$defs/fit"}]},
                       "conditions": {"type": "array",
                                      "items": {"$ref": f"#/$defs/{BinaryCondition.__name__}"}}},
        "additionalProperties": False,
    }
    defs = {cls.__name__: _effect_schema(cls)
            for cls in (*SIMPLE_EFFECTS.values(), BinaryCondition)}
    defs["fit"] = _fit_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "cimlab device model",
        "description": "A fitted statistical model of a ReRAM array, as written by cimlab "
        "(cimlab fit / DeviceModel.save). SI units; each parameter carries its value, unit, "
        "standard error and 95% confidence interval. Generated by cimlab.models.schema.",
        "type": "object",
        "properties": {
            "schema_version": {"const": SCHEMA_VERSION},
            "kind": {"const": KIND},
            "name": {"type": "string"},
            "provenance": _provenance_schema(),
            "effects": {"type": "object", "properties": effects, "additionalProperties": False},
        },
        "required": ["schema_version", "kind", "effects"],
        "additionalProperties": False,
        "$defs": defs,
    }


def schema_text() -> str:
    """The schema as the text of the published file (indented, trailing newline)."""
    return json.dumps(device_model_schema(), indent=2) + "\n"


def write_schema(path: str | Path) -> Path:
    """Write the schema to ``path``; returns it."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(schema_text(), encoding="utf-8")
    return p

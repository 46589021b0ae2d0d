"""JSON export / import of :class:`~cimlab.models.DeviceModel`: schema, validation, migrations.

Document layout (``schema_version`` 3, SI units)::

    {
      "schema_version": 3,
      "kind": "cimlab.device_model",
      "name": "chip01",
      "provenance": {"source": "fit", "store_path": ..., "data_sha256": ..., "run_uids": [...],
                     "cimlab_version": ..., "created_utc": ..., "notes": ...},
      "effects": {
        "<effect>": {
          "source": "fit" | "<citation>",
          "settings": {"form": "linear", ...},              # string fields
          "parameters": {"<name>": {"value": 1.2e-06, "stderr": 3e-08, "unit": "S",
                                     "ci95": [1.14e-06, 1.26e-06]}, ...},
          "fit": null | {"method", "n", "form", "aic", "bic", "gof", "candidates",
                         "covariance", "notes"}
        },
        "programming_other": [<effect>, ...],
        "binary": {"source", "fit", "conditions": [<effect>, ...]}
      }
    }

Loading is strict: every unknown key, a unit other than the declared one, a value outside
its bounds, a stderr without a fit, or malformed JSON raises
:class:`~cimlab.errors.ConfigError` naming the file and the dotted field (for example
``effects.read_noise.parameters.s1.unit``). A missing effect, parameter, setting or source is
an error too (``effects.relaxation.parameters.t0_s``): a model with a hole in it is not
silently completed with literature values. ``load(path, fill_defaults=True)`` (CLI
``--fill-defaults``) takes the literature default for each missing piece instead and warns
(:class:`FilledDefaultsWarning`, naming every field filled). Files larger than
:data:`MAX_BYTES` or nested deeper than :data:`MAX_DEPTH` are refused with one line; a value
quoted in an error is cut to :data:`MAX_ECHO` characters. No pickle anywhere.

Migrations: :data:`MIGRATIONS` maps a schema version ``v`` to a function turning a version-v
document into a version-(v+1) one; :func:`migrate` applies them in order. Version 2 was the
first released layout (the numbering starts at 2 by project convention). Version 3 adds
``effects.retention.parameters.t_fail_k`` (the lowest bake temperature found off the
Arrhenius line; 0 = none found): a v2 file gets 0, which is what a v2 fit assumed; and the
relaxation's tabulated rate ``kt0 .. kt8`` (form "table"; 0 in a v2 file). Golden
v2 files (tests/models/golden/) test the migration.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from cimlab.errors import ConfigError
from cimlab.models.device_model import DeviceModel, Provenance
from cimlab.models.effects import (
    BinaryCondition,
    BinaryStates,
    ConductanceWindow,
    ProgrammingError,
    ReadNoise,
    Relaxation,
    Retention,
    StuckAt,
    WireResistance,
)
from cimlab.models.params import FitInfo, numeric_fields, text_fields
from cimlab.models.read_noise_spectrum import ReadNoiseSpectrum
from cimlab.params import from_dict, unit_of
from cimlab.units import renamed_conductance

#: Current schema version written by :func:`save`.
SCHEMA_VERSION = 5
#: Oldest version :func:`load` still reads (through :data:`MIGRATIONS`).
OLDEST_SUPPORTED = 2
KIND = "cimlab.device_model"
#: Largest model file :func:`load` reads [bytes]. A fitted model is a few tens of kB; the
#: limit leaves room for large covariance matrices and refuses runaway files before parsing.
MAX_BYTES = 16 * 1024 * 1024
#: Deepest nesting accepted (the schema itself is 6 levels deep).
MAX_DEPTH = 12
#: Longest quotation of an offending value in an error message [characters].
MAX_ECHO = 120


class FilledDefaultsWarning(UserWarning):
    """A model file lacked effects or parameters and literature defaults were taken for them
    (only with ``fill_defaults=True``)."""


def _v2_to_v3(doc: dict[str, Any]) -> dict[str, Any]:
    """v2 -> v3: the retention effect gains ``t_fail_k`` (0 = no failing temperature found,
    which is what every v2 fit assumed: all bake temperatures on one Arrhenius line); the
    relaxation effect gains the tabulated form's ``kt0 .. kt8`` (0: unused by v2 forms);
    programming errors gain the setting ``read_noise`` ("excluded": what v2 assumed)."""
    doc = dict(doc)
    effects = doc.get("effects")
    if isinstance(effects, Mapping) and isinstance(effects.get("retention"), Mapping):
        ret = dict(effects["retention"])
        params = ret.get("parameters")
        if isinstance(params, Mapping) and "t_fail_k" not in params:
            ret["parameters"] = {**params, "t_fail_k": {"value": 0.0, "stderr": None,
                                                        "unit": "K", "ci95": None}}
        doc["effects"] = {**effects, "retention": ret}
    effects = doc.get("effects")
    if isinstance(effects, Mapping):
        def with_setting(e):
            if isinstance(e, Mapping) and isinstance(e.get("settings"), Mapping) \
                    and "read_noise" not in e["settings"]:
                return {**e, "settings": {**e["settings"], "read_noise": "excluded"}}
            return e
        effects = {**effects, "programming": with_setting(effects.get("programming"))}
        if isinstance(effects.get("programming_other"), list):
            effects["programming_other"] = [with_setting(e)
                                            for e in effects["programming_other"]]
        effects = {k: v for k, v in effects.items() if v is not None}
        doc["effects"] = effects
    if isinstance(effects, Mapping) and isinstance(effects.get("relaxation"), Mapping):
        rel = dict(effects["relaxation"])
        params = rel.get("parameters")
        if isinstance(params, Mapping):
            rel["parameters"] = {**{f"kt{i}": {"value": 0.0, "stderr": None, "unit": "S^2",
                                               "ci95": None} for i in range(9)}, **params}
        doc["effects"] = {**effects, "relaxation": rel}
    return doc


def _v3_to_v4(doc: dict[str, Any]) -> dict[str, Any]:
    """Schema 3 -> 4: the effect ``read_noise_spectrum`` (white + 1/f read noise,
    :class:`cimlab.models.read_noise_spectrum.ReadNoiseSpectrum`) is added as "white only"
    (no 1/f part: a schema-3 model never measured one), its white part taken from the
    model's own ``read_noise`` s0/s1 when that effect has them."""
    doc = dict(doc)
    effects = doc.get("effects")
    if not isinstance(effects, Mapping) or "read_noise_spectrum" in effects:
        return doc
    spec = _effect_doc(ReadNoiseSpectrum(source="schema 3 file: white only (no 1/f measured)"))
    rn = effects.get("read_noise")
    rn_params = rn.get("parameters") if isinstance(rn, Mapping) else None
    if isinstance(rn_params, Mapping) and isinstance(spec.get("parameters"), Mapping):
        params = dict(spec["parameters"])
        for key in ("g_ref", "s0", "s1"):
            if isinstance(rn_params.get(key), Mapping) and key in params:
                params[key] = {**params[key], "value": rn_params[key].get("value")}
        spec = {**spec, "parameters": params}
    doc["effects"] = {**effects, "read_noise_spectrum": spec}
    return doc


def _v4_to_v5(doc: dict[str, Any]) -> dict[str, Any]:
    """Schema 4 -> 5: conductances are named ``*_siemens`` instead of ``*_s`` (which also
    means seconds): every key is renamed by :func:`cimlab.units.renamed_conductance`
    (parameters such as ``g_on_s`` and fit-quality entries such as ``rmse_s``)."""

    def rename(x: Any) -> Any:
        if isinstance(x, Mapping):
            return {renamed_conductance(str(k)): rename(v) for k, v in x.items()}
        if isinstance(x, list):
            return [rename(v) for v in x]
        return x

    return rename(doc)


#: ``{v: f}``: ``f(doc_v) -> doc_(v+1)``. Each migration is a pure function over dicts.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {2: _v2_to_v3,
                                                                    3: _v3_to_v4,
                                                                    4: _v4_to_v5}

#: Effect name -> class of the simple (single-dataclass) effects.
SIMPLE_EFFECTS: dict[str, type] = {
    "window": ConductanceWindow,
    "programming": ProgrammingError,
    "read_noise": ReadNoise,
    "relaxation": Relaxation,
    "retention": Retention,
    "stuck": StuckAt,
    "wire": WireResistance,
    # white + 1/f read-noise spectrum (cimlab.models.read_noise_spectrum)
    "read_noise_spectrum": ReadNoiseSpectrum,
}

_EFFECT_KEYS = ("source", "settings", "parameters", "fit")
_PARAM_KEYS = ("value", "stderr", "unit", "ci95")
_FIT_KEYS = tuple(
    f.name for f in dataclasses.fields(FitInfo) if f.name not in ("stderr", "ci95")
)


# ------------------------------------------------------------------------------ writing
def _clean(x: Any) -> Any:
    """JSON-safe copy: non-finite floats become None, tuples lists, numpy scalars floats."""
    if isinstance(x, Mapping):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, bool) or x is None or isinstance(x, str):
        return x
    if isinstance(x, int):
        return int(x)
    try:
        f = float(x)
    except (TypeError, ValueError):
        return str(x)
    if hasattr(x, "dtype") and getattr(x.dtype, "kind", "f") in "iu":
        return int(x)
    return f if math.isfinite(f) else None


def _effect_doc(effect: Any) -> dict[str, Any]:
    fit: FitInfo | None = effect.fit
    params = {}
    for name in numeric_fields(effect):
        stderr = fit.stderr.get(name) if fit is not None else None
        ci = fit.ci95.get(name) if fit is not None else None
        params[name] = {
            "value": getattr(effect, name),
            "stderr": stderr,
            "unit": unit_of(effect, name),
            "ci95": list(ci) if ci is not None else None,
        }
    settings = {n: getattr(effect, n) for n in text_fields(effect) if n != "source"}
    fit_doc = None
    if fit is not None:
        fit_doc = {k: getattr(fit, k) for k in _FIT_KEYS}
    return _clean(
        {"source": effect.source, "settings": settings, "parameters": params, "fit": fit_doc}
    )


def to_document(dm: DeviceModel) -> dict[str, Any]:
    """The JSON document of ``dm`` (current schema)."""
    effects: dict[str, Any] = {}
    for name in SIMPLE_EFFECTS:
        effects[name] = _effect_doc(getattr(dm, name))
    effects["programming_other"] = [_effect_doc(p) for p in dm.programming_other]
    b = dm.binary
    effects["binary"] = _clean(
        {
            "source": b.source,
            "fit": None if b.fit is None else {k: getattr(b.fit, k) for k in _FIT_KEYS},
            "conditions": [_effect_doc(c) for c in b.conditions],
        }
    )
    prov = dataclasses.asdict(dm.provenance)
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": KIND,
        "name": dm.name,
        "provenance": _clean(prov),
        "effects": effects,
    }


def dumps(dm: DeviceModel) -> str:
    """JSON text of ``dm`` (indented, keys in a stable order)."""
    return json.dumps(to_document(dm), indent=2, allow_nan=False) + "\n"


def save(dm: DeviceModel, path: str | Path) -> Path:
    """Write ``dm`` to ``path`` atomically (temp file + rename); returns the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(dumps(dm), encoding="utf-8")
    tmp.replace(p)
    return p


# ------------------------------------------------------------------------------ reading
def _require_mapping(x: Any, src: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(x, Mapping):
        raise ConfigError(src, where, "a JSON object", type(x).__name__)
    return x


def _no_unknown(d: Mapping[str, Any], allowed: typing.Iterable[str], src: Any, where: str) -> None:
    allowed = tuple(allowed)
    for k in d:
        if k not in allowed:
            raise ConfigError(
                src, f"{where}.{k}" if where else k,
                "no such field; known fields are " + ", ".join(allowed),
            )


def _number(x: Any, src: Any, where: str, *, allow_none: bool = False) -> float | None:
    if x is None and allow_none:
        return None
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        raise ConfigError(src, where, "a finite number" + (" or null" if allow_none else ""), x)
    return x


def _parse_fit(d: Any, src: Any, where: str, stderr: dict, ci95: dict) -> FitInfo:
    d = _require_mapping(d, src, where)
    _no_unknown(d, _FIT_KEYS, src, where)
    for key in ("method", "n"):
        if key not in d:
            raise ConfigError(src, f"{where}.{key}", "this required field to be present")
    data = {k: v for k, v in d.items()}
    # JSON null in gof / candidates stands for a non-finite figure.
    data["gof"] = {
        k: (math.nan if v is None else v) for k, v in (data.get("gof") or {}).items()
    }
    data["candidates"] = {
        form: {k: (math.nan if v is None else v) for k, v in _require_mapping(
            c, src, f"{where}.candidates.{form}").items()}
        for form, c in _require_mapping(data.get("candidates") or {}, src,
                                        f"{where}.candidates").items()
    }
    fit = from_dict(FitInfo, data, source=src, prefix=where + ".")
    return dataclasses.replace(fit, stderr=stderr, ci95=ci95)


def _missing(src: Any, where: str, filled: list[str] | None) -> None:
    """A required piece ``where`` is absent: an error, or (``filled`` given) note it."""
    if filled is None:
        raise ConfigError(src, where, "this field to be present (a model file is loaded "
                          "strictly; to take literature defaults for what is missing, load "
                          "with fill_defaults=True / --fill-defaults)")
    filled.append(where)


def _parse_effect(cls: type, d: Any, src: Any, where: str,
                  filled: list[str] | None = None) -> Any:
    d = _require_mapping(d, src, where)
    _no_unknown(d, _EFFECT_KEYS, src, where)
    proto_fields = {f.name: f for f in dataclasses.fields(cls)}
    numeric = [n for n, f in proto_fields.items() if f.metadata and _is_numeric_type(cls, n)]
    textual = [n for n, f in proto_fields.items() if f.metadata and not _is_numeric_type(cls, n)
               and n != "source"]
    flat: dict[str, Any] = {}
    if "source" in d:
        if not isinstance(d["source"], str):
            raise ConfigError(src, f"{where}.source", "a string", d["source"])
        flat["source"] = d["source"]
    settings = _require_mapping(d.get("settings", {}), src, f"{where}.settings")
    _no_unknown(settings, textual, src, f"{where}.settings")
    flat.update(settings)
    params = _require_mapping(d.get("parameters", {}), src, f"{where}.parameters")
    _no_unknown(params, numeric, src, f"{where}.parameters")
    stderr: dict[str, float] = {}
    ci95: dict[str, tuple[float, float]] = {}
    for name, entry in params.items():
        pw = f"{where}.parameters.{name}"
        entry = _require_mapping(entry, src, pw)
        _no_unknown(entry, _PARAM_KEYS, src, pw)
        for key in ("value", "unit"):
            if key not in entry:
                raise ConfigError(src, f"{pw}.{key}", "this required field to be present")
        unit = unit_of(cls, name)
        if entry["unit"] != unit:
            raise ConfigError(src, f"{pw}.unit", f"{unit!r} (SI, as declared)", entry["unit"])
        flat[name] = entry["value"]
        se = _number(entry.get("stderr"), src, f"{pw}.stderr", allow_none=True)
        if se is not None:
            if se < 0:
                raise ConfigError(src, f"{pw}.stderr", "a number >= 0", se)
            stderr[name] = float(se)
        ci = entry.get("ci95")
        if ci is not None:
            if not isinstance(ci, list) or len(ci) != 2:
                raise ConfigError(src, f"{pw}.ci95", "[lo, hi] or null", ci)
            lo = _number(ci[0], src, f"{pw}.ci95")
            hi = _number(ci[1], src, f"{pw}.ci95")
            if lo > hi:
                raise ConfigError(src, f"{pw}.ci95", "lo <= hi", ci)
            ci95[name] = (float(lo), float(hi))
    # what is absent, after what is present was checked (its errors come first)
    if "source" not in d:
        _missing(src, f"{where}.source", filled)
    for name in textual:
        if name not in settings:
            _missing(src, f"{where}.settings.{name}", filled)
    for name in numeric:
        if name not in params:
            _missing(src, f"{where}.parameters.{name}", filled)
    fit_doc = d.get("fit")
    if fit_doc is None:
        if stderr or ci95:
            name = next(iter(stderr or ci95))
            raise ConfigError(
                src, f"{where}.parameters.{name}.stderr",
                "null when the effect has no fit block (uncertainties come from a fit)",
            )
    else:
        flat["fit"] = _parse_fit(fit_doc, src, f"{where}.fit", stderr, ci95)

    fit_obj = flat.pop("fit", None)
    try:
        obj = from_dict(cls, flat, source=src, prefix="")
    except ConfigError as exc:
        field = exc.field
        base = field.split(".")[0].split("[")[0]
        if base in numeric:
            dotted = f"{where}.parameters.{base}.value"
        elif base in textual:
            dotted = f"{where}.settings.{base}"
        else:
            dotted = f"{where}.{field}"
        raise ConfigError(src, dotted, exc.expected, exc.got) from None
    if fit_obj is not None:
        obj = dataclasses.replace(obj, fit=fit_obj)
    return obj


def _is_numeric_type(cls: type, name: str) -> bool:
    tp = typing.get_type_hints(cls)[name]
    return tp in (float, int)


def migrate(doc: dict[str, Any], src: Any = None) -> dict[str, Any]:
    """Bring a document of any supported schema version to :data:`SCHEMA_VERSION`."""
    version = doc.get("schema_version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise ConfigError(src, "schema_version", f"an integer (current: {SCHEMA_VERSION})", version)
    if version > SCHEMA_VERSION:
        raise ConfigError(
            src, "schema_version",
            f"<= {SCHEMA_VERSION} (this file was written by a newer cimlab; upgrade cimlab)",
            version,
        )
    if version < OLDEST_SUPPORTED and version not in MIGRATIONS:
        raise ConfigError(
            src, "schema_version",
            f"a supported version {OLDEST_SUPPORTED}..{SCHEMA_VERSION}", version,
        )
    while version < SCHEMA_VERSION:
        doc = MIGRATIONS[version](doc)
        version += 1
        doc["schema_version"] = version
    return doc


class _Short:
    """repr() of a value cut to :data:`MAX_ECHO` characters (errors never echo huge values)."""

    def __init__(self, value: Any):
        self.value = value

    def __repr__(self) -> str:
        if isinstance(self.value, (list, tuple, dict)) and len(self.value) > 8:
            return f"<{type(self.value).__name__} of {len(self.value)} items>"
        text = repr(self.value)
        return text if len(text) <= MAX_ECHO else text[: MAX_ECHO - 3] + "..."


def _depth_ok(doc: Any, src: Any) -> None:
    """Refuse documents nested deeper than :data:`MAX_DEPTH` (iteratively: no recursion)."""
    stack = [(doc, 1, "")]
    while stack:
        x, depth, where = stack.pop()
        if depth > MAX_DEPTH:
            raise ConfigError(src, where or "<root>",
                              f"at most {MAX_DEPTH} levels of nesting (the schema has 6)")
        if isinstance(x, Mapping):
            stack.extend((v, depth + 1, f"{where}.{k}" if where else str(k))
                         for k, v in x.items())
        elif isinstance(x, list):
            stack.extend((v, depth + 1, f"{where}[{i}]") for i, v in enumerate(x))


def from_document(doc: Any, source: Any = None, fill_defaults: bool = False) -> DeviceModel:
    """Build a :class:`DeviceModel` from a parsed JSON document (strict; see module doc).

    ``fill_defaults``: take literature defaults for missing effects / parameters (with a
    :class:`FilledDefaultsWarning`) instead of raising."""
    try:
        _depth_ok(doc, source)
        return _from_document(doc, source, fill_defaults)
    except ConfigError as exc:
        if exc.got is None or isinstance(exc.got, _Short):
            raise
        raise ConfigError(exc.source if exc.source != "<input>" else source, exc.field,
                          exc.expected, _Short(exc.got)) from None


def _from_document(doc: Any, source: Any, fill_defaults: bool) -> DeviceModel:
    src = source
    filled: list[str] | None = [] if fill_defaults else None
    doc = dict(_require_mapping(doc, src, "<root>"))
    doc = migrate(doc, src)
    _no_unknown(doc, ("schema_version", "kind", "name", "provenance", "effects"), src, "")
    if doc.get("kind") != KIND:
        raise ConfigError(src, "kind", repr(KIND), doc.get("kind"))
    name = doc.get("name", "model")
    if not isinstance(name, str):
        raise ConfigError(src, "name", "a string", name)
    prov = from_dict(Provenance, _require_mapping(doc.get("provenance", {}), src, "provenance"),
                     source=src, prefix="provenance.")
    effects = _require_mapping(doc.get("effects"), src, "effects")
    _no_unknown(effects, (*SIMPLE_EFFECTS, "programming_other", "binary"), src, "effects")
    kwargs: dict[str, Any] = {}
    for ename, cls in SIMPLE_EFFECTS.items():
        if ename in effects:
            kwargs[ename] = _parse_effect(cls, effects[ename], src, f"effects.{ename}", filled)
    for ename in (*SIMPLE_EFFECTS, "programming_other", "binary"):
        if ename not in effects:  # after the present ones: their errors come first
            _missing(src, f"effects.{ename}", filled)
    if "programming_other" in effects:
        po = effects["programming_other"]
        if not isinstance(po, list):
            raise ConfigError(src, "effects.programming_other", "a list", po)
        kwargs["programming_other"] = tuple(
            _parse_effect(ProgrammingError, e, src, f"effects.programming_other[{i}]", filled)
            for i, e in enumerate(po)
        )
    if "binary" in effects:
        bw = "effects.binary"
        b = _require_mapping(effects["binary"], src, bw)
        _no_unknown(b, ("source", "fit", "conditions"), src, bw)
        conds = b.get("conditions", [])
        if not isinstance(conds, list):
            raise ConfigError(src, f"{bw}.conditions", "a list", conds)
        parsed = tuple(
            _parse_effect(BinaryCondition, c, src, f"{bw}.conditions[{i}]", filled)
            for i, c in enumerate(conds)
        )
        fit = None if b.get("fit") is None else _parse_fit(b["fit"], src, f"{bw}.fit", {}, {})
        source_text = b.get("source", "")
        if not isinstance(source_text, str):
            raise ConfigError(src, f"{bw}.source", "a string", source_text)
        try:
            kwargs["binary"] = BinaryStates(conditions=parsed, source=source_text, fit=fit)
        except ConfigError as exc:
            raise ConfigError(src, f"{bw}.{exc.field}", exc.expected, exc.got) from None
    elif filled is not None:
        kwargs["binary"] = DeviceModel.default().binary
    if filled:
        warnings.warn(f"{src}: literature defaults taken for {len(filled)} missing field(s): "
                      + ", ".join(filled[:12]) + (" ..." if len(filled) > 12 else ""),
                      FilledDefaultsWarning, stacklevel=3)
        prov = dataclasses.replace(prov, notes=(prov.notes + "; " if prov.notes else "")
                                   + "literature defaults filled in on load: "
                                   + ", ".join(filled))
    return DeviceModel(name=name, provenance=prov, **kwargs)


def load(path: str | Path, fill_defaults: bool = False) -> DeviceModel:
    """Read a device-model JSON file (the current ``schema_version``, migrating older ones)
    and validate it strictly: a missing or unknown key, a unit other than the declared one, a
    value out of bounds or malformed JSON raises :class:`~cimlab.errors.ConfigError` naming
    the file and the dotted field (e.g. ``effects.read_noise.parameters.s1.unit``).
    ``fill_defaults``: take literature defaults for what is missing, with a warning."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if p.is_dir():
            raise ConfigError(p, "<file>", "a device-model JSON file, not a directory")
        if size > MAX_BYTES:
            raise ConfigError(p, "<file>", f"a device-model JSON file of at most {MAX_BYTES} "
                              f"bytes (this one has {size}; not a model file?)")
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(p, "<file>", "an existing device-model JSON file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(p, "<file>", f"UTF-8 text ({exc})") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            p, "<syntax>",
            f"valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}; truncated or "
            "hand-edited? re-export it with 'cimlab fit' or DeviceModel.save)",
        ) from None
    except RecursionError:
        raise ConfigError(p, "<syntax>", f"at most {MAX_DEPTH} levels of nesting") from None
    return from_document(doc, source=p, fill_defaults=fill_defaults)


def loads(text: str, source: Any = "<string>", fill_defaults: bool = False) -> DeviceModel:
    """Parse a model from JSON text."""
    if len(text) > MAX_BYTES:
        raise ConfigError(source, "<file>", f"at most {MAX_BYTES} characters of JSON")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(source, "<syntax>", f"valid JSON ({exc})") from None
    except RecursionError:
        raise ConfigError(source, "<syntax>", f"at most {MAX_DEPTH} levels of nesting") from None
    return from_document(doc, source=source, fill_defaults=fill_defaults)

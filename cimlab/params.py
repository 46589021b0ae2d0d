"""Typed, unit-carrying, bounded parameters for frozen dataclasses.

One mechanism serves every parameter set in cimlab (chip profiles, station limits, campaign
plans, device models), in the spirit of QCoDeS parameters: each field declares its unit, its
bounds and a one-line description, values are checked in ``__post_init__`` and never clamped,
and mappings read from TOML or JSON are converted strictly (an unknown key, a wrong type or a
value out of bounds raises :class:`~cimlab.errors.ConfigError` naming the file and the field).

Example::

    @dataclass(frozen=True)
    class Window:
        g_min: float = param(2e-6, unit="S", lo=0.0, doc="lowest programmable conductance")
        g_max: float = param(40e-6, unit="S", lo=0.0, doc="highest programmable conductance")

        def __post_init__(self):
            check(self)

    w = from_dict(Window, {"g_min": 1e-6}, source="chip.toml", prefix="window")
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from cimlab.errors import ConfigError
from cimlab.units import renamed_conductance

T = TypeVar("T")

_UNIT = "unit"
_LO = "lo"
_HI = "hi"
_DOC = "doc"
_LO_OPEN = "lo_open"
_CHOICES = "choices"


def param(
    default: Any = dataclasses.MISSING,
    *,
    unit: str = "",
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    choices: tuple[Any, ...] | None = None,
    doc: str = "",
    default_factory: Any = dataclasses.MISSING,
) -> Any:
    """A dataclass field with a unit, inclusive bounds ``[lo, hi]`` and a description.

    ``lo_open=True`` makes the lower bound exclusive (``value > lo``). ``choices`` restricts a
    string (or other) field to a fixed set. Units are SI symbols ("S", "V", "A", "s", "J",
    "K", "eV", "ohm", "1" for dimensionless).
    """
    metadata = {_UNIT: unit, _LO: lo, _HI: hi, _LO_OPEN: lo_open, _CHOICES: choices, _DOC: doc}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def unit_of(cls_or_obj: Any, name: str) -> str:
    """The unit declared for field ``name``."""
    return _field(cls_or_obj, name).metadata.get(_UNIT, "")


def doc_of(cls_or_obj: Any, name: str) -> str:
    """The one-line description declared for field ``name``."""
    return _field(cls_or_obj, name).metadata.get(_DOC, "")


def bounds_of(cls_or_obj: Any, name: str) -> tuple[float | None, float | None]:
    """The inclusive bounds ``(lo, hi)`` declared for field ``name`` (None: unbounded)."""
    md = _field(cls_or_obj, name).metadata
    return md.get(_LO), md.get(_HI)


def _field(cls_or_obj: Any, name: str) -> dataclasses.Field:
    for f in dataclasses.fields(cls_or_obj):
        if f.name == name:
            return f
    raise KeyError(name)


def describe_bounds(f: dataclasses.Field) -> str:
    """Human text for a field's constraints, e.g. ``"a number in (0, 1e-3] S"``."""
    md = f.metadata
    if md.get(_CHOICES):
        return "one of " + ", ".join(repr(c) for c in md[_CHOICES])
    lo, hi, unit = md.get(_LO), md.get(_HI), md.get(_UNIT, "")
    left = "(" if md.get(_LO_OPEN) else "["
    lo_t = "-inf" if lo is None else f"{lo:g}"
    hi_t = "+inf" if hi is None else f"{hi:g}"
    suffix = f" {unit}" if unit and unit != "1" else ""
    if lo is None and hi is None:
        return f"a number{suffix}"
    return f"a number in {left}{lo_t}, {hi_t}]{suffix}"


def check(obj: Any, *, source: str | Path | None = None, prefix: str = "") -> None:
    """Validate every bounded field of dataclass instance ``obj``; raise ConfigError if not.

    Call it from ``__post_init__``. Numbers must be finite and inside their bounds; sequences
    of numbers are checked element-wise. Nothing is clamped.
    """
    for f in dataclasses.fields(obj):
        md = f.metadata
        if not md:
            continue
        value = getattr(obj, f.name)
        name = f"{prefix}{f.name}"
        if md.get(_CHOICES) is not None:
            if value not in md[_CHOICES]:
                raise ConfigError(source, name, describe_bounds(f), value)
            continue
        lo, hi = md.get(_LO), md.get(_HI)
        if lo is None and hi is None:
            continue
        values = value if isinstance(value, (tuple, list)) else (value,)
        for v in values:
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ConfigError(source, name, describe_bounds(f), v)
            if isinstance(v, float) and not math.isfinite(v):  # a huge int is finite
                raise ConfigError(source, name, describe_bounds(f), v)
            if lo is not None and (v < lo or (md.get(_LO_OPEN) and v <= lo)):
                raise ConfigError(source, name, describe_bounds(f), v)
            if hi is not None and v > hi:
                raise ConfigError(source, name, describe_bounds(f), v)


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def _convert(tp: Any, value: Any, source: str | Path | None, name: str, f: dataclasses.Field):
    tp, optional = _strip_optional(tp)
    if value is None:
        if optional:
            return None
        raise ConfigError(source, name, f"a value of type {getattr(tp, '__name__', tp)}", None)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(source, name, f"a table of {tp.__name__} fields", value)
        return from_dict(tp, value, source=source, prefix=name + ".")
    origin = typing.get_origin(tp)
    if origin in (tuple, list):
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(source, name, "a list", value)
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            item_tp = args[0]
        elif origin is tuple and args:
            if len(args) != len(value):
                raise ConfigError(source, name, f"a list of {len(args)} items", value)
            return tuple(
                _convert(a, v, source, f"{name}[{i}]", f)
                for i, (a, v) in enumerate(zip(args, value, strict=True))
            )
        else:
            item_tp = args[0] if args else Any
        items = [_convert(item_tp, v, source, f"{name}[{i}]", f) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(source, name, "a table", value)
        return dict(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) \
                or (isinstance(value, int) and abs(value) > 1e308):  # float() would overflow
            raise ConfigError(source, name, describe_bounds(f), value)
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(source, name, "an integer", value)
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(source, name, "true or false", value)
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(source, name, "a string", value)
        return value
    return value


def from_dict(
    cls: type[T],
    data: Mapping[str, Any],
    *,
    source: str | Path | None = None,
    prefix: str = "",
) -> T:
    """Build dataclass ``cls`` from a mapping, strictly.

    Unknown keys, missing required keys, wrong types and out-of-bounds values each raise
    :class:`ConfigError` naming ``source`` (the file) and the dotted field path. Nested
    dataclasses, lists and tuples of them, and ``Optional`` fields are supported.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(source, prefix.rstrip(".") or "<root>", "a table", data)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        renamed = renamed_conductance(unknown[0])
        if renamed in fields:  # a conductance spelled *_s before cimlab named them *_siemens
            raise ConfigError(source, prefix + unknown[0],
                              f"the key '{renamed}' (conductances [S] end in _siemens; "
                              "_s means seconds)")
        raise ConfigError(
            source, prefix + unknown[0], "no such key; known keys are " + ", ".join(sorted(fields))
        )
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, f in fields.items():
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(source, prefix + name, "this required key to be present")
            continue
        kwargs[name] = _convert(hints[name], data[name], source, prefix + name, f)
    try:
        obj = cls(**kwargs)
    except ConfigError as exc:
        if exc.source == "<input>" or exc.source == "None":
            raise ConfigError(source, prefix + exc.field, exc.expected, exc.got) from None
        raise
    return obj


def to_dict(obj: Any) -> Any:
    """Plain (JSON/TOML-ready) form of a dataclass tree: dicts, lists, numbers, strings."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, Mapping):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file; a syntax error raises ConfigError naming the file and position."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    p = Path(path)
    try:
        with p.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(p, "<file>", "an existing TOML file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(p, "<syntax>", f"valid TOML ({exc})") from None

"""Strict, canonical JSON for plans, snapshots, seeds and versions stored with each run."""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import math
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

import numpy as np


def _default(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, Mapping):
        return dict(obj)
    raise TypeError(f"cannot store a {type(obj).__name__} as JSON")


def _finite(obj: Any) -> Any:
    """NaN/inf are not JSON: store them as strings so the text stays standard JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return repr(obj)
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


def dumps(obj: Any) -> str:
    """Canonical JSON text (sorted keys, no spaces): equal content gives equal text."""
    plain = json.loads(json.dumps(obj, default=_default, allow_nan=True))
    return json.dumps(_finite(plain), sort_keys=True, separators=(",", ":"), allow_nan=False)


def digest(obj: Any) -> str:
    """SHA-256 hex digest of the canonical JSON text of ``obj``."""
    return hashlib.sha256(dumps(obj).encode("utf-8")).hexdigest()

"""A config value against its declared type: the YAML a user wrote, coerced where YAML reads it loosely (a bare
`off`, `5e-4` as text) and refused with the type it should have been. Kept beside config.py, which declares
the keys and checks how they fit together."""
from __future__ import annotations

import math
import types
import typing
from typing import Any, Literal, Union

MAX_LIST_ITEMS = 4096  # entries of one list value (method.targets names modules: hundreds at most)


def coerce(value: Any, typ: Any) -> tuple[bool, Any, str]:
    """Return (ok, value converted to `typ`, human name of the expected type)."""
    origin = typing.get_origin(typ)
    if origin is Literal:
        allowed = typing.get_args(typ)
        if value is False and "off" in allowed:  # YAML 1.1 reads a bare `off` (pii: off) as false
            value = "off"
        ok = any(value == a and type(value) is type(a) for a in allowed)
        return ok, value, "one of " + " | ".join(str(a).lower() if isinstance(a, bool) else str(a) for a in allowed)
    if origin in (Union, types.UnionType):
        names = []
        for option in typing.get_args(typ):
            ok, coerced, expected = coerce(value, option)
            if ok:
                return True, coerced, ""
            names.append(expected)
        return False, value, " or ".join(names)
    if typ is type(None):
        return value is None, None, "null"
    if origin is list:
        (item,) = typing.get_args(typ)
        if isinstance(value, list) and len(value) > MAX_LIST_ITEMS:
            return False, value, f"a list of at most {MAX_LIST_ITEMS:,} entries (it has {len(value):,})"
        if not isinstance(value, list) or not all(coerce(v, item)[0] for v in value):
            return False, value, f"a list of {item.__name__}"
        return True, [coerce(v, item)[1] for v in value], ""
    if typ is bool:
        return isinstance(value, bool), value, "true or false"
    if typ is int:
        return isinstance(value, int) and not isinstance(value, bool), value, "an integer"
    if typ is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if isinstance(value, str):  # YAML reads 5e-4 (no dot) as a string
            try:
                return True, float(value), ""
            except ValueError:
                pass
        if ok and isinstance(value, int) and abs(value) > 1e308:  # float() would raise OverflowError
            return True, math.inf if value > 0 else -math.inf, ""
        return ok, float(value) if ok else value, "a number"
    if typ is str:
        return isinstance(value, str), value, "text"
    return True, value, str(typ)


def out_of_range(value: Any, lo: float | None, hi: float | None) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return ""
    if value != value or value in (float("inf"), float("-inf")):  # NaN passes every comparison below
        return "is not a finite number"
    if lo is not None and value < lo:
        return f"is below the minimum {lo}"
    if hi is not None and value > hi:
        return f"is above the maximum {hi}"
    return ""

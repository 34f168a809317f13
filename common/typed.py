"""Values of a typed settings dataclass checked against their fields' types.

Configs come from YAML and ``--set KEY=VALUE``, where a number can arrive as a string (YAML 1.1
reads ``5e-5``, without a dot, as one) and a single path where a list is expected. These turn
such values into what the field holds and refuse the rest with a message that names the key.
"""

from __future__ import annotations

import math
import typing
from typing import Any, Literal

#: how an error names what a type expects
_EXPECTED = {bool: "true or false", int: "an integer", float: "a finite number", str: "a string"}


def coerce(tp: Any, value: Any, where: str) -> Any:
    """``value`` as the type ``tp`` holds it (``bool``, ``int``, ``float``, ``str``, ``Literal``,
    ``X | None``, ``list`` / ``tuple`` of strings); ValueError naming ``where`` when it is not one.
    Other types are returned unchanged (their class checks them)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        if value not in args:
            raise ValueError(f"{where} must be one of {list(args)}, got {value!r}")
        return value
    if origin in (list, tuple) and all(a in (str, Ellipsis) for a in args):
        items = [value] if isinstance(value, str) else value if isinstance(value, (list, tuple)) else None
        if value is None:
            items = []
        if items is None or not all(_scalar(v) for v in items):
            raise ValueError(f"{where} must be a list of strings, got {value!r}")
        return origin(str(v) for v in items)
    if len(args) == 2 and type(None) in args:  # X | None
        if value is None or value == "none":
            return None
        return coerce(next(a for a in args if a is not type(None)), value, where)
    if tp not in _EXPECTED:
        return value
    out: Any = None
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        out = value  # as it is (a float would round a large one)
    elif tp is bool:
        out = value if isinstance(value, bool) else None
    elif tp is str:
        out = str(value) if _scalar(value) else None
    elif _scalar(value):
        try:
            number = float(value)  # a number, or a string that is one
        except ValueError:
            number = math.nan
        if tp is float and math.isfinite(number):
            out = number
        elif tp is int and math.isfinite(number) and number == int(number):
            out = int(number)
    if out is None:
        raise ValueError(f"{where} must be {_EXPECTED[tp]}, got {value!r}")
    return out


def coerce_fields(cls: type, data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``data`` (keys: fields of the dataclass ``cls``) with each value coerced to its field's type;
    errors name the key as ``prefix`` + field name."""
    hints = typing.get_type_hints(cls)
    return {k: coerce(hints[k], v, prefix + k) if k in hints else v for k, v in data.items()}


def _scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float)) and not isinstance(value, bool)

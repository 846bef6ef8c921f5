"""Bind plain mappings (parsed YAML) onto dataclasses, strictly.

The dataclass is the single truth: unknown keys, wrong types and missing
required keys are errors naming the file, the key and the value.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Mapping

from reconlab.errors import ConfigError

_MISSING = dataclasses.MISSING


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp))


def check_value(tp, value, *, source, key):
    """Return ``value`` if it fits the annotation ``tp`` (ints widen to float)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arm in typing.get_args(tp):
            try:
                return check_value(arm, value, source=source, key=key)
            except ConfigError:
                continue
        raise ConfigError(f"expected {tp}", source=source, key=key, value=value)
    if origin is typing.Literal:
        if value in typing.get_args(tp):
            return value
        raise ConfigError(f"expected one of {list(typing.get_args(tp))}", source=source, key=key, value=value)
    if origin in (list, tuple):
        (arm, *_) = typing.get_args(tp) or (Any,)
        if not isinstance(value, (list, tuple)):
            raise ConfigError("expected a list", source=source, key=key, value=value)
        return origin(check_value(arm, v, source=source, key=f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        ktp, vtp = typing.get_args(tp) or (Any, Any)
        if not isinstance(value, dict):
            raise ConfigError("expected a mapping", source=source, key=key, value=value)
        return {check_value(ktp, k, source=source, key=key): check_value(vtp, v, source=source, key=f"{key}.{k}")
                for k, v in value.items()}
    if tp is Any:
        return value
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError("expected null", source=source, key=key, value=value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError("expected a number", source=source, key=key, value=value)
        try:
            return float(value)
        except OverflowError:  # an integer beyond float range
            raise ConfigError("number out of range", source=source, key=key, value=value) from None
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError("expected an integer", source=source, key=key, value=value)
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError("expected true or false", source=source, key=key, value=value)
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError("expected a string", source=source, key=key, value=value)
        return value
    if dataclasses.is_dataclass(tp):
        return bind(tp, value, source=source, prefix=key)
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(f"expected {_type_name(tp)}", source=source, key=key, value=value)


def bind(cls, data: Mapping[str, Any] | None, *, source: str = "<config>", prefix: str = "",
         internal: tuple[str, ...] = ()):
    """Build dataclass ``cls`` from ``data``; reject unknown keys and bad types.
    ``internal`` fields are set by the program, never from ``data``."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"expected a mapping for {cls.__name__}", source=source, key=prefix or None, value=data)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init and f.name not in internal}
    dotted = (prefix + ".") if prefix else ""
    for k in data:
        if k not in fields:
            raise ConfigError(
                f"unknown key (allowed: {', '.join(sorted(fields))})", source=source, key=f"{dotted}{k}", value=data[k]
            )
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = check_value(hints[name], data[name], source=source, key=f"{dotted}{name}")
        elif f.default is _MISSING and f.default_factory is _MISSING:
            raise ConfigError("missing required key", source=source, key=f"{dotted}{name}")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as e:
        raise ConfigError(str(e), source=source, key=prefix or None, value=dict(data)) from None

"""Loading params.yaml: the parsed mapping checked key by key against the sections' annotations
(an unknown key, a wrong type or a list where a mapping belongs stops with the key and the fix)."""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from components.config.sections import Params
from components.config.vocabulary import ConfigError


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """Check `value` against the annotation `hint`, converting lists to tuples where declared."""
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"params.yaml: {key} must be a mapping, got {type(value).__name__}")
        return _build(hint, value, key)
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(f"params.yaml: {key} must be a list, got {type(value).__name__} {value!r}")
        (item,) = {a for a in typing.get_args(hint) if a is not Ellipsis}
        return tuple(_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"params.yaml: {key} must be a mapping, got {type(value).__name__}")
        _, vtype = typing.get_args(hint)
        return {str(k): _coerce(v, vtype, f"{key}.{k}") for k, v in value.items()}
    if origin is Literal:
        if value not in typing.get_args(hint):
            raise ConfigError(f"params.yaml: {key} must be one of {typing.get_args(hint)}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool):
        if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
            raise ConfigError(
                f"params.yaml: {key} must be {hint.__name__}, got {type(value).__name__} {value!r}; "
                f"fix the value in params.yaml"
            )
    return value


def _build(cls: type, raw: dict, prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in names:
            where = f"{prefix}.{key}" if prefix else key
            raise ConfigError(
                f"params.yaml: unknown key {where!r}; known keys here are {sorted(names)} "
                f"(check the spelling or remove it)"
            )
    kwargs = {k: _coerce(v, hints[k], f"{prefix}.{k}" if prefix else k) for k, v in raw.items()}
    return cls(**kwargs)


def parse_params(raw: dict | None) -> Params:
    """Build Params from a parsed params.yaml mapping (missing keys take their defaults)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"params.yaml: the top level must be a mapping of sections, got {type(raw).__name__}")
    return _build(Params, raw, "")


def load_params(path: str | Path) -> Params:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"params file {path} does not exist; run from the project root or pass --params")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc}); fix the syntax") from exc
    try:
        return parse_params(raw)
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("params.yaml:", f"{path}:", 1)) from None


def params_as_dict(params: Any) -> dict:
    """Flatten a config section to {'key': value} for logging (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(params).items()}

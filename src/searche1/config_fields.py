"""Typed fields from YAML: checks of each value against its dataclass annotation, nested mappings applied onto
dataclasses, dotted `key=value` overrides, and the field checks sections use. Messages name the key and the value.

Why not pydantic: its lax mode turns 1 into True and "5" into 5, and its strict mode refuses the strings YAML 1.1
reads `1e-4` as; the presets rely on neither. The checks below accept int for float, such strings for float, and
enum values by name, and nothing else.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import types
import typing
from typing import Any

import yaml


class ConfigError(ValueError):
    pass


MOVED = {"grpo.train_data": "data.train", "evolve.eval_data": "data.eval"}
"""Keys that moved, named in the message that refuses the old spelling (an older preset or run's config.yaml)."""

RENAMED = {("evolve.mode", "grpo"): "grpo-fixed"}
"""Values that were renamed, named in the message that refuses the old spelling."""


def require(ok: bool, key: str, rule: str, value: Any) -> None:
    """One field check: the message names the key, the rule and the value that broke it."""
    if not ok:
        raise ConfigError(f"{key} must be {rule}, got {value!r}")


def require_each(obj: Any, section: str, names: str, ok, rule: str) -> None:
    """`require` for several fields of one section under one rule (`names` space-separated)."""
    for name in names.split():
        require(ok(getattr(obj, name)), f"{section}.{name}", rule, getattr(obj, name))


def at_least(low: int):
    return lambda v: v >= low  # False for NaN


def positive(v: float) -> bool:
    return math.isfinite(v) and v > 0


def non_negative(v: float) -> bool:
    return math.isfinite(v) and v >= 0


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp, key: str) -> Any:
    """Check `value` against the annotation `tp` (int accepted for float, strings for enums)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                pass
        raise ConfigError(f"{key}: expected {tp}, got {value!r}")
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            renamed = f" (renamed to {RENAMED[key, value]!r})" if (key, value) in RENAMED else ""
            raise ConfigError(f"{key}: must be one of {typing.get_args(tp)}, got {value!r}{renamed}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list ([a, b] in YAML or in an override), got {value!r}")
        (item,) = typing.get_args(tp)[:1] or (Any,)
        return [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is Any:
        return value
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            raise ConfigError(f"{key}: must be one of {[m.value for m in tp]}, got {value!r}") from None
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML 1.1 reads 1e-6 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
    if tp is bool and not isinstance(value, bool):
        raise ConfigError(f"{key}: expected true/false, got {value!r}")
    if tp is int and isinstance(value, bool):
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")
    return value


def apply_mapping(obj: Any, updates: dict, prefix: str = "") -> None:
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    for key, value in updates.items():
        path = f"{prefix}{key}"
        if key not in names:
            moved = f" ({path} is now {MOVED[path]})" if path in MOVED else ""
            raise ConfigError(f"unknown config key {path!r}{moved}; valid keys here: {', '.join(sorted(names))}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{path}: expected a mapping of its fields, got {value!r}")
            apply_mapping(current, value, path + ".")
        else:
            setattr(obj, key, _coerce(value, hints[key], path))


def parse_overrides(overrides: list[str]) -> dict:
    """["a.b=1", "c=x"] -> {"a": {"b": 1}, "c": "x"}; values parsed as YAML scalars."""
    tree: dict = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key=value (e.g. retrieval.topk=5)")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = tree
        parts = key.strip().split(".")
        for i, p in enumerate(parts[:-1]):
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r} conflicts with an earlier override of "
                                  f"{'.'.join(parts[:i + 1])!r}")
        if isinstance(node.get(parts[-1]), dict):
            raise ConfigError(f"override {item!r} conflicts with an earlier override inside {key.strip()!r}")
        node[parts[-1]] = value
    return tree


def to_dict(cfg: Any) -> dict:
    def plain(v):
        if isinstance(v, enum.Enum):
            return v.value
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v

    return plain(dataclasses.asdict(cfg))

"""Prefect's `{{ placeholder }}` templating (`prefect/utilities/templating`), as pure functions.

Semantics that users rely on and that we reproduce exactly:
- a string that is exactly one placeholder becomes the raw value (any JSON type);
- placeholders inside other text are replaced by `str(value)` (Python's `str`: `True`,
  `None`, `{'a': 1}`), a missing one by `""`, in a single pass (inserted text is never
  templated again);
- a whole-string placeholder with no value removes its key (dict) or item (list);
- `{{ $NAME }}` reads the worker's environment, `{{ prefect.blocks.* }}` and
  `{{ prefect.variables.* }}` are left for `references.py`.
"""

from __future__ import annotations

import contextlib
import enum
import re
from collections.abc import Mapping
from typing import Any, Final, NamedTuple

from prefect_job_operator.rendering.errors import RenderError

PLACEHOLDER_REGEX: Final = re.compile(r"({{\s*([\w\.\-\[\]$]+)\s*}})")
BLOCK_PREFIX: Final = "prefect.blocks."
VARIABLE_PREFIX: Final = "prefect.variables."
ENV_PREFIX: Final = "$"


class _Missing:
    """Marks "no value": the enclosing key or list item is dropped."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


class PlaceholderKind(enum.Enum):
    STANDARD = "standard"
    BLOCK = "block"
    VARIABLE = "variable"
    ENV = "env"


class Placeholder(NamedTuple):
    full_match: str
    name: str
    kind: PlaceholderKind


def placeholder_kind(name: str) -> PlaceholderKind:
    if name.startswith(BLOCK_PREFIX):
        return PlaceholderKind.BLOCK
    if name.startswith(VARIABLE_PREFIX):
        return PlaceholderKind.VARIABLE
    if name.startswith(ENV_PREFIX):
        return PlaceholderKind.ENV
    return PlaceholderKind.STANDARD


def find_placeholders(template: Any) -> set[Placeholder]:
    """Every placeholder anywhere in a JSON value."""
    if template is None or isinstance(template, bool | int | float):
        return set()
    if isinstance(template, str):
        return {
            Placeholder(full, name, placeholder_kind(name))
            for full, name in PLACEHOLDER_REGEX.findall(template)
        }
    if isinstance(template, dict):
        return set().union(*(find_placeholders(v) for v in template.values()))
    if isinstance(template, list):
        return set().union(*(find_placeholders(v) for v in template))
    raise RenderError(f"unexpected template value of type {type(template).__name__}")


def env_placeholder_names(template: Any) -> set[str]:
    """The NAMEs of every `{{ $NAME }}` anywhere in a JSON value."""
    return {
        p.name.removeprefix(ENV_PREFIX)
        for p in find_placeholders(template)
        if p.kind is PlaceholderKind.ENV
    }


def undeclared_env_placeholders(template: Any, declared: Mapping[str, str]) -> list[str]:
    """`{{ $NAME }}` placeholders whose NAME is not declared, sorted (empty: all declared)."""
    return sorted(env_placeholder_names(template) - set(declared))


def sole_placeholder(template: str) -> Placeholder | None:
    """The placeholder when `template` is exactly one placeholder and nothing else."""
    placeholders = find_placeholders(template)
    if len(placeholders) == 1:
        (only,) = placeholders
        if only.full_match == template:
            return only
    return None


def split_path(path: str) -> list[str]:
    """`a.b[0]` → `["a", "b", "0"]` (Prefect's key-path syntax)."""
    return path.replace("[", ".").replace("]", "").split(".")


def _canonical_int_or_key(key: str) -> str | int:
    try:
        as_int = int(key)
    except ValueError:
        return key
    return as_int if str(as_int) == key else key


def get_from_dict(data: Any, path: str, default: Any = MISSING) -> Any:
    """Look up `a.b[0].c` in nested dicts/lists; `default` when any step is missing."""
    value = data
    try:
        for part in split_path(path):
            key: str | int = part
            if isinstance(value, Mapping):
                if part not in value:
                    key = _canonical_int_or_key(part)
            else:
                with contextlib.suppress(ValueError):
                    key = int(part)
            value = value[key]
    except (TypeError, KeyError, IndexError):
        return default
    return value


def set_in_dict(target: dict[str, Any], path: str, value: Any) -> None:
    """Set `a.b.c` in nested dicts, creating the missing ones (dotted job-variable keys)."""
    keys = split_path(path)
    node = target
    for key in keys[:-1]:
        if not isinstance(node.get(key, {}), dict):
            raise RenderError(
                f"job variable {path!r}: {key!r} already holds a non-object value, "
                "so the dotted key cannot be nested under it"
            )
        node = node.setdefault(key, {})
    node[keys[-1]] = value


def deep_merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """A new dict: `update` merged into `base`, recursing where both sides are dicts."""
    result = dict(base)
    for key, value in update.items():
        if key in result and isinstance(result[key], dict) and isinstance(value, dict):
            result[key] = deep_merge(result[key], value)
        else:
            result[key] = value
    return result


def apply_values(template: Any, values: Mapping[str, Any], env: Mapping[str, str]) -> Any:
    """Fill standard and `$ENV` placeholders; returns MISSING for a whole missing value."""
    if template is None or isinstance(template, bool | int | float):
        return template
    if isinstance(template, str):
        return _apply_to_string(template, values, env)
    if isinstance(template, dict):
        out: dict[str, Any] = {}
        for key, item in template.items():
            filled = apply_values(item, values, env)
            if filled is not MISSING:
                out[key] = filled
        return out
    if isinstance(template, list):
        return [
            filled
            for filled in (apply_values(item, values, env) for item in template)
            if filled is not MISSING
        ]
    raise RenderError(f"unexpected template value of type {type(template).__name__}")


def _apply_to_string(template: str, values: Mapping[str, Any], env: Mapping[str, str]) -> Any:
    placeholders = find_placeholders(template)
    if not placeholders:
        return template
    only = sole_placeholder(template)
    if only is not None and only.kind is PlaceholderKind.STANDARD:
        return get_from_dict(values, only.name, MISSING)
    replacements: dict[str, str] = {}
    for full, name, kind in placeholders:
        if kind is PlaceholderKind.STANDARD:
            value = get_from_dict(values, name, MISSING)
        elif kind is PlaceholderKind.ENV:
            value = env.get(name.lstrip(ENV_PREFIX), MISSING)
        else:
            continue
        replacements[full] = "" if value is MISSING else str(value)
    return PLACEHOLDER_REGEX.sub(lambda m: replacements.get(m.group(1), m.group(1)), template)

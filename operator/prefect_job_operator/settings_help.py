"""Settings for people: load them with a one-line error, and describe each variable.

`load_settings` turns pydantic's multi-line ValidationError into one line naming the
variable that was set and the form it expects. The same descriptions (variable names, type,
default, bounds) write docs/configuration.md (scripts/generate.py).
"""

from __future__ import annotations

import os
import re
import types
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import AliasChoices, SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import SettingsError

from prefect_job_operator.settings import OperatorSettings

_FIELD_IN_MESSAGE = re.compile(r'field "(?P<name>\w+)"')


class SettingsInvalid(Exception):
    """A setting's value does not parse; the message is one line for the user."""


def load_settings() -> OperatorSettings:
    """Read the settings from the environment; raise SettingsInvalid with one clear line."""
    try:
        return OperatorSettings()
    except ValidationError as exc:
        raise SettingsInvalid(describe_validation_error(exc, os.environ)) from None
    except SettingsError as exc:
        raise SettingsInvalid(describe_settings_error(exc, os.environ)) from None


def env_names(name: str, field: FieldInfo) -> list[str]:
    """The variables a setting is read from, the first one set wins (PJO_* first)."""
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        return [str(choice) for choice in alias.choices]
    if isinstance(alias, str):
        return [alias]
    prefix = str(OperatorSettings.model_config.get("env_prefix", ""))
    return [f"{prefix}{name}".upper()]


def type_name(annotation: Any) -> str:
    """A reader's name for a field type: `integer`, `list of strings`, `secret`…"""
    names: dict[Any, str] = {
        str: "string",
        int: "integer",
        float: "number",
        bool: "boolean",
        SecretStr: "secret string",
    }
    if annotation in names:
        return names[annotation]
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin in (typing.Union, types.UnionType) and len(args) == 1:
        return type_name(args[0])
    if origin is list and args:
        return f"list of {type_name(args[0])}s (comma-separated or JSON)"
    if origin is dict:
        return "JSON object"
    if origin is typing.Literal:
        return " or ".join(f"`{a}`" for a in typing.get_args(annotation))
    return str(getattr(annotation, "__name__", annotation))


def constraints_text(field: FieldInfo) -> str:
    """Bounds and patterns from the field's metadata, e.g. `≥ 0, ≤ 65535`."""
    parts: list[str] = []
    for meta in field.metadata:
        for attr, symbol in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
            value = getattr(meta, attr, None)
            if value is not None:
                parts.append(f"{symbol} {value}")
        pattern = getattr(meta, "pattern", None)
        if pattern:
            parts.append(f"matching `{pattern}`")
    return ", ".join(parts)


def expected_form(field: FieldInfo) -> str:
    """`integer ≥ 0, ≤ 65535`: the type and its bounds."""
    bounds = constraints_text(field)
    kind = type_name(field.annotation)
    return f"{kind} {bounds}" if bounds else kind


def default_text(field: FieldInfo) -> str:
    """The default as one would type it; `(none)` for None, `(empty)` for an empty list."""
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return "(required)"
    else:
        value = field.default
    if value is None:
        return "(none)"
    if isinstance(value, list):
        return f"`{','.join(map(str, value))}`" if value else "(empty)"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`"


def _field_for(key: object) -> tuple[str, FieldInfo] | None:
    """The field an error location names, by field name or by any of its variables."""
    fields = OperatorSettings.model_fields
    if isinstance(key, str):
        if key in fields:
            return key, fields[key]
        for name, field in fields.items():
            if key.upper() in env_names(name, field):
                return name, field
    return None


def _problem(name: str, field: FieldInfo, env: Mapping[str, str], reason: str) -> str:
    names = env_names(name, field)
    lowered = {k.upper(): v for k, v in env.items()}
    variable = next((n for n in names if n.upper() in lowered), names[0])
    value = lowered.get(variable.upper())
    secret = "secret" in type_name(field.annotation)
    shown = "" if value is None else f"={'***' if secret else repr(value)}"
    return f"invalid setting {variable}{shown}: expected {expected_form(field)} ({reason})"


def describe_validation_error(exc: ValidationError, env: Mapping[str, str]) -> str:
    """One line for every bad setting, e.g. `PJO_HEALTH_PORT='abc': expected integer …`."""
    problems: list[str] = []
    for error in exc.errors():
        found = _field_for(error["loc"][0]) if error["loc"] else None
        if found is None:
            problems.append(f"invalid settings: {error['msg']}")
            continue
        problems.append(_problem(*found, env, error["msg"]))
    return "; ".join(problems)


def describe_settings_error(exc: SettingsError, env: Mapping[str, str]) -> str:
    """pydantic-settings' own error (a JSON value that does not decode), in one line."""
    match = _FIELD_IN_MESSAGE.search(str(exc))
    found = _field_for(match["name"]) if match else None
    if found is None:
        return f"invalid settings: {' '.join(str(exc).split())}"
    return _problem(*found, env, "not valid JSON")

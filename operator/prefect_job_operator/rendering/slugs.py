"""Slugs exactly as prefect-kubernetes 0.8.0 makes them (`prefect_kubernetes/utilities.py`).

python-slugify (with unidecode) does the work so that unicode and truncation match upstream
character for character; only the arguments are ours.
"""

from __future__ import annotations

from typing import Any

from slugify import slugify

from prefect_job_operator.rendering.errors import RenderError

_NAME_PATTERN = r"[^a-zA-Z0-9-]+"
_LABEL_NAME_PATTERN = r"[^a-zA-Z0-9-_.]+"
_LABEL_PREFIX_PATTERN = r"[^a-zA-Z0-9-\.]+"
_LABEL_VALUE_PATTERN = r"[^a-zA-Z0-9-_\.]+"
_EDGE_CHARS = "_-."


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise RenderError(f"{what} must be a string, got {type(value).__name__}: {value!r}")
    return value


def slugify_name(name: str, max_length: int = 45) -> str | None:
    """Job-name slug: lowercase `[a-z0-9-]`, at most `max_length`; None when nothing is left."""
    slug: str = slugify(_text(name, "name"), max_length=max_length, regex_pattern=_NAME_PATTERN)
    return slug or None


def slugify_label_key(key: str, max_length: int = 63, prefix_max_length: int = 253) -> str:
    """Label/annotation key: optional `prefix/` and name slugified separately (case kept).

    An empty result falls back to the original so that Kubernetes reports the bad key.
    """
    key = _text(key, "label key")
    prefix: str | None
    if "/" in key:
        prefix, name = key.split("/", maxsplit=1)
    else:
        prefix, name = None, key
    name_slug = (
        slugify(
            name, lowercase=False, max_length=max_length, regex_pattern=_LABEL_NAME_PATTERN
        ).strip(_EDGE_CHARS)
        or name
    )
    if prefix:
        prefix_slug = (
            slugify(
                prefix,
                lowercase=False,
                max_length=prefix_max_length,
                regex_pattern=_LABEL_PREFIX_PATTERN,
            ).strip(_EDGE_CHARS)
            or prefix
        )
        return f"{prefix_slug}/{name_slug}"
    return str(name_slug)


def slugify_label_value(value: str, max_length: int = 63) -> str:
    """Label value: `[A-Za-z0-9-_.]`, alphanumeric at both ends, at most 63 characters."""
    value = _text(value, "label value")
    slug: str = slugify(
        value, lowercase=False, max_length=max_length, regex_pattern=_LABEL_VALUE_PATTERN
    ).strip(_EDGE_CHARS)
    return slug or value

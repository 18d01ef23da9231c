"""The default base job template of prefect-kubernetes 0.8.0 (a pool with an empty template)."""

from __future__ import annotations

import copy
import json
from functools import cache
from importlib import resources
from typing import Any


@cache
def _load() -> dict[str, Any]:
    text = (
        resources.files("prefect_job_operator.rendering")
        .joinpath("data/default-base-job-template.json")
        .read_text(encoding="utf-8")
    )
    data: dict[str, Any] = json.loads(text)
    return data


def default_base_job_template() -> dict[str, Any]:
    """A fresh deep copy, so callers may mutate it."""
    return copy.deepcopy(_load())

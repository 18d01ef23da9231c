"""Deterministic Job names (deviation from upstream's `generateName`).

The name is the slug upstream would have used as `generateName` plus a hash of the flow
run and of the claim that won it. Creating the same claim's Job twice (operator restart,
client timeout) then hits 409 and adopts the first Job instead of starting the flow run
twice; a retry of the flow run is a new claim and gets a new name.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping
from typing import Any, Final

from prefect_job_operator.rendering.slugs import slugify_name

FALLBACK_PREFIX: Final = "prefect-job"
PREFIX_MAX_LENGTH: Final = 45
SUFFIX_LENGTH: Final = 10
_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN: Final = re.compile(rf"^{_DNS1123_LABEL}(\.{_DNS1123_LABEL})*$")


def _state_id(flow_run: Mapping[str, Any]) -> str | None:
    state = flow_run.get("state")
    if isinstance(state, Mapping) and state.get("id"):
        return str(state["id"])
    if flow_run.get("state_id"):
        return str(flow_run["state_id"])
    return None


def name_suffix(flow_run: Mapping[str, Any], claim_id: str | None) -> str:
    """10 lowercase base32 characters of sha256("<flow run id>:<claim id>")."""
    claim = claim_id if claim_id is not None else _state_id(flow_run)
    key = f"{flow_run['id']}:{claim}" if claim else str(flow_run["id"])
    digest = hashlib.sha256(key.encode()).digest()
    return base64.b32encode(digest).decode("ascii")[:SUFFIX_LENGTH].lower()


def name_prefix(flow_run: Mapping[str, Any], name_variable: str | None) -> str:
    """Upstream's generateName slug (≤45 chars): the rendered `name`, else the run's name."""
    for candidate in (name_variable, flow_run.get("name")):
        if isinstance(candidate, str) and candidate:
            slug = slugify_name(candidate, PREFIX_MAX_LENGTH)
            if slug:
                return slug
            if candidate is name_variable:
                break
    return FALLBACK_PREFIX


def job_name(flow_run: Mapping[str, Any], name_variable: str | None, claim_id: str | None) -> str:
    """`<slug>-<hash>`: a DNS-1123 subdomain of at most 56 characters (≤ 63, the label limit).

    `name_variable` is the job configuration's `name` with `{{ ctx.* }}` already rendered
    (or None). `claim_id` is the id of the Pending state our claim won; when None the flow
    run's current state id is used, and the flow run id alone when there is none.
    """
    name = f"{name_prefix(flow_run, name_variable)}-{name_suffix(flow_run, claim_id)}"
    if not _DNS1123_SUBDOMAIN.match(name) or len(name) > 63:  # pragma: no cover - invariant
        raise AssertionError(f"generated an invalid Job name {name!r}")
    return name

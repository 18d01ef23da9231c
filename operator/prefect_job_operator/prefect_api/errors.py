"""Typed errors of the Prefect API boundary.

Callers branch on the class, and show ``message``, which is always the server's own
text (``detail``, or a summary of a 422's ``exception_detail``), so operators see in
the CR status what Prefect said.
"""

from __future__ import annotations

from typing import Any


class PrefectAPIError(Exception):
    """A Prefect API call that failed; ``status`` is None when no response arrived."""

    def __init__(self, status: int | None, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details

    def __str__(self) -> str:
        return self.message if self.status is None else f"{self.message} (HTTP {self.status})"


class ObjectNotFound(PrefectAPIError):
    """404: the object named in the request does not exist."""


class WorkPoolNotFound(ObjectNotFound):
    pass


class WorkQueueNotFound(ObjectNotFound):
    pass


class DeploymentNotFound(ObjectNotFound):
    pass


class FlowNotFound(ObjectNotFound):
    pass


class FlowRunNotFound(ObjectNotFound):
    pass


class BlockDocumentNotFound(ObjectNotFound):
    pass


class WorkPoolAlreadyExists(PrefectAPIError):
    """409 on create: another writer (often another replica) created the pool first."""


class ReservedPoolName(PrefectAPIError):
    """403 on create: names starting with ``prefect`` are reserved by the server."""


class ValidationFailed(PrefectAPIError):
    """422: the server refused the payload (bad template, bad job variables...)."""


class Unauthorized(PrefectAPIError):
    """401/403: missing or wrong credentials (or CSRF that could not be satisfied)."""


class APIUnreachable(PrefectAPIError):
    """Retries exhausted on transport errors or retryable statuses (408/429/502/503)."""


def summarise_validation_errors(errors: Any) -> str:
    """Turn pydantic/FastAPI error lists into ``"loc: msg; loc: msg"``.

    The ``body`` prefix of locations is dropped: ``["body", "base_job_template"]``
    reads as ``base_job_template``.
    """
    if not isinstance(errors, list):
        return str(errors)
    parts: list[str] = []
    for error in errors:
        if not isinstance(error, dict):
            parts.append(str(error))
            continue
        loc = [str(p) for p in error.get("loc", []) if p != "body"]
        msg = str(error.get("msg", error))
        parts.append(f"{'.'.join(loc)}: {msg}" if loc else msg)
    return "; ".join(parts)


def message_from_body(body: Any, fallback: str) -> str:
    """The server's own words from an error body (``detail`` or ``exception_detail``)."""
    if isinstance(body, dict):
        if body.get("exception_detail"):
            return summarise_validation_errors(body["exception_detail"])
        detail = body.get("detail")
        if isinstance(detail, str) and detail:
            return detail
        if isinstance(detail, list):
            return summarise_validation_errors(detail)
        message = body.get("exception_message")
        if isinstance(message, str) and message:
            return message
    if isinstance(body, str) and body:
        return body
    return fallback

"""Which Prefect API URLs a WorkPool may name, and which credentials may go there (pure).

The operator-wide credentials (PJO_API_KEY / PJO_API_AUTH_STRING) belong to the operator-wide
URL (PJO_API_URL) and to nothing else. Any other URL must be on the admin's allowlist
(PJO_ALLOWED_API_URLS) and gets only the pool's own credentials, or none.

URLs are compared as parsed components (scheme, host, port, path segments), never as string
prefixes; anything a parser could read two ways (userinfo, backslashes, dot segments,
percent-encoded separators, query, fragment) is refused rather than normalised.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

ANY_URL: Final = "*"
ALLOWLIST_SETTING: Final = "PJO_ALLOWED_API_URLS"
ALLOWLIST_CHART_VALUE: Final = "security.allowedApiUrls"
URL_SETTING: Final = "PJO_API_URL"
URL_CHART_VALUE: Final = "prefect.apiUrl"
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
# RFC 3986 characters that are safe in a Prefect API URL; no '@' (userinfo), no '\\',
# no whitespace, no '?'/'#' (a Prefect API URL has neither).
_SAFE_URL: Final = re.compile(r"^[A-Za-z0-9\-._~:/\[\]%!$&'()*+,;=]+$")
_HOST: Final = re.compile(
    r"^([a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*|[0-9a-f:.]*:[0-9a-f:.]*)$"
)
_ENCODED_SEPARATORS: Final = re.compile(r"%(2e|2f|5c|40|00)", re.IGNORECASE)


class UnsafeURLError(ValueError):
    """A URL the operator refuses to parse leniently."""


@dataclass(frozen=True)
class Endpoint:
    """A URL reduced to what decides where a request goes."""

    scheme: str
    host: str
    port: int
    segments: tuple[str, ...]

    def within(self, prefix: Endpoint) -> bool:
        """Same scheme, host and port, and `prefix`'s path segments lead this path."""
        return (self.scheme, self.host, self.port) == (
            prefix.scheme,
            prefix.host,
            prefix.port,
        ) and self.segments[: len(prefix.segments)] == prefix.segments


def parse_endpoint(url: str) -> Endpoint:
    """Parse an http(s) URL strictly; raise UnsafeURLError naming what is wrong."""
    if not _SAFE_URL.match(url):
        raise UnsafeURLError(
            f"{url!r}: only plain http(s) URLs without userinfo ('@'), backslashes, spaces, "
            "query or fragment are accepted"
        )
    if _ENCODED_SEPARATORS.search(url):
        raise UnsafeURLError(f"{url!r}: percent-encoded '.', '/', '\\', '@' or NUL")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise UnsafeURLError(f"{url!r}: the scheme must be http or https")
    try:
        port = parts.port or _DEFAULT_PORTS[scheme]
    except ValueError as exc:
        raise UnsafeURLError(f"{url!r}: bad port ({exc})") from None
    if "%" in parts.netloc:
        raise UnsafeURLError(f"{url!r}: percent-encoding in the host")
    host = (parts.hostname or "").rstrip(".")  # 'example.com.' is 'example.com'
    if not _HOST.match(host):
        raise UnsafeURLError(f"{url!r}: not a DNS name or IP address as host")
    segments = tuple(parts.path.split("/")[1:]) if parts.path else ()
    if segments and segments[-1] == "":
        segments = segments[:-1]  # '/api/' and '/api' are the same endpoint
    if any(seg in (".", "..") for seg in segments):
        raise UnsafeURLError(f"{url!r}: '.' or '..' path segments")
    return Endpoint(scheme, host.lower(), port, segments)


def same_endpoint(a: str, b: str) -> bool:
    """Whether two URLs name the same API (False when either is unsafe)."""
    try:
        return parse_endpoint(a) == parse_endpoint(b)
    except UnsafeURLError:
        return False


def parse_allowlist(entries: Sequence[str]) -> tuple[bool, tuple[Endpoint, ...]]:
    """(any URL allowed, the prefixes); an unsafe entry is an error the operator starts with."""
    prefixes = []
    any_url = False
    for raw in entries:
        entry = raw.strip()
        if not entry:
            continue
        if entry == ANY_URL:
            any_url = True
            continue
        prefixes.append(parse_endpoint(entry))
    return any_url, tuple(prefixes)


@dataclass(frozen=True)
class URLDecision:
    """What the operator may do with a WorkPool's API URL."""

    url: str | None
    """The URL to call; None when refused."""
    operator_credentials: bool
    """True only for the operator-wide URL: the operator-wide key may be sent there."""
    refusal: str | None = None
    """Why the URL is refused (the condition message), naming the setting to change."""
    reason: str = "APIURLNotAllowed"
    """The condition reason when refused."""


def decide(spec_url: str | None, operator_url: str | None, allowlist: Sequence[str]) -> URLDecision:
    """Apply "credentials follow their URL" to a WorkPool's ``spec.api.url``."""
    if spec_url is None:
        if operator_url is None:
            return URLDecision(
                None,
                False,
                f"spec.api.url: no Prefect API URL; set it here or give the "
                f"operator {URL_SETTING} ({URL_CHART_VALUE})",
                reason="InvalidSpec",
            )
        return URLDecision(operator_url, True)
    if operator_url is not None and same_endpoint(spec_url, operator_url):
        return URLDecision(operator_url, True)  # as the admin wrote it
    try:
        endpoint = parse_endpoint(spec_url)
        any_url, prefixes = parse_allowlist(allowlist)
    except UnsafeURLError as exc:
        return URLDecision(None, False, f"spec.api.url {exc}")
    if any_url or any(endpoint.within(prefix) for prefix in prefixes):
        return URLDecision(spec_url, False)
    return URLDecision(
        None,
        False,
        f"spec.api.url {spec_url!r} is not the operator's Prefect API URL and not on the "
        f"admin's allowlist; the operator makes no request to it. A cluster admin may allow it "
        f"with the chart value {ALLOWLIST_CHART_VALUE} (operator setting {ALLOWLIST_SETTING}), "
        f"or make it the operator-wide URL ({URL_CHART_VALUE} / {URL_SETTING}). An allowed URL "
        "gets only the WorkPool's own credentials (api.apiKeySecretRef / "
        "api.authStringSecretRef), never the operator's.",
    )

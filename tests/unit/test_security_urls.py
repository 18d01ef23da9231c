"""Credentials follow their URL (issue #15, findings 1 and 2): the pure URL policy and
`pool_factory.build_runtime`, which must refuse before reading a Secret or building a client."""

from __future__ import annotations

from typing import Any

import pytest

from prefect_job_operator.kube.client import KubeError
from prefect_job_operator.metrics import Metrics
from prefect_job_operator.pool_factory import PolicyRefusal, build_runtime
from prefect_job_operator.prefect_api.client import PrefectClient
from prefect_job_operator.registry import OperatorContext
from prefect_job_operator.security.urls import (
    UnsafeURLError,
    decide,
    parse_allowlist,
    parse_endpoint,
    same_endpoint,
)
from prefect_job_operator.settings import OperatorSettings
from tests.unit.fakes import workpool_body

OP = "https://api.prefect.cloud/api/accounts/a1/workspaces/w1"


@pytest.mark.parametrize(
    "url",
    [
        "http://good@evil.example/api",
        "http://good.example\\@evil.example/api",
        "http://good.example%40evil.example/api",
        "http://%65vil.example/api",
        "http://good.example/api/../../evil",
        "http://good.example/api/%2e%2e/evil",
        "http://good.example/api/%2F..",
        "http://good.example/api?next=http://evil",
        "http://good.example/api#frag",
        "ftp://good.example/api",
        "http://good.example:99999/api",
        "http:///api",
        "http://good example/api",
    ],
)
def test_ambiguous_urls_are_refused_not_normalised(url: str) -> None:
    with pytest.raises(UnsafeURLError):
        parse_endpoint(url)


def test_equivalent_spellings_are_the_same_endpoint() -> None:
    assert same_endpoint("HTTPS://API.Prefect.Cloud.:443/api/", "https://api.prefect.cloud/api")
    assert same_endpoint("http://127.0.0.1:80/api", "http://127.0.0.1/api")
    assert not same_endpoint("http://127.0.0.1:4200/api", "https://127.0.0.1:4200/api")
    assert not same_endpoint("http://127.0.0.1:4200/api", "http://localhost:4200/api")
    assert not same_endpoint("http://h/API", "http://h/api")  # paths are case-sensitive


def test_the_operator_url_gets_the_operator_credentials() -> None:
    assert decide(None, OP, []).operator_credentials
    same = decide("https://API.prefect.cloud/api/accounts/a1/workspaces/w1/", OP, [])
    assert same.url is not None and same.operator_credentials


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/api",
        f"{OP}2",  # another workspace of the same account: a prefix string, not the endpoint
        "https://api.prefect.cloud/api/accounts/a1/workspaces/other",
        f"http://{OP.removeprefix('https://')}",
        "https://api.prefect.cloud@127.0.0.1/api/accounts/a1/workspaces/w1",
    ],
)
def test_any_other_url_is_refused_without_an_allowlist(url: str) -> None:
    d = decide(url, OP, [])
    assert d.url is None and not d.operator_credentials
    assert d.reason == "APIURLNotAllowed"
    assert d.refusal is not None
    assert "security.allowedApiUrls" in d.refusal or "userinfo ('@')" in d.refusal


def test_the_allowlist_matches_components_and_whole_segments() -> None:
    allow = ["https://prefect.example.com/api/accounts/a1/", "http://127.0.0.1:4300"]
    ok = decide("https://PREFECT.example.com.:443/api/accounts/a1/workspaces/w", OP, allow)
    assert ok.url is not None and not ok.operator_credentials
    assert decide("http://127.0.0.1:4300/anything", OP, allow).url is not None
    for refused in (
        "https://prefect.example.com/api/accounts/a10/workspaces/w",  # not a whole segment
        "http://prefect.example.com/api/accounts/a1/workspaces/w",  # scheme
        "https://prefect.example.com:8443/api/accounts/a1/workspaces/w",  # port
        "https://prefect.example.com.evil.example/api/accounts/a1/",  # host suffix
        "http://127.0.0.1:4301/api",
        "https://prefect.example.com/api/accounts/a1/../a2/workspaces/w",
    ):
        assert decide(refused, OP, allow).url is None, refused
    anything = decide("http://10.0.0.7/api", OP, ["*"])
    assert anything.url is not None and not anything.operator_credentials


def test_no_url_anywhere_is_an_invalid_spec() -> None:
    d = decide(None, None, [])
    assert d.url is None and d.reason == "InvalidSpec"


def test_a_bad_allowlist_entry_stops_the_operator_at_startup() -> None:
    with pytest.raises(UnsafeURLError):
        parse_allowlist(["http://user@host/api"])
    with pytest.raises(ValueError, match="PJO_ALLOWED_API_URLS"):
        OperatorSettings(allowed_api_urls="https://ok.example/api, http://a@b/")
    s = OperatorSettings(allowed_api_urls=" https://ok.example/api , ,*")
    assert s.allowed_api_url_list == ["https://ok.example/api", "*"]


class _Kube:
    """Records Secret reads; `secrets` maps (namespace, name, key) to a value."""

    def __init__(self, secrets: dict[tuple[str, str, str], str] | None = None) -> None:
        self.secrets = secrets or {}
        self.reads: list[tuple[str, str, str]] = []

    async def read_secret_value(self, namespace: str, name: str, key: str) -> str:
        self.reads.append((namespace, name, key))
        if (namespace, name, key) not in self.secrets:
            raise KubeError(404, "NotFound", name)
        return self.secrets[(namespace, name, key)]


def _ctx(kube: _Kube, **settings: Any) -> OperatorContext:
    s = OperatorSettings(PJO_API_URL=OP, PJO_API_KEY="operator-key", **settings)
    return OperatorContext(settings=s, kube=kube, metrics=Metrics(), events=None)  # type: ignore[arg-type]


def _auth(rt: Any) -> str | None:
    return rt.ports.client._http.headers.get("Authorization")  # type: ignore[no-any-return]


async def test_a_refused_url_reads_no_secret_and_builds_no_client() -> None:
    kube = _Kube({("default", "db-password", "password"): "hunter2"})
    spec = {
        "api": {
            "url": "http://127.0.0.1:9/api",
            "apiKeySecretRef": {"name": "db-password", "key": "password"},
        }
    }
    with pytest.raises(PolicyRefusal) as err:
        await build_runtime(_ctx(kube), workpool_body(spec=spec))
    assert err.value.reason == "APIURLNotAllowed"
    assert kube.reads == []


async def test_an_allowed_url_never_gets_the_operator_key_nor_the_job_key_secret() -> None:
    kube = _Kube({("default", "own", "api-key"): "own-key"})
    ctx = _ctx(kube, allowed_api_urls="http://127.0.0.1:4300/", api_key_secret_name="prefect-api")
    bare = await build_runtime(
        ctx, workpool_body(spec={"api": {"url": "http://127.0.0.1:4300/api"}})
    )
    try:
        assert _auth(bare) is None
        assert bare.synced.worker_ctx is not None and bare.synced.worker_ctx.secret_env == {}
    finally:
        await bare.ports.client.aclose()
    spec = {"api": {"url": "http://127.0.0.1:4300/api", "apiKeySecretRef": {"name": "own"}}}
    own = await build_runtime(ctx, workpool_body(spec=spec))
    try:
        assert _auth(own) == "Bearer own-key"
        assert own.synced.worker_ctx is not None
        assert set(own.synced.worker_ctx.secret_env) == {"PREFECT_API_KEY"}
        assert own.synced.worker_ctx.secret_env["PREFECT_API_KEY"].name == "own"
    finally:
        await own.ports.client.aclose()


async def test_the_operator_url_keeps_the_operator_key() -> None:
    ctx = _ctx(_Kube(), api_key_secret_name="prefect-api")
    for spec in ({}, {"api": {"url": OP + "/"}}):
        rt = await build_runtime(ctx, workpool_body(spec=spec or {"workQueues": []}))
        try:
            assert _auth(rt) == "Bearer operator-key"
            assert rt.synced.worker_ctx is not None
            assert rt.synced.worker_ctx.secret_env["PREFECT_API_KEY"].name == "prefect-api"
        finally:
            await rt.ports.client.aclose()


def test_the_refusal_reason_reaches_the_conditions() -> None:
    from datetime import UTC, datetime

    from prefect_job_operator.writeback.cr_status import status_patch
    from prefect_job_operator.writeback.outcomes import PoolReport

    report = PoolReport(invalid_spec="refused", invalid_reason="APIURLNotAllowed")
    patch = status_patch(report, previous={}, generation=1, now=datetime.now(UTC))
    reasons = {c["type"]: c["reason"] for c in patch["conditions"]}
    assert reasons["Ready"] == reasons["PoolSynced"] == "APIURLNotAllowed"


async def test_the_operators_custom_headers_follow_its_url_too() -> None:
    headers = {"X-Proxy-Token": "operator-proxy-token"}
    ctx = _ctx(
        _Kube(), allowed_api_urls="http://127.0.0.1:4300/", PJO_CLIENT_CUSTOM_HEADERS=headers
    )
    other = await build_runtime(
        ctx, workpool_body(spec={"api": {"url": "http://127.0.0.1:4300/api"}})
    )
    own = await build_runtime(ctx, workpool_body(spec={"workQueues": []}))
    try:
        other_client, own_client = other.ports.client, own.ports.client
        assert isinstance(other_client, PrefectClient) and isinstance(own_client, PrefectClient)
        assert "x-proxy-token" not in other_client._http.headers
        assert own_client._http.headers["x-proxy-token"] == "operator-proxy-token"
    finally:
        await other.ports.client.aclose()
        await own.ports.client.aclose()

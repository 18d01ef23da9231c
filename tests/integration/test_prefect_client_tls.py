"""PrefectClient to a real Prefect server behind TLS with a private CA (issue 10, item 6)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from prefect_job_operator.prefect_api.client import PrefectClient, TlsOptions
from prefect_job_operator.prefect_api.errors import APIUnreachable, WorkPoolNotFound
from tests.infra.prefect_server import PrefectServer
from tests.infra.tls_proxy import TlsProxy, write_server_pki

pytestmark = [pytest.mark.prefect, pytest.mark.timeout(300)]


@pytest.fixture
def proxy(prefect_server: PrefectServer, tmp_path: Path) -> Iterator[TlsProxy]:
    ca, cert, key = write_server_pki(tmp_path / "tls")
    port = urlsplit(prefect_server.api_url).port
    assert port is not None
    running = TlsProxy(port, cert, key, ca).start()
    yield running
    running.stop()


async def test_untrusted_certificate_fails_at_once_and_says_what_to_do(proxy: TlsProxy) -> None:
    client = PrefectClient(proxy.url(), max_retries=6)
    started = time.monotonic()
    with pytest.raises(APIUnreachable) as info:
        await client.read_work_pool("no-such-pool")
    await client.aclose()
    elapsed = time.monotonic() - started
    assert "certificate verify failed" in str(info.value).lower()
    assert "caBundleFrom" in str(info.value)
    assert elapsed < 3, f"a certificate failure was retried ({elapsed:.1f}s)"


@pytest.mark.parametrize("mode", ["ca_pem", "ca_file", "insecure"])
async def test_private_ca_or_no_verification_reaches_the_server(proxy: TlsProxy, mode: str) -> None:
    ca = proxy.ca
    assert ca is not None
    tls = {
        "ca_pem": TlsOptions(ca_pem=ca.read_text()),
        "ca_file": TlsOptions(ca_file=str(ca)),
        "insecure": TlsOptions(insecure_skip_verify=True),
    }[mode]
    async with PrefectClient(
        proxy.url(), tls=tls, custom_headers={"X-Pjo-Test": f"tls-{mode}"}
    ) as client:
        with pytest.raises(WorkPoolNotFound):  # a real answer from the real server
            await client.read_work_pool(f"no-such-pool-{mode}")
    assert proxy.saw_header("X-Pjo-Test", f"tls-{mode}")

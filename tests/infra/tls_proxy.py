"""A TLS-terminating TCP forwarder on 127.0.0.1 with a private CA made for the test.

Test infrastructure only: it puts the real Prefect server behind ``https://`` with a
certificate no system trusts, so tests can show what the operator does with and without
the CA. It runs its own event loop in a thread (tests block in ``kubectl`` calls), and
records the header lines clients send, to check custom headers arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import re
import ssl
import threading
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.infra.pki import _cert_pem, _key_pem, _write

_HEADER = re.compile(rb"^([A-Za-z0-9-]+):[ \t]*(.*?)\r?$", re.MULTILINE)


def write_server_pki(directory: Path) -> tuple[Path, Path, Path]:
    """A fresh CA and a 127.0.0.1 server certificate: (ca.crt, server.crt, server.key)."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pjo-test-prefect-ca")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_encipherment=False,
                content_commitment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = (directory / "ca.crt", directory / "server.crt", directory / "server.key")
    _write(paths[0], _cert_pem(ca))
    _write(paths[1], _cert_pem(cert))
    _write(paths[2], _key_pem(key), private=True)
    return paths


class TlsProxy:
    """``https://127.0.0.1:<port>`` → ``127.0.0.1:<upstream_port>`` (plain TCP)."""

    def __init__(self, upstream_port: int, cert: Path, key: Path, ca: Path | None = None) -> None:
        self.upstream_port = upstream_port
        self.ca = ca
        """The CA that signed `cert` (for clients), when the caller has it."""
        self._ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._ctx.load_cert_chain(cert, key)
        self.port = 0
        self.headers: set[tuple[str, str]] = set()
        """(lower-cased name, value) of every header line seen from clients."""
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.base_events.Server | None = None

    def start(self) -> TlsProxy:
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        fut.result(timeout=10)
        return self

    async def _start(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", 0, ssl=self._ctx, ssl_handshake_timeout=10
        )
        self.port = self._server.sockets[0].getsockname()[1]

    def url(self, path: str = "/api") -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def saw_header(self, name: str, value: str) -> bool:
        return (name.lower(), value) in set(self.headers)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, sniff: bool) -> None:
            try:
                while data := await src.read(65536):
                    if sniff:
                        for name, value in _HEADER.findall(data):
                            self.headers.add(
                                (name.decode().lower(), value.decode(errors="replace"))
                            )
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, ssl.SSLError, OSError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    dst.close()

        await asyncio.gather(pump(reader, up_writer, True), pump(up_reader, writer, False))

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            handlers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in handlers:
                task.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._loop.close()  # its self-pipe sockets too (a ResourceWarning otherwise)

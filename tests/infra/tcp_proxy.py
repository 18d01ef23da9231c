"""A TCP proxy on loopback that tests control: the network faults of the fault suite.

It runs its own asyncio loop in a thread, so a test that blocks (kubectl, sleep) never
stalls the traffic it relays. TLS passes through untouched (the apiserver's certificate
names 127.0.0.1, so a client pointed at the proxy verifies it as usual).

    with TcpProxy("127.0.0.1", 6443) as proxy:     # proxy.port relays to 6443
        proxy.cut()          # reset every connection and refuse new ones (a partition
                             # seen as "connection refused/reset")
        proxy.blackhole()    # accept but never answer, and stall open connections
        proxy.restore()
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from pathlib import Path
from typing import Any, Literal

import yaml

Mode = Literal["pass", "cut", "blackhole"]


class TcpProxy:
    def __init__(self, target_host: str, target_port: int, listen_port: int = 0) -> None:
        assert target_host.startswith("127."), "loopback only"
        self.target = (target_host, target_port)
        self.listen_port = listen_port
        self.port = 0
        self.mode: Mode = "pass"
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.base_events.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> TcpProxy:
        self._thread.start()
        fut = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        fut.result(10)
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self._loop.close()  # its self-pipe sockets too (a ResourceWarning otherwise)

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- faults --------------------------------------------------------------------------
    def cut(self) -> None:
        """Reset every open connection; new ones are closed at once."""
        self._call(self._set, "cut")

    def blackhole(self) -> None:
        """New connections are accepted and never answered; open ones stall."""
        self._call(self._set, "blackhole")

    def restore(self) -> None:
        self._call(self._set, "pass")

    def _call(self, fn: Any, *args: Any) -> None:
        asyncio.run_coroutine_threadsafe(fn(*args), self._loop).result(10)

    async def _set(self, mode: Mode) -> None:
        self.mode = mode
        if mode != "pass":
            for w in list(self._open):
                _abort(w)
            self._open.clear()

    # -- relay ---------------------------------------------------------------------------
    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.listen_port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for w in list(self._open):
            _abort(w)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.mode == "cut":
            _abort(writer)
            return
        if self.mode == "blackhole":
            self._open.add(writer)
            with contextlib.suppress(Exception):
                while await reader.read(65536):
                    pass
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            _abort(writer)
            return
        self._open.update((writer, up_writer))
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )
        for w in (writer, up_writer):
            self._open.discard(w)
            _abort(w)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                while self.mode == "blackhole":
                    await asyncio.sleep(0.1)
                if self.mode == "cut":
                    break
                writer.write(data)
                await writer.drain()
        finally:
            with contextlib.suppress(Exception):
                writer.close()


def _abort(writer: asyncio.StreamWriter) -> None:
    transport = writer.transport
    with contextlib.suppress(Exception):
        transport.abort()


def kubeconfig_via(source: Path, dest: Path, port: int) -> Path:
    """A copy of a kubeconfig whose clusters talk to 127.0.0.1:<port> (the proxy)."""
    cfg = yaml.safe_load(source.read_text())
    for cluster in cfg.get("clusters") or []:
        cluster["cluster"]["server"] = f"https://127.0.0.1:{port}"
    dest.write_text(yaml.safe_dump(cfg))
    return dest

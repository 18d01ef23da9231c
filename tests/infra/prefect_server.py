"""A real Prefect 3.9.1 server for the tests (and PostgreSQL for the benchmarks).

``prefect_server`` is a session fixture: one ``prefect server start`` (SQLite, its own
PREFECT_HOME, analytics and UI off) shared by every test that asks for it. The same
machinery is available as plain context managers for the benchmarks:

    with start_postgres() as pg, start_prefect_server(database_url=pg.url) as server:
        ...

``start_postgres`` needs Debian's PostgreSQL (``apt-get install -y postgresql``):
initdb/pg_ctl are taken from /usr/lib/postgresql/*/bin.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

HEALTH_TIMEOUT_SECONDS = float(os.environ.get("PJO_TEST_PREFECT_START_TIMEOUT", "180"))
"""90 s is plenty on an idle box (cold start 11-14 s), but a cold start took 84.5 s on the
shared 2-core machine under load, so the default leaves room."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _clean_environ() -> dict[str, str]:
    """The caller's environment without any PREFECT_* setting that could leak in."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}


@dataclass
class PrefectServer:
    api_url: str
    home: Path
    log_path: Path
    env: dict[str, str]
    pid: int
    start_seconds: float
    database_url: str
    process: subprocess.Popen[bytes] | None = field(repr=False)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _stop_process_group(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def migrated_sqlite_template() -> Path:
    """An empty, fully migrated SQLite DB for this prefect version, built once per machine.

    Migrations are half of a cold start's CPU; copying this file into a fresh
    PREFECT_HOME turns every later start into a warm one.
    """
    version = importlib.metadata.version("prefect")
    cache = Path(tempfile.gettempdir()) / f"pjo-prefect-{version}-migrated.db"
    if cache.exists():
        return cache
    build = Path(tempfile.mkdtemp(prefix="pjo-prefect-migrate-"))
    try:
        db = build / "prefect.db"
        env = {
            **_clean_environ(),
            "PREFECT_HOME": str(build),
            "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{db}",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }
        subprocess.run(
            [sys.executable, "-m", "prefect", "server", "database", "upgrade", "-y"],
            env=env,
            check=True,
            capture_output=True,
            timeout=600,
        )
        if any(build.glob("prefect.db-*")):
            raise RuntimeError(f"migration left WAL/journal files in {build}")
        os.replace(db, cache)  # atomic: concurrent builders just overwrite each other
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return cache


@contextlib.contextmanager
def start_prefect_server(
    database_url: str | None = None,
    port: int | None = None,
    home: Path | None = None,
    timeout: float = HEALTH_TIMEOUT_SECONDS,
    extra_env: dict[str, str] | None = None,
    cold: bool = False,
) -> Iterator[PrefectServer]:
    """Start ``prefect server start`` in its own process group; always torn down.

    Without ``database_url`` the server uses SQLite in ``home``, seeded from
    :func:`migrated_sqlite_template` unless ``cold`` (then it migrates itself).
    """
    own_home = home is None
    home = Path(tempfile.mkdtemp(prefix="pjo-prefect-home-")) if home is None else home
    home.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    if database_url is None:
        db = home / "prefect.db"
        if not cold and not db.exists():
            shutil.copyfile(migrated_sqlite_template(), db)
        database_url = f"sqlite+aiosqlite:///{db}"
    log_path = home / "server.log"
    server_env = {
        **_clean_environ(),
        "PREFECT_HOME": str(home),
        "PREFECT_API_DATABASE_CONNECTION_URL": database_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_LOGGING_LEVEL": "WARNING",
        "PREFECT_SERVER_UI_ENABLED": "false",
        **(extra_env or {}),
    }
    api_url = f"http://127.0.0.1:{port}/api"
    command = [sys.executable, "-m", "prefect", "server", "start"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    started = time.monotonic()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            env=server_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        _wait_healthy(api_url, process, log_path, timeout)
        client_env = {**_clean_environ(), "PREFECT_API_URL": api_url, "PREFECT_HOME": str(home)}
        yield PrefectServer(
            api_url=api_url,
            home=home,
            log_path=log_path,
            env=client_env,
            pid=process.pid,
            start_seconds=time.monotonic() - started,
            database_url=database_url,
            process=process,
        )
    finally:
        _stop_process_group(process)
        if own_home:
            shutil.rmtree(home, ignore_errors=True)


def _wait_healthy(
    api_url: str, process: subprocess.Popen[bytes], log_path: Path, timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"prefect server exited with {process.returncode}:\n"
                + log_path.read_text(errors="replace")[-4000:]
            )
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{api_url}/health", timeout=2.0).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(
        f"prefect server not healthy after {timeout:.0f} s:\n"
        + log_path.read_text(errors="replace")[-4000:]
    )


# ---------------------------------------------------------------------- PostgreSQL


@dataclass
class PostgresCluster:
    url: str
    port: int
    data_dir: Path


def _postgres_bin() -> Path:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if not candidates:
        raise RuntimeError(
            "PostgreSQL is not installed; the benchmarks need it: apt-get install -y postgresql"
        )
    return candidates[-1].parent


@contextlib.contextmanager
def start_postgres(
    tmpdir: Path | str | None = None, port: int | None = None
) -> Iterator[PostgresCluster]:
    """A throw-away PostgreSQL cluster (trust auth, 127.0.0.1 only) with a ``prefect`` DB.

    As root, initdb must run as the ``postgres`` user, so the cluster lives in its own
    mkdtemp directory under ``tmpdir`` (default /tmp) that is chowned to it.
    """
    bindir = _postgres_bin()
    port = port or free_port()
    base = Path(tempfile.mkdtemp(prefix="pjo-pg-", dir=tmpdir))
    data = base / "data"
    as_postgres: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(base, user="postgres", group="postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]

    def run(*args: str) -> None:
        subprocess.run([*as_postgres, *args], check=True, capture_output=True, timeout=120)

    run(str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8")
    options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1"
    run(
        str(bindir / "pg_ctl"),
        "-D",
        str(data),
        "-l",
        str(base / "server.log"),
        "-w",
        "-o",
        options,
        "start",
    )
    try:
        run(
            str(bindir / "createdb"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-U",
            "postgres",
            "prefect",
        )
        yield PostgresCluster(
            url=f"postgresql+asyncpg://postgres@127.0.0.1:{port}/prefect", port=port, data_dir=data
        )
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)


# ---------------------------------------------------------------------- pytest


REUSE_ENV = "PJO_TEST_PREFECT_API_URL"
_start_failure: Exception | None = None


def _reuse_running_server(api_url: str, home: Path) -> PrefectServer:
    """Developer shortcut: point the tests at a server that is already running."""
    if httpx.get(f"{api_url}/health", timeout=5.0).status_code != 200:
        raise RuntimeError(f"{REUSE_ENV}={api_url} is not healthy")
    return PrefectServer(
        api_url=api_url,
        home=home,
        log_path=home / "server.log",
        env={**_clean_environ(), "PREFECT_API_URL": api_url},
        pid=0,
        start_seconds=0.0,
        database_url="",
        process=None,
    )


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """One real Prefect server (SQLite) for the whole session.

    Set ``PJO_TEST_PREFECT_API_URL`` to reuse a running server while iterating locally.
    """
    global _start_failure
    home = tmp_path_factory.mktemp("prefect-home")
    if os.environ.get(REUSE_ENV):
        yield _reuse_running_server(os.environ[REUSE_ENV].rstrip("/"), home)
        return
    if _start_failure is not None:  # pytest re-runs a failed session fixture per test
        pytest.fail(f"the Prefect server did not start earlier in this session: {_start_failure}")
    try:
        server_context = start_prefect_server(home=home)
        server = server_context.__enter__()
    except Exception as exc:
        _start_failure = exc
        raise
    try:
        yield server
    finally:
        server_context.__exit__(None, None, None)

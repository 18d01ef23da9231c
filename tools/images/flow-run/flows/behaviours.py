"""Flows that make a flow-run container end in a given way, for the end-to-end tests
(entrypoints `behaviours.py:<flow>` from /opt/prefect/flows)."""

import os
import time

from prefect import flow


@flow(log_prints=True)
def exit_with(code: int = 3) -> None:
    """End the container's process with `code` at once (no Prefect state is reported)."""
    print(f"exiting with code {code}")
    os._exit(code)


@flow(log_prints=True)
def allocate(mib: int = 512, hold_seconds: float = 60) -> None:
    """Touch `mib` MiB of memory (every page written, so it is resident), then hold it."""
    chunks = [b"\x01" * (1 << 20) for _ in range(mib)]
    print(f"holding {len(chunks)} MiB")
    time.sleep(hold_seconds)


@flow(log_prints=True)
def sleep_for(seconds: float = 600) -> None:
    """Run until cancelled (SIGTERM) or `seconds` pass."""
    print(f"sleeping for up to {seconds}s")
    time.sleep(seconds)

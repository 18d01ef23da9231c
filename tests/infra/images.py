"""The image archives `make image` builds (tools/images/build.sh), for clusters to import.

The script caches each archive by its inputs, so after the first build this is a lookup.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

BUILD_SCRIPT = Path(__file__).resolve().parents[2] / "tools" / "images" / "build.sh"


def build(*names: str, timeout: float = 3600) -> tuple[Path, ...]:
    """Build (or reuse) the named images ("operator", "flow-run"); their archives, in order."""
    out = subprocess.run(
        ["bash", str(BUILD_SCRIPT), *names],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
        timeout=timeout,
    ).stdout
    paths = tuple(Path(line) for line in out.strip().splitlines()[-len(names) :])
    if len(paths) != len(names) or not all(p.is_file() for p in paths):
        raise RuntimeError(f"{BUILD_SCRIPT} {' '.join(names)} printed no archives: {out!r}")
    return paths

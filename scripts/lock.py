"""Write (or check) the images' dependency sets, pinned with hashes, from pyproject.toml.

    make lock                        # rewrite both lock files
    python scripts/lock.py --check   # fail if either no longer matches (make verify-generated)

- requirements.lock (the Dockerfile): the operator's runtime dependencies (`[project]
  dependencies`) and its build requirements (`[build-system] requires`, so the image builds
  the wheel without fetching anything unpinned).
- tools/images/flow-run/requirements.lock (the local flow-run image): the `prefect==` the
  tests pin, and its dependencies.

Both for CPython 3.11 on every platform (the amd64 and arm64 images use the same file).
`uv pip compile --exclude-newer` makes each resolution a function of pyproject.toml and
EXCLUDE_NEWER only: the check recompiles and compares, and a new release on PyPI never makes
it fail. To take newer dependencies, move EXCLUDE_NEWER forward and run `make lock`.
"""

from __future__ import annotations

import argparse
import difflib
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PYTHON_VERSION = "3.11"
EXCLUDE_NEWER = "2026-12-01T00:00:00Z"


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def build_requirements() -> str:
    """The `[build-system] requires` of pyproject.toml, one per line (uv reads them on stdin)."""
    return "".join(f"{req}\n" for req in _pyproject()["build-system"]["requires"])


def prefect_requirement() -> str:
    """The `prefect==` pin of the test extra: the flow-run image runs what the tests run."""
    (pin,) = [r for r in _pyproject()["project"]["optional-dependencies"]["test"]
              if r.replace(" ", "").startswith("prefect==")]  # fmt: skip
    return f"{pin}\n"


# lock file (relative to the repository) -> (files uv reads, what uv reads on stdin)
LOCKS: dict[str, tuple[list[str], Callable[[], str]]] = {
    "requirements.lock": (["pyproject.toml", "-"], build_requirements),
    "tools/images/flow-run/requirements.lock": (["-"], prefect_requirement),
}


def compile_lock(name: str, out: Path) -> None:
    uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    if uv is None:
        raise SystemExit("uv not found: run `make venv` (it is a dev dependency)")
    argv = [
        uv, "pip", "compile", *LOCKS[name][0],
        "--generate-hashes", "--universal", "--python-version", PYTHON_VERSION,
        "--exclude-newer", EXCLUDE_NEWER, "--custom-compile-command", "make lock",
        "--quiet", "--output-file", str(out),
    ]  # fmt: skip
    subprocess.run(argv, input=LOCKS[name][1](), text=True, cwd=ROOT, check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a lock file drifted")
    args = parser.parse_args()
    stale = 0
    for name in LOCKS:
        lock = ROOT / name
        if not args.check:
            compile_lock(name, lock)
            print(f"wrote {name}")
            continue
        with tempfile.TemporaryDirectory() as tmp:
            fresh = Path(tmp) / "requirements.lock"
            # uv keeps the pins of an existing output file where they still resolve (as
            # `make lock` does): without them the check would move to newer releases alone.
            if lock.exists():
                shutil.copyfile(lock, fresh)
            compile_lock(name, fresh)
            want, have = fresh.read_text(), lock.read_text() if lock.exists() else ""
        if want == have:
            print(f"{name} matches pyproject.toml")
            continue
        diff = difflib.unified_diff(have.splitlines(True), want.splitlines(True), name, "fresh")
        sys.stdout.writelines(diff)
        print(f"{name} is stale: run `make lock` and commit it", file=sys.stderr)
        stale += 1
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main())

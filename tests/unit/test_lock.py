"""The hash-locked dependency sets (requirements.lock, the flow-run image's) agree with
pyproject.toml. Offline; `make verify-generated` also recompiles them (scripts/lock.py)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def pins(lock: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) of every `name==version` entry of a `--generate-hashes` lock."""
    entries = re.split(r"\n(?=[A-Za-z0-9])", lock.read_text())
    out = {}
    for entry in entries:
        m = re.match(r"([A-Za-z0-9_.\-]+)==([^\s;\\]+)", entry)
        if m:
            name = re.sub(r"[-_.]+", "-", m[1]).lower()
            out[name] = (m[2], re.findall(r"--hash=sha256:([0-9a-f]{64})", entry))
    return out


def assert_satisfied(requirements: list[str], locked: dict[str, tuple[str, list[str]]]) -> None:
    for text in requirements:
        req = Requirement(text)
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        assert name in locked, f"{req.name} is not in the lock: run `make lock`"
        version, _ = locked[name]
        assert req.specifier.contains(version, prereleases=True), (
            f"lock pins {name}=={version}, pyproject asks {text}: run `make lock`"
        )


def test_requirements_lock_pins_every_runtime_and_build_dependency_with_hashes() -> None:
    locked = pins(ROOT / "requirements.lock")
    assert_satisfied(PYPROJECT["project"]["dependencies"], locked)
    assert_satisfied(PYPROJECT["build-system"]["requires"], locked)
    assert all(hashes for _, hashes in locked.values())
    assert "prefect" not in locked  # the operator never depends on prefect


def test_the_flow_run_lock_pins_the_tests_prefect() -> None:
    locked = pins(ROOT / "tools" / "images" / "flow-run" / "requirements.lock")
    (pin,) = [r for r in PYPROJECT["project"]["optional-dependencies"]["test"] if "prefect==" in r]
    assert_satisfied([pin], locked)
    assert all(hashes for _, hashes in locked.values())


def test_the_image_build_uses_the_lock() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "COPY requirements.lock ./" in dockerfile
    assert "!requirements.lock" in (ROOT / ".dockerignore").read_text().splitlines()
    flow_run = (ROOT / "tools" / "images" / "flow-run" / "Dockerfile").read_text()
    assert "--require-hashes -r /opt/prefect/requirements.lock" in flow_run

"""The wheel installs into a clean venv, with its dependencies, and its console script runs.

This is what the Dockerfile's builder stage does, minus Docker: build the wheel, install it
with only binary distributions (the image has no compiler), run the command. It needs PyPI
(or a warm pip cache) and takes about a minute, hence `slow` — but it runs by default.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]

pytestmark = pytest.mark.slow


def run(*argv: str | Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )
    assert proc.returncode == 0, f"{argv} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Build from a copy of what the Dockerfile copies, so setuptools' build/ and egg-info
    # never land in the working tree (and the image's build context is proven sufficient).
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, src / name)
    shutil.copytree(
        ROOT / "operator",
        src / "operator",
        ignore=shutil.ignore_patterns("*.egg-info", "__pycache__", "*.pyc"),
    )
    out = tmp_path_factory.mktemp("wheel")
    started = time.monotonic()
    proc = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-v", "-w", out, src)
    print(f"wheel built in {time.monotonic() - started:.1f}s")
    (out / "build.log").write_text(proc.stdout + proc.stderr)
    (built,) = out.glob("prefect_job_operator-*.whl")
    return built


def test_the_build_has_no_setuptools_deprecation(wheel: Path) -> None:
    """`project.license` as a TOML table was deprecated; the SPDX string is not."""
    log = (wheel.parent / "build.log").read_text()
    assert "Building wheel for prefect-job-operator" in log or "prefect_job_operator" in log
    assert "SetuptoolsDeprecationWarning" not in log
    assert "License classifiers are deprecated" not in log


@pytest.fixture(scope="module")
def clean_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv (no system site-packages) with the wheel and its dependencies."""
    env_dir = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(with_pip=True, system_site_packages=False).create(env_dir)
    started = time.monotonic()
    run(
        env_dir / "bin" / "python",
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--only-binary=:all:",  # as in the image: nothing may need a compiler
        wheel,
    )
    elapsed = time.monotonic() - started
    print(f"wheel and dependencies installed in {elapsed:.1f}s")
    return env_dir / "bin"


def test_the_wheel_holds_only_the_package(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/", 1)[0] for n in names}
    assert top == {"prefect_job_operator", f"prefect_job_operator-{VERSION}.dist-info"}
    assert "prefect_job_operator/py.typed" in names
    assert wheel.name == f"prefect_job_operator-{VERSION}-py3-none-any.whl"


def test_the_wheel_carries_the_license(wheel: Path) -> None:
    """Apache-2.0 as SPDX metadata (PEP 639), with the license text in the dist-info."""
    archive = zipfile.ZipFile(wheel)
    info = f"prefect_job_operator-{VERSION}.dist-info"
    metadata = archive.read(f"{info}/METADATA").decode()
    assert "License-Expression: Apache-2.0" in metadata.splitlines()
    assert "License-File: LICENSE" in metadata.splitlines()
    text = archive.read(f"{info}/licenses/LICENSE").decode()
    assert text == (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text


def test_the_console_script_reports_the_version(clean_venv: Path) -> None:
    proc = run(clean_venv / "prefect-job-operator", "--version")
    assert proc.stdout.strip() == f"prefect-job-operator {VERSION}"


def test_the_installed_package_prints_the_generated_crd(clean_venv: Path) -> None:
    proc = run(clean_venv / "prefect-job-operator", "crds")
    assert proc.stdout == (ROOT / "crds/workpools.prefect-job-operator.dev.yaml").read_text()


def test_the_dependencies_are_consistent_and_exclude_prefect(clean_venv: Path) -> None:
    run(clean_venv / "python", "-m", "pip", "check")
    # The operator talks to Prefect over HTTP; the prefect package is a test oracle only.
    probe = "import importlib.util as u; print(u.find_spec('prefect'), u.find_spec('kopf') is None)"
    assert run(clean_venv / "python", "-c", probe).stdout.split() == ["None", "False"]

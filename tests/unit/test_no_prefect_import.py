"""The operator never imports ``prefect`` or ``prefect_kubernetes`` (they are test oracles).

Two checks: a static walk of every module under operator/ with ``ast`` (catches imports
in functions and behind ``TYPE_CHECKING`` too), and a fresh interpreter that imports all
our modules and then looks at ``sys.modules``.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCE_ROOT = ROOT / "operator"
PACKAGE = SOURCE_ROOT / "prefect_job_operator"
FORBIDDEN = ("prefect", "prefect_kubernetes")


def _forbidden(module: str) -> bool:
    top = module.split(".")[0]
    return top in FORBIDDEN


def forbidden_imports(source: str, filename: str = "<string>") -> list[str]:
    """``import prefect...`` / ``from prefect... import`` / ``__import__("prefect")`` found."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if _forbidden(a.name)]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0 and node.module and _forbidden(node.module):
                found.append(f"from {node.module} import ...")
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "id", getattr(node.func, "attr", None))
            in ("__import__", "import_module")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and _forbidden(node.args[0].value)
        ):
            found.append(f"dynamic import of {node.args[0].value}")
    return found


def module_files() -> list[Path]:
    return sorted(p for p in SOURCE_ROOT.rglob("*.py") if ".egg-info" not in str(p))


def test_the_detector_tells_our_package_from_prefect() -> None:
    assert forbidden_imports("import prefect") == ["import prefect"]
    assert forbidden_imports("import prefect.client.schemas as s") == [
        "import prefect.client.schemas"
    ]
    assert forbidden_imports("from prefect_kubernetes.worker import KubernetesWorker")
    assert forbidden_imports("def f():\n    from prefect import flow\n")
    assert forbidden_imports("importlib.import_module('prefect_kubernetes')")
    assert forbidden_imports("import prefect_job_operator.cli") == []
    assert forbidden_imports("from prefect_job_operator.prefect_api import models") == []
    assert forbidden_imports("from . import prefect") == []  # relative: our own module


def test_no_module_under_operator_imports_prefect() -> None:
    files = module_files()
    assert PACKAGE / "__init__.py" in files
    offenders = {
        str(path.relative_to(ROOT)): hits
        for path in files
        if (hits := forbidden_imports(path.read_text(), str(path)))
    }
    assert offenders == {}


def test_importing_every_module_does_not_load_prefect() -> None:
    modules = sorted(
        ".".join(path.relative_to(SOURCE_ROOT).with_suffix("").parts).removesuffix(".__init__")
        for path in PACKAGE.rglob("*.py")
        if path.name != "__main__.py"
    )
    script = (
        "import importlib, json, sys\n"
        "failed = {}\n"
        f"for name in {modules!r}:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as exc:\n"
        "        failed[name] = f'{type(exc).__name__}: {exc}'\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})\n"
        "print(json.dumps({'prefect_modules': bad, 'import_failures': failed}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={"PYTHONPATH": str(SOURCE_ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["prefect_modules"] == [], "an operator module pulled in prefect"
    assert report["import_failures"] == {}, "every operator module must import on its own"

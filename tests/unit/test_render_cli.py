"""The `render` command, through a real interpreter (`python -m prefect_job_operator`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
ORACLE = ROOT / "tests" / "data" / "oracle"


def run_render(arg: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "prefect_job_operator", "render", arg],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT / "operator"), "PATH": "/usr/bin:/bin"},
        timeout=60,
        check=False,
    )


def test_render_prints_one_json_object_with_job_and_secrets() -> None:
    result = run_render(str(ORACLE / "case1.json"))
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert set(out) == {"job", "secrets"}
    assert out["job"]["kind"] == "Job"
    assert out["job"]["metadata"]["name"].startswith("ordinary-fennec-")
    assert out["secrets"] == []


def test_broken_case_exits_1_naming_the_key() -> None:
    case: dict[str, Any] = json.loads((ORACLE / "case1.json").read_text())
    case["deployment"]["job_variables"]["labels"] = {"team": 42}
    result = run_render("-", stdin=json.dumps(case))
    assert result.returncode == 1
    assert "labels.team" in result.stderr
    assert result.stdout == ""


def test_malformed_input_exits_2() -> None:
    assert run_render("-", stdin="{not json").returncode == 2
    missing = run_render("-", stdin=json.dumps({"worker_env": {}}))
    assert missing.returncode == 2
    assert "worker_name" in missing.stderr

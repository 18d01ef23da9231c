"""Settings for people: one-line errors, comma-separated lists, the generated reference.

The CLI checks run the real console entry point in a subprocess, as a user would.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from prefect_job_operator.settings import OperatorSettings
from prefect_job_operator.settings_help import SettingsInvalid, env_names, load_settings

ROOT = Path(__file__).resolve().parents[2]
CASE = ROOT / "tests" / "data" / "oracle" / "case1.json"


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PJO_", "PREFECT_"))}
    return {**env, "PYTHONPATH": str(ROOT / "operator"), **extra}


def test_a_bad_value_stops_run_with_one_line_naming_the_variable() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "prefect_job_operator", "run"],
        env=cli_env(PJO_HEALTH_PORT="abc"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("prefect-job-operator: invalid setting PJO_HEALTH_PORT='abc'")
    assert "expected integer" in lines[0] and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"PJO_HEALTH_PORT": "70000"}, "PJO_HEALTH_PORT='70000': expected integer ≥ 0, ≤ 65535"),
        ({"PJO_LOG_FORMAT": "xml"}, "PJO_LOG_FORMAT='xml': expected string matching"),
        ({"PJO_NAMESPACES": '["a",'}, "PJO_NAMESPACES='[\"a\",': expected list of strings"),
        ({"PJO_CANCEL_GRACE_SECONDS": "-1"}, "PJO_CANCEL_GRACE_SECONDS='-1': expected number ≥ 0"),
    ],
)
def test_each_bad_value_names_its_variable_and_form(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], fragment: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SettingsInvalid) as info:
        load_settings()
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("a,b", ["a", "b"]), (" a , b ,", ["a", "b"]), ('["a", "b"]', ["a", "b"]), ("", [])],
)
def test_lists_are_comma_separated_or_json(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: list[str]
) -> None:
    monkeypatch.setenv("PJO_NAMESPACES", value)
    assert load_settings().namespaces == expected


def test_fallback_variables_are_listed_after_the_pjo_name() -> None:
    fields = OperatorSettings.model_fields
    assert env_names("api_url", fields["api_url"]) == ["PJO_API_URL", "PREFECT_API_URL"]
    assert env_names("health_port", fields["health_port"]) == ["PJO_HEALTH_PORT"]


def test_every_setting_is_described_and_in_the_generated_reference() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text()
    for name, field in OperatorSettings.model_fields.items():
        assert field.description, f"settings.{name} has no description (docs/configuration.md)"
        assert f"| `{env_names(name, field)[0]}`" in doc, "run `make generate`"


def test_the_generated_files_are_current() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "generate.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("reader", ["head -1", "true"])
def test_render_into_a_closed_pipe_ends_without_a_traceback(reader: str) -> None:
    """`render case.json | head -1`; `| true` closes the pipe before the first write."""
    command = f"{sys.executable} -m prefect_job_operator render {CASE} | {reader}"
    proc = subprocess.run(
        ["bash", "-c", f'{command}; echo "status=${{PIPESTATUS[0]}}"'],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.stderr == ""
    assert proc.stdout.splitlines()[-1] in ("status=0", "status=1")
    if reader == "head -1":
        assert proc.stdout.splitlines()[0] == "{"

#!/usr/bin/env python3
"""Regenerate the files derived from the code, or check them (`--check`, `make verify-generated`).

- crds/workpools.prefect-job-operator.dev.yaml: the WorkPool CRD, from the pydantic models;
- charts/prefect-job-operator/templates/crds.yaml: the same CRD as a Helm template behind
  `crds.enabled`, kept on uninstall with `crds.keep` (cert-manager's layout), so that
  `helm upgrade` upgrades the CRD;
- docs/configuration.md: every `PJO_*` setting, from the settings model.

Run after changing `operator/prefect_job_operator/api/` or `settings.py`.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "operator"))

from prefect_job_operator.api.crdgen import CRD_FILENAME, render_crd_yaml  # noqa: E402
from prefect_job_operator.settings import OperatorSettings  # noqa: E402
from prefect_job_operator.settings_help import default_text, env_names, expected_form  # noqa: E402

CHART = ROOT / "charts" / "prefect-job-operator"
CHART_CRD_TEMPLATE = CHART / "templates" / "crds.yaml"
CONFIGURATION_DOC = ROOT / "docs" / "configuration.md"

_ACTION = re.compile(r"\{\{")


def render_chart_crd_template() -> str:
    """The CRD as a Helm template: labelled, `keep`-annotated, behind `crds.enabled`.

    Literal `{{` in descriptions are escaped as template actions printing `{{`. The values
    are read with defaults so `helm upgrade --reuse-values` from a chart without `crds`
    still renders the CRD (enabled and kept).
    """
    crd = render_crd_yaml().split("\n", 1)[1]  # without the generated-file header line
    crd = _ACTION.sub('{{ "{{" }}', crd)
    head, sep, rest = crd.partition("metadata:\n")
    name_line, _, spec = rest.partition("\n")
    assert sep and name_line.startswith("  name: "), "unexpected CRD layout"
    return (
        "{{- /*\n"
        "GENERATED from operator/prefect_job_operator/api/v1alpha1.py by scripts/generate.py.\n"
        "Do not edit. The WorkPool CRD as a template (not crds/), so `helm upgrade` upgrades it.\n"
        "*/ -}}\n"
        "{{- $crds := .Values.crds | default dict }}\n"
        '{{- if ternary $crds.enabled true (hasKey $crds "enabled") }}\n'
        f"{head}metadata:\n{name_line}\n"
        "  labels:\n"
        '    {{- include "pjo.labels" . | nindent 4 }}\n'
        '  {{- if ternary $crds.keep true (hasKey $crds "keep") }}\n'
        "  annotations:\n"
        "    # `helm uninstall` keeps the CRD, and so every WorkPool.\n"
        "    helm.sh/resource-policy: keep\n"
        "  {{- end }}\n"
        f"{spec.rstrip()}\n"
        "{{- end }}\n"
    )


# ---- docs/configuration.md ------------------------------------------------------------


def render_configuration_doc() -> str:
    """docs/configuration.md: one row per setting, in the model's order."""
    lines = [
        "# Configuration",
        "",
        "<!-- GENERATED from operator/prefect_job_operator/settings.py by scripts/generate.py;"
        " do not edit. -->",
        "",
        "The operator reads its settings from the environment once, at start. The Helm chart",
        "sets them from its values (`values.yaml`); add others with `extraEnv`. A WorkPool's spec",
        "overrides the Prefect connection and the per-pool defaults.",
        "",
        "- Lists accept a comma-separated value (`PJO_NAMESPACES=team-a,team-b`) or JSON",
        '  (`PJO_NAMESPACES=\'["team-a","team-b"]\'`); an empty value is an empty list.',
        "- A value that does not parse stops `prefect-job-operator run` with exit code 2 and one",
        "  line naming the variable and the expected form.",
        "- When several variables are listed, the first one set wins (the `PREFECT_*` fallbacks",
        "  let the operator drop in where a Prefect worker ran).",
        "",
        "| Variable | Type | Default | Description |",
        "| --- | --- | --- | --- |",
    ]
    for name, field in OperatorSettings.model_fields.items():
        names = env_names(name, field)
        variable = "`" + names[0] + "`"
        if len(names) > 1:
            variable += " (fallback: " + ", ".join(f"`{n}`" for n in names[1:]) + ")"
        kind = expected_form(field).replace("|", "\\|")
        description = " ".join((field.description or "").split()).replace("|", "\\|")
        lines.append(f"| {variable} | {kind} | {default_text(field)} | {description} |")
    return "\n".join(lines) + "\n"


# ---- the files and the command ----------------------------------------------------------


def targets() -> dict[Path, Callable[[], str]]:
    """Every generated file and the function that writes its text."""
    out: dict[Path, Callable[[], str]] = {ROOT / "crds" / CRD_FILENAME: render_crd_yaml}
    if CHART.is_dir():
        out[CHART_CRD_TEMPLATE] = render_chart_crd_template
    out[CONFIGURATION_DOC] = render_configuration_doc
    return out


def main(argv: list[str] | None = None) -> int:
    """Write every generated file (print the ones that changed), or `--check` them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a file is out of date")
    args = parser.parse_args(argv)
    stale: list[str] = []
    for path, render in targets().items():
        text = render()
        current = path.read_text() if path.exists() else ""
        if current == text:
            continue
        rel = str(path.relative_to(ROOT))
        if args.check:
            stale.append(rel)
            diff = difflib.unified_diff(
                current.splitlines(keepends=True), text.splitlines(keepends=True), rel, "generated"
            )
            sys.stderr.writelines(list(diff)[:40])
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {rel}")
    if stale:
        print(f"out of date (run `make generate`): {json.dumps(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

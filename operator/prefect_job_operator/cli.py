"""Command line: `run` the operator, `render` a case, print `crds`, `--version`.

Subcommands import their module lazily, so `--version` and `render` never start kopf.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from prefect_job_operator import __version__


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the `prefect-job-operator` command."""
    parser = argparse.ArgumentParser(
        prog="prefect-job-operator",
        description="Run Prefect 3 work pools as a Kubernetes operator.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run the operator (kopf) against the current cluster")
    run.add_argument(
        "--namespace",
        "-n",
        action="append",
        default=None,
        help="watch only this namespace (repeatable); default: PJO_NAMESPACES or cluster-wide",
    )
    run.add_argument("--verbose", action="store_true", help="debug logging")

    render = sub.add_parser(
        "render", help="print the Job (and Secrets) a flow run would get, from a case file"
    )
    render.add_argument("case", help="case JSON file (the oracle's format), or - for stdin")

    crds = sub.add_parser("crds", help="print the generated CustomResourceDefinition YAML")
    crds.add_argument("--check", metavar="DIR", help="exit 1 if DIR's CRD files differ")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `prefect-job-operator` console script."""
    try:
        code = _dispatch(argv)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit flush
        return code
    except BrokenPipeError:
        # `prefect-job-operator render case.json | head`: the reader left; so do we, quietly.
        # Point stdout at /dev/null so the interpreter's final flush cannot fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


def _dispatch(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "run":
        from prefect_job_operator.runner import run_operator
        from prefect_job_operator.settings_help import SettingsInvalid

        try:
            return run_operator(namespaces=args.namespace, verbose=args.verbose)
        except SettingsInvalid as exc:
            print(f"prefect-job-operator: {exc}", file=sys.stderr)
            return 2
    if args.command == "render":
        return render_case_command(args.case)
    if args.command == "crds":
        return crds_command(check_dir=args.check)
    parser.print_help(sys.stderr)
    return 2


def render_case_command(path: str) -> int:
    """CLI entry: print the rendered case as JSON; exit 1 on a rendering error."""
    from prefect_job_operator.rendering import RenderError
    from prefect_job_operator.rendering.case import CaseError, render_case

    try:
        text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()  # noqa: SIM115
        case = json.loads(text)
        if not isinstance(case, dict):
            raise CaseError("a case must be a JSON object")
        result = render_case(case)
    except OSError as exc:
        print(f"render: cannot read {path}: {exc}", file=sys.stderr)
        return 2
    except json.JSONDecodeError as exc:
        print(f"render: {path} is not valid JSON: {exc}", file=sys.stderr)
        return 2
    except CaseError as exc:
        print(f"render: invalid case: {exc}", file=sys.stderr)
        return 2
    except RenderError as exc:
        print(f"render: {exc}", file=sys.stderr)
        return 1
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def crds_command(check_dir: str | None) -> int:
    """Print the CRD YAML, or with `check_dir` exit 1 if the file there differs."""
    from prefect_job_operator.api.crdgen import CRD_FILENAME, render_crd_yaml

    text = render_crd_yaml()
    if check_dir is None:
        sys.stdout.write(text)
        return 0
    path = Path(check_dir) / CRD_FILENAME
    current = path.read_text() if path.exists() else ""
    if current == text:
        return 0
    diff = difflib.unified_diff(
        current.splitlines(keepends=True),
        text.splitlines(keepends=True),
        fromfile=str(path),
        tofile="generated",
    )
    sys.stderr.write(f"{path} is out of date; run scripts/generate.py\n")
    sys.stderr.writelines(diff)
    return 1

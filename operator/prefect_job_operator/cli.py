"""Command line: `run` the operator, `render` a case, print `crds`, `--version`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from prefect_job_operator import __version__


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; subcommands are added by the modules that own them."""
    parser = argparse.ArgumentParser(
        prog="prefect-job-operator",
        description="Run Prefect 3 work pools as a Kubernetes operator.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `prefect-job-operator` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    return 0

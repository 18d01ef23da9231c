"""The shell commands the documents tell users to run, as tests (docs as tests).

Sources, found generically so new documents and blocks are covered without registration:

- every fenced shell block (```bash, sh, shell, console) of every Markdown file git tracks
  (README.md, docs/*.md, charts/*/README.md, ...);
- every command line of the chart's NOTES.txt: a line indented by 5 spaces whose first word
  is a command (after rendering the template with helm).

A block that cannot run on the local control plane carries a marker on the line right above
its fence, with the reason:

    <!-- docs-test: skip reason="needs kind and Docker" -->

and in NOTES.txt a template comment (rendered as nothing) right above the command line:

    {{- /* docs-test: skip reason="needs a flow project" */}}

Every other block is run by tests/integration/test_docs.py, command by command, as written,
from the repository root, against a fresh local control plane, with only the documented
environment variables (``DOCUMENTED_ENV``) set. A command may show its expected output's
header as a trailing comment of upper-case column names separated by two spaces, e.g.
``kubectl get wp   # NAME  POOL  TYPE  READY``: the test compares the output's header with it.
tests/unit/test_docs_blocks.py keeps every block either runnable here or marked with a reason.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NOTES = ROOT / "charts" / "prefect-job-operator" / "templates" / "NOTES.txt"
SHELL_LANGUAGES = frozenset({"bash", "sh", "shell", "console"})
# Environment variables the documents may use; the test sets them (local Prefect server, a
# test key). Anything else a runnable block reads is an error of the document.
DOCUMENTED_ENV = ("PREFECT_API_URL", "PREFECT_API_KEY")
# What a runnable command may start with: the tools the local control plane provides.
RUNNABLE = frozenset({"kubectl", "helm", "prefect-job-operator"})

_FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[A-Za-z0-9_-]*)\s*$")
_MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*(?P<body>.*?)\s*-->\s*$")
_NOTES_MARKER = re.compile(r"^\s*\{\{-?\s*/\*\s*docs-test:\s*(?P<body>.*?)\s*\*/\s*-?\}\}\s*$")
_SKIP = re.compile(r'^skip\s+reason="(?P<reason>[^"]+)"$')
_NOTES_COMMAND = re.compile(r"^ {5}(?P<cmd>[a-z][-a-z0-9]*\s.*)$")
_VARIABLE = re.compile(r"\$\{?(?P<name>[A-Za-z_][A-Za-z0-9_]*)")
_HEADER = re.compile(r"#\s+(?P<header>[A-Z][A-Z]*(?:\s{1,2}[A-Z]+)+)\s*$")


@dataclass
class Block:
    """One fenced shell block (or one NOTES.txt command line)."""

    path: Path
    line: int  # 1-based line of the fence (or of the NOTES command)
    language: str
    text: str
    skip_reason: str | None = None
    marker_error: str | None = None
    commands: list[str] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{relative(self.path)}:{self.line}"


def relative(path: Path) -> str:
    """The path from the repository root (as is, outside it)."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def documents() -> list[Path]:
    """Every Markdown file git tracks, in a stable order."""
    out = subprocess.run(
        ["git", "ls-files", "*.md"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return [ROOT / p for p in sorted(out.split())]


def parse_marker(body: str) -> tuple[str | None, str | None]:
    """(skip reason, error) of a marker's body."""
    match = _SKIP.match(body)
    if match is None:
        return None, f'unknown docs-test marker {body!r}; use skip reason="..."'
    return match["reason"].strip(), None


def commands_of(text: str) -> list[str]:
    """The commands of a block: lines joined on trailing backslashes, comments kept."""
    commands: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.rstrip()
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        commands.append((current + line).strip())
        current = ""
    if current.strip():
        commands.append(current.strip())
    return commands


def markdown_blocks(path: Path) -> list[Block]:
    """Every shell block of a Markdown file, with the marker right above its fence."""
    lines = path.read_text().splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if fence is None:
            i += 1
            continue
        end = i + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        indent = len(fence["indent"])
        body = "\n".join(line[indent:] for line in lines[i + 1 : end])
        if fence["lang"] in SHELL_LANGUAGES:
            block = Block(path, i + 1, fence["lang"], body, commands=commands_of(body))
            above = lines[i - 1] if i > 0 else ""
            marker = _MARKER.match(above)
            if marker:
                block.skip_reason, block.marker_error = parse_marker(marker["body"])
            blocks.append(block)
        i = end + 1
    return blocks


def stray_markers(path: Path) -> list[str]:
    """Markers that do not sit right above a shell block's fence (they would mark nothing)."""
    lines = path.read_text().splitlines()
    out: list[str] = []
    for n, line in enumerate(lines):
        if _MARKER.match(line) is None:
            continue
        fence = _FENCE.match(lines[n + 1]) if n + 1 < len(lines) else None
        if fence is None or fence["lang"] not in SHELL_LANGUAGES:
            out.append(f"{relative(path)}:{n + 1}: marker not right above a shell block")
    return out


def notes_blocks(path: Path = NOTES) -> list[Block]:
    """NOTES.txt command lines (template source), each with the marker right above it."""
    lines = path.read_text().splitlines()
    blocks: list[Block] = []
    for n, line in enumerate(lines):
        match = _NOTES_COMMAND.match(line)
        if match is None:
            continue
        source = match["cmd"].strip()
        # Checked with each template action as a plain word; matched by notes_pattern(text).
        checked = re.sub(r"\{\{.*?\}\}", "TEMPLATE", source)
        block = Block(path, n + 1, "notes", source, commands=[checked])
        marker = _NOTES_MARKER.match(lines[n - 1]) if n > 0 else None
        if marker:
            block.skip_reason, block.marker_error = parse_marker(marker["body"])
        blocks.append(block)
    return blocks


def notes_pattern(source_command: str) -> re.Pattern[str]:
    """A regex matching the rendered form of a NOTES command (template actions → `.+?`)."""
    parts = re.split(r"\{\{.*?\}\}", source_command)
    return re.compile("^" + ".+?".join(re.escape(p) for p in parts) + "$")


def rendered_notes_commands(notes: str) -> list[str]:
    """The command lines of rendered NOTES (the same 5-space rule as the source)."""
    return [m["cmd"].strip() for line in notes.splitlines() if (m := _NOTES_COMMAND.match(line))]


def first_words(command: str) -> list[str]:
    """The program of each pipeline stage of a command (`a | b && c` → [a, b, c])."""
    try:
        tokens = shlex.split(command, comments=True)
    except ValueError:
        return [command.split()[0]]
    words: list[str] = []
    expect = True
    for token in tokens:
        if expect and not re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", token):
            words.append(token)
            expect = False
        if token in ("|", "||", "&&", ";"):
            expect = True
    return words


def variables(command: str) -> set[str]:
    """Environment variables a command reads (`$X`, `${X}`), outside single quotes."""
    unquoted = re.sub(r"'[^']*'", "", command)
    return {m["name"] for m in _VARIABLE.finditer(unquoted)}


def expected_header(command: str) -> list[str] | None:
    """The columns a trailing `# NAME  POOL  ...` comment promises, if any."""
    match = _HEADER.search(command)
    if match is None or "  " not in match["header"]:
        return None
    return [c.strip() for c in re.split(r"\s{2,}", match["header"].strip())]


def problems(block: Block) -> list[str]:
    """Why a block is neither runnable here nor marked (empty: fine)."""
    if block.marker_error:
        return [f"{block.where}: {block.marker_error}"]
    if block.skip_reason is not None:
        return []
    out: list[str] = []
    for command in block.commands:
        for word in first_words(command):
            if word not in RUNNABLE:
                out.append(
                    f"{block.where}: `{command}` runs {word!r}, which the docs test cannot run "
                    'here: make it runnable or mark the block <!-- docs-test: skip reason="..." -->'
                )
        for name in sorted(variables(command) - set(DOCUMENTED_ENV)):
            out.append(f"{block.where}: `{command}` reads ${name}, not one of {DOCUMENTED_ENV}")
        if re.search(r"(^|\s)(-w|--watch|--follow)(\s|$)|[^&]&\s*(#.*)?$", command):
            out.append(f"{block.where}: `{command}` never returns (a watch or a background job)")
    return out


def run_command(
    command: str, env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    """Run one documented command as a user's shell would: bash, strict, from the repo root."""
    return subprocess.run(
        ["bash", "-o", "pipefail", "-u", "-c", command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )

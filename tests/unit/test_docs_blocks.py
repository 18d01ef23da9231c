"""Every shell command of the documents is either run by the docs test or marked with a reason.

The extraction is generic (tests/infra/docs.py): every Markdown file git tracks and the chart's
NOTES.txt, so a block someone adds is checked without registering it. The commands
themselves run in tests/integration/test_docs.py.
"""

from __future__ import annotations

from pathlib import Path

from tests.infra import docs


def all_blocks() -> list[docs.Block]:
    blocks = [b for path in docs.documents() for b in docs.markdown_blocks(path)]
    return blocks + docs.notes_blocks()


def test_every_block_is_runnable_here_or_marked_with_a_reason() -> None:
    problems = [p for block in all_blocks() for p in docs.problems(block)]
    assert problems == []


def test_no_marker_is_stray() -> None:
    assert [s for path in docs.documents() for s in docs.stray_markers(path)] == []


def test_the_documents_users_follow_have_runnable_blocks() -> None:
    """The extraction finds the install path: a broken parser must not pass by finding nothing."""
    runnable = {
        str(b.path.relative_to(docs.ROOT))
        for b in all_blocks()
        if b.skip_reason is None and b.commands
    }
    assert {
        "README.md",
        "docs/install.md",
        "charts/prefect-job-operator/README.md",
        "charts/prefect-job-operator/templates/NOTES.txt",
    } <= runnable
    readme = [c for b in docs.markdown_blocks(docs.ROOT / "README.md") for c in b.commands]
    assert (
        "helm install prefect-job-operator charts/prefect-job-operator --wait "
        "--set prefect.apiUrl=$PREFECT_API_URL --set prefect.existingSecret.name=prefect-api"
    ) in [" ".join(c.split()) for c in readme]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "doc.md"
    path.write_text(text)
    return path


def test_an_unmarked_block_the_test_cannot_run_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "# x\n\n```bash\ndocker build -t x .\nkubectl get wp\n```\n")
    (block,) = docs.markdown_blocks(path)
    (problem,) = docs.problems(block)
    assert "`docker build -t x .` runs 'docker'" in problem
    assert 'docs-test: skip reason="..."' in problem


def test_a_marked_block_is_skipped_with_its_reason(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        '<!-- docs-test: skip reason="needs kind" -->\n```bash\nkind create cluster\n```\n',
    )
    (block,) = docs.markdown_blocks(path)
    assert block.skip_reason == "needs kind"
    assert docs.problems(block) == []


def test_a_marker_without_a_reason_or_without_a_block_is_an_error(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "<!-- docs-test: skip -->\n```bash\nkind create cluster\n```\n\n"
        '<!-- docs-test: skip reason="x" -->\n\nprose\n',
    )
    (block,) = docs.markdown_blocks(path)
    assert "unknown docs-test marker 'skip'" in docs.problems(block)[0]
    assert docs.stray_markers(path) == [f"{path}:6: marker not right above a shell block"]


def test_undocumented_variables_watches_and_background_jobs_are_reported(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "```bash\nkubectl get wp -n $TEAM\nkubectl get wp -A -w\n"
        "kubectl port-forward svc/x 4200:4200 &\nhelm install x c --set a=$PREFECT_API_URL\n```\n",
    )
    (block,) = docs.markdown_blocks(path)
    problems = docs.problems(block)
    assert len(problems) == 3, problems
    assert "reads $TEAM" in problems[0]
    assert "never returns" in problems[1] and "never returns" in problems[2]


def test_continuation_lines_make_one_command_and_comments_are_kept() -> None:
    text = (
        "# setup\nhelm install a b \\\n  --set x=1 \\\n  --set y=2\nkubectl get wp   # NAME  POOL\n"
    )
    assert docs.commands_of(text) == [
        "helm install a b    --set x=1    --set y=2",
        "kubectl get wp   # NAME  POOL",
    ]


def test_expected_headers_and_pipelines_are_read() -> None:
    assert docs.expected_header("kubectl get wp   # NAME  POOL  LAST POLL  AGE") == [
        "NAME",
        "POOL",
        "LAST POLL",
        "AGE",
    ]
    assert docs.expected_header("kubectl describe wp x   # conditions and Events") is None
    assert docs.first_words("helm show crds c | kubectl apply -f - && X=1 helm list") == [
        "helm",
        "kubectl",
        "helm",
    ]
    assert docs.variables("echo $A ${B} '$C'") == {"A", "B"}


def test_notes_commands_match_their_rendered_lines() -> None:
    blocks = docs.notes_blocks()
    assert [b.skip_reason for b in blocks if b.skip_reason] == [
        "needs a flow project with a prefect.yaml",
        "needs a deployment of the user's flow",
    ]
    rollout = next(b for b in blocks if "rollout status" in b.text)
    pattern = docs.notes_pattern(rollout.text)
    assert pattern.match("kubectl -n operators rollout status deployment/pjo-prefect-job-operator")
    assert not pattern.match("kubectl -n operators rollout status")

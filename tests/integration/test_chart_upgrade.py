"""`helm upgrade` from the previous chart (CRD in crds/) to this one (CRD as a template).

On a fresh local control plane: install the chart as of git commit 0f00d02 (extracted with
`git archive`), whose CRD came from crds/ and so has no Helm owner; show that the upgrade is
refused until the CRD is adopted; adopt it with the commands of docs/install.md, as written;
upgrade with the documented command; then the served CRD is the generated one, and
`helm uninstall` keeps it and the WorkPools.

The previous chart's CRD gets a marked description before install, so the test sees the CRD
change even when the schema itself did not change between the two versions.
"""

from __future__ import annotations

import json
import subprocess
import tarfile
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
import yaml

from prefect_job_operator.api.crdgen import build_crd
from tests.infra import docs
from tests.infra.cluster import LocalCluster, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

PREVIOUS = "0f00d02"
CRD = "workpools.prefect-job-operator.dev"
RELEASE = NS = "prefect-job-operator"  # the names docs/install.md uses
OLD_MARK = "PREVIOUS CHART's CRD"


@pytest.fixture
def fresh_cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    cluster = LocalCluster(tmp_path / "k8s", kwok_nodes=1).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def previous_chart(tmp_path: Path) -> Path:
    """charts/prefect-job-operator as of PREVIOUS, its CRD's description marked as old."""
    archive = subprocess.run(
        ["git", "archive", PREVIOUS, "charts/prefect-job-operator"],
        cwd=docs.ROOT,
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(tmp_path / "old", filter="data")
    chart = tmp_path / "old" / "charts" / "prefect-job-operator"
    crd_file = chart / "crds" / f"{CRD}.yaml"
    crd = yaml.safe_load(crd_file.read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    schema["description"] = OLD_MARK
    crd_file.write_text(yaml.safe_dump(crd))
    return chart


def served_crd(cluster: LocalCluster) -> dict[str, Any]:
    crd: dict[str, Any] = json.loads(cluster.kubectl("get", "crd", CRD, "-o", "json").stdout)
    return crd


def served_schema(cluster: LocalCluster) -> dict[str, Any]:
    schema: dict[str, Any] = served_crd(cluster)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def documented(fragment: str) -> list[str]:
    """The commands of the docs/install.md block that contains `fragment`, as written."""
    blocks = [
        b for b in docs.markdown_blocks(docs.ROOT / "docs" / "install.md") if fragment in b.text
    ]
    assert len(blocks) == 1, f"docs/install.md has {len(blocks)} blocks with {fragment!r}"
    return blocks[0].commands


def sh(cluster: LocalCluster, command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        cwd=docs.ROOT,
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check:
        assert proc.returncode == 0, f"`{command}`: {proc.stdout}\n{proc.stderr}"
    return proc


def test_upgrade_from_the_previous_chart_upgrades_the_crd_and_uninstall_keeps_it(
    fresh_cluster: LocalCluster, previous_chart: Path
) -> None:
    cluster = fresh_cluster
    cluster.helm("install", RELEASE, str(previous_chart), "-n", NS, "--create-namespace")
    wait_for("the previous CRD", lambda: served_schema(cluster)["description"] == OLD_MARK, 30)
    assert "meta.helm.sh/release-name" not in served_crd(cluster)["metadata"].get("annotations", {})
    cluster.kubectl(
        "apply",
        "-n",
        "default",
        "-f",
        "-",
        input=yaml.safe_dump(
            {
                "apiVersion": "prefect-job-operator.dev/v1alpha1",
                "kind": "WorkPool",
                "metadata": {"name": "survivor"},
                "spec": {"poolName": "survivor"},
            }
        ),
    )

    (upgrade,) = documented("--reset-then-reuse-values")
    refused = sh(cluster, upgrade, check=False)
    assert refused.returncode != 0
    assert "invalid ownership metadata" in refused.stderr, refused.stderr
    assert served_schema(cluster)["description"] == OLD_MARK

    for command in documented("kubectl annotate crd"):
        sh(cluster, command)
    sh(cluster, upgrade)

    generated = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    wait_for("the upgraded CRD", lambda: served_schema(cluster) == generated, 30)
    metadata = served_crd(cluster)["metadata"]
    assert metadata["annotations"]["helm.sh/resource-policy"] == "keep"
    assert metadata["annotations"]["meta.helm.sh/release-name"] == RELEASE
    assert metadata["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    assert metadata["labels"]["helm.sh/chart"].startswith("prefect-job-operator-")
    assert cluster.kubectl("get", "wp", "survivor", "-n", "default").returncode == 0

    # A second upgrade is a no-op for the CRD, and uninstall keeps it and the WorkPools.
    sh(cluster, upgrade)
    cluster.helm("uninstall", RELEASE, "-n", NS, "--wait")
    assert served_schema(cluster) == generated
    assert cluster.kubectl("get", "wp", "survivor", "-n", "default").returncode == 0
    gone = cluster.kubectl("get", "deployment", RELEASE, "-n", NS, check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr

    # The kept CRD still names the uninstalled release: a reinstall under the same name takes
    # it back without a step.
    # (No webhook: this cluster's Services have no route; see LocalCluster.helm.)
    cluster.helm(
        "install", RELEASE, str(docs.ROOT / "charts" / "prefect-job-operator"), "-n", NS,
        "--set", "webhook.enabled=false",
    )  # fmt: skip
    assert served_schema(cluster) == generated

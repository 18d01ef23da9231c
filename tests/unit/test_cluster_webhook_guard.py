"""LocalCluster.helm refuses, loudly, to install an admission webhook where the API server
would dial it out of the machine (no real node: no Service or pod address on this host)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tests.infra.cluster import LocalCluster

# A stand-in helm: a dry run prints the manifest the real chart renders with its defaults
# (the webhook is on), or none with `webhook.enabled=false`; a real run records its argv.
FAKE_HELM = """#!/bin/sh
case "$*" in
  *--dry-run=server*)
    case "$*" in
      *webhook.enabled=false*) echo "kind: Deployment" ;;
      *) printf 'kind: Deployment\\n---\\nkind: ValidatingWebhookConfiguration\\n' ;;
    esac ;;
  *) echo "$*" >> "$(dirname "$0")/ran" ;;
esac
"""


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    helm = tmp_path / "bin" / "helm"
    helm.parent.mkdir()
    helm.write_text(FAKE_HELM)
    helm.chmod(helm.stat().st_mode | stat.S_IEXEC)
    return helm.parent


def ran(bin_dir: Path) -> list[str]:
    log = bin_dir / "ran"
    return log.read_text().splitlines() if log.exists() else []


def test_a_webhook_install_without_service_routes_fails_loudly(
    tmp_path: Path, bin_dir: Path
) -> None:
    cluster = LocalCluster(tmp_path / "k8s", bin_dir=bin_dir)
    with pytest.raises(AssertionError, match=r"webhook\.enabled=false"):
        cluster.helm("install", "pjo", "chart", "-n", "ns")
    assert ran(bin_dir) == []  # refused before anything was installed


def test_without_the_webhook_or_with_a_reason_or_on_the_real_node_it_installs(
    tmp_path: Path, bin_dir: Path
) -> None:
    cluster = LocalCluster(tmp_path / "k8s", bin_dir=bin_dir)
    cluster.helm("install", "a", "chart", "--set", "webhook.enabled=false")
    cluster.helm("upgrade", "b", "chart", webhook_without_route="creates no WorkPool")
    real = LocalCluster(tmp_path / "k8s2", bin_dir=bin_dir, real_node=True)
    real.helm("install", "c", "chart")
    assert [line.split()[1:3] for line in ran(bin_dir)] == [
        ["install", "a"],
        ["upgrade", "b"],
        ["install", "c"],
    ]

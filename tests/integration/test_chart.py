"""The Helm chart, rendered by the real helm binary and installed on the real control plane.

Template tests run `helm template` / `helm lint` (no cluster) and assert on the objects.
`cluster` tests install the chart on the local control plane (tests/infra/cluster.py): the
operator pods land on kwok nodes, which mark them Running without running the image, so
these tests prove what Kubernetes accepts and authorizes, not what the operator does.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.infra.cluster import Cluster, find_testbin, wait_for

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "prefect-job-operator"
CRD = "workpools.prefect-job-operator.dev"
RELEASE = "pjo"
NS = "operators"
# A `go install`ed helm defaults to Kubernetes v1.20 (no release ldflags), below kubeVersion.
KUBE = ["--kube-version", "1.36.3"]

# -- the rules the operator needs, written out once more on purpose ---------------------

FRAMEWORK_EVENTS = [
    ([""], ["events"], ["get", "create", "patch"]),
    (["events.k8s.io"], ["events"], ["create", "patch"]),
]
APPLICATION = [
    (["prefect-job-operator.dev"], ["workpools"], ["get", "list", "watch", "patch"]),
    (["prefect-job-operator.dev"], ["workpools/status"], ["get", "patch", "update"]),
    (["batch"], ["jobs"], ["create", "get", "list", "watch", "patch", "delete"]),
    ([""], ["pods"], ["get", "list", "watch"]),
    ([""], ["pods/log"], ["get"]),
    (["coordination.k8s.io"], ["leases"], ["get", "list", "watch", "create", "update", "patch"]),
    ([""], ["secrets"], ["get"]),
    ([""], ["configmaps"], ["get", "list", "watch"]),
]
POD_NAME = {"fieldRef": {"fieldPath": "metadata.name"}}
CRD_READ = [(["apiextensions.k8s.io"], ["customresourcedefinitions"], ["get", "list", "watch"])]


def rule_tuples(role: dict[str, Any]) -> list[tuple[list[str], list[str], list[str]]]:
    return [(r["apiGroups"], r["resources"], r["verbs"]) for r in role["rules"]]


# -- rendering ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def helm_bin() -> Path:
    helm = find_testbin() / "helm"
    assert helm.is_file(), f"{helm} is missing: tools/testbin/build.sh builds it"
    return helm


def helm(helm_bin: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(helm_bin), *args], capture_output=True, text=True, timeout=60, cwd=ROOT
    )


def set_args(values: dict[str, str]) -> list[str]:
    return [a for k, v in values.items() for a in ("--set", f"{k}={v}")]


def render(helm_bin: Path, **values: str) -> list[dict[str, Any]]:
    proc = helm(helm_bin, "template", RELEASE, str(CHART), "-n", NS, *KUBE, *set_args(values))
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def render_error(helm_bin: Path, **values: str) -> str:
    proc = helm(helm_bin, "template", RELEASE, str(CHART), "-n", NS, *KUBE, *set_args(values))
    assert proc.returncode != 0, "helm template accepted bad values"
    return proc.stderr


def one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
    return found[0]


def kinds(objects: list[dict[str, Any]]) -> list[tuple[str, str, str | None]]:
    return sorted(
        (o["kind"], o["metadata"]["name"], o["metadata"].get("namespace")) for o in objects
    )


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (c,) = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    return c


def env_of(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(objects)["env"]}


# -- template tests: defaults ------------------------------------------------------------


def test_default_values_render_the_cluster_wide_install(helm_bin: Path) -> None:
    objects = render(helm_bin)
    assert kinds(objects) == [
        ("ClusterRole", "pjo-prefect-job-operator", None),
        ("ClusterRoleBinding", "pjo-prefect-job-operator", None),
        ("Deployment", "pjo-prefect-job-operator", NS),
        ("Service", "pjo-prefect-job-operator-metrics", NS),
        ("ServiceAccount", "pjo-prefect-job-operator", NS),
    ]
    for obj in objects:
        labels = obj["metadata"]["labels"]
        assert labels["app.kubernetes.io/name"] == "prefect-job-operator"
        assert labels["app.kubernetes.io/instance"] == RELEASE
        assert labels["helm.sh/chart"] == "prefect-job-operator-0.1.0"


def test_the_deployment_is_hardened_and_probed(helm_bin: Path) -> None:
    objects = render(helm_bin)
    deployment = one(objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    c = container(objects)
    assert deployment["spec"]["replicas"] == 1
    assert pod["serviceAccountName"] == "pjo-prefect-job-operator"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert c["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert c["image"] == "ghcr.io/prefect-job-operator/prefect-job-operator:0.1.0"
    assert c["args"] == ["run"]
    assert c["ports"] == [{"name": "metrics", "containerPort": 8080, "protocol": "TCP"}]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert c["resources"]["requests"] == {"cpu": "100m", "memory": "192Mi"}
    assert c["resources"]["limits"] == {"memory": "512Mi"}
    assert c["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert pod["volumes"] == [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


def test_the_operator_settings_come_from_env(helm_bin: Path) -> None:
    assert env_of(render(helm_bin)) == {
        "PJO_INSTANCE": "pjo-prefect-job-operator",
        "PJO_IDENTITY": POD_NAME,
        "PJO_NAMESPACES": "[]",
        "PJO_HEALTH_PORT": "8080",
        "PJO_LOG_FORMAT": "json",
    }
    env = env_of(
        render(
            helm_bin,
            **{
                "prefect.apiUrl": "http://prefect-server.prefect:4200/api",
                "prefect.existingSecret.name": "prefect-creds",
                "prefect.existingSecret.apiKeyKey": "key",
                "prefect.existingSecret.authStringKey": "auth",
                "prefect.jobApiKeySecret.name": "job-key",
                "prefect.jobAuthStringSecret.name": "job-auth",
                "operator.instance": "blue",
                "operator.logFormat": "plain",
                "operator.healthPort": "9000",
                "operator.defaultJobImage": "my/flows:1",
            },
        )
    )
    assert env == {
        "PJO_INSTANCE": "blue",
        "PJO_IDENTITY": POD_NAME,
        "PJO_NAMESPACES": "[]",
        "PJO_HEALTH_PORT": "9000",
        "PJO_LOG_FORMAT": "plain",
        "PJO_DEFAULT_IMAGE": "my/flows:1",
        "PJO_API_URL": "http://prefect-server.prefect:4200/api",
        "PJO_API_KEY": {"secretKeyRef": {"name": "prefect-creds", "key": "key"}},
        "PJO_API_AUTH_STRING": {"secretKeyRef": {"name": "prefect-creds", "key": "auth"}},
        "PJO_API_KEY_SECRET_NAME": "job-key",
        "PJO_API_KEY_SECRET_KEY": "api-key",
        "PJO_API_AUTH_STRING_SECRET_NAME": "job-auth",
        "PJO_API_AUTH_STRING_SECRET_KEY": "auth-string",
    }


def test_cluster_mode_grants_exactly_the_documented_rules(helm_bin: Path) -> None:
    role = one(render(helm_bin), "ClusterRole")
    assert rule_tuples(role) == CRD_READ + FRAMEWORK_EVENTS + APPLICATION
    # Never: write on Secrets/ConfigMaps, delete Pods, touch Deployments or RBAC, wildcards.
    for _, resources, verbs in rule_tuples(role):
        assert "*" not in resources and "*" not in verbs
    binding = one(render(helm_bin), "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "pjo-prefect-job-operator", "namespace": NS}
    ]


def test_cluster_mode_with_watched_namespaces_grants_the_same_rules(helm_bin: Path) -> None:
    objects = render(helm_bin, watchNamespaces="{team-a}")
    assert rule_tuples(one(objects, "ClusterRole")) == CRD_READ + FRAMEWORK_EVENTS + APPLICATION
    assert container(objects)["args"] == ["run", "--namespace=team-a"]


# -- template tests: namespaced mode ------------------------------------------------------


def test_namespaced_mode_grants_a_role_per_namespace_and_only_crd_reads_cluster_wide(
    helm_bin: Path,
) -> None:
    objects = render(helm_bin, **{"rbac.mode": "namespaced", "watchNamespaces": "{team-a,team-b}"})
    assert [k for k in kinds(objects) if k[0] in ("Role", "RoleBinding")] == [
        ("Role", "pjo-prefect-job-operator", "team-a"),
        ("Role", "pjo-prefect-job-operator", "team-b"),
        ("RoleBinding", "pjo-prefect-job-operator", "team-a"),
        ("RoleBinding", "pjo-prefect-job-operator", "team-b"),
    ]
    for role in (o for o in objects if o["kind"] == "Role"):
        assert rule_tuples(role) == FRAMEWORK_EVENTS + APPLICATION
    cluster_roles = [o for o in objects if o["kind"] == "ClusterRole"]
    assert [rule_tuples(r) for r in cluster_roles] == [CRD_READ]
    for binding in (o for o in objects if o["kind"] == "RoleBinding"):
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": "pjo-prefect-job-operator",
        }
        assert binding["subjects"][0]["namespace"] == NS
    c = container(objects)
    assert c["args"] == ["run", "--namespace=team-a", "--namespace=team-b"]
    assert json.loads(env_of(objects)["PJO_NAMESPACES"]) == ["team-a", "team-b"]


def test_extra_rules_are_appended_to_every_role(helm_bin: Path) -> None:
    objects = render(
        helm_bin,
        **{
            "rbac.mode": "namespaced",
            "watchNamespaces": "{team-a}",
            "rbac.extraRules[0].apiGroups[0]": "",
            "rbac.extraRules[0].resources[0]": "persistentvolumeclaims",
            "rbac.extraRules[0].verbs[0]": "get",
        },
    )
    role = one(objects, "Role")
    assert rule_tuples(role)[-1] == ([""], ["persistentvolumeclaims"], ["get"])
    assert [rule_tuples(r) for r in objects if r["kind"] == "ClusterRole"] == [CRD_READ]


def test_secret_writes_are_opt_in(helm_bin: Path) -> None:
    role = one(render(helm_bin, **{"rbac.createSecrets": "true"}), "ClusterRole")
    secret_rules = [r for r in rule_tuples(role) if r[1] == ["secrets"]]
    assert secret_rules == [
        ([""], ["secrets"], ["get"]),
        (
            [""],
            ["secrets"],
            ["create", "update", "patch", "delete"],
        ),
    ]


def test_rbac_and_service_account_can_be_brought_by_the_user(helm_bin: Path) -> None:
    objects = render(
        helm_bin,
        **{"rbac.create": "false", "serviceAccount.create": "false", "serviceAccount.name": "mine"},
    )
    assert {o["kind"] for o in objects} == {"Deployment", "Service"}
    assert one(objects, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "mine"


# -- template tests: optional objects -----------------------------------------------------


def test_more_replicas_bring_a_pod_disruption_budget(helm_bin: Path) -> None:
    assert not [o for o in render(helm_bin) if o["kind"] == "PodDisruptionBudget"]
    objects = render(helm_bin, replicas="3")
    pdb = one(objects, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"] == one(objects, "Deployment")["spec"]["selector"]
    assert one(objects, "Deployment")["spec"]["replicas"] == 3


def test_service_monitor_scrapes_the_metrics_service(helm_bin: Path) -> None:
    objects = render(
        helm_bin,
        **{"metrics.serviceMonitor.enabled": "true", "metrics.serviceMonitor.labels.release": "kp"},
    )
    monitor = one(objects, "ServiceMonitor")
    service = one(objects, "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kp"
    assert monitor["spec"]["endpoints"] == [
        {"port": "metrics", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"}
    ]
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}
    ]


def test_sample_work_pool_is_optional(helm_bin: Path) -> None:
    assert not [o for o in render(helm_bin) if o["kind"] == "WorkPool"]
    pool = one(render(helm_bin, **{"sampleWorkPool.enabled": "true"}), "WorkPool")
    assert pool["apiVersion"] == "prefect-job-operator.dev/v1alpha1"
    assert pool["metadata"]["namespace"] == NS
    assert pool["spec"]["poolName"] == "sample-pool"


def test_long_release_names_are_cut_to_63_characters(helm_bin: Path) -> None:
    longest = "r" * 53  # Helm's own limit on release names
    proc = helm(helm_bin, "template", longest, str(CHART), "-n", NS, *KUBE, "--set", "replicas=2")
    assert proc.returncode == 0, proc.stderr
    names = [d["metadata"]["name"] for d in yaml.safe_load_all(proc.stdout) if d]
    assert len(names) == 6
    assert all(len(n) <= 63 and not n.endswith("-") for n in names), names
    assert f"{'r' * 53}-p-metrics" in names


def test_helm_lint_is_clean(helm_bin: Path) -> None:
    for values in ([], ["--set", "rbac.mode=namespaced", "--set", "watchNamespaces={a,b}"]):
        proc = helm(helm_bin, "lint", "--strict", str(CHART), *values)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "0 chart(s) failed" in proc.stdout


# -- template tests: bad values fail with a message that names the key --------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"rbac.mode": "foo"}, "rbac/mode"),
        ({"replicas": "-1"}, "replicas"),
        ({"replica": "2"}, "replica"),
        ({"image.pullPolicy": "Sometimes"}, "pullPolicy"),
        ({"watchNamespaces": "{Team_A}"}, "watchNamespaces"),
        (
            {"rbac.mode": "namespaced"},
            "rbac.mode=namespaced needs the namespaces to grant: set watchNamespaces",
        ),
        (
            {"prefect.existingSecret.name": "creds"},
            "prefect.existingSecret.name is set but names no key",
        ),
        (
            {"metrics.service.enabled": "false", "metrics.serviceMonitor.enabled": "true"},
            "metrics.serviceMonitor.enabled=true needs metrics.service.enabled=true",
        ),
    ],
    ids=["rbac-mode", "replicas", "typo", "pull-policy", "ns-name", "no-ns", "no-key", "monitor"],
)
def test_bad_values_fail_with_a_clear_message(
    helm_bin: Path, values: dict[str, str], message: str
) -> None:
    assert message in render_error(helm_bin, **values)


def test_schema_errors_say_what_is_wrong(helm_bin: Path) -> None:
    error = render_error(helm_bin, **{"rbac.mode": "foo"})
    assert "values don't meet the specifications of the schema" in error
    assert "cluster" in error and "namespaced" in error
    assert "minimum" in render_error(helm_bin, replicas="-1")
    assert "additional properties 'replica' not allowed" in render_error(
        helm_bin, replica="2"
    ).replace('"', "'")


def test_old_kubernetes_is_refused(helm_bin: Path) -> None:
    proc = helm(helm_bin, "template", RELEASE, str(CHART), "--kube-version", "1.28.0")
    assert proc.returncode != 0
    assert "kubeVersion" in proc.stderr and ">=1.29.0-0" in proc.stderr


# -- cluster tests -------------------------------------------------------------------------


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def can_i(cluster: Cluster, sa: str, *args: str) -> bool:
    proc = cluster.kubectl("auth", "can-i", *args, as_user=sa, check=False)
    answer = proc.stdout.strip()
    assert answer in ("yes", "no"), proc.stdout + proc.stderr
    return answer == "yes"


def crd_served(cluster: Cluster) -> bool:
    proc = cluster.kubectl(
        "get", "crd", CRD, "-o", "jsonpath={.status.conditions[?(@.type=='Established')].status}"
    )
    return proc.stdout == "True"


@pytest.fixture
def release(k8s_cluster: Cluster, k8s_namespace: str) -> Iterator[str]:
    """A unique release name (cluster-scoped RBAC names derive from it), uninstalled after."""
    name = unique("pjo")
    yield name
    k8s_cluster.helm("uninstall", name, "-n", k8s_namespace, "--wait", check=False)


@pytest.mark.cluster
def test_install_serves_the_crd_and_keeps_it_on_uninstall(
    k8s_cluster: Cluster, k8s_namespace: str, release: str
) -> None:
    proc = k8s_cluster.helm(
        "install", release, str(CHART), "-n", k8s_namespace, "--wait", "--timeout", "120s"
    )
    assert "kubectl get wp" in proc.stdout  # NOTES.txt tells the next step
    wait_for("the WorkPool CRD to be Established", lambda: crd_served(k8s_cluster), 30)
    explain = k8s_cluster.kubectl("explain", "workpool.spec").stdout
    assert "poolName" in explain and "GROUP:      prefect-job-operator.dev" in explain

    def ready_replicas() -> int | None:
        deployment = json.loads(
            k8s_cluster.kubectl(
                "get",
                "deployment",
                f"{release}-prefect-job-operator",
                "-n",
                k8s_namespace,
                "-o",
                "json",
            ).stdout
        )
        ready: int | None = deployment["status"].get("readyReplicas")
        return ready

    # `helm --wait` returns once the ReplicaSet is ready; the Deployment's own status is
    # written by the controller a moment later (a race seen once under load).
    wait_for("the operator Deployment to report 1 ready replica", lambda: ready_replicas() == 1, 30)
    k8s_cluster.kubectl(
        "apply",
        "-n",
        k8s_namespace,
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
    assert k8s_cluster.kubectl("get", "wp", "survivor", "-n", k8s_namespace).returncode == 0

    k8s_cluster.helm("uninstall", release, "-n", k8s_namespace, "--wait")
    assert crd_served(k8s_cluster), "helm uninstall must keep the CRD"
    assert k8s_cluster.kubectl("get", "wp", "survivor", "-n", k8s_namespace).returncode == 0
    gone = k8s_cluster.kubectl("get", "clusterrole", f"{release}-prefect-job-operator", check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr


@pytest.mark.cluster
def test_upgrade_applies_changed_values(
    k8s_cluster: Cluster, k8s_namespace: str, release: str
) -> None:
    name = f"{release}-prefect-job-operator"
    k8s_cluster.helm("install", release, str(CHART), "-n", k8s_namespace, "--wait")
    k8s_cluster.helm(
        "upgrade",
        release,
        str(CHART),
        "-n",
        k8s_namespace,
        "--wait",
        "--set",
        "replicas=2",
        "--set",
        "operator.logFormat=plain",
        "--set",
        "sampleWorkPool.enabled=true",
    )
    deployment = json.loads(
        k8s_cluster.kubectl("get", "deployment", name, "-n", k8s_namespace, "-o", "json").stdout
    )
    assert deployment["spec"]["replicas"] == 2
    assert deployment["status"]["readyReplicas"] == 2
    env = {
        e["name"]: e.get("value")
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["PJO_LOG_FORMAT"] == "plain"
    pdb = k8s_cluster.kubectl("get", "pdb", name, "-n", k8s_namespace, "-o", "json").stdout
    assert json.loads(pdb)["spec"]["minAvailable"] == 1
    assert k8s_cluster.kubectl("get", "wp", "sample", "-n", k8s_namespace).returncode == 0

    k8s_cluster.helm(
        "upgrade", release, str(CHART), "-n", k8s_namespace, "--reuse-values", "--set", "replicas=1"
    )
    assert k8s_cluster.kubectl("get", "pdb", name, "-n", k8s_namespace, check=False).returncode != 0

    # The documented CRD upgrade step (docs/install.md) applies over the Helm-created CRD.
    crds = k8s_cluster.helm("show", "crds", str(CHART)).stdout
    applied = k8s_cluster.kubectl(
        "apply", "--server-side", "--force-conflicts", "-f", "-", input=crds
    ).stdout
    assert f"customresourcedefinition.apiextensions.k8s.io/{CRD} serverside-applied" in applied


@pytest.mark.cluster
def test_a_bad_value_fails_the_install(k8s_cluster: Cluster, k8s_namespace: str) -> None:
    proc = k8s_cluster.helm(
        "install",
        unique("bad"),
        str(CHART),
        "-n",
        k8s_namespace,
        "--set",
        "rbac.mode=foo",
        check=False,
    )
    assert proc.returncode != 0
    assert "values don't meet the specifications of the schema" in proc.stderr


@pytest.fixture
def team_namespaces(k8s_cluster: Cluster) -> Iterator[list[str]]:
    """Two namespaces to grant and one that must stay out of reach."""
    names = [unique("team-a"), unique("team-b"), unique("other")]
    for name in names:
        k8s_cluster.kubectl("create", "namespace", name)
    yield names
    for name in names:
        k8s_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.mark.cluster
def test_namespaced_rbac_reaches_only_the_watched_namespaces(
    k8s_cluster: Cluster, k8s_namespace: str, release: str, team_namespaces: list[str]
) -> None:
    team_a, team_b, other = team_namespaces
    k8s_cluster.helm(
        "install",
        release,
        str(CHART),
        "-n",
        k8s_namespace,
        "--wait",
        "--set",
        "rbac.mode=namespaced",
        "--set",
        f"watchNamespaces={{{team_a},{team_b}}}",
    )
    sa = f"system:serviceaccount:{k8s_namespace}:{release}-prefect-job-operator"
    for ns in (team_a, team_b):
        assert can_i(k8s_cluster, sa, "create", "jobs.batch", "-n", ns)
        assert can_i(k8s_cluster, sa, "delete", "jobs.batch", "-n", ns)
        assert can_i(k8s_cluster, sa, "watch", "pods", "-n", ns)
        assert can_i(k8s_cluster, sa, "get", "pods", "--subresource=log", "-n", ns)
        assert can_i(k8s_cluster, sa, "get", "secrets", "-n", ns)
        assert can_i(k8s_cluster, sa, "create", "leases.coordination.k8s.io", "-n", ns)
        assert can_i(k8s_cluster, sa, "patch", f"{CRD}", "--subresource=status", "-n", ns)
        assert can_i(k8s_cluster, sa, "create", "events", "-n", ns)
        assert not can_i(k8s_cluster, sa, "delete", "pods", "-n", ns)
        assert not can_i(k8s_cluster, sa, "create", "secrets", "-n", ns)
        assert not can_i(k8s_cluster, sa, "list", "secrets", "-n", ns)
    for ns in (other, k8s_namespace):
        assert not can_i(k8s_cluster, sa, "create", "jobs.batch", "-n", ns)
        assert not can_i(k8s_cluster, sa, "get", "secrets", "-n", ns)
        assert not can_i(k8s_cluster, sa, "list", CRD, "-n", ns)
    assert not can_i(k8s_cluster, sa, "list", "namespaces")
    assert not can_i(k8s_cluster, sa, "list", "jobs.batch", "--all-namespaces")
    assert can_i(k8s_cluster, sa, "list", "customresourcedefinitions.apiextensions.k8s.io")
    assert not can_i(k8s_cluster, sa, "create", "customresourcedefinitions.apiextensions.k8s.io")

    # The grant is real, not just a yes from can-i: a server-side dry run as the operator.
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "probe"},
        "spec": {
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "busybox"}],
                }
            }
        },
    }
    for ns, allowed in ((team_a, True), (other, False)):
        proc = k8s_cluster.kubectl(
            "create",
            "--dry-run=server",
            "-n",
            ns,
            "-f",
            "-",
            input=yaml.safe_dump(job),
            as_user=sa,
            check=False,
        )
        assert (proc.returncode == 0) is allowed, proc.stderr
        if not allowed:
            assert "Forbidden" in proc.stderr or "forbidden" in proc.stderr


@pytest.mark.cluster
def test_cluster_rbac_is_cluster_wide_but_still_least_privilege(
    k8s_cluster: Cluster, k8s_namespace: str, release: str, team_namespaces: list[str]
) -> None:
    k8s_cluster.helm("install", release, str(CHART), "-n", k8s_namespace, "--wait")
    sa = f"system:serviceaccount:{k8s_namespace}:{release}-prefect-job-operator"
    other = team_namespaces[2]
    assert not can_i(k8s_cluster, sa, "list", "namespaces")
    assert can_i(k8s_cluster, sa, "create", "jobs.batch", "-n", other)
    assert can_i(k8s_cluster, sa, "watch", CRD, "--all-namespaces")
    assert can_i(k8s_cluster, sa, "get", "secrets", "-n", other)
    assert not can_i(k8s_cluster, sa, "list", "secrets", "-n", other)
    assert not can_i(k8s_cluster, sa, "delete", "pods", "-n", other)
    assert not can_i(k8s_cluster, sa, "update", "deployments.apps", "-n", k8s_namespace)
    assert not can_i(k8s_cluster, sa, "create", "clusterrolebindings.rbac.authorization.k8s.io")
    assert not can_i(k8s_cluster, sa, "delete", "namespaces")


# -- the real operator under the chart's RBAC --------------------------------------------


def service_account_kubeconfig(cluster: Cluster, namespace: str, sa: str, path: Path) -> Path:
    """The admin kubeconfig with its user swapped for a token of the chart's ServiceAccount."""
    config = yaml.safe_load(
        cluster.kubectl("config", "view", "--raw", "--minify", "--flatten").stdout
    )
    token = cluster.kubectl("create", "token", sa, "-n", namespace, "--duration=1h").stdout
    config["users"] = [{"name": sa, "user": {"token": token.strip()}}]
    config["contexts"][0]["context"]["user"] = sa
    path.write_text(yaml.safe_dump(config))
    return path


# The operator running under this RBAC, end to end: tests/e2e/test_chart_rbac.py

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

from prefect_job_operator.api.crdgen import build_crd
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
    ([""], ["events"], ["get", "list", "create", "patch"]),
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
SAR_CREATE = [(["authorization.k8s.io"], ["subjectaccessreviews"], ["create"])]
CLUSTER = CRD_READ + SAR_CREATE
WEBHOOK_ENV = {
    "PJO_WEBHOOK_PORT": "9443",
    "PJO_WEBHOOK_CERT_DIR": "/etc/prefect-job-operator/webhook-tls",
}


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
    return dict(c)


def env_of(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(objects)["env"]}


# -- template tests: defaults ------------------------------------------------------------


def test_default_values_render_the_cluster_wide_install(helm_bin: Path) -> None:
    objects = render(helm_bin)
    assert kinds(objects) == [
        ("ClusterRole", "pjo-prefect-job-operator", None),
        ("ClusterRoleBinding", "pjo-prefect-job-operator", None),
        ("CustomResourceDefinition", CRD, None),
        ("Deployment", "pjo-prefect-job-operator", NS),
        ("Secret", "pjo-prefect-job-operator-webhook-tls", NS),
        ("Service", "pjo-prefect-job-operator-metrics", NS),
        ("Service", "pjo-prefect-job-operator-webhook", NS),
        ("ServiceAccount", "pjo-prefect-job-operator", NS),
        ("ValidatingWebhookConfiguration", "pjo-prefect-job-operator", None),
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
    assert c["ports"] == [
        {"name": "metrics", "containerPort": 8080, "protocol": "TCP"},
        {"name": "webhook", "containerPort": 9443, "protocol": "TCP"},
    ]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert c["resources"]["requests"] == {"cpu": "100m", "memory": "192Mi"}
    assert c["resources"]["limits"] == {"memory": "512Mi"}
    assert c["volumeMounts"] == [
        {"name": "tmp", "mountPath": "/tmp"},
        {
            "name": "webhook-tls",
            "mountPath": "/etc/prefect-job-operator/webhook-tls",
            "readOnly": True,
        },
    ]
    assert pod["volumes"] == [
        {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
        {"name": "webhook-tls", "secret": {"secretName": "pjo-prefect-job-operator-webhook-tls"}},
    ]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


def test_the_operator_settings_come_from_env(helm_bin: Path) -> None:
    assert env_of(render(helm_bin)) == {
        "PJO_INSTANCE": "pjo-prefect-job-operator",
        "PJO_IDENTITY": POD_NAME,
        "PJO_NAMESPACES": "[]",
        "PJO_HEALTH_PORT": "8080",
        "PJO_LOG_FORMAT": "json",
        "PJO_OPERATOR_KEY_NAMESPACES": NS,  # the release namespace only (issue #15)
        **WEBHOOK_ENV,
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
        "PJO_OPERATOR_KEY_NAMESPACES": NS,
        **WEBHOOK_ENV,
        "PJO_API_KEY_SECRET_NAME": "job-key",
        "PJO_API_KEY_SECRET_KEY": "api-key",
        "PJO_API_AUTH_STRING_SECRET_NAME": "job-auth",
        "PJO_API_AUTH_STRING_SECRET_KEY": "auth-string",
    }


def test_cluster_mode_grants_exactly_the_documented_rules(helm_bin: Path) -> None:
    role = one(render(helm_bin), "ClusterRole")
    assert rule_tuples(role) == CLUSTER + FRAMEWORK_EVENTS + APPLICATION
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
    assert rule_tuples(one(objects, "ClusterRole")) == CLUSTER + FRAMEWORK_EVENTS + APPLICATION
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
    assert [rule_tuples(r) for r in cluster_roles] == [CLUSTER]
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
    assert [rule_tuples(r) for r in objects if r["kind"] == "ClusterRole"] == [CLUSTER]


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
    assert {o["kind"] for o in objects} == {
        "CustomResourceDefinition",
        "Deployment",
        "Service",
        "Secret",
        "ValidatingWebhookConfiguration",
    }
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
    service = one(objects, "Service", "pjo-prefect-job-operator-metrics")
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
    # Not before the cluster serves the kind (the CRD is a template of the same release).
    assert not [
        o for o in render(helm_bin, **{"sampleWorkPool.enabled": "true"}) if o["kind"] == "WorkPool"
    ]
    served = ["--api-versions", "prefect-job-operator.dev/v1alpha1/WorkPool"]

    def sample(*values: str) -> dict[str, Any]:
        proc = helm(helm_bin, "template", RELEASE, str(CHART), "-n", NS, *KUBE, *served, *values)
        assert proc.returncode == 0, proc.stderr
        return one([d for d in yaml.safe_load_all(proc.stdout) if d], "WorkPool")

    pool = sample("--set", "sampleWorkPool.enabled=true")
    assert pool["apiVersion"] == "prefect-job-operator.dev/v1alpha1"
    assert pool["metadata"]["namespace"] == NS
    assert pool["spec"]["poolName"] == "sample-pool"
    # the webhook must be serving to admit it: created after the release's objects
    assert pool["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    plain = sample("--set", "sampleWorkPool.enabled=true", "--set", "webhook.enabled=false")
    assert "annotations" not in plain["metadata"]


def test_long_release_names_are_cut_to_63_characters(helm_bin: Path) -> None:
    longest = "r" * 53  # Helm's own limit on release names
    proc = helm(helm_bin, "template", longest, str(CHART), "-n", NS, *KUBE, "--set", "replicas=2")
    assert proc.returncode == 0, proc.stderr
    names = [d["metadata"]["name"] for d in yaml.safe_load_all(proc.stdout) if d]
    assert len(names) == 10
    assert all(len(n) <= 63 and not n.endswith("-") for n in names), names
    assert f"{'r' * 53}-p-metrics" in names


def test_helm_lint_is_clean(helm_bin: Path) -> None:
    for values in ([], ["--set", "rbac.mode=namespaced", "--set", "watchNamespaces={a,b}"]):
        proc = helm(helm_bin, "lint", "--strict", str(CHART), *values)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "0 chart(s) failed" in proc.stdout


# -- template tests: the admission webhook (docs/security.md) ------------------------------


def _webhook(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (hook,) = one(objects, "ValidatingWebhookConfiguration")["webhooks"]
    return dict(hook)


def test_the_webhook_is_on_by_default_with_a_helm_generated_certificate(helm_bin: Path) -> None:
    import base64

    from cryptography import x509

    objects = render(helm_bin)
    hook = _webhook(objects)
    svc = "pjo-prefect-job-operator-webhook"
    assert hook["clientConfig"]["service"] == {
        "name": svc,
        "namespace": NS,
        "port": 443,
        "path": "/validate-workpool",  # handlers.WEBHOOK_ID: kopf serves /<handler id>
    }
    assert (hook["failurePolicy"], hook["timeoutSeconds"], hook["sideEffects"]) == (
        "Fail",
        10,
        "None",
    )
    assert hook["rules"] == [
        {
            "apiGroups": ["prefect-job-operator.dev"],
            "apiVersions": ["*"],
            "resources": ["workpools"],  # never workpools/status: the operator writes it
            "operations": ["CREATE", "UPDATE"],
            "scope": "Namespaced",
        }
    ]
    assert "namespaceSelector" not in hook
    service = one(objects, "Service", svc)
    assert service["spec"]["ports"] == [
        {"name": "webhook", "port": 443, "targetPort": "webhook", "protocol": "TCP"}
    ]
    secret = one(objects, "Secret", "pjo-prefect-job-operator-webhook-tls")
    assert secret["type"] == "kubernetes.io/tls"
    ca = x509.load_pem_x509_certificate(base64.b64decode(hook["clientConfig"]["caBundle"]))
    assert secret["data"]["ca.crt"] == hook["clientConfig"]["caBundle"]
    cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    assert cert.issuer == ca.subject
    cert.verify_directly_issued_by(ca)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert f"{svc}.{NS}.svc" in sans.get_values_for_type(x509.DNSName)
    assert base64.b64decode(secret["data"]["tls.key"]).startswith(b"-----BEGIN")


def test_the_webhook_can_take_its_certificate_from_cert_manager(helm_bin: Path) -> None:
    objects = render(helm_bin, **{"webhook.certManager.enabled": "true"})
    assert not [o for o in objects if o["kind"] == "Secret"]
    issuer = one(objects, "Issuer")
    assert issuer["spec"] == {"selfSigned": {}}
    cert = one(objects, "Certificate")
    assert cert["apiVersion"] == "cert-manager.io/v1"
    assert cert["spec"]["secretName"] == "pjo-prefect-job-operator-webhook-tls"
    assert "pjo-prefect-job-operator-webhook.operators.svc" in cert["spec"]["dnsNames"]
    assert cert["spec"]["issuerRef"] == {
        "name": issuer["metadata"]["name"],
        "kind": "Issuer",
        "group": "cert-manager.io",
    }
    config = one(objects, "ValidatingWebhookConfiguration")
    assert config["metadata"]["annotations"] == {
        "cert-manager.io/inject-ca-from": f"{NS}/{cert['metadata']['name']}"
    }
    assert "caBundle" not in _webhook(objects)["clientConfig"]
    own = render(
        helm_bin,
        **{
            "webhook.certManager.enabled": "true",
            "webhook.certManager.issuerRef.name": "corp-ca",
            "webhook.certManager.issuerRef.kind": "ClusterIssuer",
        },
    )
    assert not [o for o in own if o["kind"] == "Issuer"]
    assert one(own, "Certificate")["spec"]["issuerRef"]["name"] == "corp-ca"
    assert one(own, "Certificate")["spec"]["issuerRef"]["kind"] == "ClusterIssuer"


def test_the_webhook_settings_and_scope_follow_the_values(helm_bin: Path) -> None:
    objects = render(
        helm_bin,
        **{
            "webhook.failurePolicy": "Ignore",
            "webhook.timeoutSeconds": "5",
            "webhook.port": "10250",
            "rbac.mode": "namespaced",
            "watchNamespaces": "{team-a,team-b}",
        },
    )
    hook = _webhook(objects)
    assert (hook["failurePolicy"], hook["timeoutSeconds"]) == ("Ignore", 5)
    assert hook["namespaceSelector"] == {
        "matchExpressions": [
            {
                "key": "kubernetes.io/metadata.name",
                "operator": "In",
                "values": ["team-a", "team-b"],
            }
        ]
    }
    assert env_of(objects)["PJO_WEBHOOK_PORT"] == "10250"
    assert {"name": "webhook", "containerPort": 10250, "protocol": "TCP"} in container(objects)[
        "ports"
    ]


def test_without_the_webhook_nothing_of_it_is_rendered(helm_bin: Path) -> None:
    objects = render(helm_bin, **{"webhook.enabled": "false"})
    assert kinds(objects) == [
        ("ClusterRole", "pjo-prefect-job-operator", None),
        ("ClusterRoleBinding", "pjo-prefect-job-operator", None),
        ("CustomResourceDefinition", CRD, None),
        ("Deployment", "pjo-prefect-job-operator", NS),
        ("Service", "pjo-prefect-job-operator-metrics", NS),
        ("ServiceAccount", "pjo-prefect-job-operator", NS),
    ]
    assert rule_tuples(one(objects, "ClusterRole")) == CRD_READ + FRAMEWORK_EVENTS + APPLICATION
    assert not set(env_of(objects)) & set(WEBHOOK_ENV)
    assert container(objects)["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]


def test_other_api_urls_are_closed_unless_the_admin_lists_them(helm_bin: Path) -> None:
    assert "PJO_ALLOWED_API_URLS" not in env_of(render(helm_bin))
    env = env_of(
        render(
            helm_bin,
            **{"security.allowedApiUrls": "{https://prefect.example.com/api,http://p.team-a:4200}"},
        )
    )
    assert env["PJO_ALLOWED_API_URLS"] == "https://prefect.example.com/api,http://p.team-a:4200"
    assert "security/allowedApiUrls" in render_error(
        helm_bin, **{"security.allowedApiUrls": "{http://user@evil.example/api}"}
    )


# -- template tests: the CRD, credentials and the values users expect ---------------------


def test_the_crd_is_a_kept_template_behind_crds_enabled(helm_bin: Path) -> None:
    crd = one(render(helm_bin), "CustomResourceDefinition", CRD)
    assert crd["spec"] == build_crd()["spec"]  # the generated CRD, `{{` escapes and all
    assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    assert crd["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    unkept = one(render(helm_bin, **{"crds.keep": "false"}), "CustomResourceDefinition")
    assert "annotations" not in unkept["metadata"]
    objects = render(helm_bin, **{"crds.enabled": "false"})
    assert not [o for o in objects if o["kind"] == "CustomResourceDefinition"]


def test_the_readme_secret_name_alone_reads_the_api_key_key(helm_bin: Path) -> None:
    """README: `kubectl create secret ... --from-literal=api-key=...` + existingSecret.name."""
    env = env_of(render(helm_bin, **{"prefect.existingSecret.name": "prefect-api"}))
    assert env["PJO_API_KEY"] == {"secretKeyRef": {"name": "prefect-api", "key": "api-key"}}
    assert "PJO_API_AUTH_STRING" not in env
    basic = env_of(
        render(
            helm_bin,
            **{
                "prefect.existingSecret.name": "creds",
                "prefect.existingSecret.authStringKey": "auth",
            },
        )
    )
    assert "PJO_API_KEY" not in basic
    assert basic["PJO_API_AUTH_STRING"] == {"secretKeyRef": {"name": "creds", "key": "auth"}}
    assert "PJO_API_KEY" not in env_of(render(helm_bin))


EXTRA_VALUES = """
commonLabels: {team: data}
podLabels: {tier: ops}
extraEnv:
  - {name: SSL_CERT_FILE, value: /etc/prefect-ca/ca.crt}
operator:
  extraEnv:
    - {name: LEGACY, value: "1"}
envFrom:
  - secretRef: {name: proxy-settings}
extraVolumes:
  - name: prefect-ca
    configMap: {name: prefect-ca}
extraVolumeMounts:
  - {name: prefect-ca, mountPath: /etc/prefect-ca, readOnly: true}
extraObjects:
  - apiVersion: v1
    kind: ConfigMap
    metadata: {name: prefect-ca, namespace: "{{ .Release.Namespace }}"}
    data: {ca.crt: "pem"}
  - |
    apiVersion: v1
    kind: ConfigMap
    metadata:
      name: {{ include "pjo.fullname" . }}-extra
      namespace: {{ .Release.Namespace }}
"""


def render_file(helm_bin: Path, values: str, tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "values.yaml"
    path.write_text(values)
    proc = helm(helm_bin, "template", RELEASE, str(CHART), "-n", NS, *KUBE, "-f", str(path))
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def test_extra_env_volumes_labels_and_objects_render_where_kubernetes_expects_them(
    helm_bin: Path, tmp_path: Path
) -> None:
    objects = render_file(helm_bin, EXTRA_VALUES, tmp_path)
    c = container(objects)
    env = env_of(objects)
    assert env["SSL_CERT_FILE"] == "/etc/prefect-ca/ca.crt" and env["LEGACY"] == "1"
    assert c["envFrom"] == [{"secretRef": {"name": "proxy-settings"}}]
    assert [m["name"] for m in c["volumeMounts"]] == ["tmp", "webhook-tls", "prefect-ca"]
    assert c["volumeMounts"][-1] == {
        "name": "prefect-ca",
        "mountPath": "/etc/prefect-ca",
        "readOnly": True,
    }
    pod = one(objects, "Deployment")["spec"]["template"]
    assert [v["name"] for v in pod["spec"]["volumes"]] == ["tmp", "webhook-tls", "prefect-ca"]
    assert pod["spec"]["volumes"][-1] == {"name": "prefect-ca", "configMap": {"name": "prefect-ca"}}
    assert pod["metadata"]["labels"]["team"] == "data"
    assert pod["metadata"]["labels"]["tier"] == "ops"
    assert "team" not in one(objects, "Deployment")["spec"]["selector"]["matchLabels"]
    for obj in objects:
        if obj["kind"] != "ConfigMap":
            assert obj["metadata"]["labels"]["team"] == "data", obj["kind"]
    assert one(objects, "ConfigMap", "prefect-ca")["metadata"]["namespace"] == NS
    assert (
        one(objects, "ConfigMap", "pjo-prefect-job-operator-extra")["metadata"]["namespace"] == NS
    )


def test_extra_values_pass_helm_lint_strict_and_the_schema_checks_their_shape(
    helm_bin: Path, tmp_path: Path
) -> None:
    path = tmp_path / "values.yaml"
    path.write_text(EXTRA_VALUES)
    proc = helm(helm_bin, "lint", "--strict", str(CHART), "-f", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "mountPath" in render_error(helm_bin, **{"extraVolumeMounts[0].name": "x"})
    assert "name" in render_error(helm_bin, **{"extraVolumes[0].emptyDir.medium": "Memory"})


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
            {"metrics.service.enabled": "false", "metrics.serviceMonitor.enabled": "true"},
            "metrics.serviceMonitor.enabled=true needs metrics.service.enabled=true",
        ),
    ],
    ids=["rbac-mode", "replicas", "typo", "pull-policy", "ns-name", "no-ns", "monitor"],
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


def adopt_crd(cluster: Cluster, release: str, namespace: str) -> None:
    """Hand an existing CRD to `release` (docs/install.md's adoption step).

    The session's cluster is shared: the CRD may come from an earlier test (applied from
    crds/, or kept by an uninstalled release), and Helm adopts only what names the release.
    """
    if cluster.kubectl("get", "crd", CRD, check=False).returncode != 0:
        return
    cluster.kubectl(
        "annotate", "crd", CRD, "--overwrite",
        f"meta.helm.sh/release-name={release}", f"meta.helm.sh/release-namespace={namespace}",
    )  # fmt: skip
    cluster.kubectl("label", "crd", CRD, "--overwrite", "app.kubernetes.io/managed-by=Helm")


@pytest.fixture
def release(k8s_cluster: Cluster, k8s_namespace: str) -> Iterator[str]:
    """A unique release name (cluster-scoped RBAC names derive from it), uninstalled after.

    It owns the WorkPool CRD (adopted if it exists), as the only installation would.
    """
    name = unique("pjo")
    adopt_crd(k8s_cluster, name, k8s_namespace)
    yield name
    k8s_cluster.helm("uninstall", name, "-n", k8s_namespace, "--wait", check=False)


@pytest.mark.cluster
def test_install_serves_the_crd_and_keeps_it_on_uninstall(
    k8s_cluster: Cluster, k8s_namespace: str, release: str
) -> None:
    # The operator pods are kwok fakes: nothing would serve the webhook, and the API server
    # must not dial pod IPs (loopback only). The webhook is tested in tests/e2e/test_security.py.
    proc = k8s_cluster.helm(
        "install", release, str(CHART), "-n", k8s_namespace, "--wait", "--timeout", "120s",
        "--set", "webhook.enabled=false",
    )  # fmt: skip
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
    # The sample WorkPool: no webhook, see test_install_serves_the_crd_and_keeps_it_on_uninstall
    # (and from the install on: Helm creates new objects before it deletes old ones).
    k8s_cluster.helm(
        "install", release, str(CHART), "-n", k8s_namespace, "--wait",
        "--set", "webhook.enabled=false",
    )  # fmt: skip
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
        "--set",
        "webhook.enabled=false",
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

    # The CRD is part of the release: upgraded with it, and kept on uninstall.
    crd = json.loads(k8s_cluster.kubectl("get", "crd", CRD, "-o", "json").stdout)
    assert crd["metadata"]["annotations"]["meta.helm.sh/release-name"] == release
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    generated = build_crd()["spec"]["versions"][0]["schema"]
    assert crd["spec"]["versions"][0]["schema"] == generated


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


# The default install registers the webhook; these tests create no WorkPool while it is
# installed, so the API server never dials it (no Service routes on this cluster).
RBAC_ONLY = "asserts the default RBAC only; no WorkPool is created while it is installed"


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
        webhook_without_route=RBAC_ONLY,
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
    assert can_i(k8s_cluster, sa, "create", "subjectaccessreviews.authorization.k8s.io")

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
    k8s_cluster.helm(
        "install", release, str(CHART), "-n", k8s_namespace, "--wait",
        webhook_without_route=RBAC_ONLY,
    )  # fmt: skip
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
    assert can_i(k8s_cluster, sa, "create", "subjectaccessreviews.authorization.k8s.io")
    assert not can_i(k8s_cluster, sa, "create", "tokenreviews.authentication.k8s.io")


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

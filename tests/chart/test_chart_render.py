"""The chart, linted and rendered offline by real Go Helm (no cluster needed)."""

from __future__ import annotations

import base64
import json
import re
import tarfile
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml
from cryptography import x509

from kingest.operator import crd, rbac
from kingest.operator.leader import ROLE_LABEL
from kingest.operator.main import _parser as operator_parser
from kingest.operator.metrics import IngestionMetrics
from tests.image.dockerfile import parse as parse_dockerfile
from tests.platform.helm import lint, render

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "charts" / "kingest"
RELEASE, NAMESPACE = "kingest", "kingest-system"
CLUSTER_SCOPED = {"customresourcedefinitions", "namespaces"}


def rendered(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return render(CHART, values, name=RELEASE, namespace=NAMESPACE)


def only(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    matches = [
        o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]
    assert len(matches) == 1, f"{len(matches)} {kind} {name or ''}"
    return matches[0]


def kinds(objects: list[dict[str, Any]]) -> list[str]:
    return sorted(o["kind"] for o in objects)


def operator_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return only(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def canonical(rules: list[dict[str, Any]]) -> list[str]:
    """Rules as comparable strings, one per (group, resource, verb)."""
    return sorted(
        f"{group}/{resource}:{verb}"
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    )


# --- lint --------------------------------------------------------------------------------

NON_DEFAULT_VALUES: dict[str, Any] = {
    "replicaCount": 2,
    "image": {"repository": "registry.example/kingest", "tag": "1.2.3", "pullPolicy": "Always"},
    "imagePullSecrets": [{"name": "registry"}],
    "crds": {"install": False},
    "watchNamespaces": ["team-a", "team-b"],
    "serviceAccount": {"name": "ingest-op", "annotations": {"eks.amazonaws.com/role-arn": "x"}},
    "runner": {"image": {"tag": "1.2.4"}, "resources": {"limits": {"memory": "8Gi"}}},
    "logLevel": "debug",
    "logFormat": "json",
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "etl"}],
    "affinity": {"nodeAffinity": {}},
    "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}},
    "prometheusRule": {"enabled": True, "labels": {"release": "prom"}, "missedSchedules": 2},
    "grafanaDashboard": {"enabled": True, "namespace": "monitoring"},
    "webhook": {"certManager": {"enabled": True}, "failurePolicy": "Fail"},
}


def test_lint_is_clean_with_default_values() -> None:
    report = lint(CHART)
    assert report["errors"] == [] and report["messages"] == [], report


def test_lint_is_clean_with_non_default_values() -> None:
    report = lint(CHART, NON_DEFAULT_VALUES)
    assert report["errors"] == [] and report["messages"] == [], report


# --- what the chart must not hand-copy ---------------------------------------------------


def test_chart_crd_is_the_generated_crd() -> None:
    # A link, not a copy: the chart cannot drift from the CRD the models generate.
    chart_crd = CHART / "files" / "crds" / crd.CRD_FILE.name
    assert chart_crd.is_symlink() and chart_crd.resolve() == crd.CRD_FILE.resolve()
    ours = only(rendered(), "CustomResourceDefinition")
    generated = yaml.safe_load(crd.CRD_FILE.read_text())
    assert ours["spec"] == generated["spec"]
    assert ours["metadata"]["name"] == generated["metadata"]["name"]


def test_packaged_chart_carries_the_crd_itself(tmp_path: Path) -> None:
    package = helm.package(str(CHART), destination=str(tmp_path))
    with tarfile.open(package) as archive:
        member = archive.getmember(f"kingest/files/crds/{crd.CRD_FILE.name}")
        assert member.isfile()
        content = archive.extractfile(member).read().decode()
    assert content == crd.CRD_FILE.read_text()


def test_chart_rules_file_is_what_the_operator_declares() -> None:
    declared = yaml.safe_load((CHART / "files" / "operator-rules.yaml").read_text())
    assert declared == rbac.cluster_role_rules(), (
        "the chart's RBAC drifted from kingest.operator.rbac; regenerate it with\n"
        ".venv/bin/python -c 'from kingest.operator import rbac; "
        'print(rbac.CLUSTER_ROLE_RULES_YAML, end="")\' > charts/kingest/files/operator-rules.yaml'
    )


def test_cluster_role_grants_exactly_the_operators_rules_but_namespaces() -> None:
    # Watching every namespace, kopf never lists namespaces (it does for a namespace list).
    role = only(rendered(), "ClusterRole", RELEASE)
    declared = [r for r in rbac.cluster_role_rules() if r["resources"] != ["namespaces"]]
    assert canonical(role["rules"]) == canonical(declared)


def test_namespace_list_gets_roles_with_the_operators_namespaced_rules() -> None:
    objects = rendered({"watchNamespaces": ["team-a", "team-b"]})
    cluster_role = only(objects, "ClusterRole", RELEASE)
    assert {r for rule in cluster_role["rules"] for r in rule["resources"]} <= CLUSTER_SCOPED
    # The leader-election Role in the release namespace is tests/operator/test_leader.py's.
    roles = [o for o in objects if o["kind"] == "Role" and o["metadata"]["name"] == RELEASE]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    for role in roles:
        assert canonical(role["rules"] + cluster_role["rules"]) == canonical(
            rbac.cluster_role_rules()
        )
    bindings = [
        o for o in objects if o["kind"] == "RoleBinding" and o["metadata"]["name"] == RELEASE
    ]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    args = operator_container(objects)["args"]
    assert "--namespace=team-a" in args and "--namespace=team-b" in args
    assert "--all-namespaces" not in args


def test_operator_rules_never_touch_secrets_nor_use_wildcards() -> None:
    objects = rendered({"watchNamespaces": ["team-a"]}) + rendered()
    for role in (o for o in objects if o["kind"] in ("ClusterRole", "Role")):
        for rule in role["rules"]:
            assert "secrets" not in rule["resources"], role["metadata"]["name"]
            assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]


# --- defaults ----------------------------------------------------------------------------


def test_default_render_has_the_operator_and_its_rbac() -> None:
    assert kinds(rendered()) == [
        "ClusterRole",
        "ClusterRole",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "Deployment",
        "Role",  # leader election, in the release namespace
        "RoleBinding",
        "Secret",  # the webhook's serving certificate
        "Service",  # metrics
        "Service",  # webhook
        "ServiceAccount",
        "ValidatingWebhookConfiguration",
    ]


def test_crd_is_kept_when_the_release_is_uninstalled() -> None:
    crd_object = only(rendered(), "CustomResourceDefinition")
    assert crd_object["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_crds_can_be_left_to_the_user_or_deleted_with_the_release() -> None:
    assert "CustomResourceDefinition" not in kinds(rendered({"crds": {"install": False}}))
    crd_object = only(rendered({"crds": {"keep": False}}), "CustomResourceDefinition")
    assert "helm.sh/resource-policy" not in (crd_object["metadata"].get("annotations") or {})


def test_image_tag_defaults_to_app_version() -> None:
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    container = operator_container(rendered())
    assert container["image"] == f"ghcr.io/kingest/kingest:{app_version}"
    assert env_of(container)["KINGEST_RUNNER_IMAGE"] == container["image"]


def test_digest_pins_the_operator_and_runner_images() -> None:
    digest = "sha256:" + "a" * 64
    container = operator_container(rendered({"image": {"repository": "r/k", "digest": digest}}))
    assert container["image"] == f"r/k@{digest}"
    assert env_of(container)["KINGEST_RUNNER_IMAGE"] == f"r/k@{digest}"


def test_runner_image_and_defaults_reach_the_operator() -> None:
    container = operator_container(rendered(NON_DEFAULT_VALUES))
    env = env_of(container)
    assert container["image"] == "registry.example/kingest:1.2.3"
    assert env["KINGEST_RUNNER_IMAGE"] == "registry.example/kingest:1.2.4"
    defaults = json.loads(env["KINGEST_RUNNER_DEFAULTS"])
    # Helm merges maps: the limit is replaced, the default requests stay.
    assert defaults["resources"]["limits"] == {"memory": "8Gi"}
    assert defaults["resources"]["requests"] == {"cpu": "250m", "memory": "512Mi"}


def test_pod_and_container_are_restricted_by_default() -> None:
    objects = rendered()
    pod = only(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = pod["containers"][0]["securityContext"]
    assert container["allowPrivilegeEscalation"] is False
    assert container["readOnlyRootFilesystem"] is True
    assert container["capabilities"] == {"drop": ["ALL"]}
    assert pod["containers"][0]["resources"]["limits"]["memory"]


def test_liveness_probe_targets_the_operators_liveness_endpoint() -> None:
    container = operator_container(rendered())
    probe = container["livenessProbe"]["httpGet"]
    port = next(p for p in container["ports"] if p["name"] == probe["port"])["containerPort"]
    assert f"--liveness=http://0.0.0.0:{port}{probe['path']}" in container["args"]


def test_readiness_probe_targets_the_operators_readiness_endpoint() -> None:
    container = operator_container(rendered())
    probe = container["readinessProbe"]["httpGet"]
    port = next(p for p in container["ports"] if p["name"] == probe["port"])["containerPort"]
    assert f"--readiness=http://0.0.0.0:{port}{probe['path']}" in container["args"]


def test_log_format_reaches_the_operator() -> None:
    assert "--log-format=text" in operator_container(rendered())["args"]
    assert "--log-format=json" in operator_container(rendered({"logFormat": "json"}))["args"]


def test_operator_command_is_the_image_entrypoint_with_arguments_it_accepts() -> None:
    entrypoint = parse_dockerfile().final.all("ENTRYPOINT")[-1].exec_form()
    for values in ({}, NON_DEFAULT_VALUES):
        container = operator_container(rendered(values))
        assert "command" not in container, "the image's ENTRYPOINT (kingest) must be used"
        assert entrypoint == ["kingest"] and container["args"][0] == "operator"
        operator_parser().parse_args(container["args"][1:])  # exits (fails) on a bad flag


def test_scheduling_settings_pass_through() -> None:
    pod = only(rendered(NON_DEFAULT_VALUES), "Deployment")["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == NON_DEFAULT_VALUES["nodeSelector"]
    assert pod["tolerations"] == NON_DEFAULT_VALUES["tolerations"]
    assert pod["affinity"] == NON_DEFAULT_VALUES["affinity"]
    assert pod["imagePullSecrets"] == [{"name": "registry"}]
    assert pod["serviceAccountName"] == "ingest-op"


def test_metrics_service_targets_the_metrics_port() -> None:
    objects = rendered()
    service = only(objects, "Service", f"{RELEASE}-metrics")
    container = operator_container(objects)
    port = next(p for p in container["ports"] if p["name"] == "metrics")["containerPort"]
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    assert env_of(container)["KINGEST_METRICS_PORT"] == str(port)
    selector = only(objects, "Deployment")["spec"]["selector"]["matchLabels"]
    assert service["spec"]["selector"] == selector


def test_service_monitor_is_optional() -> None:
    assert "ServiceMonitor" not in kinds(rendered())
    monitor = only(rendered(NON_DEFAULT_VALUES), "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    services = [o for o in rendered({"metrics": {"enabled": False}}) if o["kind"] == "Service"]
    assert [s["metadata"]["name"] for s in services] == [f"{RELEASE}-webhook"]


def test_aggregated_roles_let_namespace_editors_manage_and_viewers_read_ingestions() -> None:
    objects = rendered()
    edit = only(objects, "ClusterRole", f"{RELEASE}-edit")
    view = only(objects, "ClusterRole", f"{RELEASE}-view")
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert {"create", "delete", "patch"} <= set(edit["rules"][0]["verbs"])
    assert set(view["rules"][0]["verbs"]) == {"get", "list", "watch"}
    assert "ClusterRole" not in kinds(
        [
            o
            for o in rendered({"rbac": {"aggregateToDefaultRoles": False}})
            if "-" in o["metadata"]["name"]
        ]
    )


def test_replicas_share_one_lease_named_after_the_release() -> None:
    env = env_of(operator_container(rendered({"leaderElection": {"leaseDurationSeconds": 7}})))
    assert env["KINGEST_LEADER_ELECTION_LEASE"] == RELEASE
    assert env["KINGEST_LEADER_ELECTION_LEASE_DURATION"] == "7"
    assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}


def test_one_replica_never_overlaps_its_replacement_and_two_get_a_disruption_budget() -> None:
    single = rendered()
    assert only(single, "Deployment")["spec"]["strategy"]["type"] == "Recreate"
    assert "PodDisruptionBudget" not in kinds(single)
    pair = rendered({"replicaCount": 2})
    assert only(pair, "Deployment")["spec"]["replicas"] == 2
    assert only(pair, "PodDisruptionBudget")["spec"]["minAvailable"] == 1


def test_notes_tell_the_user_what_to_apply_next() -> None:
    notes = helm.Chart.load(str(CHART)).render(values={"crds": {"install": False}}, name="r")
    text = notes["kingest/templates/NOTES.txt"]
    assert "kubectl apply -f examples/" in text
    assert "kubectl apply -f crds/ingestions.kingest.io.yaml" in text
    assert "kubectl create secret generic" in text


# --- the values schema -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"replicaCount": -1}, "/replicaCount"),
        ({"replicaCount": "two"}, "/replicaCount"),
        ({"image": {"repository": "r", "pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
        ({"image": {"repository": "r", "digest": "latest"}}, "/image/digest"),
        ({"watchNamespaces": ["Team_A"]}, "/watchNamespaces/0"),
        ({"watchNamespaces": "team-a"}, "/watchNamespaces"),
        ({"securityContext": {"privileged": True}}, "/securityContext/privileged"),
        ({"podSecurityContext": {"runAsNonRoot": False}}, "/podSecurityContext/runAsNonRoot"),
        ({"resources": {"limits": {"memory": "lots"}}}, "/resources/limits/memory"),
        ({"metrics": {"port": 80}}, "/metrics/port"),
        ({"crds": {"install": "yes"}}, "/crds/install"),
        ({"replicas": 2}, "replicas"),  # a typo of replicaCount must not pass silently
    ],
)
def test_schema_rejects_bad_values(values: dict[str, Any], where: str) -> None:
    with pytest.raises(helm.HelmValuesError) as error:
        rendered(values)
    assert where in str(error.value)


# --- the validating admission webhook ---------------------------------------------------


def test_webhook_is_served_by_the_operator_with_a_certificate_for_its_service() -> None:
    objects = rendered()
    config = only(objects, "ValidatingWebhookConfiguration")
    (webhook,) = config["webhooks"]
    service = only(objects, "Service", f"{RELEASE}-webhook")
    assert webhook["clientConfig"]["service"] == {
        "name": service["metadata"]["name"],
        "namespace": NAMESPACE,
        "path": "/validate-ingestion",
        "port": 443,
    }
    assert webhook["failurePolicy"] == "Ignore"
    assert webhook["rules"][0]["operations"] == ["CREATE", "UPDATE"]  # never DELETE
    container = operator_container(objects)
    port = next(p for p in container["ports"] if p["name"] == "webhook")["containerPort"]
    assert service["spec"]["ports"][0]["targetPort"] == "webhook"
    assert env_of(container)["KINGEST_WEBHOOK_PORT"] == str(port)
    # Only the leader serves it (a standby runs no kopf): the Pods the Deployment makes, and
    # of them the one labelled leader by the operator (kingest.operator.leader).
    deployment = only(objects, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = service["spec"]["selector"]
    assert {k: v for k, v in selector.items() if k != ROLE_LABEL}.items() <= pod_labels.items()
    assert selector[ROLE_LABEL] == "leader"

    secret = only(objects, "Secret")
    assert webhook["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]
    pod = only(objects, "Deployment")["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "webhook-tls")
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "webhook-tls")
    assert env_of(container)["KINGEST_WEBHOOK_CERT_DIR"] == mount["mountPath"]

    cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    ca = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["ca.crt"]))
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert f"{RELEASE}-webhook.{NAMESPACE}.svc" in names.get_values_for_type(x509.DNSName)
    cert.verify_directly_issued_by(ca)


def test_cert_manager_can_issue_the_webhook_certificate() -> None:
    objects = rendered({"webhook": {"certManager": {"enabled": True}}})
    certificate = only(objects, "Certificate")
    assert certificate["spec"]["secretName"] == f"{RELEASE}-webhook-tls"
    assert f"{RELEASE}-webhook.{NAMESPACE}.svc" in certificate["spec"]["dnsNames"]
    assert only(objects, "Issuer")["spec"] == {"selfSigned": {}}
    config = only(objects, "ValidatingWebhookConfiguration")
    assert config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == (
        f"{NAMESPACE}/{certificate['metadata']['name']}"
    )
    assert "caBundle" not in config["webhooks"][0]["clientConfig"]
    assert "Secret" not in kinds(objects)  # cert-manager writes it
    issuer = {"name": "corp-ca", "kind": "ClusterIssuer"}
    objects = rendered({"webhook": {"certManager": {"enabled": True, "issuerRef": issuer}}})
    assert only(objects, "Certificate")["spec"]["issuerRef"] == issuer
    assert "Issuer" not in kinds(objects)


def test_webhook_can_be_left_out() -> None:
    objects = rendered({"webhook": {"enabled": False}})
    assert "ValidatingWebhookConfiguration" not in kinds(objects)
    assert "Secret" not in kinds(objects)
    assert "KINGEST_WEBHOOK_PORT" not in env_of(operator_container(objects))


# --- alerts and dashboard ---------------------------------------------------------------

METRIC_NAME = re.compile(r"\b(kingest_[a-z_]+|up)\b")


def exported_metrics() -> set[str]:
    """Every series name the operator's /metrics can show, scheduled runs included."""
    metrics = IngestionMetrics()
    metrics.record_run(("ns", "n"), "j", succeeded=True, finished_at=1.0, duration_s=2.0)
    metrics.set_next_run(("ns", "n"), 3600.0, 3600.0)
    lines = [line for line in metrics.render().splitlines() if not line.startswith("#")]
    return {line.split("{")[0].split(" ")[0] for line in lines} | {"up"}


def balanced(expr: str) -> bool:
    depth = 0
    for char in expr:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            return False
    return depth == 0


def test_alerts_and_dashboard_are_off_by_default() -> None:
    assert not {"PrometheusRule", "ConfigMap"} & set(kinds(rendered()))


def test_alerts_cover_failing_overdue_ingestions_and_the_operator_on_its_metrics() -> None:
    rule = only(rendered(NON_DEFAULT_VALUES), "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "prom"
    alerts = {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"]}
    assert set(alerts) == {
        "KingestIngestionFailing",
        "KingestIngestionNoRecentSuccess",
        "KingestOperatorDown",
        "KingestOperatorNotLeading",
    }
    assert (
        "2 * kingest_ingestion_schedule_interval_seconds"
        in (alerts["KingestIngestionNoRecentSuccess"]["expr"])
    )
    known = exported_metrics()
    for name, alert in alerts.items():
        assert balanced(alert["expr"]), name
        assert set(METRIC_NAME.findall(alert["expr"])) <= known, name
        assert f'job="{RELEASE}-metrics"' in alert["expr"], name  # the metrics Service
        assert alert["annotations"]["summary"], name


def test_dashboard_is_a_sidecar_configmap_built_on_the_operators_metrics() -> None:
    config_map = only(rendered(NON_DEFAULT_VALUES), "ConfigMap", f"{RELEASE}-dashboard")
    assert config_map["metadata"]["namespace"] == "monitoring"
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(config_map["data"]["kingest.json"])
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert len(exprs) >= 8
    known = exported_metrics()
    for expr in exprs:
        assert balanced(expr), expr
        assert set(METRIC_NAME.findall(expr)) - {"up"} <= known, expr
    used = {name for expr in exprs for name in METRIC_NAME.findall(expr)}
    assert known - {"up"} - used <= {
        "kingest_ingestion_next_run_timestamp_seconds",
        "kingest_ingestion_run_duration_seconds_sum",
        "kingest_ingestion_run_duration_seconds_count",
    }

"""The Helm chart, rendered by the real Helm engine (Helm v4 Go SDK through helm-python-sdk).

Every rendered manifest is validated against the strict Kubernetes OpenAPI schema of the oldest
supported and the newest known Kubernetes version; custom resources (cert-manager, Prometheus
Operator) are skipped there and checked field by field below.
"""

from __future__ import annotations

import base64
import datetime as dt

import helm_python as helm
import kubernetes_validate
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from conftest import (
    CHART_DIR,
    CLUSTER_SCOPED,
    CRD_KINDS,
    K8S_VERSIONS,
    NAMESPACE,
    RELEASE,
    deep_merge,
    is_crd,
    parse,
    validate_k8s,
)

SERVICE_HOST = f"{RELEASE}.{NAMESPACE}.svc"


# --- test material ---------------------------------------------------------------------------


def make_ca_pem() -> str:
    """A throwaway CA certificate (PEM) standing in for a user-supplied one."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-ca")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


CA_PEM = make_ca_pem()
CA_B64 = base64.b64encode(CA_PEM.encode()).decode()

# A custom template in the server's template schema (see docs/templates.md, "Custom templates").
CUSTOM_TEMPLATES = """\
name: acme-db
engine: acme
description: In-house database; flushes with its own CLI.
match:
  images: [acme/acme-db]
hooks:
  preBackup: {command: [acme-cli, flush, --wait], onError: Fail, timeout: 2m}
  postBackup: {command: [acme-cli, resume], onError: Continue, timeout: 30s}
"""

SECRET_MODE = {"certificates": {"mode": "secret", "secret": {"name": "my-webhook-tls", "caBundle": CA_PEM}}}
CERT_MANAGER = {"certificates": {"mode": "certManager"}}

# Value combinations rendered, linted and schema-validated as a whole.
COMBOS: dict[str, dict] = {
    "defaults": {},
    "selfSigned-fail-never": {
        "webhook": {"failurePolicy": "Fail", "timeoutSeconds": 10, "reinvocationPolicy": "Never"}
    },
    "certManager": CERT_MANAGER,
    "certManager-clusterIssuer": {
        "certificates": {
            "mode": "certManager",
            "certManager": {"issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer"}},
        }
    },
    "secret-pem": SECRET_MODE,
    "secret-base64": {"certificates": {"mode": "secret", "secret": {"name": "my-webhook-tls", "caBundle": CA_B64}}},
    "secret-servicemonitor": deep_merge(SECRET_MODE, {"serviceMonitor": {"enabled": True}}),
    "everything": {
        "certificates": {"mode": "certManager"},
        "customTemplates": CUSTOM_TEMPLATES,
        "mode": "enforce",
        "logFormat": "text",
        "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
        "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
        "grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "Backup"}},
        "webhook": {
            "failurePolicy": "Fail",
            "excludeNamespaces": ["velero", "cert-manager", "kube-system"],
            "objectSelector": {
                "matchExpressions": [{"key": "velero-hook-injector.io/skip", "operator": "DoesNotExist"}]
            },
            "matchConditions": [
                {"name": "not-a-job", "expression": "!has(object.metadata.ownerReferences)"}
            ],
            "labels": {"team": "platform"},
            "annotations": {"example.com/owner": "platform"},
        },
        "podAntiAffinity": "hard",
        "priorityClassName": "system-cluster-critical",
        "hostNetwork": True,
        "containerPort": 9443,
        "extraArgs": ["--reload-interval=30s"],
        "extraEnv": [{"name": "RUST_LOG", "value": "debug"}],
        "imagePullSecrets": [{"name": "regcred"}],
        "image": {"digest": "sha256:" + "a" * 64},
        "podDisruptionBudget": {"minAvailable": 1, "maxUnavailable": None},
        "podAnnotations": {"example.com/a": "b"},
        "podLabels": {"team": "platform"},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "velero-hook-injector"}},
            }
        ],
        "serviceAccount": {"annotations": {"example.com/role": "x"}},
        "service": {"annotations": {"example.com/svc": "y"}},
    },
    "minimal": {
        "replicaCount": 1,
        "podDisruptionBudget": {"enabled": False},
        "rbac": {"create": False},
        "serviceAccount": {"create": False, "name": "existing"},
    },
    "namespacePolicy-off-warn": {"namespacePolicy": "off", "mode": "warn", "defaultVolumesToFsBackup": True},
    "monitoring": {
        "serviceMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True},
        "grafanaDashboard": {"enabled": True},
    },
    "reconciler": {"reconciler": {"enabled": True}},
    "restore-report": {"velero": {"namespace": "backup-system"}, "restoreReport": {"rbac": {
        "create": True,
        "subjects": [{"kind": "Group", "name": "backup-operators", "apiGroup": "rbac.authorization.k8s.io"},
                     {"kind": "ServiceAccount", "name": "restore-drill", "namespace": "ci"}]}}},
    "reconciler-namespaces": {"reconciler": {"enabled": True, "namespaces": ["shop", "billing"],
                                             "ratePerSecond": 2.5, "burst": 3, "resync": "1m30s"}},
}


# --- whole-chart properties ----------------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("combo", sorted(COMBOS))
def test_every_manifest_validates_against_kubernetes_schema(render, combo, version):
    r = render(COMBOS[combo])
    assert r.docs, "nothing rendered"
    validated = set()
    for doc in r.docs:
        if is_crd(doc):
            continue  # not in the Kubernetes schema: see the cert-manager / ServiceMonitor tests
        validate_k8s(doc, version)
        validated.add(doc["kind"])
    assert {"Deployment", "Service", "MutatingWebhookConfiguration"} <= validated


def test_schema_validation_is_not_vacuous():
    """The validator really rejects a wrong manifest (unknown field, wrong type)."""
    bad = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "x"},
        "webhooks": [{"name": "a.b.c", "sideEffects": "None", "admissionReviewVersions": ["v1"],
                      "clientConfig": {}, "timeoutSecond": 5}],
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_k8s(bad, K8S_VERSIONS[0])
    bad_type = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"},
                "spec": {"ports": [{"port": "443"}]}}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_k8s(bad_type, K8S_VERSIONS[0])


@pytest.mark.parametrize("combo", sorted(COMBOS))
def test_only_expected_kinds_and_namespaces(render, combo):
    r = render(COMBOS[combo])
    allowed = {
        "Deployment", "Service", "ServiceAccount", "Secret", "ConfigMap", "PodDisruptionBudget",
        "ClusterRole", "ClusterRoleBinding", "MutatingWebhookConfiguration", "Role", "RoleBinding",
    } | {k for _, k in CRD_KINDS}
    # Only the reconciler's Roles live outside the release namespace: in the namespaces it was
    # given, and (reading Velero's Schedules) in Velero's.
    reconciler = COMBOS[combo].get("reconciler", {})
    reconciled = reconciler.get("namespaces", []) + (["velero"] if reconciler.get("enabled") else [])
    # And restore-report's Role, in Velero's namespace.
    if COMBOS[combo].get("restoreReport", {}).get("rbac", {}).get("create"):
        reconciled = reconciled + [COMBOS[combo].get("velero", {}).get("namespace", "velero")]
    for doc in r.docs:
        assert doc["kind"] in allowed, doc["kind"]
        if doc["kind"] in CLUSTER_SCOPED:
            assert "namespace" not in doc["metadata"]
        elif doc["kind"] in ("Role", "RoleBinding"):
            assert doc["metadata"]["namespace"] in reconciled, doc["metadata"]
        else:
            assert doc["metadata"]["namespace"] == NAMESPACE, doc["kind"]
        assert doc["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE
    names = [(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]) for d in r.docs]
    assert len(names) == len(set(names)), "duplicate objects"


def test_lint_default_is_clean():
    report = helm.lint(str(CHART_DIR), strict=True, namespace=NAMESPACE)
    assert report["errors"] == []
    # Severity 1 is info ("icon is recommended"); warnings (2) and errors (3) are not allowed.
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("combo", sorted(COMBOS))
def test_lint_each_combo(combo):
    report = helm.lint(str(CHART_DIR), COMBOS[combo], strict=True, namespace=NAMESPACE,
                       kube_version="v1.30.0")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_chart_metadata(chart):
    meta = chart.metadata
    assert meta["apiVersion"] == "v2"
    assert meta["name"] == "velero-hook-injector"
    assert meta["kubeVersion"] == ">=1.30.0-0"
    assert meta["appVersion"]


# --- MutatingWebhookConfiguration ------------------------------------------------------------


def test_webhook_defaults(render):
    r = render()
    mwc = r.one("MutatingWebhookConfiguration")
    assert mwc["apiVersion"] == "admissionregistration.k8s.io/v1"
    wh = r.webhook
    assert wh["name"] == "inject.velero-hook-injector.io"
    assert wh["failurePolicy"] == "Ignore"
    assert wh["timeoutSeconds"] == 5
    assert wh["sideEffects"] == "None"
    assert wh["admissionReviewVersions"] == ["v1"]
    assert wh["reinvocationPolicy"] == "IfNeeded"
    assert wh["matchPolicy"] == "Equivalent"
    assert wh["rules"] == [
        {"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"],
         "scope": "Namespaced"}
    ]
    assert wh["clientConfig"]["service"] == {
        "name": RELEASE, "namespace": NAMESPACE, "path": "/mutate", "port": 443,
    }
    assert "objectSelector" not in wh
    assert wh["matchConditions"] == [{"name": "database-pods-only", "expression": shipped_match_condition()}]


def test_webhook_fail_policy_and_timeout(render):
    wh = render({"webhook": {"failurePolicy": "Fail", "timeoutSeconds": 12,
                             "reinvocationPolicy": "Never"}}).webhook
    assert wh["failurePolicy"] == "Fail"
    assert wh["timeoutSeconds"] == 12
    assert wh["reinvocationPolicy"] == "Never"


@pytest.mark.parametrize("namespace", [NAMESPACE, "platform-system"])
def test_namespace_selector_opt_in_and_exclusions(render, namespace):
    wh = render({"webhook": {"excludeNamespaces": ["velero", "kube-system"]}}, namespace=namespace).webhook
    sel = wh["namespaceSelector"]
    assert sel["matchLabels"] == {"velero-hook-injector.io/inject": "enabled"}
    assert len(sel["matchExpressions"]) == 1
    expr = sel["matchExpressions"][0]
    assert expr["key"] == "kubernetes.io/metadata.name"
    assert expr["operator"] == "NotIn"
    assert expr["values"] == [namespace, "kube-system", "velero"]  # deduplicated, own ns first
    assert wh["clientConfig"]["service"]["namespace"] == namespace


def test_object_selector_and_match_conditions(render):
    combo = COMBOS["everything"]["webhook"]
    wh = render(COMBOS["everything"]).webhook
    assert wh["objectSelector"] == combo["objectSelector"]
    # The database condition first, then the user's own (Kubernetes ANDs them).
    assert [c["name"] for c in wh["matchConditions"]] == ["database-pods-only", "not-a-job"]
    assert wh["matchConditions"][1:] == combo["matchConditions"]
    mwc = render(COMBOS["everything"]).one("MutatingWebhookConfiguration")
    assert mwc["metadata"]["labels"]["team"] == "platform"
    assert mwc["metadata"]["annotations"]["example.com/owner"] == "platform"


def shipped_match_condition() -> str:
    """The generated expression the chart ships (tests/match_condition.rs keeps it current)."""
    return (CHART_DIR / "files" / "match-condition.cel").read_text().strip()


def database_condition(wh: dict) -> str | None:
    found = [c["expression"] for c in wh.get("matchConditions", []) if c["name"] == "database-pods-only"]
    assert len(found) <= 1
    return found[0] if found else None


def test_database_match_condition_is_the_generated_expression(render):
    expr = database_condition(render().webhook)
    assert expr == shipped_match_condition()
    # Built from the template library: names, the namespaced names and the patterns' regexes.
    for needle in ["'postgres', ", "'/mariadb/server'", "'/apache/kafka'",
                   "n.matches('^mysql-\\\\d+(-c\\\\d+s)?$')", "k.startsWith('velero-hook-injector.io/')",
                   "'velero.io/exclude-from-backup'", "n in []"]:
        assert needle in expr, needle


def test_database_match_condition_override_and_off(render):
    wh = render({"webhook": {"databaseMatchCondition": {"expression": "true"}}}).webhook
    assert wh["matchConditions"] == [{"name": "database-pods-only", "expression": "true"}]
    wh = render({"webhook": {"databaseMatchCondition": {"enabled": False}}}).webhook
    assert "matchConditions" not in wh
    mine = [{"name": "not-a-job", "expression": "!has(object.metadata.ownerReferences)"}]
    wh = render({"webhook": {"databaseMatchCondition": {"enabled": False}, "matchConditions": mine}}).webhook
    assert wh["matchConditions"] == mine


def test_custom_templates_widen_the_database_match_condition(render):
    custom = CUSTOM_TEMPLATES + """---
# a comment-only document is skipped
---
name: cockroach
engine: cockroachdb
description: d
match:
  images: [cockroachdb/cockroach, yugabytedb]
  imagePatterns: ['^crdb-\\d+$']
hooks:
  preBackup: {command: [sync], onError: Continue, timeout: 30s}
"""
    expr = database_condition(render({"customTemplates": custom}).webhook)
    widened = 'n in ["acme-db","cockroach","yugabytedb"] || n.matches("^crdb-\\\\d+$")'
    assert expr == shipped_match_condition().replace("n in []", widened)
    # An explicit expression (e.g. `templates match-condition --templates`) is taken as it is.
    expr = database_condition(render({"customTemplates": custom,
                                      "webhook": {"databaseMatchCondition": {"expression": "x"}}}).webhook)
    assert expr == "x"


def test_custom_templates_of_the_wrong_shape_do_not_break_the_render(render):
    # The server refuses such a file with the reason; the chart still renders.
    expr = database_condition(render({"customTemplates": "name: x\nmatch: {images: postgres}\n"}).webhook)
    assert expr == shipped_match_condition()


def test_user_match_conditions_cannot_take_the_database_condition_name(render):
    with pytest.raises(helm.HelmRenderError, match="database-pods-only is the chart's own condition"):
        render({"webhook": {"matchConditions": [{"name": "database-pods-only", "expression": "true"}]}})


def test_two_releases_do_not_collide_on_cluster_scoped_names(render):
    a = render(name="a", namespace="ns-a")
    b = render(name="b", namespace="ns-b")
    for kind in CLUSTER_SCOPED:
        assert a.one(kind)["metadata"]["name"] != b.one(kind)["metadata"]["name"]


# --- certificates ------------------------------------------------------------------------------


def load_cert(b64: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(base64.b64decode(b64))


def assert_signed_by(cert: x509.Certificate, ca: x509.Certificate) -> None:
    pub = ca.public_key()
    if isinstance(pub, rsa.RSAPublicKey):
        pub.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), cert.signature_hash_algorithm)
    else:
        pub.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
    assert cert.issuer == ca.subject


def test_self_signed_mode_generates_a_consistent_ca_and_serving_cert(render):
    r = render()
    secret = r.one("Secret", f"{RELEASE}-chart-tls")
    assert secret["type"] == "kubernetes.io/tls"
    data = secret["data"]
    assert set(data) == {"ca.crt", "tls.crt", "tls.key"}
    # The webhook's caBundle is the CA in the Secret, not a second, independently generated one.
    assert r.webhook["clientConfig"]["caBundle"] == data["ca.crt"]
    ca, cert = load_cert(data["ca.crt"]), load_cert(data["tls.crt"])
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert_signed_by(cert, ca)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert SERVICE_HOST in sans
    assert f"{SERVICE_HOST}.cluster.local" in sans
    key = serialization.load_pem_private_key(base64.b64decode(data["tls.key"]), password=None)
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert dt.timedelta(days=3649) < lifetime <= dt.timedelta(days=3651)
    # The Deployment mounts exactly that Secret.
    vol = next(v for v in r.deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "tls")
    assert vol["secret"]["secretName"] == f"{RELEASE}-chart-tls"
    assert "cert-manager.io/inject-ca-from" not in (r.one("MutatingWebhookConfiguration")["metadata"].get("annotations") or {})
    assert not r.all("Certificate") and not r.all("Issuer")


def test_self_signed_validity_is_configurable(render):
    r = render({"certificates": {"selfSigned": {"validityDays": 30}}})
    cert = load_cert(r.one("Secret")["data"]["tls.crt"])
    assert cert.not_valid_after_utc - cert.not_valid_before_utc <= dt.timedelta(days=31)


def test_self_signed_without_cluster_generates_new_material_each_render(render):
    """`lookup` is empty offline (helm template / client dry run): each render is a new CA."""
    a, b = render(), render()
    assert a.one("Secret")["data"]["ca.crt"] != b.one("Secret")["data"]["ca.crt"]


def existing_tls_secret(ca_b64: str, crt_b64: str, key_b64: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"name": f"{RELEASE}-chart-tls", "namespace": NAMESPACE},
        "data": {"ca.crt": ca_b64, "tls.crt": crt_b64, "tls.key": key_b64},
    }


def test_self_signed_reuses_the_secret_found_in_the_cluster(chart, render, fake_apiserver):
    """On upgrade the CA and certificate are looked up and kept, so caBundle never changes."""
    first = render().one("Secret")["data"]  # what an install created
    fake_apiserver.secrets[(NAMESPACE, f"{RELEASE}-chart-tls")] = existing_tls_secret(
        first["ca.crt"], first["tls.crt"], first["tls.key"])
    with helm.Config(kube_apiserver=fake_apiserver.url, namespace=NAMESPACE) as cfg:
        upgraded = parse(cfg.render(chart, {}, name=RELEASE, namespace=NAMESPACE, is_upgrade=True))
    assert f"/api/v1/namespaces/{NAMESPACE}/secrets/{RELEASE}-chart-tls" in fake_apiserver.requests
    assert upgraded.one("Secret")["data"] == first
    assert upgraded.webhook["clientConfig"]["caBundle"] == first["ca.crt"]


def test_self_signed_regenerates_when_the_secret_is_absent_or_incomplete(chart, render, fake_apiserver):
    first = render().one("Secret")["data"]
    with helm.Config(kube_apiserver=fake_apiserver.url, namespace=NAMESPACE) as cfg:
        fresh = parse(cfg.render(chart, {}, name=RELEASE, namespace=NAMESPACE))
        assert fake_apiserver.requests, "lookup did not reach the API server"
        assert fresh.one("Secret")["data"]["ca.crt"] != first["ca.crt"]
        # A Secret without ca.crt (e.g. created by hand) cannot provide the caBundle: regenerate.
        fake_apiserver.secrets[(NAMESPACE, f"{RELEASE}-chart-tls")] = existing_tls_secret(
            "", first["tls.crt"], first["tls.key"])
        redone = parse(cfg.render(chart, {}, name=RELEASE, namespace=NAMESPACE, is_upgrade=True))
    data = redone.one("Secret")["data"]
    assert data["ca.crt"] and data["tls.crt"] != first["tls.crt"]
    assert redone.webhook["clientConfig"]["caBundle"] == data["ca.crt"]


def test_cert_manager_mode(render):
    r = render(CERT_MANAGER)
    assert not r.all("Secret"), "cert-manager writes the Secret, the chart must not"
    mwc = r.one("MutatingWebhookConfiguration")
    assert mwc["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == f"{NAMESPACE}/{RELEASE}-tls"
    assert "caBundle" not in r.webhook["clientConfig"], "the cainjector owns caBundle"

    selfsigned = r.one("Issuer", f"{RELEASE}-selfsigned")
    assert selfsigned["apiVersion"] == "cert-manager.io/v1"
    assert selfsigned["spec"] == {"selfSigned": {}}
    ca_cert = r.one("Certificate", f"{RELEASE}-ca")
    assert ca_cert["spec"]["isCA"] is True
    assert ca_cert["spec"]["issuerRef"] == {"name": f"{RELEASE}-selfsigned", "kind": "Issuer", "group": "cert-manager.io"}
    ca_issuer = r.one("Issuer", f"{RELEASE}-ca")
    assert ca_issuer["spec"] == {"ca": {"secretName": ca_cert["spec"]["secretName"]}}

    serving = r.one("Certificate", f"{RELEASE}-tls")
    spec = serving["spec"]
    assert spec["secretName"] == f"{RELEASE}-tls"
    assert spec["issuerRef"] == {"name": f"{RELEASE}-ca", "kind": "Issuer", "group": "cert-manager.io"}
    assert SERVICE_HOST in spec["dnsNames"]
    assert f"{SERVICE_HOST}.cluster.local" in spec["dnsNames"]
    assert spec["usages"] == ["server auth", "digital signature"]
    assert "commonName" not in spec  # 64-character limit; the SANs are what is verified
    assert spec["duration"] == "2160h" and spec["renewBefore"] == "360h"
    assert spec["privateKey"]["encoding"] == "PKCS8"
    vol = next(v for v in r.deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "tls")
    assert vol["secret"]["secretName"] == spec["secretName"]
    # Upgrading from selfSigned: Helm deletes the chart's Secret, which must not be the one
    # cert-manager writes.
    assert spec["secretName"] != render().one("Secret")["metadata"]["name"]


def test_cert_manager_with_existing_issuer(render):
    r = render(COMBOS["certManager-clusterIssuer"])
    assert not r.all("Issuer")
    assert [c["metadata"]["name"] for c in r.all("Certificate")] == [f"{RELEASE}-tls"]
    assert r.one("Certificate")["spec"]["issuerRef"] == {
        "name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}


@pytest.mark.parametrize("ca", [CA_PEM, CA_B64, CA_B64[:40] + "\n" + CA_B64[40:] + "\n"],
                         ids=["pem", "base64", "base64-wrapped"])
def test_secret_mode_uses_the_given_secret_and_ca(render, ca):
    r = render({"certificates": {"mode": "secret", "secret": {"name": "my-webhook-tls", "caBundle": ca}}})
    assert not r.all("Secret") and not r.all("Certificate")
    assert r.webhook["clientConfig"]["caBundle"] == CA_B64
    vol = next(v for v in r.deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "tls")
    assert vol["secret"]["secretName"] == "my-webhook-tls"


def test_secret_mode_accepts_a_bundle_of_two_cas_for_rotation(render):
    """Rotating a user-supplied CA: trust old and new at once, then swap the Secret."""
    other = make_ca_pem()
    wh = render({"certificates": {"mode": "secret",
                                  "secret": {"name": "t", "caBundle": CA_PEM + other}}}).webhook
    bundle = base64.b64decode(wh["clientConfig"]["caBundle"])
    assert [c.subject for c in x509.load_pem_x509_certificates(bundle)] == [
        x509.load_pem_x509_certificate(p.encode()).subject for p in (CA_PEM, other)]


@pytest.mark.parametrize(
    "secret, message",
    [
        ({"caBundle": CA_PEM}, "certificates.secret.name is required"),
        ({"name": "x"}, "certificates.secret.caBundle"),
        ({"name": "x", "caBundle": "bm90IGEgY2VydA=="}, "neither a PEM certificate nor base64"),
    ],
)
def test_secret_mode_requires_name_and_a_real_ca(render, secret, message):
    with pytest.raises(helm.HelmRenderError, match=message):
        render({"certificates": {"mode": "secret", "secret": secret}})


# --- Deployment, Service, PDB, RBAC --------------------------------------------------------------


def test_service_443_to_https_8443(render):
    r = render()
    svc = r.one("Service")
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["ports"] == [{"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"}]
    assert r.container["ports"] == [{"name": "https", "containerPort": 8443, "protocol": "TCP"}]
    assert svc["spec"]["selector"] == r.deployment["spec"]["selector"]["matchLabels"]
    pod_labels = r.deployment["spec"]["template"]["metadata"]["labels"]
    assert svc["spec"]["selector"].items() <= pod_labels.items()


def test_server_arguments(render):
    c = render().container
    assert c["args"] == [
        "serve",
        "--addr=0.0.0.0:8443",
        "--tls-cert=/tls/tls.crt",
        "--tls-key=/tls/tls.key",
        "--log-format=json",
    ]  # mode inject is the server's default: no --mode flag
    assert c["image"] == "ghcr.io/velero-hook-injector/velero-hook-injector:0.1.0"
    assert c["imagePullPolicy"] == "IfNotPresent"
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert mounts["tls"] == {"name": "tls", "mountPath": "/tls", "readOnly": True}
    assert "templates" not in mounts


def test_image_tag_defaults_to_app_version_and_can_be_overridden(chart, render):
    assert render().container["image"].endswith(":" + chart.metadata["appVersion"])
    assert render({"image": {"repository": "r.example/vhi", "tag": "1.2.3"}}).container["image"] == "r.example/vhi:1.2.3"
    digest = "sha256:" + "b" * 64
    assert render({"image": {"digest": digest}}).container["image"].endswith("@" + digest)


def test_custom_templates_configmap_mount_and_flag(render):
    r = render({"customTemplates": CUSTOM_TEMPLATES})
    cm = r.one("ConfigMap", f"{RELEASE}-templates")
    assert cm["data"] == {"templates.yaml": CUSTOM_TEMPLATES}
    c = r.container
    assert "--templates=/etc/velero-hook-injector/templates.yaml" in c["args"]
    mount = next(m for m in c["volumeMounts"] if m["name"] == "templates")
    assert mount["mountPath"] + "/templates.yaml" == "/etc/velero-hook-injector/templates.yaml"
    assert mount["readOnly"] is True
    vol = next(v for v in r.deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "templates")
    assert vol["configMap"]["name"] == cm["metadata"]["name"]
    annotations = r.deployment["spec"]["template"]["metadata"]["annotations"]
    changed = render({"customTemplates": CUSTOM_TEMPLATES + "# edited\n"})
    assert annotations["checksum/templates"] != changed.deployment["spec"]["template"]["metadata"]["annotations"]["checksum/templates"]
    # Empty string: no ConfigMap, no flag, no mount.
    plain = render({"customTemplates": ""})
    assert not plain.all("ConfigMap")
    assert not any(a.startswith("--templates") for a in plain.container["args"])


def test_mode_log_format_and_extra_args(render):
    c = render({"mode": "warn", "logFormat": "text", "extraArgs": ["--drain-timeout=8s"]}).container
    assert "--mode=warn" in c["args"] and "--log-format=text" in c["args"]
    assert "--mode=enforce" in render({"mode": "enforce"}).container["args"]
    assert c["args"][-1] == "--drain-timeout=8s"


def test_default_volumes_to_fs_backup_flag(render):
    assert "--default-volumes-to-fs-backup" not in render().container["args"]
    on = render({"defaultVolumesToFsBackup": True}).container["args"]
    assert "--default-volumes-to-fs-backup" in on


def test_probes_are_https(render):
    c = render().container
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "https", "scheme": "HTTPS"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "https", "scheme": "HTTPS"}


def test_security_hardening(render):
    r = render()
    pod = r.deployment["spec"]["template"]["spec"]
    psc = pod["securityContext"]
    assert psc["runAsNonRoot"] is True
    assert psc["runAsUser"] == 65532 and psc["runAsGroup"] == 65532
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = r.container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["privileged"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "hostNetwork" not in pod
    res = r.container["resources"]
    assert res["requests"]["cpu"] and res["requests"]["memory"]
    assert res["limits"]["cpu"] and res["limits"]["memory"]
    assert oct(next(v for v in pod["volumes"] if v["name"] == "tls")["secret"]["defaultMode"]) == "0o440"


def test_pod_meets_pod_security_restricted(render):
    """The checks of the Pod Security Standards' restricted profile, so the release namespace can
    enforce it (pod-security.kubernetes.io/enforce=restricted)."""
    pod = render(COMBOS["defaults"]).deployment["spec"]["template"]["spec"]
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        assert not pod.get(key)
    allowed_volumes = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                       "persistentVolumeClaim", "projected", "secret"}
    for vol in pod["volumes"]:
        assert set(vol) - {"name"} <= allowed_volumes, vol
    psc = pod.get("securityContext", {})
    for c in pod["containers"] + pod.get("initContainers", []):
        sc = c.get("securityContext", {})
        assert not sc.get("privileged")
        assert sc.get("allowPrivilegeEscalation") is False
        assert sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True
        assert sc.get("runAsUser", psc.get("runAsUser")) != 0
        seccomp = sc.get("seccompProfile", psc.get("seccompProfile", {})).get("type")
        assert seccomp in ("RuntimeDefault", "Localhost")
        assert "ALL" in sc["capabilities"]["drop"]
        assert set(sc["capabilities"].get("add", [])) <= {"NET_BIND_SERVICE"}
        assert not any(p.get("hostPort") for p in c.get("ports", []))


def test_replicas_anti_affinity_and_rollout(render):
    r = render()
    spec = r.deployment["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    anti = spec["template"]["spec"]["affinity"]["podAntiAffinity"]
    term = anti["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"] == spec["selector"]["matchLabels"]

    hard = render({"podAntiAffinity": "hard"}).deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    assert list(hard) == ["requiredDuringSchedulingIgnoredDuringExecution"]
    assert hard["requiredDuringSchedulingIgnoredDuringExecution"][0]["topologyKey"] == "kubernetes.io/hostname"

    custom = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["system"]}]}]}}}
    assert render({"affinity": custom}).deployment["spec"]["template"]["spec"]["affinity"] == custom


def test_termination_grace_covers_the_drain(render):
    pod = render().deployment["spec"]["template"]["spec"]
    # Server: ~2s of failing /readyz, then up to 10s draining in-flight requests.
    assert pod["terminationGracePeriodSeconds"] == 30
    assert pod["terminationGracePeriodSeconds"] > 12


def test_pod_disruption_budget(render):
    r = render()
    pdb = r.one("PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert "minAvailable" not in pdb["spec"]
    assert pdb["spec"]["selector"]["matchLabels"] == r.deployment["spec"]["selector"]["matchLabels"]
    assert render({"podDisruptionBudget": {"minAvailable": 1, "maxUnavailable": None}}).one(
        "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    assert render({"podDisruptionBudget": {"maxUnavailable": "50%"}}).one(
        "PodDisruptionBudget")["spec"]["maxUnavailable"] == "50%"
    assert not render({"podDisruptionBudget": {"enabled": False}}).all("PodDisruptionBudget")
    with pytest.raises(helm.HelmRenderError, match="exactly one of minAvailable and maxUnavailable"):
        render({"podDisruptionBudget": {"minAvailable": 1}})


def test_rbac_is_read_only_namespaces(render):
    r = render()
    role = r.one("ClusterRole")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]}]
    binding = r.one("ClusterRoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                  "name": role["metadata"]["name"]}
    sa = r.one("ServiceAccount")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": NAMESPACE}]
    pod = r.deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == sa["metadata"]["name"]
    assert not r.all("Role") and not r.all("RoleBinding")


POD_RULE = {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch", "patch"]}


def test_reconciler_is_off_by_default_and_grants_nothing_on_pods(render):
    r = render()
    assert not any(a.startswith("--reconcile") for a in r.container["args"])
    assert POD_RULE not in r.one("ClusterRole")["rules"]


def test_reconciler_cluster_wide_gets_pod_rights_and_the_webhook_exclusions(render):
    r = render(deep_merge(COMBOS["reconciler"], {"webhook": {"excludeNamespaces": ["monitoring"]}}))
    args = r.container["args"]
    assert "--reconcile" in args
    assert "--reconcile-rate=5" in args and "--reconcile-burst=10" in args
    assert "--reconcile-resync=10m" in args
    assert f"--reconcile-exclude-namespaces={NAMESPACE},kube-system,monitoring" in args
    assert not any(a.startswith("--reconcile-namespaces") for a in args)
    assert r.one("ClusterRole")["rules"][-1] == POD_RULE
    assert [role["metadata"]["namespace"] for role in r.all("Role")] == ["velero"]


def test_reconciler_scoped_to_namespaces_uses_roles_only(render):
    r = render(COMBOS["reconciler-namespaces"])
    args = r.container["args"]
    assert "--reconcile-namespaces=shop,billing" in args
    assert "--reconcile-rate=2.5" in args and "--reconcile-resync=1m30s" in args
    assert POD_RULE not in r.one("ClusterRole")["rules"]
    roles = {d["metadata"]["namespace"]: d for d in r.all("Role")
             if d["metadata"]["name"].endswith("-reconciler")}
    assert sorted(roles) == ["billing", "shop"]
    assert all(role["rules"] == [POD_RULE] for role in roles.values())
    sa = r.one("ServiceAccount")["metadata"]["name"]
    for b in r.all("RoleBinding"):
        if b["metadata"]["name"].endswith("-velero-schedules"):
            continue
        assert b["roleRef"]["name"] == roles[b["metadata"]["namespace"]]["metadata"]["name"]
        assert b["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": NAMESPACE}]


SCHEDULES_RULE = {"apiGroups": ["velero.io"], "resources": ["schedules"], "verbs": ["list"]}


def test_reconciler_only_lists_velero_schedules_in_velero_namespace(render):
    r = render(COMBOS["reconciler"])
    assert "--velero-namespace=velero" in r.container["args"]
    role = r.one("Role")
    assert role["metadata"]["namespace"] == "velero"
    assert role["rules"] == [SCHEDULES_RULE], "read-only: list, nothing else"
    binding = r.one("RoleBinding")
    assert binding["metadata"]["namespace"] == "velero"
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": r.one("ServiceAccount")["metadata"]["name"],
                                    "namespace": NAMESPACE}]
    assert SCHEDULES_RULE not in r.one("ClusterRole")["rules"]
    # Another namespace for Velero; or no grant at all (the scan then warns once, gauge 0).
    other = render(deep_merge(COMBOS["reconciler"], {"velero": {"namespace": "backup-system"}}))
    assert "--velero-namespace=backup-system" in other.container["args"]
    assert other.one("Role")["metadata"]["namespace"] == "backup-system"
    without = render(deep_merge(COMBOS["reconciler"], {"velero": {"readSchedules": False}}))
    assert not without.all("Role") and not without.all("RoleBinding")
    # The reconciler off: no scan, no grant.
    off = render()
    assert not any(a.startswith("--velero-namespace") for a in off.container["args"])
    assert not off.all("Role")


def test_restore_report_rbac_is_off_by_default(render):
    r = render()
    assert not [d for d in r.docs if d["metadata"]["name"].endswith("-restore-report")]


def test_restore_report_rbac_reads_restores_and_the_server_log_in_velero_s_namespace(render):
    r = render(COMBOS["restore-report"])
    subjects = COMBOS["restore-report"]["restoreReport"]["rbac"]["subjects"]
    mine = {(d["kind"], d["metadata"]["name"]): d for d in r.docs
            if d["metadata"]["name"].endswith("-restore-report")}
    assert sorted(k for k, _ in mine) == ["ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"]
    role = next(d for (k, _), d in mine.items() if k == "Role")
    assert role["metadata"]["namespace"] == "backup-system"
    assert role["rules"] == [
        {"apiGroups": ["velero.io"], "resources": ["restores"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
        {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    ]
    cluster_role = next(d for (k, _), d in mine.items() if k == "ClusterRole")
    assert cluster_role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]
    for kind, role_kind in (("RoleBinding", "Role"), ("ClusterRoleBinding", "ClusterRole")):
        binding = next(d for (k, _), d in mine.items() if k == kind)
        assert binding["roleRef"]["kind"] == role_kind
        assert binding["roleRef"]["name"] == role["metadata"]["name"]
        assert binding["subjects"] == subjects
    # The webhook's own ClusterRole is unchanged: nothing on pods.
    webhook_role = next(d for d in r.all("ClusterRole") if not d["metadata"]["name"].endswith("-restore-report"))
    assert webhook_role["rules"] == [{"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]}]


def test_restore_report_rbac_needs_subjects(render):
    with pytest.raises(helm.HelmRenderError, match="restoreReport.rbac.subjects is empty"):
        render({"restoreReport": {"rbac": {"create": True}}})


def test_reconciler_needs_the_namespace_policy(render):
    with pytest.raises(helm.HelmRenderError, match="reconciler.enabled needs namespacePolicy auto"):
        render({"reconciler": {"enabled": True}, "namespacePolicy": "off"})


def test_namespace_policy_off_drops_rbac_and_the_api_token(render):
    auto = render()
    assert auto.deployment["spec"]["template"]["spec"]["automountServiceAccountToken"] is True
    assert not any(a.startswith("--namespace-policy") for a in auto.container["args"])
    off = render({"namespacePolicy": "off"})
    assert "--namespace-policy=off" in off.container["args"]
    assert off.deployment["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    assert not off.all("ClusterRole") and not off.all("ClusterRoleBinding")
    assert off.all("ServiceAccount")


def test_existing_service_account_and_no_rbac(render):
    r = render(COMBOS["minimal"])
    assert not r.all("ServiceAccount") and not r.all("ClusterRole") and not r.all("ClusterRoleBinding")
    assert r.deployment["spec"]["template"]["spec"]["serviceAccountName"] == "existing"
    assert r.deployment["spec"]["replicas"] == 1


def test_optional_pod_settings(render):
    r = render(COMBOS["everything"])
    pod = r.deployment["spec"]["template"]["spec"]
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert pod["hostNetwork"] is True and pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["tolerations"][0]["key"] == "dedicated"
    assert pod["topologySpreadConstraints"][0]["topologyKey"] == "topology.kubernetes.io/zone"
    c = r.container
    assert "--addr=0.0.0.0:9443" in c["args"]
    assert c["ports"][0]["containerPort"] == 9443
    assert c["env"] == [{"name": "RUST_LOG", "value": "debug"}]
    assert r.deployment["spec"]["template"]["metadata"]["labels"]["team"] == "platform"
    assert r.deployment["spec"]["template"]["metadata"]["annotations"]["example.com/a"] == "b"
    assert "priorityClassName" not in render().deployment["spec"]["template"]["spec"]


# --- ServiceMonitor ----------------------------------------------------------------------------


def test_service_monitor_off_by_default(render):
    assert not render().all("ServiceMonitor")


@pytest.mark.parametrize("mode", ["selfSigned", "certManager"])
def test_service_monitor_scrapes_https_verifying_the_ca(render, mode):
    secret = {"selfSigned": f"{RELEASE}-chart-tls", "certManager": f"{RELEASE}-tls"}[mode]
    r = render({"certificates": {"mode": mode}, "serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}})
    sm = r.one("ServiceMonitor")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["metadata"]["labels"]["release"] == "prom"
    assert sm["spec"]["selector"]["matchLabels"] == r.one("Service")["spec"]["selector"]
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (ep,) = sm["spec"]["endpoints"]
    assert ep["port"] == "https" and ep["path"] == "/metrics" and ep["scheme"] == "https"
    assert ep["tlsConfig"] == {"serverName": SERVICE_HOST, "ca": {"secret": {"name": secret, "key": "ca.crt"}}}


def test_service_monitor_in_secret_mode_uses_a_ca_configmap(render):
    r = render(COMBOS["secret-servicemonitor"])
    cm = r.one("ConfigMap", f"{RELEASE}-ca")
    assert cm["data"]["ca.crt"] == CA_PEM
    ep = r.one("ServiceMonitor")["spec"]["endpoints"][0]
    assert ep["tlsConfig"]["ca"] == {"configMap": {"name": f"{RELEASE}-ca", "key": "ca.crt"}}


def test_service_monitor_tls_config_override(render):
    r = render({"serviceMonitor": {"enabled": True, "tlsConfig": {"insecureSkipVerify": True}}})
    assert r.one("ServiceMonitor")["spec"]["endpoints"][0]["tlsConfig"] == {"insecureSkipVerify": True}


# --- values.schema.json --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values, where",
    [
        ({"certificates": {"mode": "letsencrypt"}}, "/certificates/mode"),
        ({"webhook": {"failurePolicy": "Retry"}}, "/webhook/failurePolicy"),
        ({"logFormat": "xml"}, "/logFormat"),
        ({"mode": "mutate"}, "/mode"),
        ({"webhook": {"reinvocationPolicy": "Always"}}, "/webhook/reinvocationPolicy"),
        ({"webhook": {"timeoutSeconds": 31}}, "/webhook/timeoutSeconds"),
        ({"webhook": {"timeoutSeconds": "5"}}, "/webhook/timeoutSeconds"),
        ({"replicaCount": 0}, "/replicaCount"),
        ({"terminationGracePeriodSeconds": 5}, "/terminationGracePeriodSeconds"),
        ({"podAntiAffinity": "maybe"}, "/podAntiAffinity"),
        ({"namespacePolicy": "on"}, "/namespacePolicy"),
        ({"unknownTopLevel": True}, "unknownTopLevel"),
        ({"webhook": {"failurepolicy": "Fail"}}, "failurepolicy"),
        ({"certificates": {"selfsigned": {}}}, "selfsigned"),
        ({"customTemplates": {"name": "x"}}, "/customTemplates"),
        ({"certificates": {"certManager": {"duration": "90 days"}}}, "/certificates/certManager/duration"),
        ({"prometheusRule": {"enable": True}}, "enable"),
        ({"grafanaDashboard": {"labels": {"grafana_dashboard": 1}}}, "/grafanaDashboard/labels/grafana_dashboard"),
        ({"reconciler": {"enabled": "yes"}}, "/reconciler/enabled"),
        ({"reconciler": {"ratePerSecond": 0}}, "/reconciler/ratePerSecond"),
        ({"reconciler": {"resync": "10 minutes"}}, "/reconciler/resync"),
        ({"reconciler": {"namespaces": ["Shop"]}}, "/reconciler/namespaces"),
        ({"reconciler": {"leaderElection": True}}, "leaderElection"),
        ({"webhook": {"databaseMatchCondition": {"enabled": "yes"}}}, "/webhook/databaseMatchCondition/enabled"),
        ({"webhook": {"databaseMatchCondition": {"expresion": "true"}}}, "expresion"),
        ({"velero": {"namespace": "Velero"}}, "/velero/namespace"),
        ({"velero": {"readSchedules": "yes"}}, "/velero/readSchedules"),
        ({"velero": {"schedules": True}}, "schedules"),
    ],
)
def test_schema_rejects_invalid_values(chart, render, values, where):
    with pytest.raises(helm.HelmValuesError) as err:
        chart.validate_schema(chart.merge_values(values))
    assert where in str(err.value)
    # Rendering (as `helm install` does) refuses them too.
    with pytest.raises(helm.HelmValuesError):
        render(values)


@pytest.mark.parametrize("combo", sorted(COMBOS))
def test_schema_accepts_every_combo(chart, combo):
    chart.validate_schema(chart.merge_values(COMBOS[combo]))


def test_schema_is_strict_at_top_level_and_documents_the_enums(chart):
    schema = chart.schema
    assert schema["additionalProperties"] is False
    props = schema["properties"]
    assert set(props) == set(chart.values), "schema and values.yaml disagree on the top-level keys"
    assert props["certificates"]["properties"]["mode"]["enum"] == ["selfSigned", "certManager", "secret"]
    assert props["webhook"]["properties"]["failurePolicy"]["enum"] == ["Ignore", "Fail"]
    assert props["logFormat"]["enum"] == ["json", "text"]
    assert props["mode"]["enum"] == ["inject", "warn", "enforce"]
    assert props["namespacePolicy"]["enum"] == ["auto", "off"]


# --- NOTES.txt ---------------------------------------------------------------------------------


def test_notes_explain_opt_in_and_check(render):
    notes = render().notes
    assert "kubectl label namespace YOUR-NAMESPACE velero-hook-injector.io/inject=enabled" in notes
    assert "--dry-run=server" in notes
    assert "velero-hook-injector.io/injected" in notes
    assert "persistentVolumeClaim" in notes
    assert "failurePolicy is Ignore" in notes
    assert "would inject" not in notes
    assert "(warn mode): would inject" in render({"mode": "warn"}).notes
    assert "velero-hook-injector.io/exception" in render({"mode": "enforce"}).notes
    assert "velero-hook-injector.io/exception" not in notes
    assert "only for pods that could be databases" in notes
    assert "widened by customTemplates" in render({"customTemplates": CUSTOM_TEMPLATES}).notes
    assert "calls the webhook for every pod" in render(
        {"webhook": {"databaseMatchCondition": {"enabled": False}}}).notes
    fail_notes = render({"webhook": {"failurePolicy": "Fail"}, **CERT_MANAGER}).notes
    assert "failurePolicy is Ignore" not in fail_notes
    assert f"get certificate {RELEASE}-tls" in fail_notes


@pytest.mark.parametrize("mode", ["selfSigned", "certManager"])
def test_longest_release_and_namespace_names(render, mode):
    name, namespace = "r" * 53, "n" * 63  # Helm's and Kubernetes' limits
    r = render({"certificates": {"mode": mode}, "serviceMonitor": {"enabled": True},
                "prometheusRule": {"enabled": True}, "grafanaDashboard": {"enabled": True},
                "customTemplates": CUSTOM_TEMPLATES}, name=name, namespace=namespace)
    for doc in r.docs:
        assert len(doc["metadata"]["name"]) <= 63, doc["metadata"]["name"]
        if not is_crd(doc):
            validate_k8s(doc, K8S_VERSIONS[-1])
    host = f"{r.one('Service')['metadata']['name']}.{namespace}.svc"
    if mode == "selfSigned":
        cert = load_cert(r.one("Secret")["data"]["tls.crt"])
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert host in sans.get_values_for_type(x509.DNSName)
    else:
        assert host in r.one("Certificate", f"{r.one('Service')['metadata']['name']}-tls")["spec"]["dnsNames"]


@pytest.mark.parametrize("combo", ["defaults", "certManager", "secret-pem", "monitoring"])
def test_helm_install_client_dry_run(combo):
    """The whole install action (kubeVersion check, hook and kind ordering, NOTES), offline.

    The configured API server is a closed loopback port: a client dry run must not need it.
    """
    with helm.Config(kube_apiserver="http://127.0.0.1:1", namespace=NAMESPACE) as cfg:
        rel = cfg.install(str(CHART_DIR), RELEASE, COMBOS[combo], dry_run="client", namespace=NAMESPACE)
    assert rel["name"] == RELEASE and rel["namespace"] == NAMESPACE
    assert "velero-hook-injector.io/inject=enabled" in rel["notes"]
    installed = parse({"manifest.yaml": rel["manifest"]})
    assert installed.webhook["failurePolicy"] == "Ignore"
    kinds = [d["kind"] for d in installed.docs]
    # Helm installs the webhook configuration after the Deployment and Service it points to.
    assert kinds.index("MutatingWebhookConfiguration") > kinds.index("Deployment")
    assert kinds.index("MutatingWebhookConfiguration") > kinds.index("Service")


def test_packaged_chart_renders_the_same(tmp_path, render):
    archive = helm.package(str(CHART_DIR), destination=str(tmp_path))
    assert archive.endswith("velero-hook-injector-0.2.0.tgz")
    with helm.Chart.load(archive) as packed:
        r = parse(packed.render({}, name=RELEASE, namespace=NAMESPACE))
        assert packed.schema is not None
    assert r.kinds() == render().kinds()

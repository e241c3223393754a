"""Shared helpers for the Helm chart tests: render with the real Helm engine, parse, validate."""

from __future__ import annotations

import copy
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART_DIR = REPO / "charts" / "velero-hook-injector"

# The release name that makes the full name (and so the Service) "velero-hook-injector", which is
# what `velero-hook-injector certs` defaults to.
RELEASE = "velero-hook-injector"
NAMESPACE = "velero-hook-injector"

# Oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest schema shipped by
# the pinned kubernetes-validate.
K8S_VERSIONS = ["1.30.0", "1.37.0"]

# Custom resources: not in the Kubernetes schema, so they are skipped by schema validation on
# purpose and their key fields are asserted by dedicated tests instead.
CRD_KINDS = {
    ("cert-manager.io/v1", "Issuer"),
    ("cert-manager.io/v1", "Certificate"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}

CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding", "MutatingWebhookConfiguration"}


@dataclass
class Rendered:
    docs: list[dict[str, Any]]
    notes: str
    files: dict[str, str] = field(default_factory=dict)

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [d for d in self.all(kind) if name is None or d["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}: {self.kinds()}"
        return found[0]

    def kinds(self) -> list[str]:
        return sorted(f"{d['kind']}/{d['metadata']['name']}" for d in self.docs)

    @property
    def deployment(self) -> dict[str, Any]:
        return self.one("Deployment")

    @property
    def container(self) -> dict[str, Any]:
        containers = self.deployment["spec"]["template"]["spec"]["containers"]
        assert len(containers) == 1
        return containers[0]

    @property
    def webhook(self) -> dict[str, Any]:
        mwc = self.one("MutatingWebhookConfiguration")
        assert len(mwc["webhooks"]) == 1
        return mwc["webhooks"][0]


def parse(files: dict[str, str]) -> Rendered:
    docs: list[dict[str, Any]] = []
    notes = ""
    for path, text in sorted(files.items()):
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        for doc in yaml.safe_load_all(text):
            if doc is None:
                continue
            assert isinstance(doc, dict), f"{path}: a document is not a mapping: {doc!r}"
            docs.append(doc)
    return Rendered(docs=docs, notes=notes, files=files)


@pytest.fixture(scope="session")
def chart():
    with helm.Chart.load(str(CHART_DIR)) as c:
        yield c


def deep_merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


@pytest.fixture(scope="session")
def render(chart):
    def _render(values: dict | None = None, *, name: str = RELEASE, namespace: str = NAMESPACE) -> Rendered:
        return parse(chart.render(values or {}, name=name, namespace=namespace, is_install=True))

    return _render


def validate_k8s(doc: dict[str, Any], version: str) -> None:
    """Validate one manifest against the strict (no unknown fields) Kubernetes schema."""
    kubernetes_validate.validate(doc, version, strict=True)


def is_crd(doc: dict[str, Any]) -> bool:
    return (doc["apiVersion"], doc["kind"]) in CRD_KINDS


class FakeAPIServer:
    """Just enough of a kube-apiserver over plain HTTP on loopback for Helm's `lookup` of Secrets.

    Serves API discovery for core/v1 and GET of the Secrets in `secrets` (keyed by
    (namespace, name)); anything else is a 404 Status. Records every request path.
    """

    def __init__(self) -> None:
        self.secrets: dict[tuple[str, str], dict[str, Any]] = {}
        self.requests: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                path = self.path.split("?", 1)[0]
                fake.requests.append(path)
                code, body = 404, {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "status": "Failure",
                    "reason": "NotFound",
                    "code": 404,
                }
                parts = path.strip("/").split("/")
                if path == "/version":
                    code, body = 200, {"major": "1", "minor": "30", "gitVersion": "v1.30.0"}
                elif path == "/api":
                    code, body = 200, {"kind": "APIVersions", "versions": ["v1"]}
                elif path == "/apis":
                    code, body = 200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": []}
                elif path == "/api/v1":
                    code, body = 200, {
                        "kind": "APIResourceList",
                        "groupVersion": "v1",
                        "resources": [
                            {
                                "name": "secrets",
                                "singularName": "secret",
                                "namespaced": True,
                                "kind": "Secret",
                                "verbs": ["get", "list"],
                            }
                        ],
                    }
                elif len(parts) == 6 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "secrets":
                    secret = fake.secrets.get((parts[3], parts[5]))
                    if secret is not None:
                        code, body = 200, secret
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> "FakeAPIServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def fake_apiserver():
    with FakeAPIServer() as fake:
        yield fake

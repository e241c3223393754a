"""The chart's Deployment against the real server binary, on loopback.

The container arguments rendered by the chart are run as they are (only the listen address and
the certificate paths are pointed at this machine), with the certificate material the chart
produces: the probes' endpoints answer over TLS verified against the chart's caBundle for the
Service's DNS name, /mutate answers an AdmissionReview, and SIGTERM ends the process well within
the chart's terminationGracePeriodSeconds.

Needs the built binary: $VHI_BIN, or the newer of target/debug and target/release (tests/run.sh
runs `cargo test` first, which builds it). Without one these tests are skipped with that reason,
or fail when CI is set.
"""

from __future__ import annotations

import base64
import datetime as dt
import http.client
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

import helm_python as helm
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conftest import NAMESPACE, RELEASE, REPO, deep_merge
from test_chart import COMBOS, CUSTOM_TEMPLATES

SERVICE_HOST = f"{RELEASE}.{NAMESPACE}.svc"
FIXTURE = REPO / "tests" / "fixtures" / "pod-create-simple.json"


def find_binary() -> Path | None:
    env = os.environ.get("VHI_BIN")
    if env:
        return Path(env)
    candidates = [REPO / "target" / d / "velero-hook-injector" for d in ("debug", "release")]
    found = [c for c in candidates if c.is_file() and os.access(c, os.X_OK)]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


BINARY = find_binary()


@pytest.fixture(autouse=True)
def _needs_binary():
    """Skipped without a binary, except in CI (CI set), where that is a failure."""
    if BINARY is not None and not os.access(BINARY, os.X_OK):
        pytest.fail(f"VHI_BIN={BINARY} is not an executable file")
    if BINARY is None:
        why = "no velero-hook-injector binary (cargo build, or set VHI_BIN)"
        if os.environ.get("CI"):
            pytest.fail(why + "; CI must build it before the chart tests")
        pytest.skip(why)


def serve_flags() -> set[str]:
    out = subprocess.run([str(BINARY), "serve", "--help"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return set(re.findall(r"(--[a-z][a-z0-9-]*)", out.stdout))


def flag_name(arg: str) -> str:
    return arg.split("=", 1)[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """The binary run with the chart's arguments; stopped by its own pid."""

    def __init__(self, args: list[str], workdir: Path, ca_pem: bytes, port: int | None = None) -> None:
        self.port = port or free_port()
        self.args = [str(BINARY)] + [self._local(a, workdir) for a in args]
        (workdir / "ca.crt").write_bytes(ca_pem)
        self.ctx = ssl.create_default_context(cafile=str(workdir / "ca.crt"))
        self.log = open(workdir / "server.log", "w+b")
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None

    def _local(self, arg: str, workdir: Path) -> str:
        if arg.startswith("--addr="):
            return f"--addr=127.0.0.1:{self.port}"
        if arg.startswith("--tls-cert="):
            return f"--tls-cert={workdir / 'tls.crt'}"
        if arg.startswith("--tls-key="):
            return f"--tls-key={workdir / 'tls.key'}"
        if arg.startswith("--templates="):
            return f"--templates={workdir / 'templates.yaml'}"
        return arg

    def start(self) -> "Server":
        # Run from an empty directory: with certificates given the server must not need to write.
        # Never a real cluster: no kubeconfig, no in-cluster variables (namespace policy auto then
        # falls back to the cluster mode).
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("VHI_", "KUBERNETES_", "KUBECONFIG"))}
        env["HOME"] = str(self.workdir)
        env["KUBECONFIG"] = str(self.workdir / "no-kubeconfig")
        self.proc = subprocess.Popen(self.args, cwd=self.workdir, stdout=self.log,
                                     stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}: {self.output()}")
            try:
                if self.request("GET", "/healthz")[0] == 200:
                    return self
            except (OSError, ssl.SSLError, http.client.HTTPException):
                pass
            time.sleep(0.1)
        raise AssertionError(f"server not healthy within 30s: {self.output()}")

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict | None = None) -> tuple[int, bytes]:
        # Connect to loopback but verify the certificate for the Service's DNS name, as the API
        # server does when it calls <service>.<namespace>.svc.
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        tls = self.ctx.wrap_socket(sock, server_hostname=SERVICE_HOST)
        conn = http.client.HTTPConnection(SERVICE_HOST, self.port, timeout=10)
        conn.sock = tls
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.log.close()


def write_chart_certs(secret: dict, workdir: Path) -> bytes:
    data = secret["data"]
    (workdir / "tls.crt").write_bytes(base64.b64decode(data["tls.crt"]))
    (workdir / "tls.key").write_bytes(base64.b64decode(data["tls.key"]))
    return base64.b64decode(data["ca.crt"])


@pytest.fixture
def chart_server(render, tmp_path):
    r = render()
    ca = write_chart_certs(r.one("Secret"), tmp_path)
    server = Server(r.container["args"], tmp_path, ca)
    try:
        yield server.start(), r
    finally:
        server.stop()


def test_binary_accepts_every_flag_the_chart_can_pass(render):
    flags = serve_flags()
    for values in ({}, COMBOS["everything"], COMBOS["namespacePolicy-off-warn"],
                   COMBOS["reconciler"], COMBOS["reconciler-namespaces"]):
        args = render(values).container["args"]
        assert args[0] == "serve"
        unknown = sorted({flag_name(a) for a in args[1:]} - flags)
        assert unknown == [], f"the chart passes flags the binary does not know: {unknown}"


def test_custom_templates_from_the_chart_are_valid_for_the_binary(render, tmp_path):
    cm = render({"customTemplates": CUSTOM_TEMPLATES}).one("ConfigMap")
    path = tmp_path / "templates.yaml"
    path.write_text(cm["data"]["templates.yaml"])
    done = subprocess.run([str(BINARY), "templates", "validate", str(path)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr


def test_probe_and_metrics_endpoints_over_tls_with_the_chart_ca(chart_server):
    server, r = chart_server
    c = r.container
    for probe in ("livenessProbe", "readinessProbe"):
        status, _ = server.request("GET", c[probe]["httpGet"]["path"])
        assert status == 200, (probe, server.output())
    status, body = server.request("GET", "/metrics")
    assert status == 200
    assert b"velero_hook_injector_" in body


def test_mutate_answers_an_admission_review(chart_server):
    server, r = chart_server
    review = json.loads(FIXTURE.read_text())
    path = r.webhook["clientConfig"]["service"]["path"]
    status, body = server.request("POST", path, FIXTURE.read_bytes(), {"Content-Type": "application/json"})
    assert status == 200, body
    answer = json.loads(body)
    assert answer["apiVersion"] == "admission.k8s.io/v1" and answer["kind"] == "AdmissionReview"
    assert answer["response"]["uid"] == review["request"]["uid"]
    assert answer["response"]["allowed"] is True


def test_sigterm_exits_within_the_grace_period(chart_server):
    server, r = chart_server
    grace = r.deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    code = server.proc.wait(timeout=grace)
    took = time.monotonic() - started
    assert code == 0, server.output()
    # Idle server: only the /readyz delay stands between SIGTERM and exit; well under the grace.
    assert took < grace / 2, f"took {took:.1f}s"


def test_ecdsa_pkcs8_key_like_cert_manager_issues(render, tmp_path):
    """certManager mode: ECDSA P-256 keys in PKCS#8 (privateKey.encoding: PKCS8), signed by a CA."""
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{RELEASE}-ca")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=1)).not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    cert_spec = render({"certificates": {"mode": "certManager"}}).one("Certificate", f"{RELEASE}-tls")["spec"]
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cert_spec["dnsNames"][0])]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in cert_spec["dnsNames"]]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    (tmp_path / "tls.crt").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "tls.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    args = render({"certificates": {"mode": "certManager"}}).container["args"]
    server = Server(args, tmp_path, ca.public_bytes(serialization.Encoding.PEM))
    try:
        server.start()
        assert server.request("GET", "/readyz")[0] == 200
    finally:
        server.stop()


def test_secret_mode_with_the_binarys_certs_command(render, tmp_path):
    """The documented no-cert-manager path: `certs` output -> kubectl create secret tls +
    --set-file certificates.secret.caBundle=ca.crt -> the server verifies for the Service name."""
    out = tmp_path / "certs"
    done = subprocess.run([str(BINARY), "certs", "--service", RELEASE, "--namespace", NAMESPACE,
                           "--out", str(out)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert {p.name for p in out.iterdir()} >= {"ca.crt", "tls.crt", "tls.key"}
    ca_pem = (out / "ca.crt").read_text()
    # The values exactly as the helm command line in docs/install.md gives them.
    values = deep_merge(
        helm.parse_set_string("certificates.mode=secret,certificates.secret.name=velero-hook-injector-tls"),
        helm.parse_set_file(f"certificates.secret.caBundle={out / 'ca.crt'}"))
    r = render(values)
    assert r.deployment["spec"]["template"]["spec"]["volumes"][0]["secret"]["secretName"] == "velero-hook-injector-tls"
    assert base64.b64decode(r.webhook["clientConfig"]["caBundle"]).decode().strip() == ca_pem.strip()
    (tmp_path / "tls.crt").write_bytes((out / "tls.crt").read_bytes())
    (tmp_path / "tls.key").write_bytes((out / "tls.key").read_bytes())
    server = Server(r.container["args"], tmp_path,
                    base64.b64decode(r.webhook["clientConfig"]["caBundle"]))
    try:
        server.start()
        assert server.request("GET", "/readyz")[0] == 200
    finally:
        server.stop()


def test_server_runs_the_chart_custom_templates(render, tmp_path):
    """customTemplates -> ConfigMap -> --templates: the server injects the custom template."""
    r = render({"customTemplates": CUSTOM_TEMPLATES})
    ca = write_chart_certs(r.one("Secret"), tmp_path)
    (tmp_path / "templates.yaml").write_text(r.one("ConfigMap")["data"]["templates.yaml"])
    review = json.loads(FIXTURE.read_text())
    pod = review["request"]["object"]
    pod["spec"]["containers"][0]["image"] = "registry.example/acme/acme-db:2.1"
    pod["metadata"].setdefault("annotations", {})["velero-hook-injector.io/template"] = "acme-db"
    server = Server(r.container["args"], tmp_path, ca)
    try:
        server.start()
        status, body = server.request("POST", "/mutate", json.dumps(review).encode(),
                                      {"Content-Type": "application/json"})
    finally:
        server.stop()
    assert status == 200, body
    response = json.loads(body)["response"]
    assert response["allowed"] is True
    patch = json.loads(base64.b64decode(response["patch"]))
    text = json.dumps(patch)
    container = pod["spec"]["containers"][0]["name"]
    assert f"acme-db/{container}" in text, text
    assert "acme-cli" in text


@pytest.mark.parametrize("mode, expected", [
    ("inject", "velero-hook-injector: injected postgres hooks into container"),
    ("warn", "velero-hook-injector (warn mode): would inject"),
])
def test_notes_dry_run_check_matches_what_the_server_says(render, tmp_path, mode, expected):
    """NOTES.txt tells the user which warning a `kubectl run --dry-run=server` of postgres:16
    with the template annotation prints; the server must print exactly that."""
    r = render({"mode": mode})
    assert expected in r.notes
    ca = write_chart_certs(r.one("Secret"), tmp_path)
    review = json.loads(FIXTURE.read_text())
    pod = review["request"]["object"]
    pod["spec"]["containers"][0]["image"] = "postgres:16"
    pod["metadata"].setdefault("annotations", {})["velero-hook-injector.io/template"] = "postgres"
    review["request"]["dryRun"] = True
    server = Server(r.container["args"], tmp_path, ca)
    try:
        server.start()
        status, body = server.request("POST", "/mutate", json.dumps(review).encode(),
                                      {"Content-Type": "application/json"})
    finally:
        server.stop()
    assert status == 200, body
    response = json.loads(body)["response"]
    assert response["allowed"] is True
    assert any(expected in w for w in response.get("warnings", [])), response.get("warnings")
    if mode == "inject":
        patch = json.dumps(json.loads(base64.b64decode(response["patch"])))
        assert "pre.hook.backup.velero.io~1command" in patch and "velero-hook-injector.io~1injected" in patch
    else:
        assert "patch" not in response or not json.loads(base64.b64decode(response["patch"]))

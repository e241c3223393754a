"""The real server scraped by a real Prometheus, with the chart's rules loaded.

The server runs with the chart's container arguments and a CA made for this test by the binary's
own `certs` command; Prometheus (Debian's `prometheus` package) scrapes it every second over HTTPS,
verifying that CA for the Service's DNS name as the chart's ServiceMonitor does, and evaluates the
PrometheusRule the chart renders every second. The test drives admissions and reads everything
back through Prometheus' HTTP API: the target is up and the series carry the expected values;
stopping the server raises VeleroHookInjectorDown; hot-reloading a certificate that expires in 2
days updates the expiry gauge and raises VeleroHookInjectorCertificateExpiringSoon. Every
dashboard query then runs against that Prometheus.

Skipped (with a warning) without prometheus or the built binary; a failure when CI is set.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import ssl
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from conftest import REPO
from test_binary_contract import BINARY, Server, free_port
from test_monitoring import (
    RECONCILER_METRICS,
    as_promql,
    dashboard,
    dashboard_exprs,
    metric_names,
    rendered_rules,
    tool,
)

SERVICE, NAMESPACE = "velero-hook-injector", "velero-hook-injector"
JOB = "velero-hook-injector"
FIXTURE = REPO / "tests" / "fixtures" / "pod-create-simple.json"


class Prometheus:
    """A throwaway Prometheus server on loopback, stopped by its own pid."""

    def __init__(self, binary: str, workdir: Path, config: dict) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        self.log = open(workdir / "prometheus.log", "w+b")
        self.proc = subprocess.Popen(
            [binary, f"--config.file={workdir / 'prometheus.yml'}",
             f"--storage.tsdb.path={workdir / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}"],
            cwd=workdir, stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(lambda: self._ready(), 60, "Prometheus ready", self.output)

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited {self.proc.returncode}: {self.output()}")
        try:
            with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def api(self, path: str, **params: str) -> dict:
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.load(r)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", data
        return data["result"]

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None

    def alerts(self, name: str) -> list[dict]:
        return [a for a in self.api("alerts")["alerts"] if a["labels"]["alertname"] == name]

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log.close()


def wait_for(check, timeout: float, what: str, context=lambda: ""):
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{context()}")
        time.sleep(0.25)


def make_certs(out: Path, days: int) -> None:
    done = subprocess.run([str(BINARY), "certs", "--service", SERVICE, "--namespace", NAMESPACE,
                           "--out", str(out), "--days", str(days)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def not_after(cert: Path) -> int:
    return int(x509.load_pem_x509_certificate(cert.read_bytes()).not_valid_after_utc.timestamp())


def replace_file(src: Path, dst: Path) -> None:
    """Atomic replacement, like the kubelet's symlink swap of a mounted Secret."""
    tmp = dst.with_suffix(".tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def postgres_review() -> bytes:
    review = json.loads(FIXTURE.read_text())
    pod = review["request"]["object"]
    pod["spec"]["containers"][0]["image"] = "postgres:16"
    pod["metadata"].setdefault("annotations", {})["velero-hook-injector.io/template"] = "postgres"
    return json.dumps(review).encode()


def firing_or_pending(prom: Prometheus, name: str) -> list[dict]:
    return [a for a in prom.alerts(name) if a["state"] in ("pending", "firing")]


@pytest.fixture
def stack(render, tmp_path):
    prometheus = tool("prometheus")
    if BINARY is None:
        why = "no velero-hook-injector binary (cargo build, or set VHI_BIN)"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    good, soon = tmp_path / "good", tmp_path / "soon"
    make_certs(good, 90)
    make_certs(soon, 2)
    for f in ("tls.crt", "tls.key"):
        shutil.copyfile(good / f, tmp_path / f)
    # Prometheus trusts both CAs, as during a CA rotation.
    bundle = (good / "ca.crt").read_bytes() + (soon / "ca.crt").read_bytes()
    (tmp_path / "ca-bundle.crt").write_bytes(bundle)
    r = render({"extraArgs": ["--reload-interval=200ms"]})
    args = r.container["args"]
    server = Server(args, tmp_path, bundle).start()
    write_rules = tmp_path / "rules.yaml"
    write_rules.write_text(yaml.safe_dump(rendered_rules(render), sort_keys=False))
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(write_rules)],
        "scrape_configs": [{
            "job_name": JOB,
            "scheme": "https",
            "metrics_path": "/metrics",
            "tls_config": {"ca_file": str(tmp_path / "ca-bundle.crt"),
                           "server_name": f"{SERVICE}.{NAMESPACE}.svc"},
            # The Prometheus Operator adds the target's namespace like this.
            "static_configs": [{"targets": [f"127.0.0.1:{server.port}"], "labels": {"namespace": NAMESPACE}}],
        }],
    }
    prom = Prometheus(prometheus, tmp_path, config)
    servers = [server]
    try:
        yield {"prom": prom, "servers": servers, "args": args, "dir": tmp_path, "good": good,
               "soon": soon, "bundle": bundle}
    finally:
        prom.stop()
        for s in servers:
            s.stop()


def test_prometheus_scrapes_the_server_and_the_alerts_fire(stack):
    prom: Prometheus = stack["prom"]
    server: Server = stack["servers"][0]
    instance = f"127.0.0.1:{server.port}"
    ctx = lambda: f"server:\n{server.output()}\nprometheus:\n{prom.output()}"  # noqa: E731

    wait_for(lambda: prom.value(f'up{{job="{JOB}"}}') == 1, 30, "the target up", ctx)

    # Admissions: two database pods hooked, one other pod, one refused request.
    json_type = {"Content-Type": "application/json"}
    for _ in range(2):
        assert server.request("POST", "/mutate", postgres_review(), json_type)[0] == 200
    assert server.request("POST", "/mutate", FIXTURE.read_bytes(), json_type)[0] == 200
    assert server.request("POST", "/mutate", b"{}", {"Content-Type": "text/plain"})[0] == 415
    sel = f'job="{JOB}", instance="{instance}"'
    wait_for(lambda: prom.value(f"sum(velero_hook_injector_admissions_total{{{sel}}})") == 3, 30,
             "the 3 admissions in Prometheus", ctx)

    (injected,) = prom.query(f'velero_hook_injector_admissions_total{{{sel}, outcome="injected"}}')
    pod_namespace = json.loads(FIXTURE.read_text())["request"]["namespace"]
    assert injected["metric"]["template"] == "postgres"
    assert injected["metric"]["mode"] == "inject"
    # The target's namespace label wins; the pod's is kept as exported_namespace.
    assert injected["metric"]["exported_namespace"] == pod_namespace
    assert injected["metric"]["namespace"] == NAMESPACE
    assert injected["value"][1] == "2"
    assert prom.value(f'velero_hook_injector_admissions_total{{{sel}, outcome="no_database"}}') == 1
    assert prom.value(f"velero_hook_injector_admission_duration_seconds_count{{{sel}}}") == 3
    assert prom.value(f'velero_hook_injector_request_errors_total{{{sel}, reason="unsupported_media_type"}}') == 1
    assert prom.value(f"velero_hook_injector_policy_fail_open_total{{{sel}}}") == 0

    version = subprocess.run([str(BINARY), "--version"], capture_output=True, text=True).stdout.split()[-1]
    (info,) = prom.query(f"velero_hook_injector_build_info{{{sel}}}")
    assert info["metric"]["version"] == version and info["value"][1] == "1"
    listed = subprocess.run([str(BINARY), "templates", "list"], capture_output=True, text=True).stdout
    assert prom.value(f"velero_hook_injector_templates_loaded{{{sel}}}") == len(listed.splitlines()) - 1
    assert prom.value(f"velero_hook_injector_certificate_expiration_timestamp_seconds{{{sel}}}") == \
        not_after(stack["good"] / "tls.crt")
    for kind in ("certificate", "templates"):
        assert prom.value(f'velero_hook_injector_last_reload_successful{{{sel}, kind="{kind}"}}') == 1

    # Healthy: the rules are loaded and nothing is pending or firing.
    groups = prom.api("rules")["groups"]
    assert sum(len(g["rules"]) for g in groups) == 14
    assert all(r["health"] == "ok" for g in groups for r in g["rules"]), groups
    assert prom.api("alerts")["alerts"] == []

    # Stop the server: the target goes down and the Down alert becomes pending (for: 5m).
    server.stop()
    wait_for(lambda: prom.value(f'up{{job="{JOB}"}}') == 0, 30, "the target down", ctx)
    (down,) = wait_for(lambda: firing_or_pending(prom, "VeleroHookInjectorDown"), 30,
                       "VeleroHookInjectorDown", ctx)
    assert down["labels"]["severity"] == "critical"
    assert down["annotations"]["runbook_url"].endswith("#runbook-velerohookinjectordown")
    (replica,) = wait_for(lambda: firing_or_pending(prom, "VeleroHookInjectorReplicaDown"), 30,
                          "VeleroHookInjectorReplicaDown", ctx)
    assert replica["labels"]["instance"] == instance

    # Serve again on the same address, then rotate to a certificate that expires in 2 days.
    server = Server(stack["args"], stack["dir"], stack["bundle"], port=server.port).start()
    stack["servers"].append(server)
    wait_for(lambda: prom.value(f'up{{job="{JOB}"}}') == 1, 30, "the target up again", ctx)
    wait_for(lambda: not firing_or_pending(prom, "VeleroHookInjectorDown"), 30, "Down resolved", ctx)
    replace_file(stack["soon"] / "tls.key", stack["dir"] / "tls.key.new")
    replace_file(stack["soon"] / "tls.crt", stack["dir"] / "tls.crt.new")
    os.replace(stack["dir"] / "tls.key.new", stack["dir"] / "tls.key")
    os.replace(stack["dir"] / "tls.crt.new", stack["dir"] / "tls.crt")
    expiry = not_after(stack["soon"] / "tls.crt")
    wait_for(lambda: prom.value(f"velero_hook_injector_certificate_expiration_timestamp_seconds{{{sel}}}")
             == expiry, 30, "the reloaded certificate's expiry", ctx)
    left = expiry - dt.datetime.now(dt.timezone.utc).timestamp()
    assert 1.9 * 86400 < left <= 2 * 86400
    assert prom.value(f'velero_hook_injector_reloads_total{{{sel}, kind="certificate", result="success"}}') == 1
    (soon,) = wait_for(lambda: firing_or_pending(prom, "VeleroHookInjectorCertificateExpiringSoon"), 30,
                       "VeleroHookInjectorCertificateExpiringSoon", ctx)
    assert soon["labels"]["instance"] == instance and soon["labels"]["severity"] == "warning"
    assert 1.9 * 86400 < float(soon["value"]) <= 2 * 86400
    assert "expires in 1d 23h" in soon["annotations"]["description"]
    assert not firing_or_pending(prom, "VeleroHookInjectorCertificateExpired")

    # Every dashboard query runs on this Prometheus; all but the reconciler's return series once
    # the restarted server has answered (its counters with labels start empty).
    # (OpenSSL picks the first CA of a bundle by subject name, and both test CAs have the same.)
    server.ctx = ssl.create_default_context(cafile=str(stack["soon"] / "ca.crt"))
    assert server.request("POST", "/mutate", postgres_review(), json_type)[0] == 200
    assert server.request("POST", "/mutate", b"{}", {"Content-Type": "text/plain"})[0] == 415
    wait_for(lambda: prom.value(f"sum(velero_hook_injector_request_errors_total{{{sel}}})") == 1, 30,
             "the restarted server's counters", ctx)
    for expr in dashboard_exprs(dashboard()):
        promql = as_promql(expr).replace("[1m]", "[5m]")
        result = prom.query(promql)
        if not metric_names(promql) & RECONCILER_METRICS:
            assert result, f"no data for dashboard query {promql}"

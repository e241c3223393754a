"""Monitoring shipped with the chart: the alerting rules (PrometheusRule and the plain rules file,
one source), their promtool unit tests, and the Grafana dashboard.

promtool comes from Debian's `prometheus` package (.ci/run installs it). Without it the promtool
checks are skipped with a warning, or fail when CI is set. The metric names the rules and the
dashboard may use are read from the real server's /metrics (needs the built binary, like
test_binary_contract.py).
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import time
import warnings
from pathlib import Path

import pytest
import yaml

from conftest import CHART_DIR, NAMESPACE, RELEASE, REPO
from test_binary_contract import BINARY, Server, write_chart_certs

RULES_FILE = CHART_DIR / "files" / "prometheus-rules.yaml"
DASHBOARD_FILE = CHART_DIR / "files" / "grafana-dashboard.json"
ALERT_TESTS = REPO / "tests" / "monitoring" / "alerts_test.yaml"
RUNBOOK = REPO / "docs" / "monitoring.md"
MONITORING = {"prometheusRule": {"enabled": True}, "grafanaDashboard": {"enabled": True}}

# Written by the reconciler (issue 12); absent while it is off, and the alerts stay quiet then.
RECONCILER_METRICS = {
    "velero_hook_injector_reconcile_total",
    "velero_hook_injector_reconcile_queue_depth",
    "velero_hook_injector_unhooked_pods",
    "velero_hook_injector_spec_hooks_shadowed_pods",
}
# Not ours, read by the alerts on purpose: Prometheus' own scrape health, and the API server's
# count of calls to our webhook it gave up on (failurePolicy Ignore).
FOREIGN_METRICS_IN_ALERTS = {"up", "apiserver_admission_webhook_fail_open_count"}


def tool(name: str) -> str:
    """Path of a Prometheus tool: skipped (with a warning) without it, a failure in CI."""
    path = shutil.which(name)
    if path is None:
        why = f"{name} not installed (Debian: apt-get install prometheus); monitoring checks skipped"
        if os.environ.get("CI"):
            pytest.fail(why + "; CI must install it (.ci/run)")
        warnings.warn(why)
        pytest.skip(why)
    return path


def run(args: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, **kw)


# --- PromQL: the metric names an expression reads ------------------------------------------------

PROMQL_FUNCTIONS = {
    # aggregations
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile",
    "count_values", "group",
    # functions used or plausible in rules and dashboards
    "abs", "absent", "absent_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min",
    "delta", "deriv", "floor", "histogram_quantile", "idelta", "increase", "irate", "label_replace",
    "label_join", "last_over_time", "max_over_time", "min_over_time", "avg_over_time",
    "sum_over_time", "count_over_time", "quantile_over_time", "predict_linear", "rate", "resets",
    "round", "scalar", "sort", "sort_desc", "time", "timestamp", "vector", "present_over_time",
}
PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and",
                   "or", "unless", "offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """Metric names selected by a PromQL expression (a small lexer, enough for our expressions:
    strings, comments, label matchers, ranges and grouping clauses are dropped first)."""
    s = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)
    s = re.sub(r"#[^\n]*", "", s)
    s = re.sub(r"\{[^}]*\}", " ", s)
    s = re.sub(r"\[[^\]]*\]", " ", s)
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    s = re.sub(r"(?<![A-Za-z_:0-9])\d+(\.\d+)?([eE][+-]?\d+)?", " ", s)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", s):
        tok = m.group(0)
        if s[m.end():].lstrip().startswith("("):
            assert tok in PROMQL_FUNCTIONS, f"unknown PromQL function {tok!r} in {expr!r}"
        elif tok.lower() not in PROMQL_KEYWORDS:
            names.add(tok)
    return names


def test_metric_names_lexer():
    expr = ('histogram_quantile(0.99, sum by (namespace, le) (rate(a_bucket{job="x", le!="1e3"}[5m])))'
            ' > 0.5 * 5 # webhook.timeoutSeconds\n/ on (job) group_left (version) b_info - time() < 14 * 24 * 3600')
    assert metric_names(expr) == {"a_bucket", "b_info"}
    assert metric_names('absent(up{job="velero-hook-injector"} == 1)') == {"up"}
    with pytest.raises(AssertionError, match="unknown PromQL function"):
        metric_names("rated(x[5m])")


def sample_names(exposition: str) -> set[str]:
    """Series names a Prometheus scrape of this OpenMetrics text can have, from its TYPE lines."""
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "info": ["_info"],
                "gauge": [""], "unknown": [""], "summary": ["", "_sum", "_count"]}
    names = set()
    for m in re.finditer(r"^# TYPE (\S+) (\S+)$", exposition, re.M):
        names |= {m.group(1) + sfx for sfx in suffixes[m.group(2)]}
    return names


@pytest.fixture(scope="module")
def exported(render, tmp_path_factory) -> set[str]:
    """Series names the real server exports once it has answered an admission, refused a request
    and reloaded its certificate (metric families with labels appear at their first sample)."""
    if BINARY is None:
        why = "no velero-hook-injector binary (cargo build, or set VHI_BIN)"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    workdir = tmp_path_factory.mktemp("exported")
    r = render({"extraArgs": ["--reload-interval=100ms"]})
    server = Server(r.container["args"], workdir, write_chart_certs(r.one("Secret"), workdir))
    try:
        server.start()
        fixture = (REPO / "tests" / "fixtures" / "pod-create-simple.json").read_bytes()
        assert server.request("POST", "/mutate", fixture, {"Content-Type": "application/json"})[0] == 200
        assert server.request("POST", "/mutate", b"x", {"Content-Type": "text/plain"})[0] == 415
        # Same pair, new bytes: a trailing newline changes the fingerprint and triggers a reload.
        with open(workdir / "tls.crt", "ab") as f:
            f.write(b"\n")
        deadline = time.monotonic() + 10
        while True:
            text = server.request("GET", "/metrics")[1].decode()
            if "velero_hook_injector_reloads_total" in text or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    finally:
        server.stop()
    names = sample_names(text)
    assert "velero_hook_injector_reloads_total" in names, text
    return names


# --- rules: one source for the PrometheusRule and the plain file ---------------------------------


def plain_rules() -> dict:
    return yaml.safe_load(RULES_FILE.read_text())


def alerts(rules: dict) -> list[dict]:
    return [r for g in rules["groups"] for r in g["rules"] if "alert" in r]


def rendered_rules(render, values: dict | None = None, **kw) -> dict:
    r = render(copy.deepcopy({**MONITORING, **(values or {})}), **kw)
    rule = r.one("PrometheusRule")
    return {"groups": rule["spec"]["groups"]}


def write_rules(rules: dict, path: Path) -> Path:
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return path


def test_monitoring_objects_are_off_by_default(render):
    r = render()
    assert not r.all("PrometheusRule")
    assert not [d for d in r.all("ConfigMap") if d["metadata"]["name"].endswith("-dashboard")]


def test_notes_point_to_the_alerts_while_they_are_off(render):
    assert "--set prometheusRule.enabled=true" in render().notes
    assert "prometheusRule.enabled" not in render(MONITORING).notes
    # With failurePolicy Fail, the outage is loud: no hint needed there.
    assert "prometheusRule.enabled" not in render({"webhook": {"failurePolicy": "Fail"}}).notes


def test_prometheus_rule_metadata(render):
    r = render({"prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}}})
    rule = r.one("PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["name"] == RELEASE
    assert rule["metadata"]["namespace"] == NAMESPACE
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert rule["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE


def test_chart_rules_are_the_plain_file_with_default_values(render):
    assert rendered_rules(render) == plain_rules()


def test_chart_substitutes_only_the_timeout_and_the_job(render):
    plain = plain_rules()
    got = rendered_rules(render, {"webhook": {"timeoutSeconds": 12}, "nameOverride": "vhi"})
    changed = []
    for p, g in zip(alerts(plain), alerts(got), strict=True):
        assert {k: v for k, v in p.items() if k != "expr"} == {k: v for k, v in g.items() if k != "expr"}
        expected = p["expr"].replace('job="velero-hook-injector"', 'job="vhi"').replace(
            "0.5 * 5 # webhook.timeoutSeconds", "0.5 * 12 # webhook.timeoutSeconds")
        assert g["expr"] == expected
        if "0.5 * 12" in g["expr"]:
            changed.append(g["alert"])
    assert changed == ["VeleroHookInjectorAdmissionLatencyHigh"]


def test_service_monitor_sets_the_job_the_rules_select(render):
    r = render({"serviceMonitor": {"enabled": True}})
    sm = r.one("ServiceMonitor")
    assert sm["spec"]["jobLabel"] == "app.kubernetes.io/name"
    # The Service carries that label, with the value the rules select.
    assert r.one("Service")["metadata"]["labels"]["app.kubernetes.io/name"] == "velero-hook-injector"
    assert 'job="velero-hook-injector"' in RULES_FILE.read_text()


@pytest.mark.parametrize("values", [{}, {"webhook": {"timeoutSeconds": 30}}, {"nameOverride": "vhi"}],
                         ids=["defaults", "timeout-30", "nameOverride"])
def test_promtool_check_rules_as_the_chart_renders_them(render, tmp_path, values):
    promtool = tool("promtool")
    path = write_rules(rendered_rules(render, values), tmp_path / "rules.yaml")
    done = run([promtool, "check", "rules", str(path)])
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alerts(plain_rules()))} rules found" in done.stdout


def test_promtool_check_rules_plain_file():
    promtool = tool("promtool")
    done = run([promtool, "check", "rules", str(RULES_FILE)])
    assert done.returncode == 0, done.stdout + done.stderr


def unit_tests_against(rules_path: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    spec = yaml.safe_load(ALERT_TESTS.read_text())
    spec["rule_files"] = [str(rules_path)]
    test_file = tmp_path / "alerts_test.yaml"
    test_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    return run([tool("promtool"), "test", "rules", str(test_file)])


def test_promtool_unit_tests_plain_file():
    done = run([tool("promtool"), "test", "rules", str(ALERT_TESTS)])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_promtool_unit_tests_chart_rendered_rules(render, tmp_path):
    path = write_rules(rendered_rules(render), tmp_path / "rules.yaml")
    done = unit_tests_against(path, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_unit_tests_can_fail(tmp_path):
    """A rule with a wrong threshold fails the unit tests (they are not vacuous)."""
    broken = RULES_FILE.read_text().replace("< 14 * 24 * 3600", "< 7 * 24 * 3600")
    assert broken != RULES_FILE.read_text()
    done = unit_tests_against(write_rules(yaml.safe_load(broken), tmp_path / "r.yaml"), tmp_path)
    assert done.returncode != 0
    assert "VeleroHookInjectorCertificateExpiringSoon" in done.stdout + done.stderr


def test_latency_threshold_follows_webhook_timeout(render, tmp_path):
    """4 s admissions fire the latency alert with a 5 s timeout (unit tests), not with 10 s."""
    path = write_rules(rendered_rules(render, {"webhook": {"timeoutSeconds": 10}}), tmp_path / "rules.yaml")
    spec = yaml.safe_load(ALERT_TESTS.read_text())
    (case,) = [t for t in spec["tests"] if t["name"].startswith("admissions taking 4 s")]
    for t in case["alert_rule_test"]:
        t["exp_alerts"] = []
    spec = {"rule_files": [str(path)], "evaluation_interval": "1m", "tests": [case]}
    test_file = tmp_path / "t.yaml"
    test_file.write_text(yaml.safe_dump(spec))
    done = run([tool("promtool"), "test", "rules", str(test_file)])
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_a_firing_and_a_quiet_unit_test():
    spec = yaml.safe_load(ALERT_TESTS.read_text())
    fires, quiet = set(), set()
    for case in spec["tests"]:
        for t in case["alert_rule_test"]:
            (fires if t["exp_alerts"] else quiet).add(t["alertname"])
    names = {a["alert"] for a in alerts(plain_rules())}
    assert names - fires == set(), "alerts never shown to fire"
    assert names - quiet == set(), "alerts never shown to stay quiet"
    assert (fires | quiet) - names == set(), "unit tests for alerts that do not exist"


def test_alerts_are_labelled_and_annotated_like_the_community_mixins():
    runbook = RUNBOOK.read_text()
    for a in alerts(plain_rules()):
        name = a["alert"]
        assert re.fullmatch(r"VeleroHookInjector[A-Z][A-Za-z0-9]+", name), name
        assert a["labels"]["severity"] in {"warning", "critical"}, name
        assert set(a["annotations"]) == {"summary", "description", "runbook_url"}, name
        assert a["annotations"]["summary"].endswith("."), name
        anchor = f"runbook-{name.lower()}"
        assert a["annotations"]["runbook_url"].endswith(f"/docs/monitoring.md#{anchor}"), name
        assert f'<a id="{anchor}"></a>' in runbook, f"docs/monitoring.md has no runbook line for {name}"


def test_rules_read_only_metrics_that_exist(exported):
    allowed = exported | RECONCILER_METRICS | FOREIGN_METRICS_IN_ALERTS
    used = set()
    for a in alerts(plain_rules()):
        names = metric_names(a["expr"])
        assert names, a["alert"]
        assert names <= allowed, (a["alert"], names - allowed)
        used |= names
    # Every reconciler metric has an alert, so none of them was misspelt into silence.
    assert RECONCILER_METRICS <= used


# --- dashboard -----------------------------------------------------------------------------------


def dashboard() -> dict:
    return json.loads(DASHBOARD_FILE.read_text())


def panels(dash: dict) -> list[dict]:
    out = []
    for p in dash["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def dashboard_exprs(dash: dict) -> list[str]:
    exprs = [t["expr"] for p in panels(dash) for t in p.get("targets", [])]
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            m = re.fullmatch(r"label_values\((.+), (\w+)\)", var["query"]["query"])
            assert m, var
            exprs.append(m.group(1))
    return exprs


def as_promql(expr: str) -> str:
    """Grafana's variables replaced the way Grafana does before sending a query."""
    return (expr.replace("$__rate_interval", "1m").replace("$__interval", "30s")
            .replace("$job", "velero-hook-injector").replace("$instance", ".*"))


def test_dashboard_configmap_for_the_grafana_sidecar(render):
    r = render({"grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "Backup"}}})
    (cm,) = [d for d in r.all("ConfigMap") if d["metadata"]["name"] == f"{RELEASE}-dashboard"]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["namespace"] == NAMESPACE
    assert cm["metadata"]["annotations"] == {"grafana_folder": "Backup"}
    assert json.loads(cm["data"]["velero-hook-injector.json"]) == dashboard()
    other = render({"grafanaDashboard": {"enabled": True, "namespace": "monitoring"}})
    (cm,) = [d for d in other.all("ConfigMap") if d["metadata"]["name"] == f"{RELEASE}-dashboard"]
    assert cm["metadata"]["namespace"] == "monitoring"


def test_dashboard_is_a_grafana_dashboard_on_a_selectable_datasource():
    dash = dashboard()
    assert dash["uid"] == "velero-hook-injector" and dash["title"]
    assert [v["name"] for v in dash["templating"]["list"]] == ["datasource", "job", "instance"]
    ids = [p["id"] for p in panels(dash)]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    for p in panels(dash):
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["targets"] and p["description"], p["title"]
        for t in p["targets"]:
            assert 'job=~"$job"' in t["expr"], (p["title"], t["expr"])


def test_dashboard_expressions_parse_with_promtool(tmp_path):
    promtool = tool("promtool")
    exprs = dashboard_exprs(dashboard())
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:expr_{i}", "expr": as_promql(e)} for i, e in enumerate(exprs)]}]}
    path = write_rules(rules, tmp_path / "dashboard.yaml")
    done = run([promtool, "check", "rules", str(path)])
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in done.stdout
    # And the check is not vacuous.
    write_rules({"groups": [{"name": "d", "rules": [{"record": "a:b", "expr": "sum(rate(x[5m])"}]}]}, path)
    assert run([promtool, "check", "rules", str(path)]).returncode != 0


def test_dashboard_reads_only_exported_metrics_and_covers_them(exported):
    used = set()
    for e in dashboard_exprs(dashboard()):
        names = metric_names(as_promql(e))
        assert names, e
        assert names <= exported | RECONCILER_METRICS, (e, names - exported - RECONCILER_METRICS)
        used |= names
    required = {
        "velero_hook_injector_admissions_total",
        "velero_hook_injector_admission_duration_seconds_bucket",
        "velero_hook_injector_policy_fail_open_total",
        "velero_hook_injector_request_errors_total",
        "velero_hook_injector_reloads_total",
        "velero_hook_injector_last_reload_successful",
        "velero_hook_injector_certificate_expiration_timestamp_seconds",
        "velero_hook_injector_templates_loaded",
        "velero_hook_injector_build_info",
    } | RECONCILER_METRICS
    assert required - used == set()

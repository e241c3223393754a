//! The binary: `render --check` over tests/manifests/bad-hooks*.yaml and `audit`'s exit codes
//! (0 clean, 1 findings, 2 error).

use std::collections::BTreeSet;
use std::process::{Command, Output};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_velero-hook-injector");
const BAD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/manifests/bad-hooks.yaml"
);
const CLEAN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/manifests/bad-hooks-clean.yaml"
);

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("KUBECONFIG")
        .output()
        .expect("run the binary")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Every (manifest, rule) pair the bad-hooks file must produce, with the key it is about.
const EXPECTED: &[(&str, &str, &str)] = &[
    (
        "Pod/b2-plain-string",
        "command-plain-string",
        "pre.hook.backup.velero.io/command",
    ),
    (
        "Pod/b4-single-quotes",
        "command-not-json-array",
        "pre.hook.backup.velero.io/command",
    ),
    (
        "Pod/b5-leading-space",
        "command-leading-whitespace",
        "pre.hook.backup.velero.io/command",
    ),
    (
        "Pod/b6-number-element",
        "command-not-json-array",
        "pre.hook.backup.velero.io/command",
    ),
    (
        "Pod/b7-empty-command",
        "command-empty",
        "pre.hook.backup.velero.io/command",
    ),
    (
        "Pod/b9-timeout-without-unit",
        "duration-no-unit",
        "pre.hook.backup.velero.io/timeout",
    ),
    (
        "Pod/b10-timeout-in-days",
        "duration-unparseable",
        "pre.hook.backup.velero.io/timeout",
    ),
    (
        "Pod/b11-timeout-zero",
        "duration-not-positive",
        "pre.hook.backup.velero.io/timeout",
    ),
    (
        "Pod/b12-timeout-negative",
        "duration-not-positive",
        "post.hook.backup.velero.io/timeout",
    ),
    (
        "Pod/b13-timeout-over-4h",
        "duration-too-long",
        "pre.hook.backup.velero.io/timeout",
    ),
    (
        "Pod/b14-on-error-lowercase",
        "on-error-case",
        "pre.hook.backup.velero.io/on-error",
    ),
    (
        "Pod/b15-on-error-unknown",
        "on-error-unknown",
        "pre.hook.backup.velero.io/on-error",
    ),
    (
        "Pod/b17-container-missing",
        "container-missing",
        "pre.hook.backup.velero.io/container",
    ),
    (
        "Pod/b18-container-not-found",
        "container-not-found",
        "pre.hook.backup.velero.io/container",
    ),
    (
        "Pod/b27-typo-key",
        "unknown-key",
        "pre.hook.backup.velero.io/commands",
    ),
    (
        "Pod/shell-syntax-without-shell",
        "command-shell-syntax-without-shell",
        "pre.hook.backup.velero.io/command",
    ),
    (
        "Pod/e3-e5-e6-restore-hook",
        "restore-timeout-wrong-key",
        "post.hook.restore.velero.io/timeout",
    ),
    (
        "Pod/e3-e5-e6-restore-hook",
        "wait-for-ready-invalid",
        "post.hook.restore.velero.io/wait-for-ready",
    ),
    (
        "Pod/e3-e5-e6-restore-hook",
        "restore-wait-timeout-missing",
        "post.hook.restore.velero.io/wait-timeout",
    ),
    (
        "Pod/restore-hook-longer-than-velero-waits",
        "restore-hook-exceeds-velero-wait",
        "post.hook.restore.velero.io/exec-timeout",
    ),
    (
        "Pod/i2-init-without-command",
        "init-command-missing",
        "init.hook.restore.velero.io/command",
    ),
    (
        "StatefulSet/pg15-start-backup",
        "pg-exclusive-backup-removed",
        "pre.hook.backup.velero.io/command",
    ),
    (
        "StatefulSet/pg15-start-backup",
        "pg-exclusive-backup-removed",
        "post.hook.backup.velero.io/command",
    ),
    (
        "Deployment/mysql-ftwrl",
        "session-lock-ends-with-hook",
        "pre.hook.backup.velero.io/command",
    ),
    (
        "Pod/stale-injection",
        "template-drift",
        "velero-hook-injector.io/injected",
    ),
    (
        "Pod/inject-no",
        "control-value-invalid",
        "velero-hook-injector.io/inject",
    ),
    (
        "Pod/exclude-label-capitalised",
        "control-value-invalid",
        "velero.io/exclude-from-backup",
    ),
];

#[test]
fn render_check_reports_every_bad_pattern_as_json() {
    let out = run(&["render", "--check", "--output", "json", BAD]);
    assert_eq!(out.status.code(), Some(1), "stderr: {}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report on stdout");

    let mut found: BTreeSet<(String, String, String)> = BTreeSet::new();
    for pod in report["pods"].as_array().expect("pods") {
        assert_eq!(pod["file"], BAD);
        for f in pod["findings"].as_array().expect("findings") {
            let message = f["message"].as_str().expect("message");
            assert!(message.contains("Fix:"), "no fix in {f}");
            assert!(
                !message.contains('§'),
                "cites our internal notes, which users do not have: {f}"
            );
            assert!(
                f["severity"] == "error" || f["severity"] == "warning",
                "{f}"
            );
            found.insert((
                pod["name"].as_str().expect("name").to_owned(),
                f["rule"].as_str().expect("rule").to_owned(),
                f["key"].as_str().expect("key").to_owned(),
            ));
        }
    }
    let expected: BTreeSet<(String, String, String)> = EXPECTED
        .iter()
        .map(|(s, r, k)| ((*s).to_owned(), (*r).to_owned(), (*k).to_owned()))
        .collect();
    let missing: Vec<_> = expected.difference(&found).collect();
    let extra: Vec<_> = found.difference(&expected).collect();
    assert!(missing.is_empty(), "missing findings: {missing:#?}");
    assert!(extra.is_empty(), "unexpected findings: {extra:#?}");

    // 24 pod-bearing documents (the Service is not one), every one with findings.
    assert_eq!(report["summary"]["checked"], 24);
    assert_eq!(report["summary"]["withFindings"], 24);
    let errors = report["summary"]["errors"].as_u64().expect("errors");
    let warnings = report["summary"]["warnings"].as_u64().expect("warnings");
    assert_eq!(errors + warnings, EXPECTED.len() as u64);

    // The webhook's own warnings still go to stderr, like plain render.
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("Warning: StatefulSet/pg15-start-backup:"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "Warning: Pod/inject-no: velero-hook-injector: annotation velero-hook-injector.io/inject: \"no\" is neither true nor false"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains('§'), "{stderr}");
}

#[test]
fn render_check_table_names_each_manifest_and_summarises() {
    let out = run(&["render", "--check", BAD]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("POD"), "{stdout}");
    for (subject, rule, _) in EXPECTED {
        assert!(
            stdout
                .lines()
                .any(|l| l.contains(&format!("{BAD}: {subject} ")) && l.contains(rule)),
            "no row for {subject} {rule}:\n{stdout}"
        );
    }
    assert!(stdout.contains("24 of 24 pods checked in"), "{stdout}");
    // Messages are wrapped below their row; the fix is whole once the lines are joined.
    let joined = stdout.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        joined.contains(r#"Fix: write it as a JSON array: ["/sbin/fsfreeze","--freeze","/data"]"#),
        "{stdout}"
    );
}

#[test]
fn render_check_on_clean_manifests_exits_zero() {
    let out = run(&["render", "--check", CLEAN]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert_eq!(
        text(&out.stdout),
        format!("No findings: 2 pods checked in {CLEAN}.\n")
    );
    let out = run(&["render", "--check", "--output", "json", CLEAN]);
    assert_eq!(out.status.code(), Some(0));
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["pods"], serde_json::json!([]));
    assert_eq!(report["summary"]["checked"], 2);
}

#[test]
fn render_check_errors_exit_two() {
    let out = run(&["render", "--check", "/nonexistent/manifest.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("reading /nonexistent/manifest.yaml"),
        "{}",
        text(&out.stderr)
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let broken = dir.path().join("broken.yaml");
    std::fs::write(&broken, "kind: Pod\nmetadata: {name: [unclosed\n").expect("write");
    let out = run(&["render", "--check", broken.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("not valid YAML"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn render_without_check_is_unchanged() {
    let out = run(&["render", CLEAN]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("velero-hook-injector.io/injected: postgres/postgres"));
    // --output only makes sense with --check.
    let out = run(&["render", "--output", "json", CLEAN]);
    assert_eq!(out.status.code(), Some(2));
}

/// `kubectl get … -o yaml` prints a `kind: List`: its items are checked one by one.
#[test]
fn render_check_reads_a_kind_list() {
    let dir = tempfile::tempdir().expect("tempdir");
    let docs = std::fs::read_to_string(CLEAN).expect("read");
    let items: Vec<Value> = serde_yaml::Deserializer::from_str(&docs)
        .map(|d| serde::Deserialize::deserialize(d).expect("yaml"))
        .filter(|v: &Value| !v.is_null())
        .collect();
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""}, "items": items});
    let path = dir.path().join("list.yaml");
    std::fs::write(&path, serde_yaml::to_string(&list).expect("yaml")).expect("write");
    let path = path.to_str().expect("utf-8 path");
    let out = run(&["render", "--check", path]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert_eq!(
        text(&out.stdout),
        format!("No findings: 2 pods checked in {path}.\n")
    );
}

/// Nothing pod-bearing: not "0 pods checked" and exit 0, which a CI gate would take as clean.
#[test]
fn render_check_without_any_pod_says_so_and_exits_two() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("svc.yaml");
    std::fs::write(
        &path,
        "apiVersion: v1\nkind: Service\nmetadata: {name: pg}\n---\napiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: c}}\n",
    )
    .expect("write");
    let path = path.to_str().expect("utf-8 path");
    let out = run(&["render", "--check", path]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("holds no Pod or pod template (only ConfigMap, Service)"),
        "{stderr}"
    );
    assert!(stderr.contains("Nothing was checked"), "{stderr}");
    assert!(text(&out.stdout).is_empty());
    // Plain render still prints the manifests, and says there was nothing to inject into.
    let out = run(&["render", path]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains("kind: Service"));
    assert!(
        text(&out.stderr).contains("Note: ") && text(&out.stderr).contains("holds no Pod"),
        "{}",
        text(&out.stderr)
    );
}

fn kubeconfig(dir: &std::path::Path, server: &str) -> String {
    let path = dir.join("config");
    std::fs::write(
        &path,
        format!(
            r#"apiVersion: v1
kind: Config
current-context: test
clusters:
  - name: test
    cluster: {{server: "{server}", insecure-skip-tls-verify: true}}
users:
  - name: u
    user: {{token: "not-a-secret"}}
contexts:
  - name: test
    context: {{cluster: test, user: u, namespace: shop}}
"#
        ),
    )
    .expect("write kubeconfig");
    path.to_str().expect("utf-8 path").to_owned()
}

#[test]
fn audit_unreachable_cluster_exits_two_with_the_reason() {
    // A loopback port nothing listens on: connection refused at once.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = kubeconfig(dir.path(), &format!("https://127.0.0.1:{port}"));
    let out = run(&["audit", "--kubeconfig", &config]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("Error: listing pods in namespace shop"),
        "{stderr}"
    );
    assert!(stderr.contains("Connection refused"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn audit_bad_kubeconfig_or_flags_exit_two() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = kubeconfig(dir.path(), "https://127.0.0.1:1");
    let out = run(&["audit", "--kubeconfig", &config, "--context", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("nope"), "{}", text(&out.stderr));

    let out = run(&["audit", "-n", "a", "-A"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("cannot be used with"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn render_check_honours_the_file_system_backup_default() {
    // Manifests rendered while Backups took snapshots carry the CHECKPOINT hooks. Checked again
    // for a cluster that now defaults to file-system backup, the postgres pod is reported: its
    // hooks no longer make the copy consistent.
    let dir = tempfile::tempdir().expect("tempdir");
    let rendered = dir.path().join("rendered.yaml");
    let out = run(&["render", CLEAN]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    std::fs::write(&rendered, &out.stdout).expect("write");
    let path = rendered.to_str().expect("utf-8 path");

    let out = run(&["render", "--check", path]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));

    let out = run(&[
        "render",
        "--check",
        "--default-volumes-to-fs-backup",
        "--output",
        "json",
        path,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    let rules: Vec<&str> = report["pods"]
        .as_array()
        .expect("pods")
        .iter()
        .flat_map(|p| p["findings"].as_array().expect("findings"))
        .map(|f| f["rule"].as_str().expect("rule"))
        .collect();
    assert!(
        rules.contains(&"fs-backup-snapshot-hooks"),
        "{}",
        text(&out.stdout)
    );
}

/// A one-thread plain-HTTP API server for `audit`: answers each GET by path from `routes`
/// (404 otherwise), one request per connection, and records the paths asked for.
fn serve_api(
    routes: Vec<(&'static str, u16, String)>,
) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = std::sync::Arc::clone(&seen);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).map_or(true, |n| n == 0) || header == "\r\n" {
                    break;
                }
            }
            let target = request_line.split(' ').nth(1).unwrap_or("").to_owned();
            let path = target.split('?').next().unwrap_or("").to_owned();
            log.lock().expect("lock").push(path.clone());
            let (status, body) = routes
                .iter()
                .find(|(p, _, _)| *p == path)
                .map(|(_, s, b)| (*s, b.clone()))
                .unwrap_or((
                    404,
                    r#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404,"message":"the server could not find the requested resource"}"#.to_owned(),
                ));
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (url, seen)
}

/// A PostgreSQL pod with the user's own pre hook, opted out of injection: no finding of its own.
fn own_hook_pod_list() -> String {
    serde_json::json!({
        "kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"},
        "items": [{
            "metadata": {"name": "pg-0", "namespace": "shop", "labels": {"app": "pg"},
                "annotations": {
                    "velero-hook-injector.io/inject": "false",
                    "pre.hook.backup.velero.io/command": "[\"/bin/sync\"]",
                    "pre.hook.backup.velero.io/container": "postgres",
                    "pre.hook.backup.velero.io/on-error": "Continue",
                    "pre.hook.backup.velero.io/timeout": "60s"
                }},
            "spec": {"containers": [{"name": "postgres", "image": "postgres:16.4"}]},
            "status": {"phase": "Running"}
        }]
    })
    .to_string()
}

#[test]
fn audit_without_velero_crds_says_so_once_and_checks_the_pods() {
    let (url, seen) = serve_api(vec![(
        "/api/v1/namespaces/shop/pods",
        200,
        own_hook_pod_list(),
    )]);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = kubeconfig(dir.path(), &url);
    let out = run(&["audit", "--kubeconfig", &config]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        text(&out.stdout).contains("No findings: 1 pod checked"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(
        stderr.matches("info: no Velero Schedule resource").count(),
        1,
        "{stderr}"
    );
    assert!(
        seen.lock()
            .expect("lock")
            .contains(&"/apis/velero.io/v1/namespaces/velero/schedules".to_owned())
    );
}

#[test]
fn audit_reports_schedule_hooks_the_pods_own_hook_silences() {
    let schedules = serde_json::json!({
        "apiVersion": "velero.io/v1", "kind": "ScheduleList", "metadata": {"resourceVersion": "2"},
        "items": [{
            "apiVersion": "velero.io/v1", "kind": "Schedule",
            "metadata": {"name": "nightly", "namespace": "backup-system"},
            "spec": {"schedule": "0 3 * * *", "template": {
                "includedNamespaces": ["shop"],
                "hooks": {"resources": [{"name": "quiesce", "labelSelector": {"matchLabels": {"app": "pg"}},
                    "pre": [{"exec": {"container": "postgres", "command": ["/bin/sh", "-c", "psql -c CHECKPOINT"]}}]}]}
            }}
        }]
    })
    .to_string();
    let (url, _) = serve_api(vec![
        ("/api/v1/namespaces/shop/pods", 200, own_hook_pod_list()),
        (
            "/apis/velero.io/v1/namespaces/backup-system/schedules",
            200,
            schedules,
        ),
    ]);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = kubeconfig(dir.path(), &url);
    let out = run(&[
        "audit",
        "--kubeconfig",
        &config,
        "--velero-namespace",
        "backup-system",
        "-o",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    let findings = &report["pods"][0]["findings"];
    assert_eq!(findings.as_array().map(Vec::len), Some(1), "{report}");
    assert_eq!(findings[0]["rule"], "spec-hooks-shadowed");
    assert_eq!(findings[0]["key"], "pre.hook.backup.velero.io/command");
    let message = findings[0]["message"].as_str().expect("message");
    assert!(
        message.contains("Schedule backup-system/nightly"),
        "{message}"
    );
    assert!(
        !text(&out.stderr).contains("info:"),
        "{}",
        text(&out.stderr)
    );
}

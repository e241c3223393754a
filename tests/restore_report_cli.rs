//! The `restore-report` binary against a fake API server over plain HTTP (a kubeconfig points
//! at it): its table and JSON output and its exit codes (0 every database passed, 1 not every
//! one did, 2 error or usage, 4 not finished).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::{Command, Output};

use serde_json::{Value, json};
use velero_hook_injector::hooks::template::Library;

const BIN: &str = env!("CARGO_BIN_EXE_velero-hook-injector");
const RESTORE: &str = "r1";

/// A pod the restore brought back, with our hooks for `template`.
fn restored_pod(name: &str, template: &str) -> Value {
    let mut annotations = Library::builtin()
        .expect("templates")
        .get(template)
        .expect("template")
        .annotations("db");
    annotations.insert(
        "velero-hook-injector.io/injected".into(),
        format!("{template}/db"),
    );
    json!({"metadata": {"name": name, "namespace": "shop",
        "labels": {"velero.io/restore-name": RESTORE}, "annotations": annotations},
        "spec": {"containers": [{"name": "db", "image": "x"}]}})
}

fn hook_line(pod: &str, msg: &str, extra: &str) -> String {
    format!(
        r#"time="2026-12-05T07:01:09Z" level=info msg="{msg}" {extra}hookName="<from-annotation>" hookPhase=post hookSource=annotation hookType=exec pod=shop/{pod} restore={RESTORE}"#
    )
}

fn passed(pod: &str, t: &str) -> String {
    hook_line(
        pod,
        &format!("stdout: velero-hook[{t}]: restore check passed: {t} ok\\n"),
        "",
    )
}

/// Serves the Restore (`phase`), the restored pods and the server log until the test ends.
fn fake_api(phase: &str, pods: Vec<Value>, log: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let restore = json!({"apiVersion": "velero.io/v1", "kind": "Restore",
        "metadata": {"name": RESTORE, "namespace": "velero"},
        "status": {"phase": phase, "startTimestamp": "2026-12-05T07:00:00Z",
            "hookStatus": {"hooksAttempted": 2, "hooksFailed": 0}}});
    let pod_list = json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": pods});
    let servers = json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": [
        {"metadata": {"name": "velero-0", "namespace": "velero", "labels": {"deploy": "velero"}}}]});
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            let mut header = String::new();
            while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                header.clear();
            }
            let target = request.split_whitespace().nth(1).unwrap_or("");
            let path = target.split('?').next().unwrap_or("");
            let (code, kind, body) = match path {
                "/apis/velero.io/v1/namespaces/velero/restores/r1" => {
                    (200, "application/json", restore.to_string())
                }
                "/api/v1/pods" => (200, "application/json", pod_list.to_string()),
                "/api/v1/namespaces/velero/pods" => (200, "application/json", servers.to_string()),
                "/api/v1/namespaces/velero/pods/velero-0/log" => (200, "text/plain", log.clone()),
                _ => (
                    404,
                    "application/json",
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                        "reason": "NotFound", "code": 404, "message": "not found"})
                    .to_string(),
                ),
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {code} X\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://127.0.0.1:{port}")
}

fn run(server: &str, args: &[&str]) -> Output {
    let dir = tempfile::tempdir().expect("tmp");
    let kubeconfig = dir.path().join("config");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster: {{server: \"{server}\"}}\nusers:\n- name: u\n  user: {{}}\ncontexts:\n- name: fake\n  context: {{cluster: fake, user: u, namespace: default}}\ncurrent-context: fake\n"
        ),
    )
    .expect("kubeconfig");
    Command::new(BIN)
        .args(args)
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .expect("run the binary")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn every_database_passed_exits_0_with_a_table() {
    let log = [passed("pg-0", "postgres"), passed("my-0", "mysql")].join("\n");
    let server = fake_api(
        "Completed",
        vec![
            restored_pod("pg-0", "postgres"),
            restored_pod("my-0", "mysql"),
        ],
        log,
    );
    let out = run(&server, &["restore-report", RESTORE]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.starts_with("Restore r1: Completed (hooks attempted 2"),
        "{stdout}"
    );
    assert!(
        stdout.contains("velero-hook[postgres]: restore check passed: postgres ok"),
        "{stdout}"
    );
    assert!(
        stdout.contains("2 databases: 2 passed, 0 failed"),
        "{stdout}"
    );
}

#[test]
fn a_failed_database_exits_1_and_json_says_which() {
    let log = [
        passed("pg-0", "postgres"),
        hook_line(
            "my-0",
            "stderr: velero-hook[mysql]: ERROR: no answer within 600s\\n",
            "",
        ),
        hook_line(
            "my-0",
            "Error executing hook",
            "error=\"command terminated with exit code 1\" ",
        ),
    ]
    .join("\n");
    let server = fake_api(
        "PartiallyFailed",
        vec![
            restored_pod("pg-0", "postgres"),
            restored_pod("my-0", "mysql"),
        ],
        log,
    );
    let out = run(&server, &["restore-report", RESTORE, "-o", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(v["verdict"], "not-all-passed");
    let my = v["databases"]
        .as_array()
        .expect("databases")
        .iter()
        .find(|d| d["pod"] == "my-0")
        .expect("my-0");
    assert_eq!(my["result"], "failed");
    assert_eq!(
        my["summary"],
        "velero-hook[mysql]: ERROR: no answer within 600s"
    );
}

#[test]
fn an_unfinished_restore_exits_4() {
    let server = fake_api(
        "Finalizing",
        vec![restored_pod("pg-0", "postgres")],
        String::new(),
    );
    let out = run(&server, &["restore-report", RESTORE]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("still running"));
}

#[test]
fn errors_and_usage_mistakes_exit_2_saying_what_to_do() {
    let server = fake_api("Completed", vec![], String::new());
    let out = run(&server, &["restore-report", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with("Error: no Restore named \"nope\" in namespace velero: list them with `velero restore get`"),
        "{stderr}"
    );
    // --timeout means nothing without --wait.
    let out = run(&server, &["restore-report", RESTORE, "--timeout", "5m"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--wait"),
        "{}",
        text(&out.stderr)
    );
}

//! `restore-report` against kube's mockable client service: a Restore, the pods it restored and
//! the Velero server's log, shaped as Velero writes them (logfmt from the standard logrus logger
//! the restore hooks use, JSON from a JSON-format server, and the mix a `--log-format json`
//! server really writes), with passing, failing, not-run and still-running databases.

#[path = "common/mock_api.rs"]
mod mock_api;
use mock_api::{json_response, respond};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock;
use velero_hook_injector::cluster::restore_report::{Outcome, Report, Verdict};
use velero_hook_injector::cluster::restore_source::{self, SourceError, Target};
use velero_hook_injector::hooks::template::Library;

type Handle = mock::Handle<Request<Body>, Response<Body>>;

const RESTORE: &str = "nightly-20261205";

fn library() -> Library {
    Library::builtin().expect("built-in templates")
}

fn target(restore: &str) -> Target {
    Target {
        restore: restore.into(),
        velero_namespace: "velero".into(),
    }
}

/// 200 with this JSON body.
fn ok_json(body: &Value) -> Response<Body> {
    json_response(StatusCode::OK, body)
}

fn api_status(code: u16, reason: &str, message: &str) -> Response<Body> {
    let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
        "message": message, "reason": reason, "code": code});
    json_response(StatusCode::from_u16(code).expect("code"), &body)
}

/// The Restore as Velero leaves it (status as `velero restore get -o json` shows it).
fn restore_object(phase: &str, attempted: u32, failed: u32) -> Value {
    json!({
        "apiVersion": "velero.io/v1", "kind": "Restore",
        "metadata": {"name": RESTORE, "namespace": "velero", "uid": "r-uid", "resourceVersion": "91"},
        "spec": {"backupName": "nightly-20261205010000", "hooks": {}},
        "status": {
            "phase": phase,
            "startTimestamp": "2026-12-05T07:00:00Z",
            "progress": {"itemsRestored": 41, "totalItems": 41},
            "hookStatus": {"hooksAttempted": attempted, "hooksFailed": failed},
            "errors": failed,
            "warnings": 3
        }
    })
}

/// A pod Velero restored, with our hooks as the webhook injected them for `template`.
fn restored_pod(name: &str, template: &str, restore_label: &str) -> Value {
    let mut annotations = library().get(template).expect("template").annotations("db");
    annotations.insert(
        "velero-hook-injector.io/injected".into(),
        format!("{template}/db"),
    );
    json!({
        "metadata": {"name": name, "namespace": "shop", "uid": format!("uid-{name}"),
            "labels": {"velero.io/restore-name": restore_label, "velero.io/backup-name": "nightly-20261205010000"},
            "annotations": annotations},
        "spec": {"containers": [{"name": "db", "image": format!("{template}:latest")}]},
        "status": {"phase": "Running"}
    })
}

/// A restored pod that is not a database: no hook, not reported.
fn web_pod(restore_label: &str) -> Value {
    json!({
        "metadata": {"name": "web-0", "namespace": "shop", "labels": {"velero.io/restore-name": restore_label}},
        "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}
    })
}

fn list(items: Vec<Value>) -> Value {
    json!({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "7"}, "items": items})
}

/// In a fake server log: what comes before it is the log of the server's previous run (the pod
/// then says its container restarted once), what follows, the current run's.
const RESTART: &str = "\n--- the Velero server restarted here ---\n";

/// The Velero server pod as the Helm chart labels it (`name=velero`).
fn server_pod(restarts: u32) -> Value {
    json!({
        "metadata": {"name": "velero-7d9f8-x2x4z", "namespace": "velero", "labels": {"name": "velero"}},
        "spec": {"containers": [{"name": "velero", "image": "velero/velero:v1.18.1"}]},
        "status": {"phase": "Running", "containerStatuses": [{"name": "velero", "ready": true,
            "restartCount": restarts, "image": "velero/velero:v1.18.1", "imageID": "",
            "state": {"running": {"startedAt": "2026-12-01T00:00:00Z"}}}]}
    })
}

/// Logfmt hook lines exactly as logrus' TextFormatter writes them for Velero's standard
/// logger: time, level, msg first, the other fields sorted, values quoted with Go's %q.
fn logfmt_hook_log(restore: &str) -> String {
    let f = |pod: &str| {
        format!(
            r#"hookCommand="[/bin/sh -c T=x]" hookContainer=db hookName="<from-annotation>" hookOnError=Continue hookPhase=post hookSource=annotation hookTimeout="{{10m0s}}" hookType=exec pod={pod} restore={restore}"#
        )
    };
    [
        format!(r#"time="2026-12-05T07:01:00Z" level=info msg="running exec hook" {}"#, f("shop/pg-0")),
        format!(r#"time="2026-12-05T07:01:09Z" level=info msg="stdout: velero-hook[postgres]: restore check passed: PostgreSQL 16.4, primary, up after 9s; databases: shop(12 tables, 48 MB)\n" {}"#, f("shop/pg-0")),
        format!(r#"time="2026-12-05T07:01:09Z" level=info msg="stderr: " {}"#, f("shop/pg-0")),
        format!(r#"time="2026-12-05T07:01:02Z" level=info msg="running exec hook" {}"#, f("shop/my-0")),
        format!(r#"time="2026-12-05T07:01:30Z" level=info msg="stdout: " {}"#, f("shop/my-0")),
        format!(r#"time="2026-12-05T07:01:30Z" level=info msg="stderr: velero-hook[mysql]: ERROR: a table cannot be read (copy incomplete): ERROR 1812 (HY000) at line 3: Tablespace is missing for table `shop`.`orders`. \n" {}"#, f("shop/my-0")),
        format!(r#"time="2026-12-05T07:01:30Z" level=error msg="Error executing hook" error="command terminated with exit code 1" {}"#, f("shop/my-0")),
        format!(r#"time="2026-12-05T07:01:30Z" level=error msg="hook <from-annotation> in container db in pod shop/mongo-0 not executed: context canceled" hookPhase=post hookSource=annotation hookType=exec restore={restore}"#),
        format!(r#"time="2026-12-05T07:01:31Z" level=info msg="Container db is not up: post-restore hooks will not yet be executed" pod=shop/redis-0 restore={restore}"#),
    ]
    .join("\n")
}

/// The same records as a JSON-format logger writes them (`error.message` for the error).
fn json_hook_log(restore: &str) -> String {
    let line = |level: &str, msg: &str, pod: Option<&str>, error: Option<&str>| {
        let mut v = json!({"hookCommand": ["/bin/sh", "-c", "T=x"], "hookContainer": "db",
            "hookName": "<from-annotation>", "hookPhase": "post", "hookSource": "annotation",
            "hookType": "exec", "level": level, "msg": msg, "restore": restore,
            "time": "2026-12-05T07:01:00Z"});
        if let Some(p) = pod {
            v["pod"] = json!(p);
        }
        if let Some(e) = error {
            v["error.message"] = json!(e);
        }
        v.to_string()
    };
    [
        line("info", "stdout: velero-hook[postgres]: restore check passed: PostgreSQL 16.4, primary, up after 9s; databases: shop(12 tables, 48 MB)\n", Some("shop/pg-0"), None),
        line("info", "stderr: velero-hook[mysql]: ERROR: a table cannot be read (copy incomplete): ERROR 1812 (HY000) at line 3: Tablespace is missing for table `shop`.`orders`. \n", Some("shop/my-0"), None),
        line("error", "Error executing hook", Some("shop/my-0"), Some("command terminated with exit code 1")),
        line("error", "hook <from-annotation> in container db in pod shop/mongo-0 not executed: context canceled", None, None),
        line("info", "Container db is not up: post-restore hooks will not yet be executed", Some("shop/redis-0"), None),
    ]
    .join("\n")
}

/// What the fake API server saw.
#[derive(Default)]
struct Seen {
    paths: Vec<String>,
}

/// Answers every request by path until the client is dropped.
fn serve(
    mut handle: Handle,
    restores: Vec<Value>,
    pods: Vec<Value>,
    log: String,
    log_status: Option<u16>,
) -> (Arc<Mutex<Seen>>, tokio::task::JoinHandle<()>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let record = seen.clone();
    let task = tokio::spawn(async move {
        let mut restore_reads = 0usize;
        while let Some((req, send)) = handle.next_request().await {
            let path = req.uri().path().to_owned();
            let query = req.uri().query().unwrap_or("").to_owned();
            record
                .lock()
                .expect("lock")
                .paths
                .push(format!("{path}?{query}"));
            let response = match path.as_str() {
                p if p == format!("/apis/velero.io/v1/namespaces/velero/restores/{RESTORE}") => {
                    let i = restore_reads.min(restores.len() - 1);
                    restore_reads += 1;
                    ok_json(&restores[i])
                }
                p if p.starts_with("/apis/velero.io/v1/namespaces/velero/restores/") => {
                    api_status(404, "NotFound", "restores.velero.io \"x\" not found")
                }
                "/api/v1/pods" => ok_json(&list(pods.clone())),
                "/api/v1/namespaces/velero/pods" if query.contains("deploy%3Dvelero") => {
                    ok_json(&list(vec![]))
                }
                "/api/v1/namespaces/velero/pods" => {
                    ok_json(&list(vec![server_pod(u32::from(log.contains(RESTART)))]))
                }
                "/api/v1/namespaces/velero/pods/velero-7d9f8-x2x4z/log" => match log_status {
                    Some(code) => api_status(
                        code,
                        "Forbidden",
                        "pods \"velero-7d9f8-x2x4z\" is forbidden: User \"jane\" cannot get resource \"pods/log\" in API group \"\" in the namespace \"velero\"",
                    ),
                    None => {
                        let (previous, current) = log.split_once(RESTART).unwrap_or(("", &log));
                        let part = if query.contains("previous=true") {
                            previous
                        } else {
                            current
                        };
                        respond(StatusCode::OK, "text/plain", part.as_bytes().to_vec())
                    }
                },
                other => panic!("unexpected request {other}?{query}"),
            };
            send.send_response(response);
        }
    });
    (seen, task)
}

fn four_databases(label: &str) -> Vec<Value> {
    vec![
        restored_pod("pg-0", "postgres", label),
        restored_pod("my-0", "mysql", label),
        restored_pod("mongo-0", "mongodb", label),
        restored_pod("redis-0", "redis", label),
        web_pod(label),
    ]
}

async fn report_with_log(log: String, phase: &str) -> (Report, Vec<String>) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let (seen, task) = serve(
        handle,
        vec![restore_object(phase, 3, 2)],
        four_databases(RESTORE),
        log,
        None,
    );
    let report = restore_source::report(&client, &target(RESTORE), &library())
        .await
        .expect("report");
    drop(client);
    task.await.expect("fake API");
    let paths = seen.lock().expect("lock").paths.clone();
    (report, paths)
}

fn result_of<'a>(
    report: &'a Report,
    pod: &str,
) -> &'a velero_hook_injector::cluster::restore_report::DatabaseResult {
    report
        .databases
        .iter()
        .find(|d| d.pod == pod)
        .unwrap_or_else(|| panic!("{pod} not in the report: {report:?}"))
}

fn assert_four_outcomes(report: &Report) {
    assert_eq!(report.databases.len(), 4, "web-0 has no hook: {report:?}");
    let pg = result_of(report, "pg-0");
    assert_eq!(pg.result, Outcome::Passed);
    assert_eq!(pg.database, "postgresql");
    assert_eq!(
        pg.summary.as_deref(),
        Some(
            "velero-hook[postgres]: restore check passed: PostgreSQL 16.4, primary, up after 9s; databases: shop(12 tables, 48 MB)"
        )
    );
    let my = result_of(report, "my-0");
    assert_eq!(my.result, Outcome::Failed);
    assert!(
        my.summary.as_deref().is_some_and(|s| s
            .starts_with("velero-hook[mysql]: ERROR: a table cannot be read")
            && s.contains("`shop`.`orders`")),
        "{my:?}"
    );
    assert_eq!(
        my.detail.as_deref(),
        Some("command terminated with exit code 1")
    );
    let mongo = result_of(report, "mongo-0");
    assert_eq!(mongo.result, Outcome::NotRun);
    assert!(
        mongo
            .detail
            .as_deref()
            .is_some_and(|d| d.contains("context canceled"))
    );
    let redis = result_of(report, "redis-0");
    assert_eq!(redis.result, Outcome::StillRunning);
    assert!(
        redis
            .detail
            .as_deref()
            .is_some_and(|d| d.contains("is not up"))
    );
    // A failure is known already: the restore cannot end well for every database.
    assert_eq!(report.verdict, Verdict::NotAllPassed);
}

#[tokio::test]
async fn logfmt_server_log_gives_each_database_its_result() {
    let noise = format!(
        "time=\"2026-12-05T06:59:00Z\" level=info msg=\"Setting up backup log\" backup=velero/other logSource=\"pkg/controller/backup_controller.go:600\"\n{}",
        logfmt_hook_log("other-restore").replace("restore check passed", "WRONG RESTORE")
    );
    let log = format!("{noise}\n{}\n", logfmt_hook_log(RESTORE));
    let (report, paths) = report_with_log(log, "FinalizingPartiallyFailed").await;
    assert_four_outcomes(&report);
    assert_eq!(report.status.hook_status.hooks_attempted, 3);
    // The restored pods are found by Velero's label in every namespace; the server's log is
    // read from the restore's start (less a margin for clocks) in its container.
    assert!(
        paths.iter().any(|p| p.starts_with("/api/v1/pods?")
            && p.contains("labelSelector=velero.io%2Frestore-name%3Dnightly-20261205")),
        "{paths:?}"
    );
    assert!(
        paths.iter().any(|p| p.contains("/log?")
            && p.contains("container=velero")
            && p.contains("sinceTime=2026-12-05T06%3A55%3A00Z")),
        "{paths:?}"
    );
    // Table: one row per database with its summary line, and the counts.
    let table = report.to_table();
    assert!(table.starts_with("Restore nightly-20261205: FinalizingPartiallyFailed (hooks attempted 3, failed 2; errors 2, warnings 3)\n"), "{table}");
    assert!(table.contains("shop/my-0"), "{table}");
    assert!(
        table.contains("velero: command terminated with exit code 1"),
        "{table}"
    );
    assert!(
        table.contains("4 databases: 1 passed, 1 failed, 1 not run, 1 still running"),
        "{table}"
    );
    assert!(
        !table.contains("WRONG RESTORE"),
        "another restore's lines leaked in: {table}"
    );
    // JSON: the same, for machines.
    let v: Value = serde_json::from_str(&report.to_json()).expect("json output");
    assert_eq!(v["restore"], RESTORE);
    assert_eq!(v["verdict"], "not-all-passed");
    assert_eq!(v["status"]["phase"], "FinalizingPartiallyFailed");
    let results: Vec<(&str, &str)> = v["databases"]
        .as_array()
        .expect("databases")
        .iter()
        .map(|d| {
            (
                d["pod"].as_str().unwrap_or(""),
                d["result"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        results,
        [
            ("mongo-0", "not-run"),
            ("my-0", "failed"),
            ("pg-0", "passed"),
            ("redis-0", "still-running")
        ]
    );
}

#[tokio::test]
async fn a_restarted_server_s_previous_log_is_read_too() {
    let lines: Vec<String> = logfmt_hook_log(RESTORE)
        .lines()
        .map(str::to_owned)
        .collect();
    // pg-0's hook ran before the server restarted; the others after.
    let (before, after) = lines.split_at(3);
    let log = format!("{}{RESTART}{}", before.join("\n"), after.join("\n"));
    let (report, paths) = report_with_log(log, "FinalizingPartiallyFailed").await;
    assert_four_outcomes(&report);
    assert!(
        paths.iter().any(|p| p.contains("previous=true")),
        "{paths:?}"
    );
}

#[tokio::test]
async fn json_server_log_gives_the_same_results() {
    let log = format!(
        "{{\"level\":\"info\",\"logSource\":\"pkg/cmd/server/server.go:300\",\"msg\":\"Starting Velero server v1.18.1\",\"time\":\"2026-12-05T06:00:00Z\"}}\n{}\n",
        json_hook_log(RESTORE)
    );
    let (report, _) = report_with_log(log, "FinalizingPartiallyFailed").await;
    assert_four_outcomes(&report);
}

#[tokio::test]
async fn a_json_format_server_with_logfmt_hook_lines_is_read_too() {
    // What `--log-format json` really gives: the server's own lines in JSON, the restore hooks'
    // lines (standard logrus logger) in logfmt, interleaved.
    let json = json_hook_log("older-restore");
    let text = logfmt_hook_log(RESTORE);
    let mixed: Vec<&str> = json
        .lines()
        .zip(text.lines())
        .flat_map(|(a, b)| [a, b])
        .chain(text.lines().skip(json.lines().count()))
        .collect();
    let (report, _) = report_with_log(mixed.join("\n"), "FinalizingPartiallyFailed").await;
    assert_four_outcomes(&report);
}

#[tokio::test]
async fn wait_reads_the_restore_until_it_is_finished() {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let passed = |pod: &str, t: &str| {
        format!(
            r#"time="2026-12-05T07:01:09Z" level=info msg="stdout: velero-hook[{t}]: restore check passed: {t} is fine\n" hookName="<from-annotation>" hookPhase=post hookSource=annotation hookType=exec pod=shop/{pod} restore={RESTORE}"#
        )
    };
    let log = [passed("pg-0", "postgres"), passed("my-0", "mysql")].join("\n");
    let (seen, task) = serve(
        handle,
        vec![
            restore_object("InProgress", 0, 0),
            restore_object("Finalizing", 1, 0),
            restore_object("Completed", 2, 0),
        ],
        vec![
            restored_pod("pg-0", "postgres", RESTORE),
            restored_pod("my-0", "mysql", RESTORE),
        ],
        log,
        None,
    );
    let report = restore_source::report_when_finished(
        &client,
        &target(RESTORE),
        &library(),
        Duration::from_millis(5),
        Duration::from_secs(30),
    )
    .await
    .expect("report");
    drop(client);
    task.await.expect("fake API");
    assert_eq!(report.status.phase, "Completed");
    assert_eq!(report.verdict, Verdict::AllPassed, "{}", report.to_table());
    let reads = seen
        .lock()
        .expect("lock")
        .paths
        .iter()
        .filter(|p| p.contains("/restores/"))
        .count();
    assert!(reads >= 3, "polled until Completed: {reads} reads");
}

#[tokio::test]
async fn wait_gives_up_after_its_timeout_and_says_not_finished() {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let (_seen, task) = serve(
        handle,
        vec![restore_object("Finalizing", 0, 0)],
        vec![restored_pod("pg-0", "postgres", RESTORE)],
        String::new(),
        None,
    );
    let report = restore_source::report_when_finished(
        &client,
        &target(RESTORE),
        &library(),
        Duration::from_millis(5),
        Duration::from_millis(30),
    )
    .await
    .expect("report");
    drop(client);
    task.await.expect("fake API");
    assert_eq!(report.verdict, Verdict::NotFinished);
    assert_eq!(report.databases[0].result, Outcome::StillRunning);
    assert!(report.to_table().contains("--wait"));
}

#[tokio::test]
async fn a_long_restore_name_is_looked_up_by_velero_s_shortened_label() {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let long = "restore-of-the-nightly-schedule-for-the-production-databases-20261205070000";
    let (seen, task) = serve(
        handle,
        vec![restore_object("Completed", 0, 0)],
        vec![],
        String::new(),
        None,
    );
    // The fake knows the Restore under RESTORE only: this one is not found.
    let err = restore_source::report(&client, &target(long), &library())
        .await
        .expect_err("no such restore");
    assert!(matches!(err, SourceError::NoRestore { .. }), "{err}");
    assert!(err.to_string().contains("velero restore get"), "{err}");
    let err = restore_source::restored_pods(&client, &target(long)).await;
    drop(client);
    task.await.expect("fake API");
    assert!(err.expect("pods").is_empty());
    let paths = seen.lock().expect("lock").paths.clone();
    assert!(
        paths.iter().any(|p| p.contains("velero.io%2Frestore-name%3Drestore-of-the-nightly-schedule-for-the-production-databa56491e")),
        "{paths:?}"
    );
}

#[tokio::test]
async fn a_missing_permission_names_the_verb_the_resource_and_the_chart_value() {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let (_seen, task) = serve(
        handle,
        vec![restore_object("Completed", 1, 0)],
        vec![restored_pod("pg-0", "postgres", RESTORE)],
        String::new(),
        Some(403),
    );
    let err = restore_source::report(&client, &target(RESTORE), &library())
        .await
        .expect_err("forbidden");
    drop(client);
    task.await.expect("fake API");
    let text = err.to_string();
    assert!(
        text.starts_with("not allowed to get pods/log in namespace velero"),
        "{text}"
    );
    assert!(text.contains("restoreReport.rbac.create=true"), "{text}");
    assert!(
        text.contains("kubectl auth can-i get pods/log -n velero"),
        "{text}"
    );
}

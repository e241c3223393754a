//! `audit` against kube's mockable client service: the list requests it sends (path, paging,
//! scope) and the report it builds from a realistic PodList.

#[path = "common/mock_api.rs"]
mod mock_api;
use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use mock_api::json_response;
use serde_json::{Value, json};
use tower_test::mock;
use velero_hook_injector::cluster::audit::{self, AuditError, Scope};
use velero_hook_injector::hooks::rules::rule;
use velero_hook_injector::hooks::template::Library;
use velero_hook_injector::pod::backup_method::ClusterDefaults;

type Handle = mock::Handle<Request<Body>, Response<Body>>;

fn mock_client() -> (kube::Client, Handle) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (kube::Client::new(service, "default"), handle)
}

fn library() -> Library {
    Library::builtin().expect("built-in templates")
}

/// The query string as key/value pairs.
fn query(req: &Request<Body>) -> Vec<(String, String)> {
    req.uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

fn has(q: &[(String, String)], key: &str, value: &str) -> bool {
    q.iter().any(|(k, v)| k == key && v == value)
}

/// A pod as the API server returns it (status, managed fields, uid, the works).
fn pod(ns: &str, name: &str, image: &str, annotations: Value, phase: &str) -> Value {
    json!({
        "metadata": {
            "name": name,
            "namespace": ns,
            "uid": format!("uid-{name}"),
            "resourceVersion": "4711",
            "creationTimestamp": "2026-11-01T10:00:00Z",
            "labels": {"app.kubernetes.io/name": name.trim_end_matches("-0")},
            "annotations": annotations,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": name.trim_end_matches("-0"), "uid": "sts-uid", "controller": true, "blockOwnerDeletion": true}],
            "managedFields": [{"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1", "time": "2026-11-01T10:00:00Z", "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {}}}]
        },
        "spec": {
            "containers": [{
                "name": "db",
                "image": image,
                // As the charts give it (the mysql hooks log in with it).
                "env": [{"name": "MYSQL_ROOT_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "root-password"}}}],
                "ports": [{"containerPort": 5432, "protocol": "TCP"}],
                "resources": {},
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
                "imagePullPolicy": "IfNotPresent",
                "volumeMounts": [
                    {"name": "data", "mountPath": "/var/lib/data"},
                    {"name": "kube-api-access-x", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}
                ]
            }],
            "volumes": [
                {"name": "data", "persistentVolumeClaim": {"claimName": format!("data-{name}")}},
                {"name": "kube-api-access-x", "projected": {"sources": [{"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}], "defaultMode": 420}}
            ],
            "restartPolicy": "Always",
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default",
            "nodeName": "worker-1",
            "schedulerName": "default-scheduler",
            "enableServiceLinks": true
        },
        "status": {
            "phase": phase,
            "podIP": "10.244.1.7",
            "startTime": "2026-11-01T10:00:01Z",
            "containerStatuses": [{"name": "db", "ready": true, "restartCount": 0, "image": image, "imageID": "", "started": true, "state": {"running": {"startedAt": "2026-11-01T10:00:03Z"}}}]
        }
    })
}

fn pod_list(items: Vec<Value>, cont: Option<&str>) -> Value {
    let mut metadata = json!({"resourceVersion": "4712"});
    if let Some(c) = cont {
        metadata["continue"] = json!(c);
        metadata["remainingItemCount"] = json!(1);
    }
    json!({"kind": "PodList", "apiVersion": "v1", "metadata": metadata, "items": items})
}

/// Injected hooks from the current postgres template: clean.
fn current_postgres_annotations() -> Value {
    let lib = library();
    let mut a = lib.get("postgres").expect("postgres").annotations("db");
    a.insert(
        "velero-hook-injector.io/injected".into(),
        "postgres/db".into(),
    );
    serde_json::to_value(a).expect("map")
}

#[tokio::test]
async fn audits_one_namespace_with_a_single_list_request() {
    let (client, mut handle) = mock_client();
    let server = tokio::spawn(async move {
        let (req, send) = handle.next_request().await.expect("a list request");
        assert_eq!(req.method(), Method::GET);
        assert_eq!(req.uri().path(), "/api/v1/namespaces/shop/pods");
        let q = query(&req);
        assert!(has(&q, "limit", "500"), "{q:?}");
        assert!(!q.iter().any(|(k, _)| k == "continue"), "{q:?}");
        let items = vec![
            // Clean: injected from the current template.
            pod(
                "shop",
                "pg-0",
                "postgres:16.4",
                current_postgres_annotations(),
                "Running",
            ),
            // A database without hooks.
            pod("shop", "mysql-0", "mysql:8.0.36", json!({}), "Running"),
            // Hand-written broken hooks on PostgreSQL 16.
            pod(
                "shop",
                "legacy-pg-0",
                "postgres:16",
                json!({
                    "pre.hook.backup.velero.io/command": "psql -c \"SELECT pg_start_backup('velero')\"",
                    "pre.hook.backup.velero.io/timeout": "300",
                    "pre.hook.backup.velero.io/on-error": "fail"
                }),
                "Running",
            ),
            // Not a database, no hooks: not listed.
            pod("shop", "web-0", "nginx:1.27", json!({}), "Running"),
            // Finished pods get no hooks from Velero: not checked.
            pod(
                "shop",
                "old-0",
                "postgres:16",
                json!({"pre.hook.backup.velero.io/command": "x y"}),
                "Succeeded",
            ),
        ];
        send.send_response(json_response(StatusCode::OK, &pod_list(items, None)));
    });

    let report = audit::audit(
        &client,
        &Scope::Namespace("shop".into()),
        &library(),
        ClusterDefaults::default(),
    )
    .await
    .expect("audit");
    server.await.expect("mock server");

    assert_eq!(report.scope, "namespace shop");
    assert_eq!(report.summary.checked, 4);
    assert_eq!(report.summary.with_findings, 2);
    let names: Vec<&str> = report.pods.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["mysql-0", "legacy-pg-0"]);

    let mysql = &report.pods[0];
    assert_eq!(mysql.namespace.as_deref(), Some("shop"));
    assert_eq!(mysql.findings.len(), 1);
    assert_eq!(mysql.findings[0].rule_id, rule::MISSING_HOOKS);

    let legacy: Vec<&str> = report.pods[1].findings.iter().map(|f| f.rule_id).collect();
    for expected in [
        rule::COMMAND_PLAIN_STRING,
        rule::PG_EXCLUSIVE_BACKUP,
        rule::DURATION_NO_UNIT,
        rule::ON_ERROR_CASE,
        rule::CONTAINER_MISSING,
    ] {
        assert!(
            legacy.contains(&expected),
            "{expected} missing in {legacy:?}"
        );
    }
    assert!(report.has_findings());

    let table = report.to_table();
    assert!(table.starts_with("POD"), "{table}");
    assert!(table.contains("shop/legacy-pg-0"), "{table}");
    assert!(table.contains("command-plain-string"), "{table}");
    assert!(
        table.contains("2 of 4 pods checked in namespace shop have findings"),
        "{table}"
    );

    let json: Value = serde_json::from_str(&report.to_json()).expect("json");
    assert_eq!(json["summary"]["checked"], 4);
    assert_eq!(json["summary"]["withFindings"], 2);
    assert_eq!(json["pods"][0]["namespace"], "shop");
    assert_eq!(json["pods"][0]["findings"][0]["rule"], "missing-hooks");
    assert_eq!(json["pods"][0]["findings"][0]["severity"], "warning");
    assert_eq!(
        json["pods"][0]["findings"][0]["key"],
        "pre.hook.backup.velero.io/command"
    );
}

#[tokio::test]
async fn all_namespaces_follows_continue_tokens() {
    let (client, mut handle) = mock_client();
    let server = tokio::spawn(async move {
        let (req, send) = handle.next_request().await.expect("first page");
        assert_eq!(req.uri().path(), "/api/v1/pods");
        assert!(has(&query(&req), "limit", "500"));
        let first = vec![pod(
            "a",
            "pg-0",
            "postgres:16",
            current_postgres_annotations(),
            "Running",
        )];
        send.send_response(json_response(
            StatusCode::OK,
            &pod_list(first, Some("tok-2")),
        ));

        let (req, send) = handle.next_request().await.expect("second page");
        assert_eq!(req.uri().path(), "/api/v1/pods");
        let q = query(&req);
        assert!(has(&q, "continue", "tok-2"), "{q:?}");
        assert!(has(&q, "limit", "500"), "{q:?}");
        let second = vec![pod("b", "redis-0", "redis:7.2", json!({}), "Running")];
        send.send_response(json_response(StatusCode::OK, &pod_list(second, None)));
    });

    let report = audit::audit(
        &client,
        &Scope::AllNamespaces,
        &library(),
        ClusterDefaults::default(),
    )
    .await
    .expect("audit");
    server.await.expect("mock server");
    assert_eq!(report.scope, "all namespaces");
    assert_eq!(report.summary.checked, 2);
    assert_eq!(report.pods.len(), 1);
    assert_eq!(report.pods[0].namespace.as_deref(), Some("b"));
    assert_eq!(report.pods[0].findings[0].rule_id, rule::MISSING_HOOKS);
}

#[tokio::test]
async fn clean_namespace_reports_no_findings() {
    let (client, mut handle) = mock_client();
    let server = tokio::spawn(async move {
        let (_req, send) = handle.next_request().await.expect("request");
        let items = vec![pod(
            "db",
            "pg-0",
            "postgres:16",
            current_postgres_annotations(),
            "Running",
        )];
        send.send_response(json_response(StatusCode::OK, &pod_list(items, None)));
    });
    let report = audit::audit(
        &client,
        &Scope::Namespace("db".into()),
        &library(),
        ClusterDefaults::default(),
    )
    .await
    .expect("audit");
    server.await.expect("mock server");
    assert!(!report.has_findings());
    assert_eq!(
        report.to_table(),
        "No findings: 1 pod checked in namespace db.\n"
    );
}

#[tokio::test]
async fn forbidden_list_is_an_error_with_an_rbac_hint() {
    let (client, mut handle) = mock_client();
    let server = tokio::spawn(async move {
        let (_req, send) = handle.next_request().await.expect("request");
        let status = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "pods is forbidden: User \"system:serviceaccount:ci:auditor\" cannot list resource \"pods\" in API group \"\" in the namespace \"shop\"",
            "reason": "Forbidden", "details": {"kind": "pods"}, "code": 403
        });
        send.send_response(json_response(StatusCode::FORBIDDEN, &status));
    });
    let err = audit::audit(
        &client,
        &Scope::Namespace("shop".into()),
        &library(),
        ClusterDefaults::default(),
    )
    .await
    .expect_err("forbidden");
    server.await.expect("mock server");
    assert!(matches!(err, AuditError::List { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("listing pods in namespace shop"), "{text}");
    assert!(text.contains("cannot list resource"), "{text}");
    assert!(
        text.contains("kubectl auth can-i list pods -n shop"),
        "{text}"
    );
}

#[tokio::test]
async fn explicit_kubeconfig_and_context_select_the_cluster_and_namespace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("config");
    std::fs::write(
        &path,
        r#"apiVersion: v1
kind: Config
current-context: dev
clusters:
  - name: dev
    cluster: {server: "https://127.0.0.1:6443", insecure-skip-tls-verify: true}
  - name: prod
    cluster: {server: "https://127.0.0.1:7443", insecure-skip-tls-verify: true}
users:
  - name: u
    user: {token: "not-a-secret"}
contexts:
  - name: dev
    context: {cluster: dev, user: u, namespace: dev-ns}
  - name: prod
    context: {cluster: prod, user: u, namespace: shop}
"#,
    )
    .expect("write kubeconfig");
    let opts = audit::ClientOptions {
        kubeconfig: Some(path.clone()),
        context: Some("prod".into()),
    };
    let client = audit::connect(&opts).await.expect("client");
    assert_eq!(client.default_namespace(), "shop");

    let current = audit::ClientOptions {
        kubeconfig: Some(path.clone()),
        context: None,
    };
    let client = audit::connect(&current).await.expect("client");
    assert_eq!(client.default_namespace(), "dev-ns");

    let missing = audit::ClientOptions {
        kubeconfig: Some(path),
        context: Some("staging".into()),
    };
    let Err(err) = audit::connect(&missing).await else {
        panic!("a context that does not exist must be an error");
    };
    assert!(matches!(err, AuditError::Kubeconfig(_)), "{err:?}");
    assert!(err.to_string().contains("staging"), "{err}");
}
